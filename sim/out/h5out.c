/* h5out.c - schema attnsim/1 writer: runs built in memory, published in batches in place
 * (h5append.c) or by copy-append-rename (see h5out.h and docs/hdf5-schema.md, "Crash safety").
 * ~1,200 lines in one file on purpose: the publication protocol (the lock, the private copy,
 * the stage, the rename, the publisher thread and the clean-up on a signal) works on one struct
 * and on file-scope paths the signal handler removes; every step of it and every kill point the
 * crash tests use (tests/h5_crash.py) are read together here. */
#include "h5out.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <linux/fs.h>
#include <signal.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <poll.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fail.h"
#include "h5append.h"
#include "h5check.h"
#include "h5enc.h"
#include "kn_common.h"
#include "timing.h"

#define BATCH_MAX_BYTES ((size_t)64 << 20) /* records waiting for the publisher, at most */

/* ---- superblock: where the file's data ends ---------------------------------------------------
 */

typedef struct {
    int version;
    uint64_t eoa;     /* end of allocated space */
    off_t eoa_offset; /* where it is stored */
    unsigned char raw[48];
} superblock;

typedef struct {
    h5rec *rec;
    h5_summary_row row;
} run_item;

typedef struct {
    run_item *v;
    size_t n, cap, bytes;
} run_list;

struct h5out {
    char path[PATH_MAX]; /* the file written (a symlink's target) */
    char dir[PATH_MAX];
    char base[NAME_MAX + 1];
    int dirfd;
    int lockfd; /* held while publishing; -1 otherwise */
    double lock_timeout_s;
    const attn_provenance *prov;
    h5rec *open_run; /* between run_begin and run_commit */

    /* publication policy (the committing thread) */
    long fixed_runs; /* ATTNSIM_H5_BATCH: exactly this many runs per batch, published at once */
    long max_runs;
    double max_s;
    double batch_t0;
    size_t batch_runs, batch_bytes;

    /* hand-off to the publisher: a thread when the HDF5 library is thread-safe */
    int threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    run_list queue;                  /* committed, not yet staged */
    int publish_wanted;              /* publish once the queue is staged */
    int closing;                     /* the publisher ends when idle */
    size_t held_bytes;               /* records queued, not yet staged (memory bound) */
    unsigned long wanted, published; /* publications requested and done */
    double last_end, last_cost;      /* when the previous publication ended, what it took */

    /* the stage (the publisher's): runs appended to the private copy, not yet published (their
     * summary rows; run holds the number they have in the copy) */
    h5_summary_row *staged;
    size_t nstaged, cap_staged;
    double copy_s; /* what making the copy took */
    int have_copy, tmpfd;
    h5enc *enc; /* kept: its buffer is reused */
    uint64_t append_at;
    superblock sb;
    int copied_exists;
    struct stat copied; /* the file the private copy was made from */

    /* in place (h5append.h): the default; 0 once the file's layout needs the copy */
    int inplace;
    h5ap *ap;
    run_list pending; /* committed runs of the batch being gathered (the publisher's) */
};

/* The private copy being written, for removal on failure or SIGINT/SIGTERM (a fixed buffer:
 * the signal handler may only call unlink on it); the lock file likewise. */
static char tmp_path[PATH_MAX + NAME_MAX + 160];
static char lock_path[PATH_MAX + NAME_MAX + 160];
static char stale_path[PATH_MAX + NAME_MAX + 170];

static void remove_tmp(void)
{
    if (tmp_path[0]) unlink(tmp_path);
    if (stale_path[0]) unlink(stale_path);
    if (lock_path[0]) unlink(lock_path);
}

/* ---- the summary table ----------------------------------------------------------------------- */

static hid_t fixed_string(size_t n)
{
    hid_t t = H5CALL(H5Tcopy(H5T_C_S1));
    H5CALL(H5Tset_size(t, n));
    H5CALL(H5Tset_strpad(t, H5T_STR_NULLTERM));
    return t;
}

hid_t h5_summary_type(void)
{
    hid_t t = H5CALL(H5Tcreate(H5T_COMPOUND, sizeof(h5_summary_row)));
#define FIELD(name, type) H5CALL(H5Tinsert(t, #name, HOFFSET(h5_summary_row, name), type))
#define STRFIELD(name)                                                                             \
    do {                                                                                           \
        hid_t s_ = fixed_string(sizeof(((h5_summary_row *)0)->name));                              \
        FIELD(name, s_);                                                                           \
        H5CALL(H5Tclose(s_));                                                                      \
    } while (0)
    FIELD(run, H5T_NATIVE_INT64);
    STRFIELD(kind);
    STRFIELD(algorithm);
    STRFIELD(pass);
    STRFIELD(dtype);
    STRFIELD(backend);
    FIELD(P, H5T_NATIVE_INT32);
    FIELD(grid_rows, H5T_NATIVE_INT32);
    FIELD(grid_cols, H5T_NATIVE_INT32);
    FIELD(seq_len, H5T_NATIVE_INT64);
    FIELD(seq_len_kv, H5T_NATIVE_INT64);
    FIELD(batch, H5T_NATIVE_INT64);
    FIELD(heads, H5T_NATIVE_INT64);
    FIELD(kv_heads, H5T_NATIVE_INT64);
    FIELD(head_dim, H5T_NATIVE_INT64);
    FIELD(causal, H5T_NATIVE_INT32);
    FIELD(check_passed, H5T_NATIVE_INT32);
    FIELD(measured_time_s, H5T_NATIVE_DOUBLE);
    FIELD(predicted_time_s, H5T_NATIVE_DOUBLE);
    FIELD(measured_bytes_max, H5T_NATIVE_INT64);
    FIELD(predicted_bytes_max, H5T_NATIVE_INT64);
#undef FIELD
#undef STRFIELD
    return t;
}

/* Units of the summary columns, in field order ("" for a column that is not a quantity). */
static const char *const summary_units[] = {"", "", "",       "",       "",  "",      "",
                                            "", "", "tokens", "tokens", "",  "",      "",
                                            "", "", "",       "s",      "s", "bytes", "bytes"};

/* ---- paths ---------------------------------------------------------------------------------- */

static void split_dir(const char *path, char *dir, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, n, "%s", dirname(tmp));
}

static void split_base(const char *path, char *base, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(base, n, "%s", basename(tmp));
}

