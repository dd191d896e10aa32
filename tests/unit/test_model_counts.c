/* test_model_counts.c - the model's per-rank, per-phase bytes and messages (the descriptors'
 * closed-form sums, models/algo_<name>.c) against an independent message-by-message simulation
 * of each algorithm's protocol (docs/model.md), for P in {1, 2, 4, 9, 16} and non-square grids
 * (and every group size of the hybrid), every algorithm and pass, causal and not, GQA and not,
 * ragged N; plus literal hand-computed values. */
#include <stdlib.h>
#include <string.h>

#include "algo_a2d.h"
#include "algo_hybrid.h"
#include "algo_ring.h"
#include "algo_ulysses.h"
#include "comm_counts.h"
#include "test_util.h"

typedef struct {
    uint64_t sent, recv, ms, mr;
} acc;

static void msg(acc *a, uint64_t from, uint64_t to, uint64_t bytes)
{
    if (from == to) return;
    a[from].sent += bytes, a[from].ms++;
    a[to].recv += bytes, a[to].mr++;
}

/* Token owners straight from the layout definitions. */
static void ring_lens(part_layout layout, uint64_t N, uint64_t P, uint64_t *L)
{
    memset(L, 0, P * sizeof *L);
    if (layout == LAYOUT_STRIPED) {
        for (uint64_t t = 0; t < N; t++) L[t % P]++;
        return;
    }
    uint64_t parts = layout == LAYOUT_ZIGZAG ? 2 * P : P;
    uint64_t t = 0;
    for (uint64_t k = 0; k < parts; k++) {
        uint64_t size = N / parts + (k < N % parts ? 1 : 0);
        uint64_t owner = layout == LAYOUT_ZIGZAG && k >= P ? 2 * P - 1 - k : k;
        L[owner] += size;
        t += size;
    }
    (void)t;
}

/* Ring all-gather / shift over members m[0..g-1] with block sizes B (bytes), g-1 steps. */
static void sim_allgather(acc *a, const uint64_t *m, const uint64_t *B, uint64_t g)
{
    uint64_t *have = malloc(g * sizeof *have), *next = malloc(g * sizeof *next);
    for (uint64_t j = 0; j < g; j++) have[j] = j;
    for (uint64_t s = 0; s + 1 < g; s++) {
        for (uint64_t j = 0; j < g; j++) {
            msg(a, m[j], m[(j + 1) % g], B[have[j]]);
            next[(j + 1) % g] = have[j];
        }
        memcpy(have, next, g * sizeof *have);
    }
    free(have);
    free(next);
}

/* Ring reduce-scatter: step s, member j sends the running partial of block j-s-1. */
static void sim_reduce_scatter(acc *a, const uint64_t *m, const uint64_t *B, uint64_t g)
{
    for (uint64_t s = 0; s + 1 < g; s++)
        for (uint64_t j = 0; j < g; j++) msg(a, m[j], m[(j + 1) % g], B[(j + 2 * g - s - 1) % g]);
}

