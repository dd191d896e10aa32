/* time_model.c - predicted phase times (see time_model.h, docs/model.md). */
#include "time_model.h"

#include <stdlib.h>
#include <string.h>

const char *const am_term_names[] = {"latency", "bandwidth", "compute", NULL};

/* ---- links ---------------------------------------------------------------------------------- */

static int is_inter(const machine *m, uint64_t a, uint64_t b)
{
    return rank_node(a, m->gpus_per_node) != rank_node(b, m->gpus_per_node);
}

/* Ring successor of rank x within its group. */
static uint64_t group_next(const am_config *c, am_group g, uint64_t x)
{
    uint64_t R = c->rows;
    switch (g) {
    case GROUP_WORLD:
        return ring_next(x, c->P);
    case GROUP_ROW:
        return grid_rank(grid_row(x, R), (grid_col(x, R) + 1) % c->cols, R);
    case GROUP_COL:
        return grid_rank((grid_row(x, R) + 1) % R, grid_col(x, R), R);
    default:
        return x;
    }
}

/* Where rank x sends in a one-message phase (the transposes), or x itself for none. */
static uint64_t permute_peer(const am_config *c, const char *name, uint64_t x)
{
    uint64_t R = c->rows, C = c->cols;
    if (strcmp(name, "kv_transpose") == 0) return a2d_transpose_dest(x, R, C);
    return a2d_kv_class(grid_row(x, R), grid_col(x, R), C); /* dkv_transpose */
}

typedef struct {
    uint64_t *nic_load; /* crossing senders per NIC */
    uint64_t nics;
} nic_count;

static uint64_t nic_of(const machine *m, uint64_t x)
{
    uint64_t per_node = (m->gpus_per_node + m->gpus_per_nic - 1) / m->gpus_per_nic;
    return rank_node(x, m->gpus_per_node) * per_node + (x % m->gpus_per_node) / m->gpus_per_nic;
}

/* Time of one synchronous step in which every rank x sends `bytes` to dest(x): the slowest
 * rank, with NIC sharing among the ranks that cross nodes in this step. Sets *inter. */
typedef uint64_t (*dest_fn)(const am_config *c, const void *ctx, uint64_t x);

static double step_time(const am_config *c, const machine *m, dest_fn dest, const void *ctx,
                        double bytes, double *alpha_part, double *bw_part, int *inter)
{
    uint64_t P = c->P;
    uint64_t nics = nic_of(m, P - 1) + 1;
    uint64_t *load = calloc(nics, sizeof *load);
    for (uint64_t x = 0; x < P; x++) {
        uint64_t y = dest(c, ctx, x);
        if (y != x && rank_node(x, m->gpus_per_node) != rank_node(y, m->gpus_per_node))
            load[nic_of(m, x)]++;
    }
    double worst = 0.0;
    *alpha_part = *bw_part = 0.0;
    for (uint64_t x = 0; x < P; x++) {
        uint64_t y = dest(c, ctx, x);
        if (y == x) continue;
        int tier = is_inter(m, x, y) ? TIER_INTER : TIER_INTRA;
        double t = machine_message_s(m, tier, bytes, (double)load[nic_of(m, x)]);
        if (tier == TIER_INTER) *inter = 1;
        if (t > worst) { /* split into latency and bandwidth parts for the critical path */
            worst = t;
            *alpha_part = m->break_bytes[tier] > 0 && bytes >= m->break_bytes[tier]
                              ? m->alpha_large_s[tier]
                              : m->alpha_s[tier];
            *bw_part = t - *alpha_part;
        }
    }
    free(load);
    return worst;
}

static uint64_t dest_group(const am_config *c, const void *ctx, uint64_t x)
{
    return group_next(c, *(const am_group *)ctx, x);
}

static uint64_t dest_permute(const am_config *c, const void *ctx, uint64_t x)
{
    return permute_peer(c, (const char *)ctx, x);
}

static uint64_t dest_shift(const am_config *c, const void *ctx, uint64_t x)
{
    return (x + *(const uint64_t *)ctx) % c->P;
}

