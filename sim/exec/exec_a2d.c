/* exec_a2d.c - Attention2D (algorithms.md section 5) on the executor: A2D-NO and A2D-O
 * forwards and their shared backward, on any R x C grid (docs/model.md, "Layouts").
 *
 * Rank x = (r, c) holds Q, K, V of the tokens t = x (mod P). kv_transpose moves K|V so that
 * (r, c) holds class rC + c. A2D-NO: all-gather Q along the row and K|V along the column (rings),
 * one local tile (Q tokens = r mod R, K tokens = c mod C) returning an unnormalised partial,
 * reduce-scatter of the partials along the row with the merge operator, normalise. A2D-O: the
 * column gather as a ring overlapped with own-Q compute, then Q shards around the row ring one
 * step ahead of the partials that accumulate for them (the Q transfer of a step overlaps the
 * compute of the shard received in the previous one). Backward: D locally; row all-gather of
 * Q|dO|LSE|D; column all-gather of K|V; local FA2 backward of the tile; row reduce-scatter (sum)
 * of dQ and column reduce-scatter of dK|dV in f32; dK|dV back to their owners.
 */
#include <stdlib.h>
#include <string.h>

#include "algo_a2d.h"
#include "exec.h"

typedef struct {
    uint64_t R, C, r, c;
    gather_map row, col; /* Q tokens of the row members, K tokens of the column members */
    uint64_t kv_class;   /* class held after the transpose: rC + c */
    size_t nt;           /* its tokens */
    char *kvt;           /* its K|V (storage type), kept for the backward */
} a2d_state;

static void member_tokens(const exec_ctx *x, uint64_t g, int row, a2d_state *s, gather_map *gm)
{
    uint64_t **pos = kn_xmalloc(g * sizeof *pos, "member tokens");
    size_t *n = kn_xmalloc(g * sizeof *n, "member sizes");
    for (uint64_t j = 0; j < g; j++) {
        uint64_t cls = row ? s->r + j * s->R : a2d_kv_class(j, s->c, s->C);
        pos[j] = exec_tokens_of(&x->cfg, cls, &n[j]); /* class cls = rank cls's tokens */
    }
    gather_map_build(x, gm, g, pos, n);
    for (uint64_t j = 0; j < g; j++) free(pos[j]);
    free(pos);
    free(n);
}

static a2d_state *a2d_setup(exec_ctx *x)
{
    a2d_state *s = kn_xcalloc(1, sizeof *s, "a2d state");
    s->R = x->cfg.rows, s->C = x->cfg.cols;
    s->r = grid_row((uint64_t)x->rank, s->R), s->c = grid_col((uint64_t)x->rank, s->R);
    s->kv_class = a2d_kv_class(s->r, s->c, s->C);
    member_tokens(x, s->C, 1, s, &s->row);
    member_tokens(x, s->R, 0, s, &s->col);
    return s;
}

static size_t kv_elems(const exec_ctx *x, size_t n)
{
    return x->cfg.batch * x->cfg.kv_heads * n * x->cfg.head_dim;
}

static size_t q_elems(const exec_ctx *x, size_t n)
{
    return x->cfg.batch * x->cfg.heads * n * x->cfg.head_dim;
}

/* kv_transpose: own K|V to the device that holds class x after it; class rC + c from its rank. */
static void transpose(exec_ctx *x, a2d_state *s)
{
    size_t e = kn_dtype_bytes(x->dtype), own = kv_elems(x, x->n);
    uint64_t dest = a2d_transpose_dest((uint64_t)x->rank, s->R, s->C), src = s->kv_class;
    s->nt = part_cyclic_count(x->cfg.N, x->cfg.P, src);
    size_t te = kv_elems(x, s->nt);
    char *mine = xd_alloc(x, 2 * own * e, "K|V");
    x->dev->copy(mine, x->k.data, own * e);
    x->dev->copy(mine + own * e, x->v.data, own * e);
    s->kvt = xd_alloc(x, 2 * te * e, "transposed K|V");
    comm_phase_begin(&x->comm, PH_A2D_KV_TRANSPOSE);
    if (dest == (uint64_t)x->rank)
        x->dev->copy(s->kvt, mine, 2 * te * e);
    else
        comm_sendrecv(&x->comm, x->comm.world, (int)dest, mine, 2 * own * e, (int)src, s->kvt,
                      2 * te * e);
    comm_phase_end(&x->comm);
    xd_free(x, mine);
}

