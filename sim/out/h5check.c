/* h5check.c - structural validation of attnsim/1 files (see h5check.h). Runs in a child
 * process (h5out_check_existing): it may leave HDF5 objects open on a damaged file.
 * ~830 lines in one file on purpose: one walk over the whole schema (docs/hdf5-schema.md,
 * section by section: root attributes, /summary, every run's attributes and datasets), each
 * check with its one-line error. */
#include "h5check.h"

#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5enc.h"
#include "h5out.h"

#define ACCEPTED "accepted: a new path or an intact attnsim/1 file"

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
} ctx;

__attribute__((format(printf, 2, 3))) static int damaged(const ctx *c, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "'%s' is damaged: %s; " ACCEPTED, c->path, what);
    return -1;
}

/* ---- a direct reader of version-2 object headers -----------------------------------------------
 * Opening ~15 objects of each run through the library costs ~100 us a run: seconds for a
 * 100,000-run file. The objects attnsim writes (h5enc.h, and the library's with the 1.8 format)
 * are version-2 headers with their messages in one chunk; those are read here from a memory
 * map, their checksums verified. Anything else (version-1 headers, continuation chunks, dense
 * attribute or link storage, shared messages) is checked through the library instead
 * (RAW_OTHER). */

#define RAW_OTHER (-2)
#define RAW_BAD   (-3) /* a header that fails its checksum or lies outside the file */

typedef struct {
    const unsigned char *p;
    uint64_t size;
    /* the last global heap collection read: offsets of its objects */
    uint64_t coll;
    uint64_t *obj_off, *obj_len;
    size_t nobj;
} rawfile;

typedef struct {
    const unsigned char *msgs, *end; /* the messages of chunk 0 */
    int crt_order;                   /* messages carry a creation order field */
} rawhdr;

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* 0, RAW_OTHER, or -1 (damaged: a bad checksum or a header outside the file) */
static int raw_header(const rawfile *f, uint64_t addr, rawhdr *h)
{
    if (addr >= f->size || f->size - addr < 16) return -1;
    const unsigned char *p = f->p + addr;
    if (memcmp(p, "OHDR", 4) != 0) return RAW_OTHER; /* version 1 */
    if (p[4] != 2) return -1;
    int flags = p[5];
    size_t at = 6 + (flags & 0x20 ? 16 : 0) + (flags & 0x10 ? 4 : 0);
    int sf = 1 << (flags & 3);
    if (addr + at + (size_t)sf > f->size) return -1;
    uint64_t chunk = le(p + at, sf);
    at += (size_t)sf;
    if (chunk > f->size || addr + at + chunk + 4 > f->size) return -1;
    if (h5enc_checksum(p, at + chunk) != (uint32_t)le(p + at + chunk, 4)) return -1;
    h->msgs = p + at;
    h->end = p + at + chunk;
    h->crt_order = (flags & 0x04) != 0;
    return 0;
}

/* Iterates the messages: *type, *data, *len; returns 1 while there are more, RAW_OTHER for a
 * continuation or shared message, 0 at the end. */
static int raw_next(const rawhdr *h, const unsigned char **cur, int *type,
                    const unsigned char **data, size_t *len)
{
    size_t head = 4 + (h->crt_order ? 2 : 0);
    while (*cur + head <= h->end) {
        const unsigned char *m = *cur;
        *type = m[0];
        *len = (size_t)le(m + 1, 2);
        int mflags = m[3];
        *data = m + head;
        if (*data + *len > h->end) return RAW_OTHER;
        *cur = *data + *len;
        if (*type == 0x10 || (mflags & 0x02)) return RAW_OTHER; /* continuation, shared */
        if (*type == 0x15) return RAW_OTHER;                    /* attribute info: dense */
        if (*type != 0) return 1;
    }
    return 0;
}