void am_rank_inter_counts(const am_config *c, const machine *m, uint64_t x, am_count *out)
{
    am_phase ph[AM_MAX_PHASES];
    am_count all[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    am_rank_counts(c, x, all);
    for (int f = 0; f < F; f++) {
        const am_phase *p = &ph[f];
        memset(&out[f], 0, sizeof out[f]);
        if (p->kind == PH_COMPUTE || all[f].msgs_sent == 0) continue;
        if (p->kind == PH_ALLTOALL) { /* round k sends to x + k */
            for (uint64_t k = 1; k < c->P; k++) {
                uint64_t y = (x + k) % c->P;
                if (!is_inter(m, x, y)) continue;
                out[f].bytes_sent += am_alltoall_bytes(c, p, x, y);
                out[f].msgs_sent++;
            }
            continue;
        }
        /* every message of a ring phase goes to the successor; a transpose's to its partner */
        uint64_t y =
            p->kind == PH_PERMUTE ? permute_peer(c, p->name, x) : group_next(c, p->group, x);
        if (is_inter(m, x, y)) out[f] = all[f], out[f].bytes_recv = out[f].msgs_recv = 0;
    }
}

/* ---- compute -------------------------------------------------------------------------------- */

/* Visible query-key pairs of an nq x nk tile of the busiest rank, per (batch, head). */
static double tile_pairs(int causal, double nq, double nk, int diagonal)
{
    if (!causal) return nq * nk;
    return diagonal ? nq * (nq + 1) / 2 : nq * nk / 2 + nq / 2;
}

static double ring_step_pairs(const am_config *c, uint64_t s)
{
    uint64_t P = c->P, N = c->N;
    double n = (double)((N + P - 1) / P);
    if (!c->causal) return n * n;
    switch (c->layout) {
    case LAYOUT_CONTIGUOUS:
        return s == 0 ? n * (n + 1) / 2 : n * n; /* some rank: full block */
    case LAYOUT_STRIPED:
        return n * (n + 1) / 2;
    case LAYOUT_ZIGZAG: {
        double h = (double)((N + 2 * P - 1) / (2 * P));
        return s == 0 ? 2 * h * h + h : 2 * h * h;
    }
    }
    return n * n;
}

/* FLOPs and compulsory bytes of a tile of nq query rows against nk keys for `heads` query heads
 * (and heads / g K/V heads), busiest rank. */
static double tile_time(const am_config *c, const machine *m, double pairs, double nq, double nk,
                        double heads, int bwd)
{
    double e = (double)am_elem_bytes(c), d = (double)c->head_dim, b = (double)c->batch;
    double g = (double)(c->heads / c->kv_heads);
    double flops = (bwd ? 10.0 : 4.0) * d * pairs * b * heads;
    double bytes = e * b * d * (heads * nq * (bwd ? 4 : 2) + (heads / g) * nk * (bwd ? 4 : 2));
    double tc = flops / (m->peak_flops[c->dtype] * m->sustained_fraction *
                         (bwd ? m->backward_rate_ratio : 1.0));
    double tm = bytes / m->hbm_bytes_per_s;
    return m->kernel_overhead_s + (tc > tm ? tc : tm);
}

double am_phase_flops(const am_config *c, int f)
{
    am_phase ph[AM_MAX_PHASES];
    am_phases(c, ph);
    double d = (double)c->head_dim, b = (double)c->batch, h = (double)c->heads;
    double per = (ph[f].part == AM_BWD ? 10.0 : 4.0) * d * b;
    uint64_t P = c->P, N = c->N;
    if (ph[f].kind != PH_COMPUTE && !ph[f].overlap) return 0.0;
    if (c->algo == ALGO_ULYSSES) {
        double hl = (double)((c->kv_heads + P - 1) / P * (c->heads / c->kv_heads));
        return per * hl * tile_pairs(c->causal, (double)N, (double)N, 1);
    }
    double nq = (double)((N + c->rows - 1) / c->rows), nk = (double)((N + c->cols - 1) / c->cols);
    if (c->algo == ALGO_RING) {
        double sum = 0.0;
        for (uint64_t s = 0; s < P; s++) sum += ring_step_pairs(c, s);
        return per * h * sum;
    }
    return per * h * tile_pairs(c->causal, nq, nk, c->rows == c->cols);
}

/* ---- phases --------------------------------------------------------------------------------- */

typedef struct {
    double lat, bw, comp;
} parts;

static void add_comm(parts *p, double alpha, double bw)
{
    p->lat += alpha, p->bw += bw;
}

void am_predict_time(const am_config *c, const machine *m, am_time *out)
{
    am_phase ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    memset(out, 0, sizeof *out);
    out->F = F;
    parts total = {0, 0, 0};
    uint64_t P = c->P, N = c->N, R = c->rows, C = c->cols;
    double h = (double)c->heads;
    for (int f = 0; f < F; f++) {
        const am_phase *p = &ph[f];
        int bwd = p->part == AM_BWD, inter = 0;
        double msg = (double)am_phase_max_message(c, f), a = 0, bwt = 0, t = 0;
        parts pp = {0, 0, 0};
        if (p->kind == PH_COMPUTE) {
            if (c->algo == ALGO_ULYSSES) {
                double hl = (double)((c->kv_heads + P - 1) / P * (c->heads / c->kv_heads));
                t = tile_time(c, m, tile_pairs(c->causal, (double)N, (double)N, 1), (double)N,
                              (double)N, hl, bwd);
            } else {
                double nq = (double)((N + R - 1) / R), nk = (double)((N + C - 1) / C);
                t = tile_time(c, m, tile_pairs(c->causal, nq, nk, R == C), nq, nk, h, bwd);
            }
            pp.comp = t;
        } else if (p->kind == PH_PERMUTE) {
            t = step_time(c, m, dest_permute, p->name, msg, &a, &bwt, &inter);
            add_comm(&pp, a, bwt);
        } else if (p->kind == PH_ALLTOALL) {
            for (uint64_t k = 1; k < P; k++) {
                double tk = step_time(c, m, dest_shift, &k, msg, &a, &bwt, &inter);
                t += tk;
                add_comm(&pp, a, bwt);
            }
        } else { /* PH_RING, PH_REDUCE, PH_RETURN */
            uint64_t g = p->group == GROUP_WORLD ? P : p->group == GROUP_ROW ? C : R;
            uint64_t steps = p->kind == PH_RETURN ? (g > 1) : g - 1;
            double n = (double)((N + P - 1) / P), nk_g = (double)((N + C - 1) / C);
            int row_ring = strcmp(p->name, "q_row_ring") == 0;
            double comm = 0.0;
            if (g > 1 && row_ring) {
                /* a Q shard and a partial cross each hop in the same step: bandwidth adds */
                am_token_bytes tb = am_token_sizes(c);
                comm = step_time(c, m, dest_group, &p->group, n * (double)(tb.q + tb.partial), &a,
                                 &bwt, &inter);
            } else if (g > 1) {
                comm = step_time(c, m, dest_group, &p->group, msg, &a, &bwt, &inter);
            }
            /* a reduce-scatter combines each received block into its own (merge operator or
             * sum) before passing it on: own and received read, own written, from memory */
            double red = p->kind == PH_REDUCE ? 3.0 * msg / m->hbm_bytes_per_s : 0.0;
            /* step s: communication (s < steps) overlapped with the compute of step s */
            for (uint64_t s = 0; s <= steps; s++) {
                if (red > 0 && s < steps) {
                    t += red;
                    pp.comp += red;
                }
                double comp = 0.0, cm = s < steps ? comm : 0.0;
                if (p->overlap && c->algo == ALGO_RING)
                    comp = tile_time(c, m, ring_step_pairs(c, s), n, n, h, bwd);
                else if (p->overlap && !row_ring) /* own Q shard against K/V block s */
                    comp = tile_time(c, m, tile_pairs(c->causal, n, n, 1), n, n, h, bwd);
                else if (row_ring && s < steps) /* a received Q shard against the gathered K/V */
                    comp = tile_time(c, m, tile_pairs(c->causal, n, nk_g, 0), n, nk_g, h, bwd);
                if (row_ring && s == steps && g > 1) { /* the last partial goes home */
                    am_token_bytes tb = am_token_sizes(c);
                    double a2, b2;
                    cm = step_time(c, m, dest_group, &p->group, n * (double)tb.partial, &a2, &b2,
                                   &inter);
                    t += cm;
                    add_comm(&pp, a2, b2);
                    continue;
                }
                if (comp >= cm) {
                    t += comp;
                    pp.comp += comp;
                } else {
                    t += cm;
                    add_comm(&pp, a, bwt);
                }
            }
        }
        out->phase_s[f] = t;
        if (pp.comp == 0 && pp.lat == 0 && pp.bw == 0) /* nothing happens: no term */
            out->phase_term[f] = p->kind == PH_COMPUTE ? TERM_COMPUTE : TERM_LATENCY;
        else
            out->phase_term[f] = pp.comp >= pp.lat + pp.bw ? TERM_COMPUTE
                                 : pp.lat >= pp.bw         ? TERM_LATENCY
                                                           : TERM_BANDWIDTH;
        if (inter) out->inter_node_phases |= 1ull << f;
        total.lat += pp.lat;
        total.bw += pp.bw;
        total.comp += pp.comp;
        out->total_s += t;
    }
    out->term_s[TERM_LATENCY] = total.lat;
    out->term_s[TERM_BANDWIDTH] = total.bw;
    out->term_s[TERM_COMPUTE] = total.comp;
    out->dominant = TERM_LATENCY;
    for (int k = 1; k < 3; k++)
        if (out->term_s[k] > out->term_s[out->dominant]) out->dominant = (am_term)k;
}
