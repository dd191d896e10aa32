/* h5rec.c - in-memory run records (see h5rec.h). Memory comes from a bump arena per record:
 * a run is built from many small pieces and freed at once after it is written. */
#include "h5rec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"

typedef struct block {
    struct block *next;
    size_t used, size;
    _Alignas(16) unsigned char mem[];
} block;

struct h5rec {
    block *blocks;
    size_t bytes;
    int unfit; /* an attribute too large to be kept in an object header (h5rec_inline) */
    uint64_t str_bytes, nstr; /* its strings: heap bytes (16 + length rounded up to 8), count */
    h5node root;
};

/* A record's memory is pages of one size, kept for the next records when freed: a sweep builds
 * many records, and memory fresh from the system costs a page fault a page. Records are freed by
 * the publisher thread (after their batch is published: up to the writer's 64 MiB of records in
 * flight) and built by the sweep's; the pool holds what a batch freed for the next, never more
 * than was in use at once. One size serves every record alike, so nothing kept goes unused; a
 * piece larger than a quarter of a page (a large per-rank array) gets a block of its own. */
#define BLOCK 4096
static block *pool;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;

static block *block_get(size_t size)
{
    block *b = NULL;
    if (size == BLOCK) {
        pthread_mutex_lock(&pool_mu);
        if ((b = pool)) pool = b->next;
        pthread_mutex_unlock(&pool_mu);
    }
    if (!b) b = kn_xmalloc(sizeof *b + size, "run record");
    b->size = size;
    b->used = 0;
    return b;
}

static void block_put(block *b)
{
    if (b->size != BLOCK) {
        free(b);
        return;
    }
    pthread_mutex_lock(&pool_mu);
    b->next = pool;
    pool = b;
    pthread_mutex_unlock(&pool_mu);
}

static void *arena(h5rec *r, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    block *b = r->blocks;
    if (n > BLOCK / 4) { /* its own block, behind the one being filled */
        block *big = block_get(n);
        big->used = n;
        if (b)
            big->next = b->next, b->next = big;
        else
            big->next = NULL, r->blocks = big;
        r->bytes += sizeof *big + n;
        return big->mem;
    }
    if (!b || b->size - b->used < n) {
        b = block_get(BLOCK);
        b->next = r->blocks;
        r->blocks = b;
        r->bytes += sizeof *b + BLOCK;
    }
    void *p = b->mem + b->used;
    b->used += n;
    return p;
}

static const char *copy_str(h5rec *r, const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = arena(r, n);
    memcpy(d, s, n);
    return d;
}

h5rec *h5rec_new(void)
{
    h5rec *r = kn_xcalloc(1, sizeof *r, "run record");
    r->root.name = "";
    r->root.rec = r;
    return r;
}

h5node *h5rec_root(h5rec *r)
{
    return &r->root;
}

size_t h5rec_bytes(const h5rec *r)
{
    return r ? r->bytes + sizeof *r : 0;
}

void h5rec_free(h5rec *r)
{
    if (!r) return;
    for (block *b = r->blocks, *n; b; b = n) {
        n = b->next;
        block_put(b);
    }
    free(r);
}

int h5rec_inline(const h5rec *r)
{
    return !r->unfit;
}

void h5rec_strings(const h5rec *r, uint64_t *bytes, uint64_t *count)
{
    *bytes = r->str_bytes;
    *count = r->nstr;
}

static void count_str(h5rec *r, const char *s)
{
    r->str_bytes += 16 + ((strlen(s ? s : "") + 7) & ~(uint64_t)7);
    r->nstr++;
}