/* K|V blocks of the column members, own block filled from kvt; sizes in bytes. */
static char **kv_blocks(const exec_ctx *x, const a2d_state *s, uint64_t *bytes)
{
    size_t e = kn_dtype_bytes(x->dtype);
    char **b = kn_xmalloc(s->R * sizeof *b, "blocks");
    for (uint64_t i = 0; i < s->R; i++) {
        bytes[i] = 2 * kv_elems(x, s->col.count[i]) * e;
        b[i] = xd_alloc(x, bytes[i], "K|V block");
    }
    x->dev->copy(b[s->r], s->kvt, bytes[s->r]);
    return b;
}

/* K_g and V_g (storage type) from the column members' K|V blocks. */
static void assemble_kv(const exec_ctx *x, const a2d_state *s, char **blocks, kn_tensor *k,
                        kn_tensor *v)
{
    size_t e = kn_dtype_bytes(x->dtype), planes = x->cfg.batch * x->cfg.kv_heads;
    xd_tensor(x, k, x->dtype, kv_elems(x, s->col.total), "K gathered");
    xd_tensor(x, v, x->dtype, kv_elems(x, s->col.total), "V gathered");
    for (uint64_t i = 0; i < s->R; i++) {
        size_t half = kv_elems(x, s->col.count[i]) * e;
        gather_in(x, k->data, blocks[i], &s->col, i, planes, x->cfg.head_dim, e);
        gather_in(x, v->data, blocks[i] + half, &s->col, i, planes, x->cfg.head_dim, e);
    }
}

static void gather_kv(exec_ctx *x, const a2d_state *s, am_phase_id phase, kn_tensor *k,
                      kn_tensor *v)
{
    uint64_t *bytes = kn_xmalloc(s->R * sizeof *bytes, "sizes");
    char **blocks = kv_blocks(x, s, bytes);
    comm_phase_begin(&x->comm, phase);
    comm_ring_allgather(&x->comm, x->comm.col, (void **)blocks, bytes);
    comm_phase_end(&x->comm);
    assemble_kv(x, s, blocks, k, v);
    for (uint64_t i = 0; i < s->R; i++) xd_free(x, blocks[i]);
    free(blocks), free(bytes);
}

typedef struct {
    const exec_ctx *x;
    const a2d_state *s;
    int sum_planes_kv; /* 0: row blocks (merge states / sum dQ); 1: column blocks (sum dK|dV) */
} reduce_ctx;

static void merge_states(void *own, const void *in, int j, void *ctx)
{
    reduce_ctx *r = ctx;
    size_t rows = r->x->cfg.batch * r->x->cfg.heads * r->s->row.count[j];
    r->x->dev->state_merge(own, in, rows, r->x->cfg.head_dim);
}

static void sum_floats(void *own, const void *in, int j, void *ctx)
{
    reduce_ctx *r = ctx;
    size_t n = r->sum_planes_kv ? 2 * kv_elems(r->x, r->s->col.count[j])
                                : q_elems(r->x, r->s->row.count[j]);
    r->x->dev->add_f32(own, in, n);
}

static size_t state_bytes(const exec_ctx *x, size_t n)
{
    return state_floats(x->cfg.batch * x->cfg.heads * n, x->cfg.head_dim) * sizeof(float);
}