/* The string stored in the global heap at (coll, idx): *s, *n. */
static int raw_heap(rawfile *f, uint64_t coll, uint32_t idx, const char **s, size_t *n)
{
    if (coll != f->coll) {
        if (coll >= f->size || f->size - coll < 16 || memcmp(f->p + coll, "GCOL", 4) != 0)
            return -1;
        uint64_t size = le(f->p + coll + 8, 8);
        if (size < 16 || size > f->size - coll) return -1;
        f->nobj = 0;
        for (uint64_t at = 16; at + 16 <= size;) {
            const unsigned char *o = f->p + coll + at;
            uint64_t i = le(o, 2), len = le(o + 8, 8);
            if (i == 0) break; /* free space */
            if (len > size - at - 16) return -1;
            if (i >= f->nobj) {
                size_t want = (size_t)i + 1;
                uint64_t *a = realloc(f->obj_off, want * sizeof *a),
                         *b = a ? realloc(f->obj_len, want * sizeof *b) : NULL;
                if (!a || !b) return -1;
                f->obj_off = a, f->obj_len = b;
                for (size_t k = f->nobj; k < want; k++) f->obj_off[k] = 0;
                f->nobj = want;
            }
            f->obj_off[i] = coll + at + 16;
            f->obj_len[i] = len;
            at += 16 + ((len + 7) & ~(uint64_t)7);
        }
        f->coll = coll;
    }
    if (idx >= f->nobj || !f->obj_off[idx]) return -1;
    *s = (const char *)f->p + f->obj_off[idx];
    *n = (size_t)f->obj_len[idx];
    return 0;
}

typedef struct {
    int cls, size, sign, vlen_str;
    const unsigned char *data;
    uint64_t npoints;
} rawattr;

/* Decodes a dataspace message: rank and dims; returns 0 or RAW_OTHER. */
static int raw_dspace(const unsigned char *d, size_t len, int *rank, hsize_t *dims)
{
    if (len < 4) return RAW_OTHER;
    int version = d[0], r = d[1];
    if (r > H5S_MAX_RANK) return RAW_OTHER;
    size_t at = version == 1 ? 8 : version == 2 ? 4 : 0;
    if (!at || at + 8 * (size_t)r > len) return RAW_OTHER;
    if (version == 2 && d[3] == 2) return RAW_OTHER; /* null dataspace */
    for (int i = 0; i < r; i++) dims[i] = le(d + at + 8 * (size_t)i, 8);
    *rank = r;
    return 0;
}

/* 1 found, 0 absent, RAW_OTHER */
static int raw_attr(const rawhdr *h, const char *name, rawattr *a)
{
    const unsigned char *cur = h->msgs, *d;
    int type, r;
    size_t len, want = strlen(name) + 1;
    while ((r = raw_next(h, &cur, &type, &d, &len)) == 1) {
        if (type != 0x0c) continue;
        if (len < 9 || d[0] != 3 || (d[1] & 3)) return RAW_OTHER;
        size_t nsz = (size_t)le(d + 2, 2), tsz = (size_t)le(d + 4, 2), ssz = (size_t)le(d + 6, 2);
        if (9 + nsz + tsz + ssz > len || nsz != want || memcmp(d + 9, name, want) != 0) continue;
        const unsigned char *t = d + 9 + nsz, *sp = t + tsz;
        if (tsz < 8) return RAW_OTHER;
        a->cls = t[0] & 0x0f;
        a->size = (int)le(t + 4, 4);
        a->sign = (t[1] & 0x08) != 0;
        a->vlen_str = a->cls == 9 && (t[1] & 0x0f) == 1;
        int rank;
        hsize_t dims[H5S_MAX_RANK];
        if (raw_dspace(sp, ssz, &rank, dims)) return RAW_OTHER;
        a->npoints = 1;
        for (int i = 0; i < rank; i++) a->npoints *= dims[i];
        a->data = sp + ssz;
        uint64_t need = a->npoints * (uint64_t)a->size;
        if (a->data + need > d + len) return RAW_OTHER;
        return 1;
    }
    return r == RAW_OTHER ? RAW_OTHER : 0;
}

/* The hard link `name` of a group header: *addr. 1 found, 0 absent, RAW_OTHER (dense links, a
 * soft or external link). */