/* Simulated counts of every phase, into sim[F][P]. */
static void simulate(const am_config *c, acc sim[][64])
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    am_token_bytes t = am_token_sizes(c);
    uint64_t P = c->P, N = c->N, R = c->rows, C = c->cols;
    uint64_t L[64], n[64], m[64], B[64];
    for (uint64_t x = 0; x < P; x++) n[x] = 0;
    for (uint64_t tok = 0; tok < N; tok++) n[tok % P]++; /* Attention2D classes */
    for (int f = 0; f < F; f++) {
        acc *a = sim[f];
        memset(a, 0, 64 * sizeof(acc));
        am_phase_id id = ph[f]->id;
        if (c->algo == ALGO_RING) {
            ring_lens(c->layout, N, P, L);
            for (uint64_t j = 0; j < P; j++) m[j] = j;
            if (id == PH_RING_KV_STEPS) {
                for (uint64_t j = 0; j < P; j++) B[j] = 2 * t.kv * L[j];
                sim_allgather(a, m, B, P);
            } else if (id == PH_RING_KV_GRAD_STEPS) {
                for (uint64_t j = 0; j < P; j++) B[j] = (2 * t.kv + 2 * t.dkv32) * L[j];
                sim_allgather(a, m, B, P);
            } else { /* after P-1 steps rank k holds the accumulator of block k+1: home */
                for (uint64_t k = 0; k < P; k++)
                    msg(a, k, (k + 1) % P, 2 * t.dkv32 * L[(k + 1) % P]);
            }
        } else if (c->algo == ALGO_HYBRID) {
            /* group k = ranks k u .. k u + u - 1 holds ring shard k of the layout over r groups,
             * member i its i-th balanced block; member i holds K/V head block i of u */
            uint64_t u = R, r = C, T[64], Lm[64], hk[64], gq = c->heads / c->kv_heads;
            uint64_t per = c->batch * c->head_dim * am_elem_bytes(c);
            ring_lens(c->layout, N, r, T);
            for (uint64_t x = 0; x < P; x++) {
                uint64_t g = x / u, i = x % u;
                Lm[x] = T[g] / u + (i < T[g] % u);
                hk[x] = c->kv_heads / u + (i < c->kv_heads % u);
            }
            if (id == PH_HYB_QKV_ALL_TO_ALL || id == PH_HYB_O_ALL_TO_ALL ||
                id == PH_HYB_DO_ALL_TO_ALL || id == PH_HYB_DQKV_ALL_TO_ALL) {
                for (uint64_t x = 0; x < P; x++)
                    for (uint64_t y = (x / u) * u; y < (x / u + 1) * u; y++) {
                        if (id == PH_HYB_QKV_ALL_TO_ALL)
                            msg(a, x, y, per * Lm[x] * (gq * hk[y] + 2 * hk[y]));
                        if (id == PH_HYB_O_ALL_TO_ALL) msg(a, x, y, per * Lm[y] * gq * hk[x]);
                        if (id == PH_HYB_DO_ALL_TO_ALL) msg(a, x, y, per * Lm[x] * gq * hk[y]);
                        if (id == PH_HYB_DQKV_ALL_TO_ALL)
                            msg(a, x, y, per * Lm[y] * (gq * hk[x] + 2 * hk[x]));
                    }
            } else {
                for (uint64_t i = 0; i < u; i++) { /* the ring of the i-th members */
                    uint64_t kv = 2 * c->batch * hk[i] * c->head_dim;
                    uint64_t tok = id == PH_HYB_RING_KV_STEPS ? kv * am_elem_bytes(c)
                                                              : kv * am_elem_bytes(c) + kv * 4;
                    for (uint64_t k = 0; k < r; k++) m[k] = i + k * u;
                    if (id == PH_HYB_RING_GRAD_RETURN) {
                        for (uint64_t k = 0; k < r; k++)
                            msg(a, m[k], m[(k + 1) % r], kv * 4 * T[(k + 1) % r]);
                    } else {
                        for (uint64_t k = 0; k < r; k++) B[k] = tok * T[k];
                        sim_allgather(a, m, B, r);
                    }
                }
            }
        } else if (c->algo == ALGO_ULYSSES) {
            uint64_t hk[64], g = c->heads / c->kv_heads,
                             per = c->batch * c->head_dim * am_elem_bytes(c);
            ring_lens(LAYOUT_CONTIGUOUS, N, P, L);
            for (uint64_t j = 0; j < P; j++) hk[j] = 0;
            for (uint64_t k = 0, h = 0; k < P; k++) /* balanced blocks of K/V heads */
                for (uint64_t q = 0; q < c->kv_heads / P + (k < c->kv_heads % P); q++, h++) hk[k]++;
            for (uint64_t i = 0; i < P; i++)
                for (uint64_t j = 0; j < P; j++) {
                    if (id == PH_ULY_QKV_ALL_TO_ALL)
                        msg(a, i, j, per * L[i] * (g * hk[j] + 2 * hk[j]));
                    if (id == PH_ULY_O_ALL_TO_ALL) msg(a, i, j, per * L[j] * g * hk[i]);
                    if (id == PH_ULY_DO_ALL_TO_ALL) msg(a, i, j, per * L[i] * g * hk[j]);
                    if (id == PH_ULY_DQKV_ALL_TO_ALL)
                        msg(a, i, j, per * L[j] * (g * hk[i] + 2 * hk[i]));
                }
        } else { /* Attention2D: device (r, c) = rank r + c R; K/V class of (r, c) after the
                    transpose is r C + c */
            if (id == PH_A2D_KV_TRANSPOSE || id == PH_A2D_DKV_TRANSPOSE) {
                int fwd = id == PH_A2D_KV_TRANSPOSE;
                for (uint64_t r = 0; r < R; r++)
                    for (uint64_t cc = 0; cc < C; cc++) {
                        uint64_t dev = r + cc * R, y = r * C + cc;
                        if (fwd)
                            msg(a, y, dev, 2 * t.kv * n[y]);
                        else
                            msg(a, dev, y, 2 * t.kv * n[y]);
                    }
                continue;
            }
            if (id == PH_A2D_ATTENTION || id == PH_A2D_ATTENTION_BWD) continue;
            int row = id == PH_A2D_Q_ALLGATHER || id == PH_A2D_Q_ROW_RING ||
                      id == PH_A2D_Q_DO_ALLGATHER || id == PH_A2D_PARTIAL_REDUCE_SCATTER ||
                      id == PH_A2D_DQ_REDUCE_SCATTER;
            int reduce = id == PH_A2D_PARTIAL_REDUCE_SCATTER || id == PH_A2D_DQ_REDUCE_SCATTER ||
                         id == PH_A2D_DKV_REDUCE_SCATTER;
            uint64_t per_tok = 0;
            if (id == PH_A2D_Q_ALLGATHER) per_tok = t.q;
            if (id == PH_A2D_KV_ALLGATHER || id == PH_A2D_KV_ALLGATHER_BWD ||
                id == PH_A2D_KV_COLUMN_RING)
                per_tok = 2 * t.kv;
            if (id == PH_A2D_PARTIAL_REDUCE_SCATTER) per_tok = t.partial;
            if (id == PH_A2D_Q_DO_ALLGATHER) per_tok = 2 * t.q + 2 * t.stat;
            if (id == PH_A2D_DQ_REDUCE_SCATTER) per_tok = t.dq32;
            if (id == PH_A2D_DKV_REDUCE_SCATTER) per_tok = 2 * t.dkv32;
            uint64_t groups = row ? R : C, g = row ? C : R;
            for (uint64_t k = 0; k < groups; k++) {
                for (uint64_t j = 0; j < g; j++) {
                    m[j] = row ? k + j * R : j + k * R;
                    uint64_t cls = row ? m[j] : j * C + k;
                    B[j] = per_tok * n[cls];
                }
                if (id == PH_A2D_Q_ROW_RING) {
                    uint64_t Bq[64];
                    for (uint64_t j = 0; j < g; j++)
                        Bq[j] = t.q * n[m[j]], B[j] = t.partial * n[m[j]];
                    sim_allgather(a, m, Bq, g);
                    /* steps 2..g-1: member j sends the partial of Q shard j-s+1; then home */
                    for (uint64_t s = 2; s < g; s++)
                        for (uint64_t j = 0; j < g; j++)
                            msg(a, m[j], m[(j + 1) % g], B[(j + g - s + 1) % g]);
                    if (g > 1)
                        for (uint64_t j = 0; j < g; j++)
                            msg(a, m[j], m[(j + 1) % g], B[(j + 1) % g]);
                } else if (reduce) {
                    sim_reduce_scatter(a, m, B, g);
                } else {
                    sim_allgather(a, m, B, g);
                }
            }
        }
    }
}

