/* h5check.c - structural validation of attnsim/1 files (see h5check.h). Runs in a child
 * process (h5out_check_existing): it may leave HDF5 objects open on a damaged file. */
#include "h5check.h"

#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- attributes ------------------------------------------------------------------------------ */

/* 1: read, 0: absent, -1: present but not a string */
static int attr_str(hid_t loc, const char *name, char *buf, size_t n)
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
static int attr_i64(hid_t loc, const char *name, long long *v)
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
static int dataset_shape(hid_t run, const char *path, shape *s)
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

/* The dataset at path, if present, has `rank` dims equal to want[] (0 in want: any). */
static int expect(const ctx *c, hid_t run, const char *name, const char *path, int rank,
                  const hsize_t *want, const char *because)
{
    shape s;
    int r = dataset_shape(run, path, &s);
    if (r == 0) return 0;
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

static int check_distributed(const ctx *c, hid_t g, const char *name)
{
    long long P = 0;
    if (attr_i64(g, "P", &P) != 1 || P < 1)
        return damaged(c, "run %s has no valid attribute P", name);
    shape ph;
    if (dataset_shape(g, "phases", &ph) != 1 || ph.rank != 1)
        return damaged(c, "run %s has no 1-D dataset 'phases'", name);
    hsize_t F = ph.dims[0], p3[1] = {3}, f1[1] = {F};
    char why[80];
    snprintf(why, sizeof why, "%llu phases, P = %lld", (unsigned long long)F, P);
    static const char *const per_phase[] = {
        "predicted/bytes_sent_max",      "predicted/bytes_recv_max", "predicted/messages_max",
        "predicted/phase_time_s",        "predicted/phase_term",     "predicted/phase_inter_node",
        "measured/critical_path_phase_s"};
    for (size_t i = 0; i < sizeof per_phase / sizeof *per_phase; i++)
        if (expect(c, g, name, per_phase[i], 1, f1, why)) return -1;
    if (expect(c, g, name, "predicted/total_time_s", 0, NULL, why) ||
        expect(c, g, name, "predicted/critical_path_s", 1, p3, "latency, bandwidth, compute"))
        return -1;
    /* per-rank arrays: R rows, R = P, or fewer when thinned */
    char note[200] = "";
    attr_str(g, "per_rank_arrays", note, sizeof note);
    int thinned = !strncmp(note, "thinned", 7);
    shape rk;
    int have = dataset_shape(g, "ranks", &rk);
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
        "predicted/bytes_sent", "predicted/bytes_recv",     "predicted/messages",
        "predicted/time_s",     "measured/bytes_sent",      "measured/bytes_recv",
        "measured/messages",    "measured/time_s",          "measured/phase_start_s",
        "measured/phase_end_s", "measured/peer_bytes_sent", "measured/peer_messages_sent"};
    for (size_t i = 0; i < sizeof per_rank / sizeof *per_rank; i++) {
        int peers = strstr(per_rank[i], "peer_") != NULL;
        hsize_t rf[2] = {R, peers ? (hsize_t)P : F};
        if (!have) {
            shape s;
            if (dataset_shape(g, per_rank[i], &s) != 0)
                return damaged(c, "/runs/%s/%s is a per-rank array but the run has no 'ranks'",
                               name, per_rank[i]);
            continue;
        }
        if (expect(c, g, name, per_rank[i], 2, rf, why)) return -1;
    }
    return 0;
}

static int check_kernel(const ctx *c, hid_t g, const char *name)
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
        if (expect(c, g, name, scalars[i], 0, NULL, "one value per run")) return -1;
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

static int check_runs(const ctx *c, hid_t f, hid_t runs, run_list *l, const long long *ids,
                      size_t nrows)
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
        const char *name = l->v[i].name;
        hid_t g = H5Oopen_by_addr(f, l->v[i].addr);
        if (g < 0) return damaged(c, "/runs/%s cannot be opened", name);
        H5I_type_t t = H5Iget_type(g);
        if (t != H5I_GROUP) {
            H5Oclose(g);
            return damaged(c, "/runs/%s is not a run (a %s, not a group)", name,
                           t == H5I_DATASET ? "dataset" : "named datatype");
        }
        char kind[64] = "";
        long long complete = 0;
        int rk = attr_str(g, "kind", kind, sizeof kind);
        int rc = attr_i64(g, "complete", &complete);
        int bad = 0;
        if (rk != 1)
            bad = damaged(c, "/runs/%s is not a run (no string attribute 'kind')", name);
        else if (rc < 0)
            bad = damaged(c, "/runs/%s has an attribute 'complete' that is not an integer", name);
        else if (complete != 1 && l->v[i].listed)
            bad = damaged(c, "/summary lists run %s, which is not complete", name);
        else if (complete == 1 && is_attnsim_kind(kind) && !l->v[i].listed)
            bad = damaged(c, "run %s (kind %s) is complete but /summary has no row for it", name,
                          kind);
        else if (complete == 1 && (!strcmp(kind, "distributed") || !strcmp(kind, "model")))
            bad = check_distributed(c, g, name);
        else if (complete == 1 && !strcmp(kind, "kernel"))
            bad = check_kernel(c, g, name);
        else if (complete == 1 && !strcmp(kind, "calibration"))
            bad = check_calibration(c, g, name);
        H5Oclose(g);
        if (bad) return -1;
    }
    return 0;
}

static int check_open_file(const ctx *c, hid_t f)
{
    const char *path = c->path;
    char schema[64] = "(none)";
    attr_str(f, "schema", schema, sizeof schema);
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
    int rc = runs < 0 ? damaged(c, "/runs cannot be opened") : check_runs(c, f, runs, &l, ids, n);
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