static void forward_no(exec_ctx *x, a2d_state *s)
{
    const exec_dev *dv = x->dev;
    size_t e = kn_dtype_bytes(x->dtype), d = x->cfg.head_dim, planes = x->cfg.batch * x->cfg.heads;
    uint64_t C = s->C;
    /* q_allgather */
    uint64_t *bytes = kn_xmalloc(C * sizeof *bytes, "sizes");
    char **qb = kn_xmalloc(C * sizeof *qb, "blocks");
    for (uint64_t j = 0; j < C; j++) {
        bytes[j] = q_elems(x, s->row.count[j]) * e;
        qb[j] = xd_alloc(x, bytes[j], "Q block");
    }
    dv->copy(qb[s->c], x->q.data, bytes[s->c]);
    comm_phase_begin(&x->comm, PH_A2D_Q_ALLGATHER);
    comm_ring_allgather(&x->comm, x->comm.row, (void **)qb, bytes);
    comm_phase_end(&x->comm);
    kn_tensor qg, kg, vg;
    xd_tensor(x, &qg, x->dtype, q_elems(x, s->row.total), "Q gathered");
    for (uint64_t j = 0; j < C; j++) gather_in(x, qg.data, qb[j], &s->row, j, planes, d, e);
    /* kv_allgather */
    gather_kv(x, s, PH_A2D_KV_ALLGATHER, &kg, &vg);
    /* attention: the tile's partial */
    size_t grows = planes * s->row.total;
    float *state = xd_alloc(x, state_floats(grows, d) * sizeof(float), "tile state");
    comm_phase_begin(&x->comm, PH_A2D_ATTENTION);
    dv->tile_forward(x, x->cfg.heads, x->cfg.kv_heads, qg.data, &s->row.pos, kg.data, vg.data,
                     &s->col.pos, state, 0);
    comm_phase_end(&x->comm);
    /* partial_reduce_scatter: the row members' rows, merged around the row ring */
    float **pb = kn_xmalloc(C * sizeof *pb, "blocks");
    for (uint64_t j = 0; j < C; j++) {
        bytes[j] = state_bytes(x, s->row.count[j]);
        pb[j] = xd_alloc(x, bytes[j], "partial block");
        state_gather_out(x, pb[j], state, &s->row, j, planes, d);
    }
    reduce_ctx rc = {x, s, 0};
    comm_phase_begin(&x->comm, PH_A2D_PARTIAL_REDUCE_SCATTER);
    comm_ring_reduce_scatter(&x->comm, x->comm.row, (void **)pb, bytes, merge_states, &rc);
    comm_phase_end(&x->comm);
    dv->state_finalize(pb[s->c], planes * x->n, d, (int)x->dtype, x->o.data, x->lse.data);
    dv->sync();
    for (uint64_t j = 0; j < C; j++) xd_free(x, qb[j]), xd_free(x, pb[j]);
    free(qb), free(pb), free(bytes), xd_free(x, state);
    xd_tensor_free(x, &qg), xd_tensor_free(x, &kg), xd_tensor_free(x, &vg);
}