uint64_t h5v_count(int rank, const uint64_t *dims)
{
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

size_t h5v_size(h5v_type t)
{
    switch (t) {
    case H5V_I32:
        return 4;
    case H5V_I64:
    case H5V_U64:
    case H5V_F64:
        return 8;
    case H5V_STR:
        return sizeof(const char *);
    }
    return 0;
}

int h5_attr_exists(const h5node *loc, const char *name)
{
    size_t len = strlen(name);
    for (const h5attr *a = loc->attrs; a; a = a->next)
        if (a->name_len == len && !memcmp(a->name, name, len)) return 1;
    return 0;
}

static h5attr *attr_new(h5node *loc, const char *name)
{
    size_t len = strlen(name);
    for (h5attr *a = loc->attrs; a; a = a->next)
        if (a->name_len == len && !memcmp(a->name, name, len))
            attn_fail("h5_attr", __FILE__, __LINE__, "attribute '%s' of '%s' written twice", name,
                      loc->name);
    if (len > 255) loc->rec->unfit = 1;
    h5attr *a = arena(loc->rec, sizeof *a);
    memset(a, 0, sizeof *a);
    a->name = copy_str(loc->rec, name);
    a->name_len = len;
    if (loc->last_attr)
        loc->last_attr->next = a;
    else
        loc->attrs = a;
    loc->last_attr = a;
    loc->nattrs++;
    return a;
}

void h5_attr_strs(h5node *loc, const char *name, const char *const *values, size_t n)
{
    h5attr *a = attr_new(loc, name);
    if (16 * (uint64_t)n + strlen(name) + 64 > H5REC_INLINE_MAX) loc->rec->unfit = 1;
    const char **v = arena(loc->rec, (n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = copy_str(loc->rec, values[i]), count_str(loc->rec, v[i]);
    a->type = H5V_STR, a->rank = 1, a->n = n, a->data = v;
}

void h5_attr_str(h5node *loc, const char *name, const char *value)
{
    h5attr *a = attr_new(loc, name);
    const char **v = arena(loc->rec, sizeof *v);
    v[0] = copy_str(loc->rec, value);
    count_str(loc->rec, v[0]);
    a->type = H5V_STR, a->rank = 0, a->n = 1, a->data = v;
}

void h5_attr_strs_kept(h5node *loc, const char *name, const char *const *values, size_t n)
{
    h5attr *a = attr_new(loc, name);
    if (16 * (uint64_t)n + strlen(name) + 64 > H5REC_INLINE_MAX) loc->rec->unfit = 1;
    for (size_t i = 0; i < n; i++) count_str(loc->rec, values[i]);
    a->type = H5V_STR, a->rank = 1, a->n = n, a->data = values;
}

void h5_attr_str_kept(h5node *loc, const char *name, const char *value)
{
    h5attr *a = attr_new(loc, name);
    const char **v = arena(loc->rec, sizeof *v);
    v[0] = value ? value : "";
    count_str(loc->rec, v[0]);
    a->type = H5V_STR, a->rank = 0, a->n = 1, a->data = v;
}

void h5_attr_i64(h5node *loc, const char *name, int64_t v)
{
    h5attr *a = attr_new(loc, name);
    int64_t *d = arena(loc->rec, sizeof *d);
    *d = v;
    a->type = H5V_I64, a->rank = 0, a->n = 1, a->data = d;
}

void h5_attr_f64(h5node *loc, const char *name, double v)
{
    h5attr *a = attr_new(loc, name);
    double *d = arena(loc->rec, sizeof *d);
    *d = v;
    a->type = H5V_F64, a->rank = 0, a->n = 1, a->data = d;
}

static h5node *kid_named(h5node *g, const char *name, size_t len)
{
    for (h5node *k = g->kids; k; k = k->next)
        if (k->name_len == len && !memcmp(k->name, name, len)) return k;
    return NULL;
}

static h5node *kid_new(h5node *g, const char *name, size_t len, int is_dataset)
{
    h5node *k = arena(g->rec, sizeof *k);
    memset(k, 0, sizeof *k);
    char *n = arena(g->rec, len + 1);
    memcpy(n, name, len);
    n[len] = '\0';
    k->name = n;
    k->name_len = len;
    k->is_dataset = is_dataset;
    k->rec = g->rec;
    if (g->last_kid)
        g->last_kid->next = k;
    else
        g->kids = k;
    g->last_kid = k;
    g->nkids++;
    return k;
}

h5node *h5rec_find(h5node *loc, const char *path)
{
    const char *p = path;
    while (loc && *p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        loc = loc->is_dataset ? NULL : kid_named(loc, p, len);
        p += len + (slash != NULL);
    }
    return loc;
}

h5node *h5_member(h5node *loc, const char *path)
{
    h5node *n = h5rec_find(loc, path);
    if (!n) attn_fail("h5_member", __FILE__, __LINE__, "'%s' has no member '%s'", loc->name, path);
    return n;
}

/* The dataset node at path (groups on the way created as needed). */
static h5node *dataset_new(h5node *loc, const char *path)
{
    h5node *g = loc;
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len > 255)
            attn_fail("h5_write", __FILE__, __LINE__, "bad dataset path '%s'", path);
        h5node *k = kid_named(g, p, len);
        if (!slash) {
            if (k) attn_fail("h5_write", __FILE__, __LINE__, "'%s' written twice", path);
            return kid_new(g, p, len, 1);
        }
        if (k && k->is_dataset)
            attn_fail("h5_write", __FILE__, __LINE__, "'%.*s' of '%s' is a dataset", (int)len, p,
                      path);
        g = k ? k : kid_new(g, p, len, 0);
        p = slash + 1;
    }
}

static void set_shape(h5node *d, h5v_type t, int rank, const hsize_t *dims)
{
    if (rank < 0 || rank > H5REC_MAX_RANK)
        attn_fail("h5_write", __FILE__, __LINE__, "rank %d of '%s'", rank, d->name);
    d->type = t;
    d->rank = rank;
    for (int i = 0; i < rank; i++) d->dims[i] = dims[i];
}

void h5_write(h5node *loc, const char *path, h5type type, int rank, const hsize_t *dims,
              const void *data, const char *units)
{
    attn_kill_point("h5:dataset");
    h5v_type t = type.t;
    if (t == H5V_STR) attn_fail("h5_write", __FILE__, __LINE__, "strings: use h5_write_strs");
    h5node *d = dataset_new(loc, path);
    set_shape(d, t, rank, dims);
    size_t bytes = (size_t)h5v_count(rank, d->dims) * h5v_size(t);
    void *v = arena(loc->rec, bytes ? bytes : 1);
    if (bytes) memcpy(v, data, bytes);
    d->data = v;
    if (units) h5_attr_str(d, "units", units);
}

void h5_write_strs(h5node *loc, const char *path, const char *const *values, size_t n)
{
    attn_kill_point("h5:dataset");
    h5node *d = dataset_new(loc, path);
    hsize_t dims[1] = {n};
    set_shape(d, H5V_STR, 1, dims);
    const char **v = arena(loc->rec, (n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = copy_str(loc->rec, values[i]), count_str(loc->rec, v[i]);
    d->data = v;
}

static hid_t native(h5v_type t)
{
    switch (t) {
    case H5V_I32:
        return H5T_NATIVE_INT32;
    case H5V_I64:
        return H5T_NATIVE_INT64;
    case H5V_U64:
        return H5T_NATIVE_UINT64;
    case H5V_F64:
        return H5T_NATIVE_DOUBLE;
    case H5V_STR:
        break;
    }
    hid_t s = H5CALL(H5Tcopy(H5T_C_S1));
    H5CALL(H5Tset_size(s, H5T_VARIABLE));
    H5CALL(H5Tset_cset(s, H5T_CSET_UTF8));
    return s;
}

void h5rec_write_attrs(hid_t loc, const h5node *node)
{
    for (const h5attr *a = node->attrs; a; a = a->next) {
        hid_t t = native(a->type);
        hsize_t n = a->n;
        hid_t space =
            a->rank ? H5CALL(H5Screate_simple(1, &n, NULL)) : H5CALL(H5Screate(H5S_SCALAR));
        hid_t at = H5CALL(H5Acreate2(loc, a->name, t, space, H5P_DEFAULT, H5P_DEFAULT));
        H5CALL(H5Awrite(at, t, a->data));
        H5CALL(H5Aclose(at));
        H5CALL(H5Sclose(space));
        if (a->type == H5V_STR) H5CALL(H5Tclose(t));
    }
}

void h5rec_write_tree(hid_t parent, const char *name, const h5node *node)
{
    hid_t obj;
    if (node->is_dataset) {
        hid_t t = native(node->type);
        hsize_t dims[H5REC_MAX_RANK];
        for (int i = 0; i < node->rank; i++) dims[i] = node->dims[i];
        hid_t space = node->rank ? H5CALL(H5Screate_simple(node->rank, dims, NULL))
                                 : H5CALL(H5Screate(H5S_SCALAR));
        obj = H5CALL(H5Dcreate2(parent, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5CALL(H5Dwrite(obj, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, node->data));
        H5CALL(H5Sclose(space));
        if (node->type == H5V_STR) H5CALL(H5Tclose(t));
    } else {
        obj = H5CALL(H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        for (const h5node *k = node->kids; k; k = k->next) h5rec_write_tree(obj, k->name, k);
    }
    h5rec_write_attrs(obj, node);
    H5CALL(H5Oclose(obj));
}