static long configs;

static void compare(const am_config *c)
{
    static acc sim[AM_MAX_PHASES][64];
    const am_phase_desc *ph[AM_MAX_PHASES];
    char err[300];
    if (am_validate(c, err, sizeof err)) return;
    int F = am_phases(c, ph);
    simulate(c, sim);
    configs++;
    for (uint64_t x = 0; x < c->P; x++) {
        am_count cnt[AM_MAX_PHASES];
        am_rank_counts(c, x, cnt);
        for (int f = 0; f < F; f++) {
            acc *s = &sim[f][x];
            CHECK(cnt[f].bytes_sent == s->sent && cnt[f].bytes_recv == s->recv &&
                      cnt[f].msgs_sent == s->ms && cnt[f].msgs_recv == s->mr,
                  "%s %s %s P=%llu %llux%llu N=%llu b=%llu h=%llu hkv=%llu causal=%d rank %llu "
                  "phase %s: model sent %llu recv %llu msgs %llu/%llu, simulation %llu %llu "
                  "%llu/%llu",
                  am_algo_name(c->algo), am_layout_names[c->layout], am_pass_names[c->pass],
                  (unsigned long long)c->P, (unsigned long long)c->rows,
                  (unsigned long long)c->cols, (unsigned long long)c->N,
                  (unsigned long long)c->batch, (unsigned long long)c->heads,
                  (unsigned long long)c->kv_heads, c->causal, (unsigned long long)x, ph[f]->name,
                  (unsigned long long)cnt[f].bytes_sent, (unsigned long long)cnt[f].bytes_recv,
                  (unsigned long long)cnt[f].msgs_sent, (unsigned long long)cnt[f].msgs_recv,
                  (unsigned long long)s->sent, (unsigned long long)s->recv,
                  (unsigned long long)s->ms, (unsigned long long)s->mr);
        }
    }
}