static void forward_o(exec_ctx *x, a2d_state *s)
{
    const exec_dev *dv = x->dev;
    size_t e = kn_dtype_bytes(x->dtype), d = x->cfg.head_dim, planes = x->cfg.batch * x->cfg.heads;
    int R = (int)s->R, C = (int)s->C, r = (int)s->r, c = (int)s->c;
    size_t own_rows = planes * x->n;
    float *own = xd_alloc(x, state_floats(own_rows, d) * sizeof(float), "own state");

    /* kv_column_ring: own Q against each column block while the blocks travel */
    uint64_t *bytes = kn_xmalloc((size_t)(R > C ? R : C) * sizeof *bytes, "sizes");
    char **blocks = kv_blocks(x, s, bytes);
    exec_pos *kpos = kn_xmalloc((size_t)R * sizeof *kpos, "positions");
    for (int i = 0; i < R; i++) kpos[i] = gather_member_pos(x, &s->col, (size_t)i);
    comm_phase_begin(&x->comm, PH_A2D_KV_COLUMN_RING);
    for (int st = 0; st < R; st++) {
        int held = ((r - st) % R + R) % R, in = ((r - st - 1) % R + R) % R;
        comm_reqs q = {.n = 0};
        if (st + 1 < R) {
            comm_irecv(&x->comm, &q, x->comm.col, (r + R - 1) % R, blocks[in], bytes[in]);
            comm_isend(&x->comm, &q, x->comm.col, (r + 1) % R, blocks[held], bytes[held]);
            comm_start(&x->comm, &q);
        }
        size_t ke = kv_elems(x, s->col.count[held]);
        dv->tile_forward(x, x->cfg.heads, x->cfg.kv_heads, x->q.data, &x->pos, blocks[held],
                         blocks[held] + ke * e, &kpos[held], own, st > 0);
        comm_waitall(&x->comm, &q);
    }
    comm_phase_end(&x->comm);
    kn_tensor kg, vg;
    assemble_kv(x, s, blocks, &kg, &vg);
    for (int i = 0; i < R; i++) xd_free(x, blocks[i]), exec_pos_free(x, &kpos[i]);
    free(blocks), free(kpos);

    /* q_row_ring: Q shards one step ahead of the partials accumulating for them */
    size_t qmax = 0, smax = 0;
    exec_pos *qpos = kn_xmalloc((size_t)C * sizeof *qpos, "positions");
    for (int j = 0; j < C; j++) {
        qmax = q_elems(x, s->row.count[j]) * e > qmax ? q_elems(x, s->row.count[j]) * e : qmax;
        smax = state_bytes(x, s->row.count[j]) > smax ? state_bytes(x, s->row.count[j]) : smax;
        qpos[j] = gather_member_pos(x, &s->row, (size_t)j);
    }
    char *qbuf[2] = {xd_alloc(x, qmax, "Q"), xd_alloc(x, qmax, "Q")};
    float *abuf[2] = {xd_alloc(x, smax, "partial"), xd_alloc(x, smax, "partial")};
    float *a_in = xd_alloc(x, smax, "partial");
    int next = (c + 1) % C, prev = (c + C - 1) % C;
    comm_reqs qr = {.n = 0}, ar = {.n = 0};
    comm_phase_begin(&x->comm, PH_A2D_Q_ROW_RING);
    if (C > 1) {
        int m1 = (c + C - 1) % C;
        comm_irecv(&x->comm, &qr, x->comm.row, prev, qbuf[0], q_elems(x, s->row.count[m1]) * e);
        comm_isend(&x->comm, &qr, x->comm.row, next, x->q.data, q_elems(x, x->n) * e);
        comm_start(&x->comm, &qr);
    }
    for (int st = 1; st < C; st++) {
        int m = ((c - st) % C + C) % C; /* the Q shard that arrives at this step */
        size_t nq = s->row.count[m];
        comm_waitall(&x->comm, &qr);
        char *qnew = qbuf[(st - 1) & 1];
        if (st + 1 < C) { /* forward it at once, and take the next one in */
            int m2 = ((c - st - 1) % C + C) % C;
            comm_irecv(&x->comm, &qr, x->comm.row, prev, qbuf[st & 1],
                       q_elems(x, s->row.count[m2]) * e);
            comm_isend(&x->comm, &qr, x->comm.row, next, qnew, q_elems(x, nq) * e);
            comm_start(&x->comm, &qr);
        }
        comm_waitall(&x->comm, &ar); /* the partial for shard m (from step 2 on), our last send */
        float *out = abuf[st & 1];
        if (st >= 2) dv->copy(out, a_in, state_bytes(x, nq));
        dv->tile_forward(x, x->cfg.heads, x->cfg.kv_heads, qnew, &qpos[m], kg.data, vg.data,
                         &s->col.pos, out, st >= 2);
        comm_isend(&x->comm, &ar, x->comm.row, next, out, state_bytes(x, nq));
        if (st + 1 < C) {
            int m2 = ((c - st - 1) % C + C) % C;
            comm_irecv(&x->comm, &ar, x->comm.row, prev, a_in, state_bytes(x, s->row.count[m2]));
        } else { /* the last partial that arrives is our own shard's */
            comm_irecv(&x->comm, &ar, x->comm.row, prev, a_in, state_bytes(x, x->n));
        }
        comm_start(&x->comm, &ar);
    }
    comm_waitall(&x->comm, &qr);
    comm_waitall(&x->comm, &ar);
    comm_phase_end(&x->comm);
    if (C > 1) dv->state_merge(own, a_in, own_rows, d);
    dv->state_finalize(own, own_rows, d, (int)x->dtype, x->o.data, x->lse.data);
    dv->sync();
    for (int j = 0; j < C; j++) exec_pos_free(x, &qpos[j]);
    free(qpos);
    xd_free(x, qbuf[0]), xd_free(x, qbuf[1]), xd_free(x, abuf[0]), xd_free(x, abuf[1]);
    xd_free(x, a_in), xd_free(x, own), free(bytes);
    xd_tensor_free(x, &kg), xd_tensor_free(x, &vg);
}

