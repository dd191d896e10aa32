/* exec_ring.c - Ring Attention (algorithms.md section 4) on the executor.
 *
 * Forward (phase ring_kv_steps): P steps; at step s rank i holds the K|V block of rank i-s
 * (packed in one buffer), computes its own Q against it (a partial merged with the merge
 * operator) while the block travels on to rank i+1 and the next arrives from rank i-1 (P-1
 * transfers). Backward (ring_kv_grad_steps): the K|V blocks travel again with their dK|dV
 * accumulators (f32) in the same buffer; every rank adds its contribution before passing the
 * block on; after P-1 transfers rank i holds block i+1's accumulators, which go home in one more
 * hop (ring_grad_return). Counts: docs/model.md, "Ring".
 */
#include <stdlib.h>
#include <string.h>

#include "exec.h"

typedef struct {
    size_t n;
    uint64_t *pos;
    size_t kv_elems; /* elements of K (or V) of this block */
} ring_block;

static ring_block block_of(const exec_ctx *x, uint64_t owner)
{
    ring_block b;
    b.pos = exec_tokens_of(&x->cfg, owner, &b.n);
    b.kv_elems = x->cfg.batch * x->cfg.kv_heads * b.n * x->cfg.head_dim;
    return b;
}

static size_t max_block(const exec_ctx *x)
{
    size_t most = 0;
    for (int j = 0; j < x->comm.P; j++) {
        size_t n = ring_shard_len(x->cfg.layout, x->cfg.N, x->cfg.P, (uint64_t)j);
        most = n > most ? n : most;
    }
    return most;
}

static void ring_forward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    int P = x->comm.P, i = x->rank, next = (i + 1) % P, prev = (i + P - 1) % P;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim;
    size_t cap = 2 * c->batch * c->kv_heads * max_block(x) * d * e;
    char *held = kn_xmalloc(cap + 1, "ring block"), *incoming = kn_xmalloc(cap + 1, "ring block");
    size_t rows = c->batch * c->heads * x->n;
    float *state = kn_xmalloc(state_floats(rows, d) * sizeof(float), "state");
    float *tile = kn_xmalloc(state_floats(rows, d) * sizeof(float), "tile state");
    state_empty(state, rows, d);
    ring_block hb = block_of(x, (uint64_t)i);
    memcpy(held, x->k.data, hb.kv_elems * e);
    memcpy(held + hb.kv_elems * e, x->v.data, hb.kv_elems * e);

    comm_phase_begin(&x->comm, "ring_kv_steps");
    for (int s = 0; s < P; s++) {
        comm_reqs q = {.n = 0};
        ring_block nb = {0, NULL, 0};
        if (s + 1 < P) {
            nb = block_of(x, ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P));
            comm_irecv(&x->comm, &q, x->comm.world, prev, incoming, 2 * nb.kv_elems * e);
            comm_isend(&x->comm, &q, x->comm.world, next, held, 2 * hb.kv_elems * e);
        }
        kn_tensor k = exec_view(held, x->dtype, hb.kv_elems);
        kn_tensor v = exec_view(held + hb.kv_elems * e, x->dtype, hb.kv_elems);
        exec_tile_forward(x, &x->q, x->pos, x->n, &k, &v, hb.pos, hb.n, tile);
        state_merge(state, tile, rows, d);
        comm_waitall(&q);
        if (s + 1 < P) {
            char *t = held;
            held = incoming, incoming = t;
            free(hb.pos);
            hb = nb;
        }
    }
    comm_phase_end(&x->comm);
    state_finalize(state, rows, d, &x->o, &x->lse);
    free(hb.pos);
    free(held), free(incoming), free(state), free(tile);
}

static void ring_backward(exec_ctx *x)
{
    const am_config *c = &x->cfg;
    int P = x->comm.P, i = x->rank, next = (i + 1) % P, prev = (i + P - 1) % P;
    size_t e = kn_dtype_bytes(x->dtype), d = c->head_dim;
    size_t most = c->batch * c->kv_heads * max_block(x) * d;
    size_t cap = 2 * most * e + 2 * most * sizeof(float);
    char *held = kn_xmalloc(cap + 1, "ring block"), *incoming = kn_xmalloc(cap + 1, "ring block");
    size_t qe = c->batch * c->heads * x->n * d;
    float *dq = calloc(qe + 1, sizeof(float)), *D = exec_dsum(x);
    ring_block hb = block_of(x, (uint64_t)i);
    /* block buffer: K | V (storage type) | dK | dV (f32) */
#define GRADS(buf, b) ((float *)((buf) + 2 * (b).kv_elems * e))
    memcpy(held, x->k.data, hb.kv_elems * e);
    memcpy(held + hb.kv_elems * e, x->v.data, hb.kv_elems * e);
    memset(GRADS(held, hb), 0, 2 * hb.kv_elems * sizeof(float));

    comm_phase_begin(&x->comm, "ring_kv_grad_steps");
    for (int s = 0; s < P; s++) {
        comm_reqs q = {.n = 0};
        ring_block nb = {0, NULL, 0};
        if (s + 1 < P) {
            nb = block_of(x, ring_block_at((uint64_t)i, (uint64_t)s + 1, (uint64_t)P));
            comm_irecv(&x->comm, &q, x->comm.world, prev, incoming,
                       2 * nb.kv_elems * (e + sizeof(float)));
        }
        kn_tensor k = exec_view(held, x->dtype, hb.kv_elems);
        kn_tensor v = exec_view(held + hb.kv_elems * e, x->dtype, hb.kv_elems);
        float *g = GRADS(held, hb);
        exec_tile_backward(x, &x->q, &x->d_o, (const float *)x->lse.data, D, x->pos, x->n, &k, &v,
                           hb.pos, hb.n, dq, g, g + hb.kv_elems);
        if (s + 1 < P) { /* the accumulators leave with this rank's contribution in them */
            comm_isend(&x->comm, &q, x->comm.world, next, held,
                       2 * hb.kv_elems * (e + sizeof(float)));
            comm_waitall(&q);
            char *t = held;
            held = incoming, incoming = t;
            free(hb.pos);
            hb = nb;
        }
    }
    comm_phase_end(&x->comm);

    /* rank i now holds block i+1's accumulators: they go home */
    ring_block own = block_of(x, (uint64_t)i);
    float *mine = GRADS(held, hb);
    float *home = kn_xmalloc(2 * own.kv_elems * sizeof(float) + 1, "dK dV");
    comm_phase_begin(&x->comm, "ring_grad_return");
    if (P > 1)
        comm_sendrecv(&x->comm, x->comm.world, next, mine, 2 * hb.kv_elems * sizeof(float), prev,
                      home, 2 * own.kv_elems * sizeof(float));
    else
        memcpy(home, mine, 2 * own.kv_elems * sizeof(float));
    comm_phase_end(&x->comm);
    for (size_t a = 0; a < own.kv_elems; a++) {
        kn_tensor_set(&x->dk, a, home[a]);
        kn_tensor_set(&x->dv, a, home[own.kv_elems + a]);
    }
    for (size_t a = 0; a < qe; a++) kn_tensor_set(&x->dq, a, dq[a]);
#undef GRADS
    free(own.pos), free(hb.pos), free(home), free(held), free(incoming), free(dq), free(D);
}

static void ring_release(exec_ctx *x)
{
    (void)x;
}

const exec_algo exec_ring = {ring_forward, ring_backward, ring_release};
