/* h5out.c - schema attnsim/1 writer with copy-and-rename commits (see h5out.h). */
#include "h5out.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fail.h"
#include "kn_common.h"

struct h5out {
    char path[PATH_MAX];
    char dir[PATH_MAX];
    int dirfd;
    int locked;
    hid_t file; /* the private copy, open during a run */
    const attn_provenance *prov;
};

/* The temporary copy being written, for removal on failure or SIGINT/SIGTERM (a fixed buffer:
 * the signal handler may only call unlink on it). */
static char tmp_path[PATH_MAX + 64];

static void remove_tmp(void)
{
    if (tmp_path[0]) unlink(tmp_path);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static hid_t vlen_string_type(void)
{
    hid_t t = H5CALL(H5Tcopy(H5T_C_S1));
    H5CALL(H5Tset_size(t, H5T_VARIABLE));
    H5CALL(H5Tset_cset(t, H5T_CSET_UTF8));
    return t;
}

void h5_attr_strs(hid_t loc, const char *name, const char *const *values, size_t n)
{
    hid_t t = vlen_string_type();
    hsize_t dims[1] = {n};
    hid_t space = H5CALL(H5Screate_simple(1, dims, NULL));
    hid_t a = H5CALL(H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT));
    H5CALL(H5Awrite(a, t, values));
    H5CALL(H5Aclose(a));
    H5CALL(H5Sclose(space));
    H5CALL(H5Tclose(t));
}

void h5_attr_str(hid_t loc, const char *name, const char *value)
{
    hid_t t = vlen_string_type();
    hid_t space = H5CALL(H5Screate(H5S_SCALAR));
    hid_t a = H5CALL(H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT));
    H5CALL(H5Awrite(a, t, &value));
    H5CALL(H5Aclose(a));
    H5CALL(H5Sclose(space));
    H5CALL(H5Tclose(t));
}

static void attr_scalar(hid_t loc, const char *name, hid_t type, const void *v)
{
    hid_t space = H5CALL(H5Screate(H5S_SCALAR));
    hid_t a = H5CALL(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT));
    H5CALL(H5Awrite(a, type, v));
    H5CALL(H5Aclose(a));
    H5CALL(H5Sclose(space));
}

void h5_attr_i64(hid_t loc, const char *name, int64_t v)
{
    attr_scalar(loc, name, H5T_NATIVE_INT64, &v);
}
void h5_attr_f64(hid_t loc, const char *name, double v)
{
    attr_scalar(loc, name, H5T_NATIVE_DOUBLE, &v);
}

static hid_t create_intermediate_lcpl(void)
{
    hid_t lcpl = H5CALL(H5Pcreate(H5P_LINK_CREATE));
    H5CALL(H5Pset_create_intermediate_group(lcpl, 1));
    return lcpl;
}

void h5_write(hid_t loc, const char *path, hid_t memtype, int rank, const hsize_t *dims,
              const void *data, const char *units)
{
    attn_kill_point("h5:dataset");
    hid_t space =
        rank == 0 ? H5CALL(H5Screate(H5S_SCALAR)) : H5CALL(H5Screate_simple(rank, dims, NULL));
    hid_t lcpl = create_intermediate_lcpl();
    hid_t ds = H5CALL(H5Dcreate2(loc, path, memtype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT));
    H5CALL(H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    if (units) h5_attr_str(ds, "units", units);
    H5CALL(H5Dclose(ds));
    H5CALL(H5Pclose(lcpl));
    H5CALL(H5Sclose(space));
}

void h5_write_strs(hid_t loc, const char *path, const char *const *values, size_t n)
{
    hid_t t = vlen_string_type();
    hsize_t dims[1] = {n};
    h5_write(loc, path, t, 1, dims, values, NULL);
    H5CALL(H5Tclose(t));
}

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

/* ---- path checks ---------------------------------------------------------------------------- */

static void split_dir(const char *path, char *dir, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, n, "%s", dirname(tmp));
}