void h5out_resolve(const char *path, char *out, size_t outlen)
{
    char cur[PATH_MAX];
    snprintf(cur, sizeof cur, "%s", path);
    for (int depth = 0; depth < 40; depth++) { /* SYMLOOP_MAX */
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) break;
        char target[PATH_MAX];
        ssize_t n = readlink(cur, target, sizeof target - 1);
        if (n < 0 || n >= (ssize_t)sizeof target - 1) break;
        target[n] = '\0';
        if (target[0] == '/') {
            snprintf(cur, sizeof cur, "%s", target);
        } else {
            char dir[PATH_MAX];
            split_dir(cur, dir, sizeof dir);
            if (strlen(dir) + 1 + strlen(target) >= sizeof cur) break;
            memmove(cur + strlen(dir) + 1, target, strlen(target) + 1);
            memcpy(cur, dir, strlen(dir));
            cur[strlen(dir)] = '/';
        }
    }
    snprintf(out, outlen, "%s", cur);
}

/* 1 when the file system says `path` is append-only or immutable (chattr +a / +i) */
static int append_only(const char *path, const char **which)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return 0;
    int flags = 0, r = ioctl(fd, FS_IOC_GETFLAGS, &flags);
    close(fd);
    if (r != 0) return 0; /* no such attributes on this file system */
    if (flags & FS_IMMUTABLE_FL) return *which = "immutable (chattr +i)", 1;
    if (flags & FS_APPEND_FL) return *which = "append-only (chattr +a)", 1;
    return 0;
}

static const unsigned char h5_signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads the superblock of an HDF5 file this writer can append to (superblock at address 0,
 * 8-byte offsets and lengths, base address 0). */
static int superblock_read(int fd, superblock *sb, char *err, size_t errlen)
{
    memset(sb, 0, sizeof *sb);
    if (pread(fd, sb->raw, sizeof sb->raw, 0) != (ssize_t)sizeof sb->raw ||
        memcmp(sb->raw, h5_signature, 8) != 0)
        return snprintf(err, errlen,
                        "has no HDF5 superblock at its start (a user block?); accepted: a file "
                        "written by attnsim"),
               -1;
    sb->version = sb->raw[8];
    int off_size, len_size;
    uint64_t base;
    if (sb->version <= 1) {
        off_size = sb->raw[13], len_size = sb->raw[14];
        int at = sb->version == 0 ? 24 : 28;
        base = get64(sb->raw + at);
        sb->eoa_offset = at + 16;
    } else if (sb->version <= 3) {
        off_size = sb->raw[9], len_size = sb->raw[10];
        base = get64(sb->raw + 12);
        sb->eoa_offset = 28;
        if (h5enc_checksum(sb->raw, 44) != get32(sb->raw + 44))
            return snprintf(err, errlen, "has a superblock whose checksum does not match"), -1;
    } else {
        return snprintf(err, errlen, "has superblock version %d; accepted: versions 0 to 3",
                        sb->version),
               -1;
    }
    if (off_size != 8 || len_size != 8 || base != 0)
        return snprintf(err, errlen,
                        "uses %d-byte addresses, %d-byte lengths and base address %llu; "
                        "accepted: 8, 8 and 0 (as attnsim writes)",
                        off_size, len_size, (unsigned long long)base),
               -1;
    sb->eoa = get64(sb->raw + sb->eoa_offset);
    return 0;
}

static void superblock_set_eoa(int fd, superblock *sb, uint64_t eoa)
{
    unsigned char *p = sb->raw + sb->eoa_offset;
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(eoa >> (8 * i));
    size_t n = sb->version <= 1 ? (size_t)sb->eoa_offset + 8 : 48;
    if (sb->version >= 2) {
        uint32_t c = h5enc_checksum(sb->raw, 44);
        for (int i = 0; i < 4; i++) sb->raw[44 + i] = (unsigned char)(c >> (8 * i));
    }
    if (pwrite(fd, sb->raw, n, 0) != (ssize_t)n)
        attn_fail("pwrite", __FILE__, __LINE__, "%s: superblock: %s", tmp_path, strerror(errno));
    sb->eoa = eoa;
}

/* ---- structural validation of an existing file ------------------------------------------------
 */

/* The whole check, in this process: what h5check_file checks, then whether this writer can
 * append to the file (its superblock). */
static int check_existing(const char *path, char *err, size_t errlen)
{
    if (h5check_file(path, err, errlen)) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return snprintf(err, errlen, "'%s' cannot be read (%s)", path, strerror(errno)), -1;
    superblock sb;
    char why[300];
    int rc = superblock_read(fd, &sb, why, sizeof why);
    close(fd);
    if (rc)
        return snprintf(err, errlen, "'%s' %s; accepted: a new path or an attnsim/1 file", path,
                        why),
               -1;
    return 0;
}

/* check_existing in a child process: a file from anywhere may be corrupted so that the HDF5
 * library crashes, leaks or loops reading it; the child takes that, attnsim reports it. */
static int check_existing_isolated(const char *path, char *err, size_t errlen)
{
    int fds[2];
    if (pipe(fds) != 0) return check_existing(path, err, errlen);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return check_existing(path, err, errlen);
    }
    if (pid == 0) {
        close(fds[0]);
        char msg[600] = "";
        int rc = check_existing(path, msg, sizeof msg);
        if (write(fds[1], &rc, sizeof rc) == (ssize_t)sizeof rc) {
            ssize_t unused = write(fds[1], msg, strlen(msg) + 1);
            (void)unused;
        }
        _exit(0); /* no exit handlers in the child */
    }
    close(fds[1]);
    /* a crafted file can also send HDF5 into an endless loop: a deadline (ATTNSIM_H5_CHECK_MS,
     * 10 s plus 1 ms per 100 kB of file), then the child goes */
    const char *ms = getenv("ATTNSIM_H5_CHECK_MS");
    struct stat st;
    long extra = stat(path, &st) == 0 ? (long)(st.st_size / 100000) : 0;
    int deadline_ms = ms && atoi(ms) > 0 ? atoi(ms) : (int)(10000 + extra);
    struct pollfd pfd = {fds[0], POLLIN, 0};
    int ready;
    while ((ready = poll(&pfd, 1, deadline_ms)) < 0 && errno == EINTR) {
    }
    if (ready == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(fds[0]);
        return snprintf(err, errlen,
                        "'%s' is damaged: the HDF5 library did not finish reading "
                        "it in %g s; accepted: a new path or an intact attnsim/1 "
                        "file",
                        path, deadline_ms / 1000.0),
               -1;
    }
    int rc = -2;
    ssize_t got = read(fds[0], &rc, sizeof rc);
    char msg[600] = "";
    size_t len = 0;
    for (ssize_t n; got == (ssize_t)sizeof rc && len + 1 < sizeof msg &&
                    (n = read(fds[0], msg + len, sizeof msg - 1 - len)) > 0;)
        len += (size_t)n;
    msg[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != (ssize_t)sizeof rc || WIFSIGNALED(status))
        return snprintf(err, errlen,
                        "'%s' is damaged: the HDF5 library failed reading it%s; "
                        "accepted: a new path or an intact attnsim/1 file",
                        path, WIFSIGNALED(status) ? " (it crashed)" : ""),
               -1;
    if (rc) snprintf(err, errlen, "%s", msg);
    return rc;
}

