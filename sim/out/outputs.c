/* outputs.c - the checks of every output path, and machine files written by rename (see
 * outputs.h). */
#include "outputs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fail.h"
#include "h5out.h"
#include "machine.h"

/* The first line calibrate writes (machine_out.c): such a file is a machine file even where a
 * later version of attnsim reads it differently. */
static const char calibrate_mark[] = "# Written by attnsim calibrate";

static const char *kind_name(output_kind k)
{
    return k == OUTPUT_H5 ? "an attnsim/1 HDF5 file" : "a machine file";
}

const char *outputs_display(const char *path, char *buf, size_t n)
{
    size_t len = 0;
    if (n == 0) return buf;
    for (const unsigned char *p = (const unsigned char *)path; *p && len + 1 < n; p++) {
        char esc[8] = "";
        if (*p == '\n')
            snprintf(esc, sizeof esc, "\\n");
        else if (*p == '\t')
            snprintf(esc, sizeof esc, "\\t");
        else if (*p == '\r')
            snprintf(esc, sizeof esc, "\\r");
        else if (*p < 0x20 || *p == 0x7f)
            snprintf(esc, sizeof esc, "\\x%02x", *p);
        if (!esc[0]) {
            buf[len++] = (char)*p;
            continue;
        }
        size_t e = strlen(esc);
        if (len + e + 1 > n) break;
        memcpy(buf + len, esc, e);
        len += e;
    }
    buf[len] = '\0';
    return buf;
}

/* An existing regular file at `path` is a machine description (or empty: nothing to lose). */
static int check_machine_file(const char *path, const char *shown, char *err, size_t errlen)
{
    static const char accepted[] = "accepted: a new path or a machine file to replace";
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return snprintf(err, errlen, "'%s' cannot be read (%s); %s", shown, strerror(errno),
                        accepted),
               -1;
    size_t cap = (1u << 20) + 1, len = 0;
    char *text = malloc(cap + 1);
    if (!text) {
        close(fd);
        return snprintf(err, errlen, "'%s': out of memory reading it", shown), -1;
    }
    for (ssize_t got; len < cap && (got = read(fd, text + len, cap - len)) != 0;) {
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            close(fd), free(text);
            return snprintf(err, errlen, "'%s' cannot be read (%s); %s", shown, strerror(e),
                            accepted),
                   -1;
        }
        len += (size_t)got;
    }
    close(fd);
    text[len] = '\0';
    int rc = 0;
    static const char hdf5_signature[8] = {'\211', 'H', 'D', 'F', '\r', '\n', '\032', '\n'};
    machine m;
    char why[600];
    if (len >= 8 && memcmp(text, hdf5_signature, 8) == 0)
        rc = -1, snprintf(err, errlen,
                          "'%s' is an HDF5 file (results, not a machine description): it "
                          "would be lost; %s",
                          shown, accepted);
    else if (len == cap || strlen(text) != len)
        rc = -1, snprintf(err, errlen, "'%s' exists and is not a machine file (%s); %s", shown,
                          len == cap ? "larger than 1 MiB" : "binary data", accepted);
    else if (len > 0 && strncmp(text, calibrate_mark, sizeof calibrate_mark - 1) != 0 &&
             machine_parse(text, shown, &m, why, sizeof why) != 0)
        rc = -1, snprintf(err, errlen,
                          "'%s' exists and is not a machine file (it does not read as a "
                          "machine description); %s",
                          shown, accepted);
    free(text);
    return rc;
}

int outputs_is_kind(const char *path, output_kind kind, char *err, size_t errlen)
{
    char shown[PATH_MAX];
    outputs_display(path, shown, sizeof shown);
    if (kind == OUTPUT_H5) return h5out_check_path(path, err, errlen);
    if (*path == '\0')
        return snprintf(err, errlen, "the value is empty; accepted: the path of a machine file"),
               -1;
    if (strlen(path) >= PATH_MAX - 64)
        return snprintf(err, errlen, "the path is too long; accepted: up to %d bytes",
                        PATH_MAX - 64),
               -1;
    if (h5out_dir_writable(path, err, errlen)) return -1;
    struct stat st;
    if (lstat(path, &st) != 0) return 0; /* a new file */
    if (S_ISLNK(st.st_mode) && stat(path, &st) != 0)
        return snprintf(err, errlen,
                        "'%s' is a symbolic link to a missing file; accepted: a new path, a "
                        "machine file or a link to one",
                        shown),
               -1;
    if (!S_ISREG(st.st_mode))
        return snprintf(err, errlen, "'%s' is not a regular file; accepted: a new path or %s",
                        shown, kind_name(kind)),
               -1;
    if ((st.st_mode & 0222) == 0 || access(path, W_OK) != 0)
        return snprintf(err, errlen, "'%s' is read-only; accepted: a writable file or a new path",
                        shown),
               -1;
    return check_machine_file(path, shown, err, errlen);
}