/* 0 when `path` is an attnsim/1 file with the layout this writer appends to. */
static int check_existing(const char *path, char *err, size_t errlen)
{
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0)
        return snprintf(err, errlen,
                        "'%s' exists and is not an HDF5 file; accepted: a new path "
                        "or an existing attnsim/1 file",
                        path),
               -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return snprintf(err, errlen,
                        "'%s' cannot be opened as HDF5 (damaged, or locked by "
                        "another writer); accepted: a new path or a readable "
                        "attnsim/1 file",
                        path),
               -1;
    int rc = -1;
    char schema[64] = "(none)";
    if (H5Aexists(f, "schema") > 0) {
        hid_t a = H5Aopen(f, "schema", H5P_DEFAULT);
        hid_t t = a >= 0 ? H5Aget_type(a) : -1;
        if (t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) {
            char *v = NULL;
            hid_t mt = vlen_string_type();
            hid_t space = H5Aget_space(a);
            if (H5Aread(a, mt, &v) >= 0 && v) {
                snprintf(schema, sizeof schema, "%s", v);
                H5Dvlen_reclaim(mt, space, H5P_DEFAULT, &v);
            }
            H5Sclose(space);
            H5Tclose(mt);
        }
        if (t >= 0) H5Tclose(t);
        if (a >= 0) H5Aclose(a);
    }
    if (strcmp(schema, H5OUT_SCHEMA) != 0) {
        snprintf(err, errlen,
                 "'%s' is an HDF5 file of another schema ('%s'); accepted: a new "
                 "path or an attnsim/1 file",
                 path, schema);
    } else if (H5Lexists(f, "runs", H5P_DEFAULT) <= 0 ||
               H5Lexists(f, "summary", H5P_DEFAULT) <= 0) {
        snprintf(err, errlen,
                 "'%s' says attnsim/1 but has no /runs or /summary; accepted: a new "
                 "path or an intact attnsim/1 file",
                 path);
    } else {
        hid_t ds = H5Dopen2(f, "summary", H5P_DEFAULT);
        hid_t ft = ds >= 0 ? H5Dget_type(ds) : -1, mt = h5_summary_type();
        if (ft >= 0 && H5Tequal(ft, mt) > 0)
            rc = 0;
        else
            snprintf(err, errlen,
                     "'%s' has a /summary table of another layout; accepted: a new "
                     "path or an attnsim/1 file written by this version",
                     path);
        H5Tclose(mt);
        if (ft >= 0) H5Tclose(ft);
        if (ds >= 0) H5Dclose(ds);
    }
    H5Fclose(f);
    return rc;
}

/* check_existing in a child process: a file from anywhere may be corrupted so that the HDF5
 * library crashes or leaks reading it; the child takes that, attnsim reports it. */
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
    /* a crafted file can also send HDF5 into an endless loop: 10 s (ATTNSIM_H5_CHECK_MS), then
     * the child goes */
    const char *ms = getenv("ATTNSIM_H5_CHECK_MS");
    int deadline_ms = ms && atoi(ms) > 0 ? atoi(ms) : 10000;
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

int h5out_check_path(const char *path, char *err, size_t errlen)
{
    if (*path == '\0')
        return snprintf(err, errlen, "the value is empty; accepted: the path of an HDF5 file"), -1;
    if (strlen(path) >= PATH_MAX - 64)
        return snprintf(err, errlen, "the path is too long; accepted: up to %d bytes",
                        PATH_MAX - 64),
               -1;
    char dir[PATH_MAX];
    split_dir(path, dir, sizeof dir);
    struct stat st;
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
    return check_existing_isolated(path, err, errlen);
}

/* ---- locking, copying, publishing ------------------------------------------------------------ */

