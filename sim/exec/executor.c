/* executor.c - what the algorithms of the executor share (see exec.h): token positions, device
 * memory, generated inputs, gather maps, partial states; and the executor of each algorithm. */
#include "exec.h"

#include <stdlib.h>
#include <string.h>

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
