/* kernel_dram.c - DRAM bytes of a CUDA kernel under Nsight Compute, for `attnsim kernels
 * --backend cuda --dram` (see kernel_study.h): attnsim runs itself once more under ncu with
 * ATTNSIM_DRAM_CHILD set (one launch, nothing else), and sums the DRAM read and write counters
 * of the kernels that make up the call. */
#include <cuda_runtime.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fail.h"
#include "kernel_study.h"

const char *ks_cuda_ncu_path(void)
{
    static char path[4096];
    const char *env = getenv("PATH");
    char *dirs = env ? strdup(env) : NULL;
    for (char *save = NULL, *d = dirs ? strtok_r(dirs, ":", &save) : NULL; d;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof path, "%s/ncu", d);
        if (access(path, X_OK) == 0) {
            free(dirs);
            return path;
        }
    }
    free(dirs);
    snprintf(path, sizeof path, "/usr/local/cuda/bin/ncu");
    return access(path, X_OK) == 0 ? path : NULL;
}

/* The kernels (by name) that make up one call of each kernel under test. */
static const char *kernel_regex(const ks_kernel *k)
{
    switch (k->model) {
    case KIO_FA2_FWD:
        return "regex:fa[23]_fwd_kernel";
    case KIO_FA2_BWD:
        return "regex:fa[23]_bwd_kernel|dsum_kernel|convert_kernel";
    case KIO_STANDARD_FWD:
        return "regex:std_";
    case KIO_FA1_FWD:
        return "regex:fa1_kernel"; /* not the LSE pass after it */
    }
    return "regex:.";
}

/* Sums the values of `metric` over the rows of ncu's CSV (one row per kernel and metric). */
static int sum_metric(const char *csv_path, const char *metric, double *sum)
{
    FILE *f = fopen(csv_path, "r");
    if (!f) return -1;
    char line[8192];
    int rows = 0;
    *sum = 0;
    while (fgets(line, sizeof line, f)) {
        char *at = strstr(line, metric);
        if (!at || line[0] != '"') continue;
        /* the value is the last quoted field: "1234567" or "1,234,567" */
        char *end = strrchr(line, '"');
        if (!end || end == line) continue;
        char *start = end - 1;
        while (start > line && *start != '"') start--;
        char num[64];
        size_t n = 0;
        for (char *c = start + 1; c < end && n + 1 < sizeof num; c++)
            if (*c != ',') num[n++] = *c;
        num[n] = 0;
        *sum += strtod(num, NULL);
        rows++;
    }
    fclose(f);
    return rows;
}

int ks_cuda_dram(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, uint64_t seed,
                 uint64_t *bytes_read, uint64_t *bytes_written, int *launches)
{
    char tmpl[] = "/tmp/attnsim-ncu-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) attn_fail("mkstemp", __FILE__, __LINE__, "%s", strerror(errno));
    close(fd);
    char a[16][64];
    snprintf(a[0], 64, "%zu", s->nq);
    snprintf(a[1], 64, "%zu", s->nk);
    snprintf(a[2], 64, "%zu", s->batch);
    snprintf(a[3], 64, "%zu", s->heads);
    snprintf(a[4], 64, "%zu", s->kv_heads);
    snprintf(a[5], 64, "%zu", s->d);
    snprintf(a[6], 64, "--causal=%s", s->causal ? "yes" : "no");
    snprintf(a[7], 64, "%llu", (unsigned long long)seed);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0) attn_fail("readlink /proc/self/exe", __FILE__, __LINE__, "%s", strerror(errno));
    self[len] = 0;
    const char *argv[] = {ks_cuda_ncu_path(),
                          "--csv",
                          "--print-units",
                          "base",
                          "--log-file",
                          tmpl,
                          "--metrics",
                          "dram__bytes_read.sum,dram__bytes_write.sum",
                          "-k",
                          kernel_regex(k),
                          self,
                          "kernels",
                          "--backend",
                          "cuda",
                          "--kernel",
                          k->name,
                          "--pass",
                          k->pass,
                          "--seq",
                          a[0],
                          "--seq-kv",
                          a[1],
                          "--batch",
                          a[2],
                          "--heads",
                          a[3],
                          "--kv-heads",
                          a[4],
                          "--head-dim",
                          a[5],
                          a[6],
                          "--dtype",
                          kn_dtype_name(dtype),
                          "--seed",
                          a[7],
                          NULL};
    pid_t pid = fork();
    if (pid < 0) attn_fail("fork", __FILE__, __LINE__, "%s", strerror(errno));
    if (pid == 0) {
        setenv("ATTNSIM_DRAM_CHILD", "1", 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    double rd = 0, wr = 0;
    int nr = sum_metric(tmpl, "dram__bytes_read.sum", &rd);
    int nw = sum_metric(tmpl, "dram__bytes_write.sum", &wr);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || nr <= 0 || nw <= 0) {
        char head[512] = "";
        FILE *f = fopen(tmpl, "r");
        if (f) {
            size_t n = fread(head, 1, sizeof head - 1, f);
            head[n] = 0;
            fclose(f);
            for (char *c = head; *c; c++)
                if (*c == '\n') *c = ' ';
        }
        unlink(tmpl);
        attn_fail(argv[0], __FILE__, __LINE__,
                  "ncu found no DRAM metrics for %s %s (exit status %d): %s", k->name, k->pass,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1, head);
    }
    unlink(tmpl);
    *bytes_read = (uint64_t)rd;
    *bytes_written = (uint64_t)wr;
    *launches = nr;
    return 0;
}