int h5out_check_existing(const char *path, char *err, size_t errlen)
{
    return check_existing_isolated(path, err, errlen);
}

int h5out_dir_writable(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    struct stat st;
    split_dir(path, dir, sizeof dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return snprintf(err, errlen,
                        "directory '%s' does not exist; accepted: a file in an "
                        "existing directory",
                        dir),
               -1;
    if (access(dir, W_OK | X_OK) != 0)
        return snprintf(err, errlen,
                        "directory '%s' is not writable; accepted: a file in a "
                        "writable directory",
                        dir),
               -1;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return snprintf(err, errlen, "'%s' is a directory; accepted: a file path", path), -1;
    return 0;
}

static int env_positive(const char *name, double *v, char *err, size_t errlen)
{
    const char *s = getenv(name);
    if (!s) return 0;
    char *end;
    double x = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(x > 0) || !isfinite(x))
        return snprintf(err, errlen,
                        "environment variable %s='%s' is not a positive number; accepted: a "
                        "positive number, or unset",
                        name, s),
               -1;
    *v = x;
    return 0;
}

static int check_env(char *err, size_t errlen)
{
    double x;
    if (env_positive("ATTNSIM_H5_BATCH", &x, err, errlen) ||
        env_positive("ATTNSIM_H5_BATCH_RUNS", &x, err, errlen) ||
        env_positive("ATTNSIM_H5_BATCH_SECONDS", &x, err, errlen))
        return -1;
    return 0;
}

int h5out_check_path(const char *given, char *err, size_t errlen)
{
    if (*given == '\0')
        return snprintf(err, errlen, "the value is empty; accepted: the path of an HDF5 file"), -1;
    if (strlen(given) >= PATH_MAX - 64)
        return snprintf(err, errlen, "the path is too long; accepted: up to %d bytes",
                        PATH_MAX - 64),
               -1;
    if (check_env(err, errlen)) return -1;
    char path[PATH_MAX];
    h5out_resolve(given, path, sizeof path);
    char dir[PATH_MAX];
    split_dir(path, dir, sizeof dir);
    struct stat st;
    const char *which;
    if (stat(dir, &st) != 0)
        return snprintf(err, errlen,
                        "directory '%s' does not exist; accepted: a file in an "
                        "existing directory",
                        dir),
               -1;
    if (!S_ISDIR(st.st_mode))
        return snprintf(err, errlen,
                        "'%s' is not a directory; accepted: a file in an existing "
                        "directory",
                        dir),
               -1;
    if (access(dir, W_OK | X_OK) != 0)
        return snprintf(err, errlen,
                        "directory '%s' is not writable (%s); accepted: a file in "
                        "a writable directory",
                        dir, strerror(errno)),
               -1;
    if (append_only(dir, &which))
        return snprintf(err, errlen,
                        "directory '%s' is %s: attnsim adds runs by replacing the file "
                        "with a new version (rename), which such a directory forbids; "
                        "accepted: a directory without the a and i attributes",
                        dir, which),
               -1;
    if (stat(path, &st) != 0) return 0; /* a new file */
    if (S_ISDIR(st.st_mode))
        return snprintf(err, errlen, "'%s' is a directory; accepted: the path of an HDF5 file",
                        path),
               -1;
    if (!S_ISREG(st.st_mode))
        return snprintf(err, errlen,
                        "'%s' is not a regular file; accepted: the path of an HDF5 "
                        "file",
                        path),
               -1;
    /* read-only files stay untouched, even for root (who passes access(W_OK) regardless) */
    if ((st.st_mode & 0222) == 0 || access(path, R_OK | W_OK) != 0)
        return snprintf(err, errlen, "'%s' is read-only; accepted: a writable file or a new path",
                        path),
               -1;
    if (append_only(path, &which))
        return snprintf(err, errlen,
                        "'%s' is %s: attnsim adds runs by replacing the file with a new "
                        "version (rename), which such a file forbids; accepted: a file "
                        "without the a and i attributes, or a new path",
                        path, which),
               -1;
    return check_existing_isolated(path, err, errlen);
}

/* ---- the lock of one file ------------------------------------------------------------------- */

/* "pid host" of the holder of the lock file open as fd */
static void lock_holder(int fd, long *pid, char *host, size_t n)
{
    char buf[300] = "";
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    buf[got > 0 ? got : 0] = '\0';
    *pid = 0;
    snprintf(host, n, "?");
    char h[256];
    if (sscanf(buf, "%ld %255s", pid, h) == 2) snprintf(host, n, "%s", h);
}

/* Takes the lock of h->path: the lock file ".NAME.attnsim-lock" next to it, created for the
 * time of a publication and removed after, so writers of other files never wait for it. A
 * holder's pid and host are in the file; after a second of waiting the writer says who holds
 * it; after the lock timeout it fails (exit status 1). */
