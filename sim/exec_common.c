/* exec_common.c - shared machinery of the executor (see exec.h). */
#include "exec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kn_merge.h"

uint64_t *exec_tokens_of(const am_config *c, uint64_t rank, size_t *n)
{
    uint64_t N = c->N, P = c->P;
    size_t count;
    uint64_t *pos;
    switch (c->algo) {
    case ALGO_RING:
        count = ring_shard_len(c->layout, N, P, rank);
        pos = kn_xmalloc(count * sizeof *pos + 1, "token positions");
        for (size_t j = 0; j < count; j++) pos[j] = ring_shard_token(c->layout, N, P, rank, j);
        break;
    case ALGO_A2D_NO:
    case ALGO_A2D_O:
        count = part_cyclic_count(N, P, rank);
        pos = kn_xmalloc(count * sizeof *pos + 1, "token positions");
        for (size_t j = 0; j < count; j++) pos[j] = rank + j * P;
        break;
    default: /* ulysses: contiguous */
        count = part_block_count(N, P, rank);
        pos = kn_xmalloc(count * sizeof *pos + 1, "token positions");
        for (size_t j = 0; j < count; j++) pos[j] = part_block_start(N, P, rank) + j;
        break;
    }
    *n = count;
    return pos;
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

void gather_map_build(gather_map *gm, size_t g, uint64_t *const *member_pos, const size_t *member_n)
{
    gm->g = g;
    gm->total = 0;
    for (size_t j = 0; j < g; j++) gm->total += member_n[j];
    gm->pos = kn_xmalloc(gm->total * sizeof *gm->pos + 1, "gathered positions");
    gm->count = kn_xmalloc(g * sizeof *gm->count, "gather counts");
    gm->index = kn_xmalloc(g * sizeof *gm->index, "gather index");
    size_t at = 0;
    for (size_t j = 0; j < g; j++) {
        memcpy(gm->pos + at, member_pos[j], member_n[j] * sizeof(uint64_t));
        at += member_n[j];
    }
    qsort(gm->pos, gm->total, sizeof *gm->pos, cmp_u64);
    for (size_t j = 0; j < g; j++) {
        gm->count[j] = member_n[j];
        gm->index[j] = kn_xmalloc(member_n[j] * sizeof(size_t) + 1, "gather index");
        for (size_t k = 0; k < member_n[j]; k++) { /* bisection: positions are distinct */
            size_t lo = 0, hi = gm->total;
            while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;
                if (gm->pos[mid] <= member_pos[j][k])
                    lo = mid;
                else
                    hi = mid;
            }
            gm->index[j][k] = lo;
        }
    }
}

void gather_map_free(gather_map *gm)
{
    for (size_t j = 0; j < gm->g; j++) free(gm->index[j]);
    free(gm->index);
    free(gm->count);
    free(gm->pos);
}

void gather_in(void *gathered, const void *block, const gather_map *gm, size_t j, size_t planes,
               size_t row, size_t esize)
{
    size_t n = gm->count[j], rb = row * esize;
    for (size_t p = 0; p < planes; p++)
        for (size_t k = 0; k < n; k++)
            memcpy((char *)gathered + (p * gm->total + gm->index[j][k]) * rb,
                   (const char *)block + (p * n + k) * rb, rb);
}

void gather_out(void *block, const void *gathered, const gather_map *gm, size_t j, size_t planes,
                size_t row, size_t esize)
{
    size_t n = gm->count[j], rb = row * esize;
    for (size_t p = 0; p < planes; p++)
        for (size_t k = 0; k < n; k++)
            memcpy((char *)block + (p * n + k) * rb,
                   (const char *)gathered + (p * gm->total + gm->index[j][k]) * rb, rb);
}