static int raw_link(const rawhdr *h, const char *name, size_t nlen, uint64_t *addr)
{
    const unsigned char *cur = h->msgs, *d;
    int type, r;
    size_t len;
    while ((r = raw_next(h, &cur, &type, &d, &len)) == 1) {
        if (type == 0x02 && len >= 10) { /* link info: dense storage when a heap is named */
            size_t at = 2 + (d[1] & 1 ? 8 : 0);
            if (at + 8 <= len && le(d + at, 8) != UINT64_MAX) return RAW_OTHER;
        }
        if (type != 0x06 || len < 3 || d[0] != 1) continue;
        int fl = d[1];
        size_t at = 2;
        int ltype = 0;
        if (fl & 0x08) ltype = d[at++];
        if (fl & 0x04) at += 8;
        if (fl & 0x10) at++;
        int lsz = 1 << (fl & 3);
        if (at + (size_t)lsz > len) return RAW_OTHER;
        uint64_t n = le(d + at, lsz);
        at += (size_t)lsz;
        if (at + n > len) return RAW_OTHER;
        if (n != nlen || memcmp(d + at, name, nlen) != 0) continue;
        if (ltype != 0 || at + n + 8 > len) return RAW_OTHER;
        *addr = le(d + at + n, 8);
        return 1;
    }
    return r == RAW_OTHER ? RAW_OTHER : 0;
}

/* ---- a run seen through the library or directly
 * -------------------------------------------------- */

typedef struct {
    hid_t g;     /* the library's handle, or -1 */
    rawfile *rf; /* the direct reader's file (g < 0) */
    rawhdr root;
} view;

/* ---- attributes ------------------------------------------------------------------------------ */

