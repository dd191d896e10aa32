/* exec_common.c - shared machinery of the executor and its CPU device (see exec.h). */
#include "exec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kn_merge.h"

uint64_t *exec_tokens_of(const am_config *c, uint64_t rank, size_t *n)
{
    const am_algo_desc *d = am_algo_desc_of(c->algo);
    size_t count = d->shard_len(c, rank);
    uint64_t *pos = kn_xmalloc(count * sizeof *pos + 1, "token positions");
    d->shard_tokens(c, rank, pos);
    *n = count;
    return pos;
}

const exec_algo *exec_algo_of(am_algo a)
{
    static const exec_algo *const executors[AM_NUM_ALGOS] = {
#define ATTNSIM_ALGORITHM(id, descriptor, executor) [ALGO_##id] = &executor,
#include "algorithms.def"
#undef ATTNSIM_ALGORITHM
    };
    return executors[a];
}

exec_pos exec_pos_make(const exec_ctx *x, uint64_t *host, size_t n)
{
    exec_pos p = {host, x->dev->upload_pos(host, n), n};
    return p;
}

exec_pos exec_pos_of(const exec_ctx *x, uint64_t rank)
{
    size_t n;
    uint64_t *h = exec_tokens_of(&x->cfg, rank, &n);
    return exec_pos_make(x, h, n);
}

void exec_pos_free(const exec_ctx *x, exec_pos *p)
{
    if (p->d) x->dev->release_pos(p->d, p->h);
    free(p->h);
    memset(p, 0, sizeof *p);
}

void *xd_alloc(const exec_ctx *x, size_t bytes, const char *what)
{
    return x->dev->alloc(bytes, what);
}

void xd_free(const exec_ctx *x, void *p)
{
    if (p) x->dev->release(p);
}

void xd_tensor(const exec_ctx *x, kn_tensor *t, kn_dtype dtype, size_t elems, const char *what)
{
    t->dtype = dtype;
    t->elems = elems;
    t->data = x->dev->alloc(elems * kn_dtype_bytes(dtype), what);
}

void xd_tensor_free(const exec_ctx *x, kn_tensor *t)
{
    xd_free(x, t->data);
    t->data = NULL;
    t->elems = 0;
}

kn_tensor exec_view(void *data, kn_dtype dtype, size_t elems)
{
    kn_tensor t = {data, dtype, elems};
    return t;
}

void exec_fill(const exec_ctx *x, kn_tensor *t, kn_gen_tensor which, size_t heads,
               const uint64_t *pos, size_t n)
{
    const am_config *c = &x->cfg;
    size_t d = c->head_dim;
    for (size_t b = 0; b < c->batch; b++)
        for (size_t h = 0; h < heads; h++)
            for (size_t j = 0; j < n; j++) {
                uint64_t base = ((b * heads + h) * c->N + pos[j]) * d;
                size_t at = ((b * heads + h) * n + j) * d;
                for (size_t e = 0; e < d; e++)
                    kn_tensor_set(t, at + e, kn_gen_value(x->seed, which, base + e));
            }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void gather_map_build(const exec_ctx *x, gather_map *gm, size_t g, uint64_t *const *member_pos,
                      const size_t *member_n)
{
    gm->g = g;
    gm->total = 0;
    for (size_t j = 0; j < g; j++) gm->total += member_n[j];
    uint64_t *pos = kn_xmalloc(gm->total * sizeof *pos + 1, "gathered positions");
    gm->count = kn_xmalloc(g * sizeof *gm->count, "gather counts");
    gm->index = kn_xmalloc(g * sizeof *gm->index, "gather index");
    gm->dindex = kn_xmalloc(g * sizeof *gm->dindex, "gather index");
    size_t at = 0;
    for (size_t j = 0; j < g; j++) {
        memcpy(pos + at, member_pos[j], member_n[j] * sizeof(uint64_t));
        at += member_n[j];
    }
    qsort(pos, gm->total, sizeof *pos, cmp_u64);
    uint64_t *idx = kn_xmalloc(gm->total * sizeof *idx + 1, "gather index");
    for (size_t j = 0; j < g; j++) {
        gm->count[j] = member_n[j];
        gm->index[j] = kn_xmalloc(member_n[j] * sizeof(size_t) + 1, "gather index");
        for (size_t k = 0; k < member_n[j]; k++) { /* bisection: positions are distinct */
            size_t lo = 0, hi = gm->total;
            while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;
                if (pos[mid] <= member_pos[j][k])
                    lo = mid;
                else
                    hi = mid;
            }
            gm->index[j][k] = lo;
            idx[k] = lo;
        }
        gm->dindex[j] = x->dev->upload_pos(idx, member_n[j]);
    }
    free(idx);
    gm->pos = exec_pos_make(x, pos, gm->total);
}