static uint64_t sent(const am_config *c, uint64_t rank, am_phase_id phase)
{
    am_count cnt[AM_MAX_PHASES];
    int f = am_phase_index(c, phase);
    am_rank_counts(c, rank, cnt);
    return f < 0 ? ~0ull : cnt[f].bytes_sent;
}

int main(void)
{
    /* literal values: b = 1, h = h_kv = 1, d = 2, bf16: a K or V token is 4 bytes, a Q token 4,
     * a partial (o, m, l in f32) 1 x (4 x 2 + 8) = 16 bytes */
    am_config lit = {ALGO_RING, LAYOUT_CONTIGUOUS, AM_FWD, 4, 1, 4, 8, 1, 1, 1, 2, 0, 2};
    CHECK(sent(&lit, 0, PH_RING_KV_STEPS) == 48, "ring P=4 N=8: 3 steps x 2 tokens x (4 + 4) B");
    lit.N = 9; /* blocks 3,2,2,2: rank 0 sends all but rank 1's block: 7 tokens x 8 B */
    CHECK(sent(&lit, 0, PH_RING_KV_STEPS) == 56, "ring ragged: %llu",
          (unsigned long long)sent(&lit, 0, PH_RING_KV_STEPS));
    CHECK(sent(&lit, 3, PH_RING_KV_STEPS) == 48, "ring ragged rank 3: all but rank 0's 3 tokens");
    lit.N = 8, lit.pass = AM_BWD; /* K|V (8 B) + dK|dV f32 (16 B) per token */
    CHECK(sent(&lit, 2, PH_RING_KV_GRAD_STEPS) == 3 * 2 * 24, "ring bwd grad steps");
    CHECK(sent(&lit, 2, PH_RING_GRAD_RETURN) == 2 * 16, "ring bwd return: 2 tokens of dK|dV f32");
    am_config a2 = {ALGO_A2D_NO, LAYOUT_CONTIGUOUS, AM_FWD, 4, 2, 2, 8, 1, 1, 1, 2, 0, 2};
    CHECK(sent(&a2, 0, PH_A2D_KV_TRANSPOSE) == 0 && sent(&a2, 3, PH_A2D_KV_TRANSPOSE) == 0,
          "diagonal devices keep their K/V");
    CHECK(sent(&a2, 1, PH_A2D_KV_TRANSPOSE) == 16, "device (1,0) sends 2 tokens of K|V");
    CHECK(sent(&a2, 1, PH_A2D_Q_ALLGATHER) == 8, "row of 2: one step of 2 Q tokens");
    CHECK(sent(&a2, 1, PH_A2D_KV_ALLGATHER) == 16, "column of 2: one step of 2 K|V tokens");
    CHECK(sent(&a2, 1, PH_A2D_PARTIAL_REDUCE_SCATTER) == 32, "one step of 2 partial rows of 16 B");
    CHECK(sent(&a2, 1, PH_A2D_ATTENTION) == 0, "local attention sends nothing");
    am_config ul = {ALGO_ULYSSES, LAYOUT_CONTIGUOUS, AM_FWD, 2, 1, 2, 8, 1, 2, 2, 2, 0, 2};
    /* rank 0: 4 tokens; sends rank 1's 1 Q head + 2 x 1 K/V head: 4 x 3 heads x 4 B */
    CHECK(sent(&ul, 0, PH_ULY_QKV_ALL_TO_ALL) == 48, "ulysses qkv: %llu",
          (unsigned long long)sent(&ul, 0, PH_ULY_QKV_ALL_TO_ALL));
    CHECK(sent(&ul, 0, PH_ULY_O_ALL_TO_ALL) == 16, "ulysses o: rank 1's 4 tokens of my 1 head");
    /* hybrid P = 4, u = 2: groups {0, 1} and {2, 3} hold tokens 0-3 and 4-7 (contiguous over 2),
     * members 2 tokens each; h = h_kv = 2 (one head per member), d = 2, bf16: a token of a head
     * is 4 bytes */
    am_config hy = {ALGO_HYBRID, LAYOUT_CONTIGUOUS, AM_TRAIN, 4, 2, 2, 8, 1, 2, 2, 2, 0, 2};
    CHECK(sent(&hy, 0, PH_HYB_QKV_ALL_TO_ALL) == 2 * 3 * 4,
          "hybrid qkv: my 2 tokens of member 1's Q, K, V head");
    CHECK(sent(&hy, 0, PH_HYB_RING_KV_STEPS) == 4 * 2 * 4,
          "hybrid ring: one step of the group's 4 tokens of my K and V head");
    CHECK(sent(&hy, 3, PH_HYB_RING_GRAD_RETURN) == 4 * 2 * 8,
          "hybrid return: group 0's 4 tokens of my dK, dV head in f32");
    CHECK(sent(&hy, 1, PH_HYB_O_ALL_TO_ALL) == 2 * 4, "hybrid o: member 0's 2 tokens of my head");

    /* every algorithm and pass against the simulation */
    const uint64_t procs[] = {1, 2, 4, 9, 16, 6, 8, 12};
    for (size_t pi = 0; pi < sizeof procs / sizeof procs[0]; pi++) {
        uint64_t P = procs[pi];
        const uint64_t ns[] = {P, 3 * P, 3 * P + 1, 5 * P + P / 2 + 2, 64 + 7};
        for (size_t ni = 0; ni < 5; ni++)
            for (int algo = 0; algo < AM_NUM_ALGOS; algo++)
                for (int pass = 0; pass < 3; pass++)
                    for (int causal = 0; causal < 2; causal++)
                        for (int gqa = 0; gqa < 2; gqa++)
                            for (int layout = 0; layout < 3; layout++) {
                                if (!am_algo_desc_of((am_algo)algo)->uses_layout && layout)
                                    continue;
                                uint64_t hk = algo == ALGO_ULYSSES ? P + 1 : 2;
                                am_config c = {(am_algo)algo,
                                               (part_layout)layout,
                                               (am_pass)pass,
                                               P,
                                               1,
                                               P,
                                               ns[ni],
                                               1 + (uint64_t)gqa,
                                               hk * (gqa ? 2 : 1),
                                               hk,
                                               8,
                                               causal,
                                               gqa ? 2 : 0};
                                if (algo == ALGO_A2D_NO || algo == ALGO_A2D_O ||
                                    algo == ALGO_HYBRID) {
                                    for (uint64_t r = 1; r <= P; r++) /* every grid of P */
                                        if (P % r == 0) {
                                            c.rows = r, c.cols = P / r;
                                            if (algo == ALGO_HYBRID) /* K/V heads >= u */
                                                c.kv_heads = r + 1,
                                                c.heads = c.kv_heads * (gqa ? 2 : 1);
                                            compare(&c);
                                        }
                                } else {
                                    compare(&c);
                                }
                            }
    }
    printf("test_model_counts: %ld configurations simulated\n", configs);
    return test_finish("test_model_counts");
}