static void lock_file(h5out *h)
{
    snprintf(lock_path, sizeof lock_path, "%s/.%s.attnsim-lock", h->dir, h->base);
    double t0 = timing_now_s(), sleep_s = 0.001;
    int said = 0;
    for (;;) {
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            attn_fail("open", __FILE__, __LINE__, "lock file %s: %s", lock_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            struct stat a, b;
            /* the holder before us may have removed the file we locked: retry on the new one */
            if (fstat(fd, &a) == 0 && stat(lock_path, &b) == 0 && a.st_ino == b.st_ino &&
                a.st_dev == b.st_dev) {
                char host[256] = "?", line[320];
                gethostname(host, sizeof host);
                host[sizeof host - 1] = '\0';
                int len = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), host);
                if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len)
                    attn_fail("write", __FILE__, __LINE__, "lock file %s: %s", lock_path,
                              strerror(errno));
                h->lockfd = fd;
                return;
            }
            close(fd);
            continue;
        }
        if (errno == ENOLCK || errno == EOPNOTSUPP || errno == EINVAL) {
            static int warned;
            if (!warned)
                fprintf(stderr,
                        "attnsim: warning: no file locking in '%s' (%s): do not append to "
                        "the same file from two jobs at once\n",
                        h->dir, strerror(errno));
            warned = 1;
            close(fd);
            unlink(lock_path);
            lock_path[0] = '\0';
            h->lockfd = -1;
            return;
        }
        if (errno != EWOULDBLOCK && errno != EINTR)
            attn_fail("flock", __FILE__, __LINE__, "%s: %s", lock_path, strerror(errno));
        long pid;
        char host[256];
        double waited = timing_now_s() - t0;
        if (waited >= h->lock_timeout_s) {
            lock_holder(fd, &pid, host, sizeof host);
            close(fd);
            lock_path[0] = '\0'; /* not ours to remove */
            attn_fail("waiting for the lock", __FILE__, __LINE__,
                      "timed out after %g s waiting for %s held by pid %ld on host %s "
                      "(--lock-timeout)",
                      h->lock_timeout_s, h->path, pid, host);
        }
        if (!said && waited >= 1.0) {
            lock_holder(fd, &pid, host, sizeof host);
            fprintf(stderr, "attnsim: waiting for %s held by pid %ld on host %s\n", h->path, pid,
                    host);
            said = 1;
        }
        close(fd);
        double left = h->lock_timeout_s - waited;
        double nap = sleep_s < left ? sleep_s : left;
        struct timespec ts = {(time_t)nap, (long)((nap - (double)(time_t)nap) * 1e9)};
        nanosleep(&ts, NULL);
        if (sleep_s < 0.05) sleep_s *= 2;
    }
}

static void unlock_file(h5out *h)
{
    if (h->lockfd < 0) return;
    unlink(lock_path); /* before the unlock: a waiter that gets the old file retries */
    lock_path[0] = '\0';
    close(h->lockfd);
    h->lockfd = -1;
}

/* ---- copying and publishing ------------------------------------------------------------------ */

static void make_tmp_name(const h5out *h)
{
    char host[64] = "host";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(tmp_path, sizeof tmp_path, "%s/.%s.attnsim-tmp.%s.%ld", h->dir, h->base, host,
             (long)getpid());
}

/* Copies `from` to the new file `to`; *src gets the identity of the file copied. Returns 0, or
 * -1 when `from` does not exist. */
static int copy_file(const char *from, const char *to, struct stat *src)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0 && errno == ENOENT) return -1;
    if (in < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", from, strerror(errno));
    struct stat st;
    SYSCHECK(fstat(in, &st));
    *src = st;
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
    if (out < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", to, strerror(errno));
    int use_read = 0;
    for (int chunk = 0;; chunk++) {
        ssize_t n;
        if (!use_read) {
            n = copy_file_range(in, NULL, out, NULL, 1 << 26, 0);
            if (n < 0 &&
                (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                use_read = 1;
                continue;
            }
        } else {
            static char buf[1 << 20];
            n = read(in, buf, sizeof buf);
            for (ssize_t done = 0; n > 0 && done < n;) {
                ssize_t w = write(out, buf + done, (size_t)(n - done));
                if (w < 0) attn_fail("write", __FILE__, __LINE__, "%s: %s", to, strerror(errno));
                done += w;
            }
        }
        if (n < 0) attn_fail("copy", __FILE__, __LINE__, "%s -> %s: %s", from, to, strerror(errno));
        if (n == 0) break;
        if (chunk == 0) attn_kill_point("h5:copy");
    }
    /* start writing the copy to disk now; the fsync before publishing then waits less */
    sync_file_range(out, 0, 0, SYNC_FILE_RANGE_WRITE);
    SYSCHECK(close(in));
    SYSCHECK(close(out));
    return 0;
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", path, strerror(errno));
    if (fsync(fd) != 0) attn_fail("fsync", __FILE__, __LINE__, "%s: %s", path, strerror(errno));
    SYSCHECK(close(fd));
}

static hid_t file_access_plist(void)
{
    hid_t fapl = H5CALL(H5Pcreate(H5P_FILE_ACCESS));
    /* closing the file closes every object still open in it */
    H5CALL(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG));
    /* objects the library creates use the HDF5 1.8 format (checksummed metadata), readable
     * by HDF5 1.8 and later */
    H5CALL(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18));
    return fapl;
}

/* A new, empty attnsim/1 file (root provenance, /runs, /summary) at tmp_path. */
static void create_empty(const h5out *h)
{
    hid_t fapl = file_access_plist();
    hid_t f = H5CALL(H5Fcreate(tmp_path, H5F_ACC_EXCL, H5P_DEFAULT, fapl));
    H5CALL(H5Pclose(fapl));
    h5rec *root = h5rec_new();
    prov_write_root(h5rec_root(root), h->prov);
    h5rec_write_attrs(f, h5rec_root(root));
    h5rec_free(root);
    hid_t gcpl = H5CALL(H5Pcreate(H5P_GROUP_CREATE));
    H5CALL(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));
    hid_t runs = H5CALL(H5Gcreate2(f, "runs", H5P_DEFAULT, gcpl, H5P_DEFAULT));
    H5CALL(H5Gclose(runs));
    H5CALL(H5Pclose(gcpl));

    hid_t t = h5_summary_type();
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {256};
    hid_t space = H5CALL(H5Screate_simple(1, dims, maxdims));
    hid_t dcpl = H5CALL(H5Pcreate(H5P_DATASET_CREATE));
    H5CALL(H5Pset_chunk(dcpl, 1, chunk));
    hid_t ds = H5CALL(H5Dcreate2(f, "summary", t, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    h5rec *attrs = h5rec_new();
    h5node *a = h5rec_root(attrs);
    h5_attr_strs(a, "units", summary_units, sizeof summary_units / sizeof summary_units[0]);
    h5_attr_str(a, "description",
                "one row per run; bytes columns: max over ranks of bytes sent (distributed, "
                "model) or HBM bytes read + written (kernel); check_passed -1 = not checked");
    h5rec_write_attrs(ds, a);
    h5rec_free(attrs);
    H5CALL(H5Dclose(ds));
    H5CALL(H5Pclose(dcpl));
    H5CALL(H5Sclose(space));
    H5CALL(H5Tclose(t));
    H5CALL(H5Fclose(f));
}

/* Removes private copies of h->path left by writers on this host that were killed (their
 * process no longer exists). Called with the file locked. */
static void remove_stale_copies(const h5out *h)
{
    char host[64] = "host", prefix[PATH_MAX + 96];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(prefix, sizeof prefix, ".%s.attnsim-tmp.%s.", h->base, host);
    DIR *dir = opendir(h->dir);
    if (!dir) return;
    struct dirent *e;
    size_t len = strlen(prefix);
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, prefix, len) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + len, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) unlinkat(h->dirfd, e->d_name, 0);
    }
    closedir(dir);
}

