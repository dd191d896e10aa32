/* fail.c - the one error path (see fail.h). */
#include "fail.h"

#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kn_common.h"

static int fail_rank = -1;
static void (*cleanups[8])(void);
static volatile sig_atomic_t ncleanups;

static void run_cleanups(void)
{
    for (int i = (int)ncleanups - 1; i >= 0; i--) cleanups[i]();
}

static void on_signal(int sig)
{
    run_cleanups();
    signal(sig, SIG_DFL);
    raise(sig);
}

void attn_fail_set_rank(int rank)
{
    fail_rank = rank;
}

void attn_fail_on_exit(void (*cleanup)(void))
{
    if (ncleanups < (sig_atomic_t)(sizeof cleanups / sizeof cleanups[0]))
        cleanups[ncleanups++] = cleanup;
}

_Noreturn void attn_fail(const char *call, const char *file, int line, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    for (char *c = reason; *c; c++) /* one line, whatever a library put in its message */
        if (*c == '\n' || *c == '\r') *c = ' ';
    char who[32] = "";
    if (fail_rank >= 0) snprintf(who, sizeof who, "rank %d: ", fail_rank);
    if (file)
        fprintf(stderr, "attnsim: %s%s failed (%s:%d): %s\n", who, call, file, line, reason);
    else /* the kernels' own failures (allocations) name what failed instead of a place */
        fprintf(stderr, "attnsim: %s%s failed: %s\n", who, call, reason);
    fflush(stderr);
    run_cleanups();
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, 1);
    /* _exit, not exit: exit handlers (HDF5 closing a file whose write just failed) must not
     * run after a failure; our own clean-ups already did */
    fflush(stdout);
    _exit(1);
}

static void kernels_fatal(const char *call, const char *reason)
{
    attn_fail(call, NULL, 0, "%s", reason);
}

void attn_fail_init(void)
{
    kn_set_fatal_hook(kernels_fatal);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* a file-size limit (ulimit -f) makes a write fail with EFBIG instead of killing us, so the
     * failure takes the error path like a full disk does */
    signal(SIGXFSZ, SIG_IGN);
}

typedef struct {
    char text[400];
    int n;
} h5_reason;

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_reason *r = data;
    char minor[128] = "";
    H5Eget_msg(e->min_num, NULL, minor, sizeof minor);
    /* walking upward, the first entry is the innermost: it says what actually went wrong */
    if (n == 0)
        snprintf(r->text, sizeof r->text, "%s: %s (%s)", e->func_name, e->desc ? e->desc : "",
                 minor);
    r->n = (int)n + 1;
    return 0;
}

int64_t attn_check_h5(int64_t ret, const char *call, const char *file, int line)
{
    if (ret >= 0) return ret;
    h5_reason r = {"no HDF5 error recorded", 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, &r);
    attn_fail(call, file, line, "%s", r.text);
}

void attn_check_mpi(int ret, const char *call, const char *file, int line)
{
    if (ret == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(ret, msg, &len);
    attn_fail(call, file, line, "%s", msg);
}

void attn_kill_point(const char *name)
{
    static const char *spec;
    static int read_env, count;
    if (!read_env) {
        spec = getenv("ATTNSIM_KILL_AT");
        read_env = 1;
    }
    if (!spec) return;
    const char *only = getenv("ATTNSIM_KILL_RANK"); /* kill one rank of an MPI job */
    if (only && atoi(only) != fail_rank) return;
    size_t len = strlen(name);
    if (strncmp(spec, name, len) != 0 || (spec[len] != '\0' && spec[len] != '@')) return;
    int want = spec[len] == '@' ? atoi(spec + len + 1) : 1;
    if (++count != want) return;
    /* ATTNSIM_KILL_SIGNAL=STOP stops instead (a suspended job, a debugger) */
    const char *sig = getenv("ATTNSIM_KILL_SIGNAL");
    raise(sig && !strcmp(sig, "STOP") ? SIGSTOP : SIGKILL);
}