void exec_tile_forward(const exec_ctx *x, const kn_tensor *q, const uint64_t *qpos, size_t nq,
                       const kn_tensor *k, const kn_tensor *v, const uint64_t *kpos, size_t nk,
                       float *state)
{
    const am_config *c = &x->cfg;
    size_t rows = c->batch * c->heads * nq, d = c->head_dim;
    kn_shape s = {c->batch, c->heads, c->kv_heads, nq, nk, d, c->causal, qpos, kpos};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = *q, t.k = *k, t.v = *v;
    t.o = exec_view(state, KN_F32, rows * d);
    t.m = exec_view(state + rows * d, KN_F32, rows);
    t.l = exec_view(state + rows * d + rows, KN_F32, rows);
    t.fwd_partial = 1;
    kn_counters cnt = {0};
    kn_fa2_fwd(&s, x->sram, &t, &cnt);
}

void exec_tile_backward(const exec_ctx *x, const kn_tensor *q, const kn_tensor *d_o,
                        const float *lse, const float *dsum, const uint64_t *qpos, size_t nq,
                        const kn_tensor *k, const kn_tensor *v, const uint64_t *kpos, size_t nk,
                        float *dq, float *dk, float *dv)
{
    const am_config *c = &x->cfg;
    size_t d = c->head_dim, qe = c->batch * c->heads * nq * d, ke = c->batch * c->kv_heads * nk * d;
    kn_shape s = {c->batch, c->heads, c->kv_heads, nq, nk, d, c->causal, qpos, kpos};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = *q, t.k = *k, t.v = *v, t.d_o = *d_o;
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

size_t state_floats(size_t rows, size_t d)
{
    return rows * (d + 2);
}

void state_empty(float *state, size_t rows, size_t d)
{
    memset(state, 0, rows * d * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        state[rows * d + r] = -INFINITY, state[rows * d + rows + r] = 0;
}

void state_merge(float *dst, const float *src, size_t rows, size_t d)
{
    float *dm = dst + rows * d, *dl = dm + rows;
    const float *sm = src + rows * d, *sl = sm + rows;
    for (size_t r = 0; r < rows; r++)
        kn_merge_state(d, &dm[r], &dl[r], dst + r * d, sm[r], sl[r], src + r * d);
}

void state_finalize(const float *state, size_t rows, size_t d, kn_tensor *o, kn_tensor *lse)
{
    float *row = kn_xmalloc(d * sizeof(float), "row");
    const float *m = state + rows * d, *l = m + rows;
    for (size_t r = 0; r < rows; r++) {
        memcpy(row, state + r * d, d * sizeof(float));
        float lse_r;
        kn_state_finalize(d, m[r], l[r], row, &lse_r);
        for (size_t e = 0; e < d; e++) kn_tensor_set(o, r * d + e, row[e]);
        kn_tensor_set(lse, r, lse_r);
    }
    free(row);
}

void state_gather_out(float *block, const float *gathered, const gather_map *gm, size_t j,
                      size_t planes, size_t d)
{
    size_t nb = planes * gm->count[j], ng = planes * gm->total;
    gather_out(block, gathered, gm, j, planes, d, sizeof(float));
    gather_out(block + nb * d, gathered + ng * d, gm, j, planes, 1, sizeof(float));
    gather_out(block + nb * d + nb, gathered + ng * d + ng, gm, j, planes, 1, sizeof(float));
}

void state_gather_in(float *gathered, const float *block, const gather_map *gm, size_t j,
                     size_t planes, size_t d)
{
    size_t nb = planes * gm->count[j], ng = planes * gm->total;
    gather_in(gathered, block, gm, j, planes, d, sizeof(float));
    gather_in(gathered + ng * d, block + nb * d, gm, j, planes, 1, sizeof(float));
    gather_in(gathered + ng * d + ng, block + nb * d + nb, gm, j, planes, 1, sizeof(float));
}

float *exec_dsum(const exec_ctx *x)
{
    const am_config *c = &x->cfg;
    size_t rows = c->batch * c->heads * x->n, d = c->head_dim;
    float *D = kn_xmalloc(rows * sizeof(float) + 1, "D");
    for (size_t r = 0; r < rows; r++) {
        float acc = 0.0f;
        for (size_t e = 0; e < d; e++)
            acc += kn_tensor_get(&x->d_o, r * d + e) * kn_tensor_get(&x->o, r * d + e);
        D[r] = acc;
    }
    return D;
}