/* The number of the next run: one past the newest run in /runs (by creation order, which
 * attnsim's files index; by name otherwise). */
static herr_t newest_run(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g, (void)info;
    char *end;
    long long v = strtoll(name, &end, 10);
    int64_t *next = data;
    if (*end == '\0' && v >= *next) *next = v + 1;
    return 0;
}

static herr_t newest_first(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    newest_run(g, name, info, data);
    return 1; /* the newest only */
}

static int64_t next_run_id(hid_t runs)
{
    H5G_info_t gi;
    H5CALL(H5Gget_info(runs, &gi));
    if (gi.nlinks == 0) return 0;
    int64_t next = 0;
    hsize_t idx = 0;
    herr_t r;
    H5E_BEGIN_TRY
    {
        r = H5Literate(runs, H5_INDEX_CRT_ORDER, H5_ITER_DEC, &idx, newest_first, &next);
    }
    H5E_END_TRY;
    char name[32];
    snprintf(name, sizeof name, "%06lld", (long long)next);
    if (r >= 0 && next > 0 && H5Lexists(runs, name, H5P_DEFAULT) == 0) return next;
    next = 0;
    H5CALL(H5Literate(runs, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, newest_run, &next));
    return next;
}

/* ---- the stage: runs appended to the private copy ---------------------------------------------
 */

static void list_push(run_list *l, const run_item *it)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) attn_fail("realloc", __FILE__, __LINE__, "list of runs");
    }
    l->v[l->n++] = *it;
    l->bytes += h5rec_bytes(it->rec);
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The private copy of the file as it is now (a new empty file if it was removed). */
static void stage_copy(h5out *h)
{
    double t0 = timing_now_s();
    make_tmp_name(h);
    /* the identity of the file copied (fstat of what was read): publishing checks that the
     * path still names it */
    h->copied_exists = copy_file(h->path, tmp_path, &h->copied) == 0;
    if (!h->copied_exists) create_empty(h); /* removed since this writer started */
    attn_kill_point("h5:after_copy");
    h->tmpfd = open(tmp_path, O_RDWR | O_CLOEXEC);
    if (h->tmpfd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", tmp_path, strerror(errno));
    h->have_copy = 1;
    h->copy_s = timing_now_s() - t0;
}

static void staged_push(h5out *h, const h5_summary_row *row)
{
    if (h->nstaged == h->cap_staged) {
        h->cap_staged = h->cap_staged ? 2 * h->cap_staged : 256;
        h->staged = realloc(h->staged, h->cap_staged * sizeof *h->staged);
        if (!h->staged) attn_fail("realloc", __FILE__, __LINE__, "summary rows");
    }
    h->staged[h->nstaged++] = *row;
}

/* Appends rows to /summary of the open file f. */
static void summary_append(hid_t f, const h5_summary_row *rows, size_t nrows)
{
    hid_t ds = H5CALL(H5Dopen2(f, "summary", H5P_DEFAULT));
    hid_t space = H5CALL(H5Dget_space(ds));
    hsize_t n;
    H5CALL(H5Sget_simple_extent_dims(space, &n, NULL));
    H5CALL(H5Sclose(space));
    hsize_t newsize = n + nrows, start = n, count = nrows;
    H5CALL(H5Dset_extent(ds, &newsize));
    space = H5CALL(H5Dget_space(ds));
    H5CALL(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, NULL, &count, NULL));
    hid_t mem = H5CALL(H5Screate_simple(1, &count, NULL));
    hid_t t = h5_summary_type();
    H5CALL(H5Dwrite(ds, t, mem, space, H5P_DEFAULT, rows));
    H5CALL(H5Tclose(t));
    H5CALL(H5Sclose(mem));
    H5CALL(H5Sclose(space));
    H5CALL(H5Dclose(ds));
}

/* Summary rows appended to the private copy whose /summary is contiguous (a file written in
 * place before): the runs are linked already. */
static void summary_rows_in_place(h5out *h, h5_summary_row *rows, size_t n)
{
    char why[300];
    if (!h->ap) h->ap = h5ap_new();
    if (h5ap_publish(h->ap, h->tmpfd, tmp_path, h->enc, NULL, 0, rows, n, 0, why, sizeof why))
        attn_fail("append", __FILE__, __LINE__, "'%s': %s", h->path, why);
}

/* Where appended objects go: past both the allocated space and the file's end. */
static void stage_find_end(h5out *h)
{
    char why[300];
    if (superblock_read(h->tmpfd, &h->sb, why, sizeof why))
        attn_fail("append", __FILE__, __LINE__, "'%s' %s", h->path, why);
    struct stat st;
    SYSCHECK(fstat(h->tmpfd, &st));
    uint64_t end = (uint64_t)st.st_size > h->sb.eoa ? (uint64_t)st.st_size : h->sb.eoa;
    h->append_at = (end + 7) & ~(uint64_t)7;
}

/* Appends runs to the private copy: their objects encoded in one write past the end, then
 * linked into /runs and listed in /summary with the HDF5 library. */