void gather_map_free(const exec_ctx *x, gather_map *gm)
{
    for (size_t j = 0; j < gm->g; j++) {
        x->dev->release_pos(gm->dindex[j], NULL);
        free(gm->index[j]);
    }
    free(gm->index);
    free((void *)gm->dindex);
    free(gm->count);
    exec_pos_free(x, &gm->pos);
}

exec_pos gather_member_pos(const exec_ctx *x, const gather_map *gm, size_t j)
{
    uint64_t *h = kn_xmalloc(gm->count[j] * sizeof *h + 1, "positions");
    for (size_t t = 0; t < gm->count[j]; t++) h[t] = gm->pos.h[gm->index[j][t]];
    return exec_pos_make(x, h, gm->count[j]);
}

void gather_in(const exec_ctx *x, void *gathered, const void *block, const gather_map *gm, size_t j,
               size_t planes, size_t row, size_t esize)
{
    x->dev->rows_copy(gathered, block, gm->dindex[j], planes, gm->count[j], gm->total, row * esize,
                      1);
}

void gather_out(const exec_ctx *x, void *block, const void *gathered, const gather_map *gm,
                size_t j, size_t planes, size_t row, size_t esize)
{
    x->dev->rows_copy(block, gathered, gm->dindex[j], planes, gm->count[j], gm->total, row * esize,
                      0);
}

size_t state_floats(size_t rows, size_t d)
{
    return rows * (d + 2);
}

void state_gather_out(const exec_ctx *x, float *block, const float *gathered, const gather_map *gm,
                      size_t j, size_t planes, size_t d)
{
    size_t nb = planes * gm->count[j], ng = planes * gm->total;
    gather_out(x, block, gathered, gm, j, planes, d, sizeof(float));
    gather_out(x, block + nb * d, gathered + ng * d, gm, j, planes, 1, sizeof(float));
    gather_out(x, block + nb * d + nb, gathered + ng * d + ng, gm, j, planes, 1, sizeof(float));
}

void state_gather_in(const exec_ctx *x, float *gathered, const float *block, const gather_map *gm,
                     size_t j, size_t planes, size_t d)
{
    size_t nb = planes * gm->count[j], ng = planes * gm->total;
    gather_in(x, gathered, block, gm, j, planes, d, sizeof(float));
    gather_in(x, gathered + ng * d, block + nb * d, gm, j, planes, 1, sizeof(float));
    gather_in(x, gathered + ng * d + ng, block + nb * d + nb, gm, j, planes, 1, sizeof(float));
}

float *exec_dsum(const exec_ctx *x)
{
    const am_config *c = &x->cfg;
    size_t rows = c->batch * c->heads * x->n;
    float *D = xd_alloc(x, rows * sizeof(float), "D");
    x->dev->rowdot((int)x->dtype, x->o.data, x->d_o.data, rows, c->head_dim, D);
    return D;
}

/* ---- the CPU device: host memory, the C reference kernels ------------------------------- */

static void *cpu_alloc(size_t bytes, const char *what)
{
    return kn_xmalloc(bytes + 1, what);
}

static void cpu_release(void *p)
{
    free(p);
}

static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                       size_t height)
{
    for (size_t i = 0; i < height; i++)
        memcpy((char *)dst + i * dpitch, (const char *)src + i * spitch, width);
}

static void cpu_zero(void *p, size_t bytes)
{
    memset(p, 0, bytes);
}

static void cpu_sync(void) {}

static const void *cpu_upload_pos(const uint64_t *host, size_t n)
{
    uint64_t *p = kn_xmalloc(n * sizeof *p + 1, "positions");
    if (n) memcpy(p, host, n * sizeof *p);
    return p;
}

static void cpu_release_pos(const void *d, const uint64_t *host)
{
    (void)host;
    free((void *)d);
}