/* 1: read, 0: absent, -1: present but not a string */
static int lib_attr_str(hid_t loc, const char *name, char *buf, size_t n)
{
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    int rc = -1;
    if (t >= 0 && s >= 0 && H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(s) == 1) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            char *v = NULL;
            if (H5Aread(a, mt, &v) >= 0 && v) {
                snprintf(buf, n, "%s", v);
                H5free_memory(v);
                rc = 1;
            }
            H5Tclose(mt);
        } else {
            size_t size = H5Tget_size(t);
            char *v = calloc(1, size + 1);
            if (v && H5Aread(a, t, v) >= 0) {
                snprintf(buf, n, "%s", v);
                rc = 1;
            }
            free(v);
        }
    }
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* 1: read, 0: absent, -1: present but not one integer */
static int lib_attr_i64(hid_t loc, const char *name, long long *v)
{
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    int rc = -1;
    if (t >= 0 && s >= 0 && H5Tget_class(t) == H5T_INTEGER &&
        H5Sget_simple_extent_npoints(s) == 1 && H5Aread(a, H5T_NATIVE_LLONG, v) >= 0)
        rc = 1;
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* ---- datasets -------------------------------------------------------------------------------- */

typedef struct {
    int rank;
    hsize_t dims[H5S_MAX_RANK];
} shape;

/* 1: a dataset (its shape in *s), 0: absent, -1: something else is there */
static int lib_shape(hid_t run, const char *path, shape *s)
{
    char part[256];
    for (const char *p = path; (p = strchr(p, '/')) != NULL; p++) {
        snprintf(part, sizeof part, "%.*s", (int)(p - path), path);
        if (H5Lexists(run, part, H5P_DEFAULT) <= 0) return 0;
    }
    if (H5Lexists(run, path, H5P_DEFAULT) <= 0) return 0;
    H5O_info_t oi;
    if (H5Oget_info_by_name(run, path, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET)
        return -1;
    hid_t d = H5Dopen2(run, path, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (r >= 0) {
        s->rank = r;
        H5Sget_simple_extent_dims(sp, s->dims, NULL);
    }
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return r >= 0 ? 1 : -1;
}

static void shape_text(const shape *s, char *buf, size_t n)
{
    size_t len = 0;
    if (s->rank == 0) snprintf(buf, n, "scalar");
    for (int i = 0; i < s->rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "[%llu]", (unsigned long long)s->dims[i]);
}

/* Through the view: 1 read, 0 absent, -1 present but not a string / integer / readable
 * dataset, RAW_OTHER: read it through the library. */
static int attr_str(view *v, const char *name, char *buf, size_t n)
{
    if (v->g >= 0) return lib_attr_str(v->g, name, buf, n);
    rawattr a;
    int r = raw_attr(&v->root, name, &a);
    if (r != 1) return r;
    if (a.npoints != 1) return -1;
    if (a.vlen_str) {
        const char *str;
        size_t len;
        if (a.size != 16) return RAW_OTHER;
        if (raw_heap(v->rf, le(a.data + 4, 8), (uint32_t)le(a.data + 12, 4), &str, &len) ||
            len != le(a.data, 4))
            return -1;
        snprintf(buf, n, "%.*s", (int)len, str);
        return 1;
    }
    if (a.cls != 3) return -1;
    snprintf(buf, n, "%.*s", a.size, (const char *)a.data);
    return 1;
}

static int attr_i64(view *v, const char *name, long long *val)
{
    if (v->g >= 0) return lib_attr_i64(v->g, name, val);
    rawattr a;
    int r = raw_attr(&v->root, name, &a);
    if (r != 1) return r;
    if (a.cls != 0 || a.npoints != 1 || a.size < 1 || a.size > 8) return -1;
    uint64_t u = le(a.data, a.size);
    if (a.sign && a.size < 8 && (u >> (8 * a.size - 1)) & 1) u |= ~(uint64_t)0 << (8 * a.size);
    *val = (long long)u;
    return 1;
}

static int dataset_shape(view *v, const char *path, shape *s)
{
    if (v->g >= 0) return lib_shape(v->g, path, s);
    rawhdr h = v->root;
    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        uint64_t addr;
        int r = raw_link(&h, p, len, &addr);
        if (r != 1) return r;
        if ((r = raw_header(v->rf, addr, &h)) != 0) return r == -1 ? RAW_BAD : r;
        if (!slash) break;
        p = slash + 1;
    }
    const unsigned char *cur = h.msgs, *d;
    int type, r, have_layout = 0, have_space = 0;
    size_t len;
    while ((r = raw_next(&h, &cur, &type, &d, &len)) == 1) {
        if (type == 0x08) have_layout = 1;
        if (type == 0x01) {
            if (raw_dspace(d, len, &s->rank, s->dims)) return RAW_OTHER;
            have_space = 1;
        }
    }
    if (r == RAW_OTHER) return RAW_OTHER;
    return have_layout && have_space ? 1 : -1;
}

/* The dataset at path, if present, has `rank` dims equal to want[] (0 in want: any). */
static int expect(const ctx *c, view *run, const char *name, const char *path, int rank,
                  const hsize_t *want, const char *because)
{
    shape s;
    int r = dataset_shape(run, path, &s);
    if (r == 0) return 0;
    if (r == RAW_OTHER) return RAW_OTHER;
    if (r == RAW_BAD)
        return damaged(c, "the object header of /runs/%s/%s fails its checksum", name, path);
    if (r < 0) return damaged(c, "/runs/%s/%s is not a readable dataset", name, path);
    int ok = s.rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = !want[i] || s.dims[i] == want[i];
    if (ok) return 0;
    char got[64], exp[64];
    shape w = {rank, {0}};
    for (int i = 0; i < rank; i++) w.dims[i] = want[i];
    shape_text(&s, got, sizeof got);
    shape_text(&w, exp, sizeof exp);
    return damaged(c, "/runs/%s/%s has shape %s; its run implies %s (%s)", name, path, got, exp,
                   because);
}

/* ---- one run --------------------------------------------------------------------------------- */

/* 0 on RAW_OTHER passes the request to read the run through the library */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        int r_ = (call);                                                                           \
        if (r_ == RAW_OTHER) return RAW_OTHER;                                                     \
        if (r_) return -1;                                                                         \
    } while (0)

static int check_distributed(const ctx *c, view *g, const char *name)
{
    long long P = 0;
    int r = attr_i64(g, "P", &P);
    if (r == RAW_OTHER) return RAW_OTHER;
    if (r != 1 || P < 1) return damaged(c, "run %s has no valid attribute P", name);
    shape ph;
    if ((r = dataset_shape(g, "phases", &ph)) == RAW_OTHER) return RAW_OTHER;
    if (r == RAW_BAD)
        return damaged(c, "the object header of /runs/%s/phases fails its checksum", name);
    if (r != 1 || ph.rank != 1) return damaged(c, "run %s has no 1-D dataset 'phases'", name);
    hsize_t F = ph.dims[0], p3[1] = {3}, f1[1] = {F};
    char why[80];
    snprintf(why, sizeof why, "%llu phases, P = %lld", (unsigned long long)F, P);
    static const char *const per_phase[] = {"predicted/bytes_sent_max",
                                            "predicted/bytes_recv_max",
                                            "predicted/messages_max",
                                            "predicted/phase_time_s",
                                            "predicted/phase_term",
                                            "predicted/phase_inter_node",
                                            "measured/critical_path_phase_s",
                                            "phase_pattern",
                                            "phase_group_size",
                                            "predicted/phase_transfer_s",
                                            "predicted/phase_hidden_s",
                                            "predicted/phase_compute_s",
                                            "predicted/tier_only_phase_time_s",
                                            "measured/overlap_critical_compute_s",
                                            "measured/overlap_critical_exposed_s",
                                            "measured/overlap_critical_transfer_s",
                                            "measured/overlap_critical_hidden_s"};
    for (size_t i = 0; i < sizeof per_phase / sizeof *per_phase; i++)
        TRY(expect(c, g, name, per_phase[i], 1, f1, why));
    TRY(expect(c, g, name, "predicted/total_time_s", 0, NULL, why));
    TRY(expect(c, g, name, "predicted/tier_only_total_time_s", 0, NULL, why));
    TRY(expect(c, g, name, "predicted/critical_path_s", 1, p3, "latency, bandwidth, compute"));
    /* per-rank arrays: R rows, R = P, or fewer when thinned */
    char note[200] = "";
    if (attr_str(g, "per_rank_arrays", note, sizeof note) == RAW_OTHER) return RAW_OTHER;
    int thinned = !strncmp(note, "thinned", 7);
    shape rk;
    int have = dataset_shape(g, "ranks", &rk);
    if (have == RAW_OTHER) return RAW_OTHER;
    if (have == RAW_BAD)
        return damaged(c, "the object header of /runs/%s/ranks fails its checksum", name);
    hsize_t R = 0;
    if (have < 0 || (have && (rk.rank != 2 || rk.dims[1] != 4)))
        return damaged(c, "/runs/%s/ranks is not a [R][4] dataset", name);
    if (have) {
        R = rk.dims[0];
        if (thinned ? (R < 1 || R > (hsize_t)P) : R != (hsize_t)P)
            return damaged(c, "/runs/%s/ranks has %llu rows for P = %lld%s", name,
                           (unsigned long long)R, P, thinned ? " (thinned)" : "");
    }
    static const char *const per_rank[] = {
        "predicted/bytes_sent",        "predicted/bytes_recv",
        "predicted/messages",          "predicted/time_s",
        "measured/bytes_sent",         "measured/bytes_recv",
        "measured/messages",           "measured/time_s",
        "measured/phase_start_s",      "measured/phase_end_s",
        "measured/peer_bytes_sent",    "measured/peer_messages_sent",
        "measured/bytes_sent_inter",   "measured/messages_inter",
        "predicted/bytes_sent_inter",  "predicted/messages_inter",
        "measured/overlap_compute_s",  "measured/overlap_exposed_s",
        "measured/overlap_transfer_s", "measured/overlap_hidden_s"};
    for (size_t i = 0; i < sizeof per_rank / sizeof *per_rank; i++) {
        int peers = strstr(per_rank[i], "peer_") != NULL;
        hsize_t rf[2] = {R, peers ? (hsize_t)P : F};
        if (!have) {
            shape s;
            if ((r = dataset_shape(g, per_rank[i], &s)) == RAW_OTHER) return RAW_OTHER;
            if (r == RAW_BAD)
                return damaged(c, "the object header of /runs/%s/%s fails its checksum", name,
                               per_rank[i]);
            if (r != 0)
                return damaged(c, "/runs/%s/%s is a per-rank array but the run has no 'ranks'",
                               name, per_rank[i]);
            continue;
        }
        TRY(expect(c, g, name, per_rank[i], 2, rf, why));
    }
    return 0;
}

static int check_kernel(const ctx *c, view *g, const char *name)
{
    static const char *const scalars[] = {"measured/hbm_bytes_read",
                                          "measured/hbm_bytes_written",
                                          "measured/flops",
                                          "measured/time_s",
                                          "measured/dram_bytes_read",
                                          "measured/dram_bytes_written",
                                          "predicted/hbm_bytes_read",
                                          "predicted/hbm_bytes_written",
                                          "predicted/flops",
                                          "predicted/compulsory_bytes_read",
                                          "predicted/compulsory_bytes_written",
                                          "predicted/time_s",
                                          "predicted/floor_time_s",
                                          "predicted/busiest_cta_tiles"};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++)
        TRY(expect(c, g, name, scalars[i], 0, NULL, "one value per run"));
    hsize_t any[1] = {0};
    return expect(c, g, name, "measured/time_s_reps", 1, any, "one time per repetition");
}