static void stage_runs(h5out *h, run_list *in)
{
    if (!in->n) return;
    double t0 = timing_thread_cpu_s(), tm[6], w0 = timing_now_s(), wm[6];
    if (!h->have_copy) stage_copy(h);
    stage_find_end(h);
    tm[0] = timing_thread_cpu_s();
    wm[0] = timing_now_s();
    if (!h->enc) h->enc = h5enc_new(h->append_at);
    h5enc *enc = h->enc;
    h5enc_reset(enc, h->append_at);
    h5enc_set_linked(enc, 0);
    int library = getenv("ATTNSIM_H5_LIBRARY") != NULL; /* every run through the library */
    uint64_t strings = 0;
    for (size_t i = 0; i < in->n && !library; i++)
        strings += h5enc_string_bytes(h5rec_root(in->v[i].rec));
    h5enc_expect(enc, strings);
    if (!library) {
        h5node **roots = kn_xmalloc(in->n * sizeof *roots, "runs");
        for (size_t i = 0; i < in->n; i++) roots[i] = h5rec_root(in->v[i].rec);
        h5enc_reserve_roots(enc, roots, in->n);
        free(roots);
    }
    for (size_t i = 0; i < in->n; i++) {
        h5node *r = h5rec_root(in->v[i].rec);
        r->addr = 0;
        if (!library) h5enc_add(enc, r); /* runs it cannot encode keep addr 0: the library */
    }
    tm[1] = timing_thread_cpu_s();
    wm[1] = timing_now_s();
    size_t len;
    uint64_t at;
    const unsigned char *bytes = h5enc_take(enc, 1, &len, &at);
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(h->tmpfd, bytes + done, len - done, (off_t)(at + done));
        if (w < 0) attn_fail("pwrite", __FILE__, __LINE__, "%s: %s", tmp_path, strerror(errno));
        done += (size_t)w;
    }
    if (len) {
        sync_file_range(h->tmpfd, (off_t)at, (off_t)len, SYNC_FILE_RANGE_WRITE);
        superblock_set_eoa(h->tmpfd, &h->sb, at + len);
    }
    attn_kill_point("h5:after_append");
    tm[2] = timing_thread_cpu_s();
    wm[2] = timing_now_s();

    int contiguous =
        h5ap_summary_contiguous(h->tmpfd) == 1; /* written in place: not by the library */
    hid_t fapl = file_access_plist();
    hid_t f = H5CALL(H5Fopen(tmp_path, H5F_ACC_RDWR, fapl));
    H5CALL(H5Pclose(fapl));
    hid_t runs = H5CALL(H5Gopen2(f, "runs", H5P_DEFAULT));
    int64_t next = next_run_id(runs);
    for (size_t i = 0; i < in->n; i++) {
        char name[32];
        snprintf(name, sizeof name, "%06lld", (long long)(next + (int64_t)i));
        h5node *r = h5rec_root(in->v[i].rec);
        attn_kill_point("h5:link");
        if (r->addr) { /* name the encoded run in /runs: its link count becomes 1 */
            hid_t o = H5CALL(H5Oopen_by_addr(f, r->addr));
            H5CALL(H5Olink(o, runs, name, H5P_DEFAULT, H5P_DEFAULT));
            H5CALL(H5Oclose(o));
        } else {
            h5rec_write_tree(runs, name, r);
        }
        in->v[i].row.run = next + (int64_t)i;
    }
    H5CALL(H5Gclose(runs));
    tm[3] = timing_thread_cpu_s();
    wm[3] = timing_now_s();
    size_t first = h->nstaged;
    for (size_t i = 0; i < in->n; i++) staged_push(h, &in->v[i].row);
    if (!contiguous) summary_append(f, h->staged + first, in->n);
    attn_kill_point("h5:after_summary");
    H5CALL(H5Fclose(f));
    if (contiguous) summary_rows_in_place(h, h->staged + first, in->n);
    attn_kill_point("h5:after_close");
    tm[4] = timing_thread_cpu_s();
    wm[4] = timing_now_s();
    if (getenv("ATTNSIM_H5_TRACE"))
        fprintf(stderr,
                "attnsim: staged %zu runs (%zu bytes appended), CPU (wall) s: copy %.3f (%.3f), "
                "encode %.3f (%.3f), write %.3f (%.3f), link %.3f (%.3f), summary+close %.3f "
                "(%.3f)\n",
                in->n, len, tm[0] - t0, wm[0] - w0, tm[1] - tm[0], wm[1] - wm[0], tm[2] - tm[1],
                wm[2] - wm[1], tm[3] - tm[2], wm[3] - wm[2], tm[4] - tm[3], wm[4] - wm[3]);
    /* the records are done with: the copy holds the runs now */
    size_t freed = in->bytes;
    for (size_t i = 0; i < in->n; i++) h5rec_free(in->v[i].rec);
    in->n = in->bytes = 0;
    pthread_mutex_lock(&h->mu);
    h->held_bytes -= freed;
    pthread_cond_broadcast(&h->done);
    pthread_mutex_unlock(&h->mu);
}

/* Another writer published since the private copy was made: the runs staged in it are copied
 * (H5Ocopy) into a new copy of the file as it is now, renumbered after its runs. Called with
 * the file locked. */
static void stage_rebase(h5out *h)
{
    SYSCHECK(close(h->tmpfd));
    h->have_copy = 0;
    snprintf(stale_path, sizeof stale_path, "%s.old", tmp_path);
    if (rename(tmp_path, stale_path) != 0)
        attn_fail("rename", __FILE__, __LINE__, "%s: %s", tmp_path, strerror(errno));
    tmp_path[0] = '\0';
    stage_copy(h);
    int contiguous = h5ap_summary_contiguous(h->tmpfd) == 1;
    hid_t fapl = file_access_plist();
    hid_t from = H5CALL(H5Fopen(stale_path, H5F_ACC_RDONLY, fapl));
    hid_t to = H5CALL(H5Fopen(tmp_path, H5F_ACC_RDWR, fapl));
    H5CALL(H5Pclose(fapl));
    hid_t src = H5CALL(H5Gopen2(from, "runs", H5P_DEFAULT));
    hid_t dst = H5CALL(H5Gopen2(to, "runs", H5P_DEFAULT));
    int64_t next = next_run_id(dst);
    for (size_t i = 0; i < h->nstaged; i++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%06lld", (long long)h->staged[i].run);
        snprintf(b, sizeof b, "%06lld", (long long)(next + (int64_t)i));
        attn_kill_point("h5:link");
        H5CALL(H5Ocopy(src, a, dst, b, H5P_DEFAULT, H5P_DEFAULT));
        h->staged[i].run = next + (int64_t)i;
    }
    H5CALL(H5Gclose(src));
    H5CALL(H5Gclose(dst));
    if (!contiguous) summary_append(to, h->staged, h->nstaged);
    H5CALL(H5Fclose(to));
    H5CALL(H5Fclose(from));
    if (contiguous) summary_rows_in_place(h, h->staged, h->nstaged);
    unlink(stale_path);
    stale_path[0] = '\0';
    if (getenv("ATTNSIM_H5_TRACE"))
        fprintf(stderr, "attnsim: another writer published first: %zu runs copied to its file\n",
                h->nstaged);
}