static void a2d_release(exec_ctx *x);

/* The transpose, then the variant's forward. */
static a2d_state *a2d_begin(exec_ctx *x)
{
    a2d_release(x); /* a train pass runs the forward once; a repeated forward starts afresh */
    a2d_state *s = a2d_setup(x);
    x->saved = s;
    transpose(x, s);
    return s;
}

static void a2d_no_forward(exec_ctx *x)
{
    forward_no(x, a2d_begin(x));
}

static void a2d_o_forward(exec_ctx *x)
{
    forward_o(x, a2d_begin(x));
}

static void a2d_backward(exec_ctx *x)
{
    const exec_dev *dv = x->dev;
    a2d_state *s = x->saved;
    size_t e = kn_dtype_bytes(x->dtype), d = x->cfg.head_dim;
    size_t planes = x->cfg.batch * x->cfg.heads, kplanes = x->cfg.batch * x->cfg.kv_heads;
    uint64_t R = s->R, C = s->C;
    float *D = exec_dsum(x);
    /* q_do_allgather: Q | dO (storage type) | LSE | D (f32) of every row member */
    uint64_t *bytes = kn_xmalloc((R > C ? R : C) * sizeof *bytes, "sizes");
    char **b = kn_xmalloc((R > C ? R : C) * sizeof *b, "blocks");
    for (uint64_t j = 0; j < C; j++) {
        size_t qe = q_elems(x, s->row.count[j]), se = planes * s->row.count[j];
        bytes[j] = 2 * qe * e + 2 * se * sizeof(float);
        b[j] = xd_alloc(x, bytes[j], "Q|dO|LSE|D block");
    }
    size_t qe = q_elems(x, x->n), se = planes * x->n;
    dv->copy(b[s->c], x->q.data, qe * e);
    dv->copy(b[s->c] + qe * e, x->d_o.data, qe * e);
    dv->copy(b[s->c] + 2 * qe * e, x->lse.data, se * sizeof(float));
    dv->copy(b[s->c] + 2 * qe * e + se * sizeof(float), D, se * sizeof(float));
    comm_phase_begin(&x->comm, PH_A2D_Q_DO_ALLGATHER);
    comm_ring_allgather(&x->comm, x->comm.row, (void **)b, bytes);
    comm_phase_end(&x->comm);
    size_t nq = s->row.total;
    kn_tensor qg, dog;
    xd_tensor(x, &qg, x->dtype, q_elems(x, nq), "Q gathered");
    xd_tensor(x, &dog, x->dtype, q_elems(x, nq), "dO gathered");
    float *lseg = xd_alloc(x, planes * nq * sizeof(float), "LSE gathered");
    float *Dg = xd_alloc(x, planes * nq * sizeof(float), "D gathered");
    for (uint64_t j = 0; j < C; j++) {
        size_t je = q_elems(x, s->row.count[j]), js = planes * s->row.count[j];
        gather_in(x, qg.data, b[j], &s->row, j, planes, d, e);
        gather_in(x, dog.data, b[j] + je * e, &s->row, j, planes, d, e);
        gather_in(x, lseg, b[j] + 2 * je * e, &s->row, j, planes, 1, sizeof(float));
        gather_in(x, Dg, b[j] + 2 * je * e + js * sizeof(float), &s->row, j, planes, 1,
                  sizeof(float));
    }
    for (uint64_t j = 0; j < C; j++) xd_free(x, b[j]);
    /* kv_allgather_bwd */
    kn_tensor kg, vg;
    gather_kv(x, s, PH_A2D_KV_ALLGATHER_BWD, &kg, &vg);
    /* attention_bwd */
    size_t nk = s->col.total;
    float *dqg = xd_alloc(x, q_elems(x, nq) * sizeof(float), "dQ gathered");
    float *dkg = xd_alloc(x, kv_elems(x, nk) * sizeof(float), "dK gathered");
    float *dvg = xd_alloc(x, kv_elems(x, nk) * sizeof(float), "dV gathered");
    dv->zero(dqg, q_elems(x, nq) * sizeof(float));
    dv->zero(dkg, kv_elems(x, nk) * sizeof(float));
    dv->zero(dvg, kv_elems(x, nk) * sizeof(float));
    comm_phase_begin(&x->comm, PH_A2D_ATTENTION_BWD);
    dv->tile_backward(x, x->cfg.heads, x->cfg.kv_heads, qg.data, dog.data, lseg, Dg, &s->row.pos,
                      kg.data, vg.data, &s->col.pos, dqg, dkg, dvg);
    comm_phase_end(&x->comm);
    /* dq_reduce_scatter (row, sum, f32) */
    for (uint64_t j = 0; j < C; j++) {
        bytes[j] = q_elems(x, s->row.count[j]) * sizeof(float);
        b[j] = xd_alloc(x, bytes[j], "dQ block");
        gather_out(x, b[j], dqg, &s->row, j, planes, d, sizeof(float));
    }
    reduce_ctx rq = {x, s, 0};
    comm_phase_begin(&x->comm, PH_A2D_DQ_REDUCE_SCATTER);
    comm_ring_reduce_scatter(&x->comm, x->comm.row, (void **)b, bytes, sum_floats, &rq);
    comm_phase_end(&x->comm);
    dv->to_storage((int)x->dtype, (const float *)b[s->c], x->dq.data, qe);
    dv->sync();
    for (uint64_t j = 0; j < C; j++) xd_free(x, b[j]);
    /* dkv_reduce_scatter (column, sum, f32): dK | dV of every column member */
    for (uint64_t i = 0; i < R; i++) {
        size_t ke = kv_elems(x, s->col.count[i]);
        bytes[i] = 2 * ke * sizeof(float);
        b[i] = xd_alloc(x, bytes[i], "dK|dV block");
        gather_out(x, b[i], dkg, &s->col, i, kplanes, d, sizeof(float));
        gather_out(x, b[i] + ke * sizeof(float), dvg, &s->col, i, kplanes, d, sizeof(float));
    }
    reduce_ctx rk = {x, s, 1};
    comm_phase_begin(&x->comm, PH_A2D_DKV_REDUCE_SCATTER);
    comm_ring_reduce_scatter(&x->comm, x->comm.col, (void **)b, bytes, sum_floats, &rk);
    comm_phase_end(&x->comm);
    /* dkv_transpose: dK|dV of class rC + c (storage type) back to rank rC + c */
    size_t te = kv_elems(x, s->nt), oe = kv_elems(x, x->n);
    char *sendt = xd_alloc(x, 2 * te * e, "dK|dV");
    dv->to_storage((int)x->dtype, (const float *)b[s->r], sendt, 2 * te);
    char *recv = xd_alloc(x, 2 * oe * e, "dK|dV");
    uint64_t from = a2d_transpose_dest((uint64_t)x->rank, R, C);
    comm_phase_begin(&x->comm, PH_A2D_DKV_TRANSPOSE);
    if (s->kv_class == (uint64_t)x->rank)
        dv->copy(recv, sendt, 2 * oe * e);
    else
        comm_sendrecv(&x->comm, x->comm.world, (int)s->kv_class, sendt, 2 * te * e, (int)from, recv,
                      2 * oe * e);
    comm_phase_end(&x->comm);
    dv->copy(x->dk.data, recv, oe * e);
    dv->copy(x->dv.data, recv + oe * e, oe * e);
    dv->sync();
    for (uint64_t i = 0; i < R; i++) xd_free(x, b[i]);
    free(b), free(bytes);
    xd_free(x, recv), xd_free(x, sendt), xd_free(x, D), xd_free(x, lseg), xd_free(x, Dg);
    xd_free(x, dqg), xd_free(x, dkg), xd_free(x, dvg);
    xd_tensor_free(x, &qg), xd_tensor_free(x, &dog);
    xd_tensor_free(x, &kg), xd_tensor_free(x, &vg);
}

static void a2d_release(exec_ctx *x)
{
    a2d_state *s = x->saved;
    if (!s) return;
    gather_map_free(x, &s->row);
    gather_map_free(x, &s->col);
    xd_free(x, s->kvt);
    free(s);
    x->saved = NULL;
}

const exec_algo exec_a2d_no = {a2d_no_forward, a2d_backward, a2d_release};
const exec_algo exec_a2d_o = {a2d_o_forward, a2d_backward, a2d_release};