/* calibration: the datasets of each series group are lists of one length */
typedef struct {
    const ctx *c;
    const char *run;
    const char *group;
    hsize_t len;
    int bad;
} series_ud;

static herr_t series_member(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)info;
    series_ud *u = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0) {
        u->bad = damaged(u->c, "/runs/%s/%s/%s cannot be read", u->run, u->group, name);
        return 1;
    }
    if (oi.type == H5O_TYPE_GROUP) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s/%s", u->group, name);
        hid_t sg = H5Gopen2(g, name, H5P_DEFAULT);
        series_ud inner = {u->c, u->run, sub, 0, 0};
        if (sg < 0 || H5Literate(sg, H5_INDEX_NAME, H5_ITER_INC, NULL, series_member, &inner) < 0)
            inner.bad =
                inner.bad ? inner.bad : damaged(u->c, "/runs/%s/%s cannot be read", u->run, sub);
        if (sg >= 0) H5Gclose(sg);
        u->bad = inner.bad;
        return inner.bad ? 1 : 0;
    }
    shape s;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    s.rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (s.rank == 1) H5Sget_simple_extent_dims(sp, s.dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (s.rank != 1) {
        u->bad = damaged(u->c, "/runs/%s/%s/%s is not a list", u->run, u->group, name);
        return 1;
    }
    if (u->len && s.dims[0] != u->len) {
        u->bad = damaged(u->c, "/runs/%s/%s/%s has %llu values, the other lists of its group %llu",
                         u->run, u->group, name, (unsigned long long)s.dims[0],
                         (unsigned long long)u->len);
        return 1;
    }
    u->len = s.dims[0];
    return 0;
}