static void lock_dir(h5out *h)
{
    if (flock(h->dirfd, LOCK_EX) == 0) {
        h->locked = 1;
        return;
    }
    static int warned;
    if (errno == ENOLCK || errno == EOPNOTSUPP || errno == EINVAL) {
        if (!warned)
            fprintf(stderr,
                    "attnsim: warning: no file locking in '%s' (%s): do not append to "
                    "the same file from two jobs at once\n",
                    h->dir, strerror(errno));
        warned = 1;
        return;
    }
    attn_fail("flock", __FILE__, __LINE__, "%s: %s", h->dir, strerror(errno));
}

static void unlock_dir(h5out *h)
{
    if (h->locked) flock(h->dirfd, LOCK_UN);
    h->locked = 0;
}

static void make_tmp_name(const h5out *h)
{
    char base[PATH_MAX], host[64] = "host";
    snprintf(base, sizeof base, "%s", h->path);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(tmp_path, sizeof tmp_path, "%s/.%s.attnsim-tmp.%s.%ld", h->dir, basename(base), host,
             (long)getpid());
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", from, strerror(errno));
    struct stat st;
    SYSCHECK(fstat(in, &st));
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
    SYSCHECK(close(in));
    SYSCHECK(close(out));
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", path, strerror(errno));
    if (fsync(fd) != 0) attn_fail("fsync", __FILE__, __LINE__, "%s: %s", path, strerror(errno));
    SYSCHECK(close(fd));
}

/* Makes the private copy the file at h->path: fsync, atomic rename, fsync of the directory. */
static void publish(h5out *h)
{
    fsync_path(tmp_path);
    attn_kill_point("h5:after_fsync");
    if (rename(tmp_path, h->path) != 0)
        attn_fail("rename", __FILE__, __LINE__, "%s -> %s: %s", tmp_path, h->path, strerror(errno));
    tmp_path[0] = '\0';
    attn_kill_point("h5:after_rename");
    if (fsync(h->dirfd) != 0 && errno != EINVAL)
        attn_fail("fsync", __FILE__, __LINE__, "%s: %s", h->dir, strerror(errno));
}

static hid_t file_access_plist(void)
{
    hid_t fapl = H5CALL(H5Pcreate(H5P_FILE_ACCESS));
    /* closing the file closes every object still open in it */
    H5CALL(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG));
    return fapl;
}