static void cpu_rows_copy(void *dst, const void *src, const void *index, size_t planes, size_t n,
                          size_t total, size_t rb, int scatter)
{
    const uint64_t *idx = index;
    for (size_t p = 0; p < planes; p++)
        for (size_t k = 0; k < n; k++) {
            size_t g = (p * total + idx[k]) * rb, b = (p * n + k) * rb;
            if (scatter)
                memcpy((char *)dst + g, (const char *)src + b, rb);
            else
                memcpy((char *)dst + b, (const char *)src + g, rb);
        }
}

static void cpu_state_empty(float *state, size_t rows, size_t d)
{
    memset(state, 0, rows * d * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        state[rows * d + r] = -INFINITY, state[rows * d + rows + r] = 0;
}

static void cpu_state_merge(float *dst, const float *src, size_t rows, size_t d)
{
    float *dm = dst + rows * d, *dl = dm + rows;
    const float *sm = src + rows * d, *sl = sm + rows;
    for (size_t r = 0; r < rows; r++)
        kn_merge_state(d, &dm[r], &dl[r], dst + r * d, sm[r], sl[r], src + r * d);
}

static void cpu_tile_forward(const exec_ctx *x, const void *q, const exec_pos *qpos, const void *k,
                             const void *v, const exec_pos *kpos, float *state, int accumulate)
{
    const am_config *c = &x->cfg;
    size_t nq = qpos->n, nk = kpos->n;
    size_t rows = c->batch * c->heads * nq, d = c->head_dim;
    float *out = state;
    if (accumulate) out = kn_xmalloc(state_floats(rows, d) * sizeof(float) + 1, "tile state");
    kn_shape s = {c->batch, c->heads, c->kv_heads, nq, nk, d, c->causal, qpos->h, kpos->h};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, c->batch * c->heads * nq * d);
    t.k = exec_view((void *)k, x->dtype, c->batch * c->kv_heads * nk * d);
    t.v = exec_view((void *)v, x->dtype, c->batch * c->kv_heads * nk * d);
    t.o = exec_view(out, KN_F32, rows * d);
    t.m = exec_view(out + rows * d, KN_F32, rows);
    t.l = exec_view(out + rows * d + rows, KN_F32, rows);
    t.fwd_partial = 1;
    kn_counters cnt = {0};
    kn_fa2_fwd(&s, x->sram, &t, &cnt);
    if (accumulate) {
        cpu_state_merge(state, out, rows, d);
        free(out);
    }
}

static void cpu_tile_backward(const exec_ctx *x, const void *q, const void *d_o, const float *lse,
                              const float *dsum, const exec_pos *qpos, const void *k, const void *v,
                              const exec_pos *kpos, float *dq, float *dk, float *dv)
{
    const am_config *c = &x->cfg;
    size_t nq = qpos->n, nk = kpos->n, d = c->head_dim;
    size_t qe = c->batch * c->heads * nq * d, ke = c->batch * c->kv_heads * nk * d;
    kn_shape s = {c->batch, c->heads, c->kv_heads, nq, nk, d, c->causal, qpos->h, kpos->h};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, qe);
    t.d_o = exec_view((void *)d_o, x->dtype, qe);
    t.k = exec_view((void *)k, x->dtype, ke);
    t.v = exec_view((void *)v, x->dtype, ke);
    t.lse = exec_view((float *)lse, KN_F32, c->batch * c->heads * nq);
    t.dsum = exec_view((float *)dsum, KN_F32, c->batch * c->heads * nq);
    t.bwd_dsum_given = 1;
    float *tmp = kn_xmalloc((2 * qe + 2 * ke) * sizeof(float) + 1, "backward tile");
    t.dq_acc = exec_view(tmp, KN_F32, qe);
    t.dq = exec_view(tmp + qe, KN_F32, qe);
    t.dk = exec_view(tmp + 2 * qe, KN_F32, ke);
    t.dv = exec_view(tmp + 2 * qe + ke, KN_F32, ke);
    kn_counters cnt = {0};
    kn_fa2_bwd(&s, x->sram, &t, &cnt);
    for (size_t i = 0; i < qe; i++) dq[i] += tmp[qe + i];
    for (size_t i = 0; i < ke; i++) dk[i] += tmp[2 * qe + i], dv[i] += tmp[2 * qe + ke + i];
    free(tmp);
}