/* Where `path` leads: the file itself when it exists (links followed; also its device and
 * inode, which hard links share), else the canonical directory and the name. */
typedef struct {
    char where[PATH_MAX * 2];
    int exists;
    dev_t dev;
    ino_t ino;
} identity;

static void identify(const char *path, identity *id)
{
    struct stat st;
    id->exists = stat(path, &st) == 0;
    if (id->exists) id->dev = st.st_dev, id->ino = st.st_ino;
    char resolved[PATH_MAX];
    if (realpath(path, resolved)) {
        snprintf(id->where, sizeof id->where, "%s", resolved);
        return;
    }
    char d[PATH_MAX], b[PATH_MAX];
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    const char *dir = dirname(d), *base = basename(b);
    if (realpath(dir, resolved))
        snprintf(id->where, sizeof id->where, "%s/%s", resolved, base);
    else
        snprintf(id->where, sizeof id->where, "%s", path);
}

int outputs_check(const output_path *outs, size_t n, const char **bad, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (!outs[i].path) continue;
        *bad = outs[i].option;
        if (outputs_is_kind(outs[i].path, outs[i].kind, err, errlen)) return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!outs[i].path || !outs[j].path) continue;
            identity a, b;
            identify(outs[i].path, &a);
            identify(outs[j].path, &b);
            int same = a.exists && b.exists ? a.dev == b.dev && a.ino == b.ino
                                            : strcmp(a.where, b.where) == 0;
            if (!same) continue;
            char shown[PATH_MAX];
            outputs_display(outs[j].path, shown, sizeof shown);
            *bad = outs[j].option;
            return snprintf(err, errlen,
                            "'%s' is the file %s writes too; accepted: a different file for "
                            "each output",
                            shown, outs[i].option),
                   -1;
        }
    return 0;
}

/* The temporary being written, for removal on failure or SIGINT/SIGTERM (a fixed buffer: the
 * signal handler only calls unlink on it). */
static char text_tmp[PATH_MAX + 128];

static void remove_text_tmp(void)
{
    if (text_tmp[0]) unlink(text_tmp);
}

void outputs_write_text(const char *path, const char *text)
{
    char target[PATH_MAX];
    struct stat st;
    /* through a symbolic link: the file it names is replaced, the link stays */
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && realpath(path, target)) path = target;
    int exists = stat(path, &st) == 0;
    char d[PATH_MAX], b[PATH_MAX], host[64] = "host";
    snprintf(d, sizeof d, "%s", path);
    snprintf(b, sizeof b, "%s", path);
    const char *dir = dirname(d), *base = basename(b);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    static int registered;
    if (!registered) attn_fail_on_exit(remove_text_tmp);
    registered = 1;
    snprintf(text_tmp, sizeof text_tmp, "%s/.%s.attnsim-tmp.%s.%ld", dir, base, host,
             (long)getpid());
    int fd = open(text_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) attn_fail("open", __FILE__, __LINE__, "%s: %s", text_tmp, strerror(errno));
    if (exists) SYSCHECK(fchmod(fd, st.st_mode & 07777));
    for (size_t done = 0, len = strlen(text); done < len;) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) attn_fail("write", __FILE__, __LINE__, "%s: %s", text_tmp, strerror(errno));
        done += (size_t)w;
    }
    if (fsync(fd) != 0) attn_fail("fsync", __FILE__, __LINE__, "%s: %s", text_tmp, strerror(errno));
    SYSCHECK(close(fd));
    attn_kill_point("text:before_rename");
    if (rename(text_tmp, path) != 0)
        attn_fail("rename", __FILE__, __LINE__, "%s -> %s: %s", text_tmp, path, strerror(errno));
    text_tmp[0] = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL)
            attn_fail("fsync", __FILE__, __LINE__, "%s: %s", dir, strerror(errno));
        close(dfd);
    }
}