static void create_new_file(h5out *h)
{
    make_tmp_name(h);
    hid_t fapl = file_access_plist();
    hid_t f = H5CALL(H5Fcreate(tmp_path, H5F_ACC_EXCL, H5P_DEFAULT, fapl));
    H5CALL(H5Pclose(fapl));
    prov_write_root(f, h->prov);
    hid_t gcpl = H5CALL(H5Pcreate(H5P_GROUP_CREATE));
    H5CALL(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));
    hid_t runs = H5CALL(H5Gcreate2(f, "runs", H5P_DEFAULT, gcpl, H5P_DEFAULT));
    H5CALL(H5Gclose(runs));
    H5CALL(H5Pclose(gcpl));

    hid_t t = h5_summary_type();
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {64};
    hid_t space = H5CALL(H5Screate_simple(1, dims, maxdims));
    hid_t dcpl = H5CALL(H5Pcreate(H5P_DATASET_CREATE));
    H5CALL(H5Pset_chunk(dcpl, 1, chunk));
    hid_t ds = H5CALL(H5Dcreate2(f, "summary", t, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    h5_attr_strs(ds, "units", summary_units, sizeof summary_units / sizeof summary_units[0]);
    h5_attr_str(ds, "description",
                "one row per run; bytes columns: max over ranks of bytes sent (distributed, "
                "model) or HBM bytes read + written (kernel); check_passed -1 = not checked");
    H5CALL(H5Dclose(ds));
    H5CALL(H5Pclose(dcpl));
    H5CALL(H5Sclose(space));
    H5CALL(H5Tclose(t));
    H5CALL(H5Fclose(f));
    attn_kill_point("h5:created");
    publish(h);
}

/* Removes temporary copies of `path` left by writers on this host that were killed (their
 * process no longer exists). Called with the directory locked. */
static void remove_stale_copies(const h5out *h)
{
    char base[PATH_MAX], host[64] = "host", prefix[PATH_MAX + 96];
    snprintf(base, sizeof base, "%s", h->path);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(prefix, sizeof prefix, ".%s.attnsim-tmp.%s.", basename(base), host);
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

h5out *h5out_open(const char *path, const attn_provenance *prov)
{
    h5out *h = kn_xcalloc(1, sizeof *h, "HDF5 writer");
    snprintf(h->path, sizeof h->path, "%s", path);
    split_dir(path, h->dir, sizeof h->dir);
    h->prov = prov;
    h->file = -1;
    h->dirfd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (h->dirfd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", h->dir, strerror(errno));
    static int registered;
    if (!registered) attn_fail_on_exit(remove_tmp);
    registered = 1;
    lock_dir(h);
    remove_stale_copies(h);
    struct stat st;
    if (stat(path, &st) != 0) create_new_file(h);
    unlock_dir(h);
    return h;
}

static herr_t max_run_name(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    char *end;
    long long v = strtoll(name, &end, 10);
    int64_t *next = data;
    if (*end == '\0' && v >= *next) *next = v + 1;
    return 0;
}

hid_t h5out_run_begin(h5out *h, int64_t *run_id)
{
    lock_dir(h);
    attn_kill_point("h5:after_lock");
    make_tmp_name(h);
    copy_file(h->path, tmp_path);
    attn_kill_point("h5:after_copy");
    hid_t fapl = file_access_plist();
    h->file = H5CALL(H5Fopen(tmp_path, H5F_ACC_RDWR, fapl));
    H5CALL(H5Pclose(fapl));
    hid_t runs = H5CALL(H5Gopen2(h->file, "runs", H5P_DEFAULT));
    int64_t next = 0;
    H5CALL(H5Literate(runs, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, max_run_name, &next));
    char name[32];
    snprintf(name, sizeof name, "%06lld", (long long)next);
    hid_t g = H5CALL(H5Gcreate2(runs, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5CALL(H5Gclose(runs));
    prov_write_run(g, h->prov);
    attn_kill_point("h5:after_group");
    *run_id = next;
    return g;
}

void h5out_run_commit(h5out *h, hid_t group, h5_summary_row *row)
{
    char name[64];
    ssize_t len = H5CALL(H5Iget_name(group, name, sizeof name));
    (void)len;
    row->run = strtoll(strrchr(name, '/') + 1, NULL, 10);

    hid_t ds = H5CALL(H5Dopen2(h->file, "summary", H5P_DEFAULT));
    hid_t space = H5CALL(H5Dget_space(ds));
    hsize_t n;
    H5CALL(H5Sget_simple_extent_dims(space, &n, NULL));
    H5CALL(H5Sclose(space));
    hsize_t newsize = n + 1, start = n, count = 1;
    H5CALL(H5Dset_extent(ds, &newsize));
    space = H5CALL(H5Dget_space(ds));
    H5CALL(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, NULL, &count, NULL));
    hid_t mem = H5CALL(H5Screate_simple(1, &count, NULL));
    hid_t t = h5_summary_type();
    H5CALL(H5Dwrite(ds, t, mem, space, H5P_DEFAULT, row));
    H5CALL(H5Tclose(t));
    H5CALL(H5Sclose(mem));
    H5CALL(H5Sclose(space));
    H5CALL(H5Dclose(ds));
    attn_kill_point("h5:after_summary");

    h5_attr_i64(group, "complete", 1); /* written last */
    H5CALL(H5Gclose(group));
    attn_kill_point("h5:after_complete");
    H5CALL(H5Fclose(h->file));
    h->file = -1;
    attn_kill_point("h5:after_close");
    publish(h);
    unlock_dir(h);
}

void h5out_close(h5out *h)
{
    if (!h) return;
    if (h->file >= 0) { /* a run that never committed: drop its copy */
        H5Fclose(h->file);
        remove_tmp();
        tmp_path[0] = '\0';
    }
    unlock_dir(h);
    close(h->dirfd);
    free(h);
}