/* Publishes the stage: with the file locked, the private copy replaces it (fsync, rename,
 * fsync of the directory). If another writer published since the copy was made, the stage
 * is made again from the new file (its records are kept until now for that). */
static void stage_publish(h5out *h)
{
    if (!h->nstaged) return;
    double w0 = timing_now_s();
    attn_kill_point("h5:publish");
    lock_file(h);
    attn_kill_point("h5:after_lock");
    struct stat now;
    int exists = stat(h->path, &now) == 0;
    if (exists != h->copied_exists || (exists && !same_file(&now, &h->copied))) stage_rebase(h);
    if (fsync(h->tmpfd) != 0)
        attn_fail("fsync", __FILE__, __LINE__, "%s: %s", tmp_path, strerror(errno));
    SYSCHECK(close(h->tmpfd));
    h->have_copy = 0;
    attn_kill_point("h5:after_fsync");
    if (rename(tmp_path, h->path) != 0)
        attn_fail("rename", __FILE__, __LINE__, "%s -> %s: %s", tmp_path, h->path, strerror(errno));
    tmp_path[0] = '\0';
    attn_kill_point("h5:after_rename");
    if (fsync(h->dirfd) != 0 && errno != EINVAL)
        attn_fail("fsync", __FILE__, __LINE__, "%s: %s", h->dir, strerror(errno));
    unlock_file(h);
    h->nstaged = 0;
    double w1 = timing_now_s();
    pthread_mutex_lock(&h->mu);
    h->last_end = w1;
    h->last_cost = h->copy_s + (w1 - w0); /* the copy made for the batch, and publishing it */
    pthread_mutex_unlock(&h->mu);
    if (getenv("ATTNSIM_H5_TRACE"))
        fprintf(stderr, "attnsim: published (lock, fsync, rename: %.3f s)\n", w1 - w0);
    attn_kill_point("h5:published");
}

/* ---- publishing in place (h5append.h) ---------------------------------------------------------
 */

/* A new empty file published at the path (created with the file locked, by rename). */
static void publish_empty(h5out *h)
{
    make_tmp_name(h);
    create_empty(h);
    attn_kill_point("h5:created");
    fsync_path(tmp_path);
    if (rename(tmp_path, h->path) != 0)
        attn_fail("rename", __FILE__, __LINE__, "%s -> %s: %s", tmp_path, h->path, strerror(errno));
    tmp_path[0] = '\0';
    if (fsync(h->dirfd) != 0 && errno != EINVAL)
        attn_fail("fsync", __FILE__, __LINE__, "%s: %s", h->dir, strerror(errno));
}

/* Publishes the gathered batch in place, with the file locked; a batch with a run the encoder
 * cannot write, or a file whose layout needs it, goes the copy's way (and later batches too). */
static void inplace_publish(h5out *h)
{
    run_list *in = &h->pending;
    if (!in->n) return;
    double w0 = timing_now_s();
    int fits = !getenv("ATTNSIM_H5_LIBRARY");
    for (size_t i = 0; i < in->n && fits; i++) fits = h5enc_fits(h5rec_root(in->v[i].rec));
    if (!fits) { /* this batch by copy; the next in place again */
        stage_runs(h, in);
        stage_publish(h);
        return;
    }
    attn_kill_point("h5:publish");
    lock_file(h);
    attn_kill_point("h5:after_lock");
    int fd = open(h->path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) { /* removed since this writer started */
        publish_empty(h);
        fd = open(h->path, O_RDWR | O_CLOEXEC);
    }
    if (fd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", h->path, strerror(errno));
    h5node **roots = kn_xmalloc(in->n * sizeof *roots, "runs");
    h5_summary_row *rows = kn_xmalloc(in->n * sizeof *rows, "summary rows");
    for (size_t i = 0; i < in->n; i++) {
        roots[i] = h5rec_root(in->v[i].rec);
        rows[i] = in->v[i].row;
    }
    if (!h->ap) h->ap = h5ap_new();
    if (!h->enc) h->enc = h5enc_new(0);
    char why[300];
    pthread_mutex_lock(&h->mu);
    int last = h->closing;
    pthread_mutex_unlock(&h->mu);
    int rc =
        h5ap_publish(h->ap, fd, h->path, h->enc, roots, in->n, rows, in->n, last, why, sizeof why);
    SYSCHECK(close(fd));
    free(roots);
    free(rows);
    if (rc < 0) attn_fail("append", __FILE__, __LINE__, "'%s' %s", h->path, why);
    if (rc == 1) { /* a layout this does not append to in place */
        unlock_file(h);
        if (getenv("ATTNSIM_H5_TRACE"))
            fprintf(stderr, "attnsim: %s: appending by copy (%s)\n", h->path, why);
        h->inplace = 0;
        stage_runs(h, in);
        stage_publish(h);
        return;
    }
    unlock_file(h);
    size_t freed = in->bytes, n = in->n;
    for (size_t i = 0; i < in->n; i++) h5rec_free(in->v[i].rec);
    in->n = in->bytes = 0;
    double w1 = timing_now_s();
    pthread_mutex_lock(&h->mu);
    h->held_bytes -= freed;
    h->last_end = w1;
    h->last_cost = w1 - w0;
    pthread_cond_broadcast(&h->done);
    pthread_mutex_unlock(&h->mu);
    if (getenv("ATTNSIM_H5_TRACE"))
        fprintf(stderr, "attnsim: published %zu runs in place (%.3f s)\n", n, w1 - w0);
    attn_kill_point("h5:published");
}

/* ---- the publisher --------------------------------------------------------------------------- */

/* One round: stage what is queued; publish when asked. Returns 0 when closing and idle. */
static int publisher_round(h5out *h, int wait)
{
    pthread_mutex_lock(&h->mu);
    if (wait) {
        /* stage in lots (~50 ms of runs), not run by run: each lot opens and closes the copy */
        double t0 = timing_now_s();
        while (!h->publish_wanted && !h->closing && (h->queue.n < 4096)) {
            if (h->queue.n && timing_now_s() - t0 > 0.05) break;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 10 * 1000 * 1000;
            if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&h->work, &h->mu, &until);
        }
    }
    run_list lot = h->queue;
    h->queue = (run_list){0};
    int publish = h->publish_wanted, closing = h->closing;
    unsigned long wanted = h->wanted;
    h->publish_wanted = 0;
    pthread_mutex_unlock(&h->mu);

    if (h->inplace) { /* gathered until the batch is due */
        for (size_t i = 0; i < lot.n; i++) list_push(&h->pending, &lot.v[i]);
        free(lot.v);
        if (publish) inplace_publish(h);
    } else {
        if (h->pending.n) stage_runs(h, &h->pending); /* gathered before the layout said copy */
        stage_runs(h, &lot);
        free(lot.v);
        if (publish) stage_publish(h);
    }

    pthread_mutex_lock(&h->mu);
    if (publish) h->published = wanted;
    int more = !closing || h->queue.n || h->publish_wanted;
    pthread_cond_broadcast(&h->done);
    pthread_mutex_unlock(&h->mu);
    return more;
}