static int check_calibration(const ctx *c, hid_t g, const char *name)
{
    static const char *const parts[] = {"links", "kernels", "collectives"};
    for (size_t i = 0; i < 3; i++) {
        if (H5Lexists(g, parts[i], H5P_DEFAULT) <= 0) continue;
        hid_t sg = H5Gopen2(g, parts[i], H5P_DEFAULT);
        if (sg < 0) return damaged(c, "/runs/%s/%s is not a group", name, parts[i]);
        series_ud u = {c, name, parts[i], 0, 0};
        /* every member of links/, kernels/, collectives/ is a group of series */
        herr_t r = H5Literate(sg, H5_INDEX_NAME, H5_ITER_INC, NULL, series_member, &u);
        H5Gclose(sg);
        if (u.bad) return -1;
        if (r < 0) return damaged(c, "/runs/%s/%s cannot be read", name, parts[i]);
    }
    return 0;
}

/* ---- the file -------------------------------------------------------------------------------- */

typedef struct {
    char name[24];
    haddr_t addr;
    int listed;
} run_ent;

typedef struct {
    const ctx *c;
    run_ent *v;
    size_t n, cap;
    int bad;
} run_list;

static herr_t collect_run(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    run_list *l = data;
    size_t len = strlen(name);
    int numbered = len >= 6 && len < sizeof l->v[0].name && strspn(name, "0123456789") == len;
    if (info->type != H5L_TYPE_HARD || !numbered) {
        l->bad = damaged(l->c,
                         "/runs/%s is not a run (%s; runs are groups numbered 000000, 000001, "
                         "...)",
                         name,
                         info->type == H5L_TYPE_SOFT       ? "a soft link"
                         : info->type == H5L_TYPE_EXTERNAL ? "an external link"
                         : info->type != H5L_TYPE_HARD     ? "a user-defined link"
                                                           : "not a run number");
        return 1;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        run_ent *v = realloc(l->v, l->cap * sizeof *v);
        if (!v) {
            l->bad = damaged(l->c, "out of memory listing /runs");
            return 1;
        }
        l->v = v;
    }
    snprintf(l->v[l->n].name, sizeof l->v[l->n].name, "%s", name);
    l->v[l->n].addr = info->u.address;
    l->v[l->n].listed = 0;
    l->n++;
    return 0;
}