static void cpu_attn_forward(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                             const void *k, const void *v, void *o, float *lse)
{
    const am_config *c = &x->cfg;
    size_t B = c->batch, d = c->head_dim;
    kn_shape sh = {B, hq, hk, n, n, d, c->causal, NULL, NULL};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, B * hq * n * d);
    t.k = exec_view((void *)k, x->dtype, B * hk * n * d);
    t.v = exec_view((void *)v, x->dtype, B * hk * n * d);
    t.o = exec_view(o, x->dtype, B * hq * n * d);
    t.lse = exec_view(lse, KN_F32, B * hq * n);
    kn_counters cnt = {0};
    kn_fa2_fwd(&sh, x->sram, &t, &cnt);
}

static void cpu_attn_backward(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                              const void *k, const void *v, const void *o, const void *d_o,
                              const float *lse, void *dq, void *dk, void *dv)
{
    const am_config *c = &x->cfg;
    size_t B = c->batch, d = c->head_dim, qe = B * hq * n * d, ke = B * hk * n * d;
    kn_shape sh = {B, hq, hk, n, n, d, c->causal, NULL, NULL};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, qe);
    t.k = exec_view((void *)k, x->dtype, ke);
    t.v = exec_view((void *)v, x->dtype, ke);
    t.o = exec_view((void *)o, x->dtype, qe);
    t.d_o = exec_view((void *)d_o, x->dtype, qe);
    t.lse = exec_view((float *)lse, KN_F32, B * hq * n);
    t.dq = exec_view(dq, x->dtype, qe);
    t.dk = exec_view(dk, x->dtype, ke);
    t.dv = exec_view(dv, x->dtype, ke);
    float *ws = kn_xmalloc((qe + B * hq * n) * sizeof(float) + 1, "backward workspace");
    t.dq_acc = exec_view(ws, KN_F32, qe);
    t.dsum = exec_view(ws + qe, KN_F32, B * hq * n);
    kn_counters cnt = {0};
    kn_fa2_bwd(&sh, x->sram, &t, &cnt);
    free(ws);
}

static void cpu_state_finalize(const float *state, size_t rows, size_t d, int dtype, void *o,
                               float *lse)
{
    float *row = kn_xmalloc(d * sizeof(float), "row");
    kn_tensor ot = exec_view(o, (kn_dtype)dtype, rows * d);
    const float *m = state + rows * d, *l = m + rows;
    for (size_t r = 0; r < rows; r++) {
        memcpy(row, state + r * d, d * sizeof(float));
        float lse_r;
        kn_state_finalize(d, m[r], l[r], row, &lse_r);
        for (size_t e = 0; e < d; e++) kn_tensor_set(&ot, r * d + e, row[e]);
        lse[r] = lse_r;
    }
    free(row);
}

static void cpu_rowdot(int dtype, const void *o, const void *d_o, size_t rows, size_t d,
                       float *dsum)
{
    kn_tensor ot = exec_view((void *)o, (kn_dtype)dtype, rows * d);
    kn_tensor dt = exec_view((void *)d_o, (kn_dtype)dtype, rows * d);
    for (size_t r = 0; r < rows; r++) {
        float acc = 0.0f;
        for (size_t e = 0; e < d; e++)
            acc += kn_tensor_get(&dt, r * d + e) * kn_tensor_get(&ot, r * d + e);
        dsum[r] = acc;
    }
}

static void cpu_add_f32(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

static void cpu_to_storage(int dtype, const float *src, void *dst, size_t n)
{
    kn_tensor t = exec_view(dst, (kn_dtype)dtype, n);
    for (size_t i = 0; i < n; i++) kn_tensor_set(&t, i, src[i]);
}

const exec_dev exec_dev_cpu = {"cpu",
                               cpu_alloc,
                               cpu_release,
                               cpu_copy,
                               cpu_copy2d,
                               cpu_zero,
                               cpu_copy,
                               cpu_copy,
                               cpu_sync,
                               cpu_upload_pos,
                               cpu_release_pos,
                               cpu_rows_copy,
                               cpu_tile_forward,
                               cpu_tile_backward,
                               cpu_attn_forward,
                               cpu_attn_backward,
                               cpu_state_empty,
                               cpu_state_merge,
                               cpu_state_finalize,
                               cpu_rowdot,
                               cpu_add_f32,
                               cpu_to_storage};