static void *publisher(void *arg)
{
    h5out *h = arg;
    while (publisher_round(h, 1)) {
    }
    return NULL;
}

/* ---- the writer ------------------------------------------------------------------------------ */

static double env_or(const char *name, double dflt)
{
    const char *s = getenv(name);
    double v = s ? strtod(s, NULL) : 0;
    return v > 0 && isfinite(v) ? v : dflt;
}

h5out *h5out_open(const char *path, const attn_provenance *prov, double lock_timeout_s)
{
    h5out *h = kn_xcalloc(1, sizeof *h, "HDF5 writer");
    h5out_resolve(path, h->path, sizeof h->path);
    split_dir(h->path, h->dir, sizeof h->dir);
    split_base(h->path, h->base, sizeof h->base);
    h->prov = prov;
    h->lockfd = -1;
    h->tmpfd = -1;
    h->lock_timeout_s = lock_timeout_s >= 0 ? lock_timeout_s : H5OUT_LOCK_TIMEOUT_DEFAULT;
    h->fixed_runs = (long)env_or("ATTNSIM_H5_BATCH", 0);
    h->max_runs = (long)env_or("ATTNSIM_H5_BATCH_RUNS", 65536);
    h->max_s = env_or("ATTNSIM_H5_BATCH_SECONDS", 2.0);
    h->dirfd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (h->dirfd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", h->dir, strerror(errno));
    static int registered;
    if (!registered) attn_fail_on_exit(remove_tmp);
    registered = 1;
    h->inplace = !getenv("ATTNSIM_H5_COPY");
    lock_file(h);
    remove_stale_copies(h);
    struct stat st;
    if (stat(h->path, &st) != 0) publish_empty(h);
    unlock_file(h);
    h->last_end = timing_now_s();
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->work, NULL);
    pthread_cond_init(&h->done, NULL);
    /* a publisher thread overlaps copying, encoding, linking and fsync with the sweep; it
     * calls HDF5 while the sweep's thread may too, so only with a thread-safe library; a fixed
     * batch size (ATTNSIM_H5_BATCH, for tests) publishes synchronously */
    hbool_t safe = 0;
    H5is_library_threadsafe(&safe);
    h->threaded = safe && h->fixed_runs <= 0 && !getenv("ATTNSIM_H5_SYNC");
    if (h->threaded && pthread_create(&h->thread, NULL, publisher, h) != 0) h->threaded = 0;
    return h;
}

h5node *h5out_run_begin(h5out *h)
{
    if (h->open_run) attn_fail("h5out_run_begin", __FILE__, __LINE__, "a run is already open");
    h->open_run = h5rec_new();
    h5node *g = h5rec_root(h->open_run);
    prov_write_run(g, h->prov);
    if (h->batch_runs == 0) h->batch_t0 = timing_now_s();
    attn_kill_point("h5:after_group");
    return g;
}

/* Called with h->mu held. */
static int batch_due(const h5out *h)
{
    if (h->fixed_runs > 0) return h->batch_runs >= (size_t)h->fixed_runs;
    double t = timing_now_s();
    if (h->inplace && h->held_bytes > BATCH_MAX_BYTES / 8) return 1; /* gathered: memory */
    if (t - h->last_end < 4 * h->last_cost) return 0; /* publishing: at most 1/5 of the time */
    return h->batch_runs >= (size_t)h->max_runs || t - h->batch_t0 >= h->max_s;
}

void h5out_run_commit(h5out *h, h5node *run, const h5_summary_row *row)
{
    if (!h->open_run || run != h5rec_root(h->open_run))
        attn_fail("h5out_run_commit", __FILE__, __LINE__, "not the open run");
    h5_attr_i64(run, "complete", 1); /* written last */
    attn_kill_point("h5:after_complete");
    run_item it = {h->open_run, *row};
    h->open_run = NULL;
    size_t bytes = h5rec_bytes(it.rec);
    pthread_mutex_lock(&h->mu);
    list_push(&h->queue, &it);
    h->held_bytes += bytes;
    h->batch_runs++;
    h->batch_bytes += bytes;
    if (batch_due(h)) {
        h->publish_wanted = 1;
        h->wanted++;
        h->batch_runs = h->batch_bytes = 0;
    }
    int publish = h->publish_wanted;
    /* in place the publisher only gathers runs until a batch is due: no wake-up per run */
    if (publish || !h->inplace || h->queue.n >= 4096) pthread_cond_signal(&h->work);
    /* memory: the records waiting for the publisher are bounded */
    while (h->threaded && h->held_bytes > BATCH_MAX_BYTES) pthread_cond_wait(&h->done, &h->mu);
    pthread_mutex_unlock(&h->mu);
    if (!h->threaded && publish) publisher_round(h, 0);
}

void h5out_flush(h5out *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->publish_wanted = 1;
    unsigned long want = ++h->wanted;
    h->batch_runs = h->batch_bytes = 0;
    pthread_cond_signal(&h->work);
    while (h->threaded && h->published < want) pthread_cond_wait(&h->done, &h->mu);
    pthread_mutex_unlock(&h->mu);
    if (!h->threaded) publisher_round(h, 0);
}

void h5out_close(h5out *h)
{
    if (!h) return;
    h5rec_free(h->open_run); /* a run that never committed */
    attn_kill_point("h5:close");
    pthread_mutex_lock(&h->mu);
    h->publish_wanted = 1;
    h->wanted++;
    h->closing = 1;
    pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->mu);
    if (h->threaded)
        pthread_join(h->thread, NULL);
    else
        publisher_round(h, 0);
    free(h->queue.v);
    free(h->pending.v);
    free(h->staged);
    h5enc_free(h->enc);
    h5ap_free(h->ap);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->work);
    pthread_cond_destroy(&h->done);
    close(h->dirfd);
    free(h);
}