static int cmp_run(const void *a, const void *b)
{
    long long x = atoll(((const run_ent *)a)->name), y = atoll(((const run_ent *)b)->name);
    return x < y ? -1 : x > y;
}

static int is_attnsim_kind(const char *kind)
{
    return !strcmp(kind, "distributed") || !strcmp(kind, "model") || !strcmp(kind, "kernel") ||
           !strcmp(kind, "calibration");
}

/* One run, read directly (raw) or through the library: 0, -1 (damaged, said), RAW_OTHER. */
static int check_run(const ctx *c, hid_t f, rawfile *rf, const char *name, haddr_t addr, int listed,
                     int raw)
{
    view v = {-1, rf, {0}};
    if (raw) {
        int r = rf ? raw_header(rf, addr, &v.root) : RAW_OTHER;
        if (r == -1)
            return damaged(c,
                           "the object header of /runs/%s fails its checksum or lies outside "
                           "the file",
                           name);
        if (r) return RAW_OTHER;
        const unsigned char *cur = v.root.msgs, *d;
        int type, k;
        size_t len, is_group = 0;
        while ((k = raw_next(&v.root, &cur, &type, &d, &len)) == 1) is_group |= type == 0x02;
        if (k == RAW_OTHER || !is_group) return RAW_OTHER; /* the library names what it is */
    } else {
        v.g = H5Oopen_by_addr(f, addr);
        if (v.g < 0) return damaged(c, "/runs/%s cannot be opened", name);
        H5I_type_t t = H5Iget_type(v.g);
        if (t != H5I_GROUP) {
            H5Oclose(v.g);
            return damaged(c, "/runs/%s is not a run (a %s, not a group)", name,
                           t == H5I_DATASET ? "dataset" : "named datatype");
        }
    }
    char kind[64] = "";
    long long complete = 0;
    int rk = attr_str(&v, "kind", kind, sizeof kind);
    int rc = rk == RAW_OTHER ? RAW_OTHER : attr_i64(&v, "complete", &complete);
    int bad = 0;
    if (rk == RAW_OTHER || rc == RAW_OTHER)
        bad = RAW_OTHER;
    else if (rk != 1)
        bad = damaged(c, "/runs/%s is not a run (no string attribute 'kind')", name);
    else if (rc < 0)
        bad = damaged(c, "/runs/%s has an attribute 'complete' that is not an integer", name);
    else if (complete != 1 && listed)
        bad = damaged(c, "/summary lists run %s, which is not complete", name);
    else if (complete == 1 && is_attnsim_kind(kind) && !listed)
        bad = damaged(c, "run %s (kind %s) is complete but /summary has no row for it", name, kind);
    else if (complete == 1 && (!strcmp(kind, "distributed") || !strcmp(kind, "model")))
        bad = check_distributed(c, &v, name);
    else if (complete == 1 && !strcmp(kind, "kernel"))
        bad = check_kernel(c, &v, name);
    else if (complete == 1 && !strcmp(kind, "calibration"))
        bad = raw ? RAW_OTHER : check_calibration(c, v.g, name);
    if (v.g >= 0) H5Oclose(v.g);
    return bad;
}

static int check_runs(const ctx *c, hid_t f, rawfile *rf, hid_t runs, run_list *l,
                      const long long *ids, size_t nrows)
{
    if (H5Literate(runs, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_run, l) < 0 && !l->bad)
        return damaged(c, "the members of /runs cannot be listed");
    if (l->bad) return -1;
    qsort(l->v, l->n, sizeof *l->v, cmp_run);
    for (size_t i = 1; i < l->n; i++)
        if (atoll(l->v[i].name) == atoll(l->v[i - 1].name))
            return damaged(c, "/runs has two runs numbered %lld (%s, %s)", atoll(l->v[i].name),
                           l->v[i - 1].name, l->v[i].name);
    /* every row names a run, once */
    for (size_t r = 0; r < nrows; r++) {
        run_ent key;
        snprintf(key.name, sizeof key.name, "%lld", ids[r]);
        run_ent *e = ids[r] >= 0 ? bsearch(&key, l->v, l->n, sizeof *l->v, cmp_run) : NULL;
        if (!e)
            return damaged(c, "/summary row %zu names run %lld, which /runs does not hold", r,
                           ids[r]);
        if (e->listed++)
            return damaged(c, "/summary lists run %s twice (rows %zu and an earlier one)", e->name,
                           r);
    }
    for (size_t i = 0; i < l->n; i++) {
        int r = check_run(c, f, rf, l->v[i].name, l->v[i].addr, l->v[i].listed, 1);
        if (r == RAW_OTHER) r = check_run(c, f, rf, l->v[i].name, l->v[i].addr, l->v[i].listed, 0);
        if (r) return -1;
    }
    return 0;
}

static int check_open_file(const ctx *c, hid_t f)
{
    const char *path = c->path;
    char schema[64] = "(none)";
    lib_attr_str(f, "schema", schema, sizeof schema);
    if (strcmp(schema, H5OUT_SCHEMA) != 0)
        return snprintf(c->err, c->errlen,
                        "'%s' is an HDF5 file of another schema ('%s'); accepted: a new "
                        "path or an attnsim/1 file",
                        path, schema),
               -1;
    if (H5Lexists(f, "runs", H5P_DEFAULT) <= 0 || H5Lexists(f, "summary", H5P_DEFAULT) <= 0)
        return snprintf(c->err, c->errlen,
                        "'%s' says attnsim/1 but has no /runs or /summary; accepted: a new "
                        "path or an intact attnsim/1 file",
                        path),
               -1;
    H5O_info_t oi;
    if (H5Oget_info_by_name(f, "runs", &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_GROUP)
        return damaged(c, "/runs is not a group");
    hid_t ds = H5Dopen2(f, "summary", H5P_DEFAULT);
    if (ds < 0) return damaged(c, "/summary is not a dataset");
    hid_t ft = H5Dget_type(ds), mt = h5_summary_type();
    int same = ft >= 0 && H5Tequal(ft, mt) > 0;
    H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (!same) {
        H5Dclose(ds);
        return snprintf(c->err, c->errlen,
                        "'%s' has a /summary table of another layout; accepted: a new "
                        "path or an attnsim/1 file written by this version",
                        path),
               -1;
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t n = 0;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == 1) H5Sget_simple_extent_dims(sp, &n, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (rank != 1) {
        H5Dclose(ds);
        return damaged(c, "/summary is not a table (rank %d)", rank);
    }
    long long *ids = malloc((n ? n : 1) * sizeof *ids);
    hid_t idt = H5Tcreate(H5T_COMPOUND, sizeof(long long));
    H5Tinsert(idt, "run", 0, H5T_NATIVE_LLONG);
    herr_t r = ids && n ? H5Dread(ds, idt, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) : 0;
    H5Tclose(idt);
    H5Dclose(ds);
    if (!ids || r < 0) {
        free(ids);
        return damaged(c, "the rows of /summary cannot be read");
    }
    hid_t runs = H5Gopen2(f, "runs", H5P_DEFAULT);
    run_list l = {c, NULL, 0, 0, 0};
    /* the runs are read directly from a memory map where their headers allow */
    rawfile rf = {NULL, 0, UINT64_MAX, NULL, NULL, 0};
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) rf.p = m, rf.size = (uint64_t)st.st_size;
    }
    if (fd >= 0) close(fd);
    int rc = runs < 0 ? damaged(c, "/runs cannot be opened")
                      : check_runs(c, f, rf.p ? &rf : NULL, runs, &l, ids, n);
    if (rf.p) munmap((void *)rf.p, (size_t)rf.size);
    free(rf.obj_off);
    free(rf.obj_len);
    if (runs >= 0) H5Gclose(runs);
    free(l.v);
    free(ids);
    return rc;
}

int h5check_file(const char *path, char *err, size_t errlen)
{
    ctx c = {path, err, errlen};
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
    int rc = check_open_file(&c, f);
    H5Fclose(f);
    return rc;
}
