/* time_model.c - predicted phase times (see time_model.h, docs/model.md). Every phase is
 * charged by the pattern its descriptor declares (algo.h); nothing here knows an algorithm.
 * A step costs O(P) (every rank's hop, with NIC sharing), so a phase costs O(P) too; an
 * all-to-all of g - 1 rounds would cost O(P g) that way, so its rounds are evaluated from the
 * node structure instead (alltoall_round) in O(1) each but for the 2 G rounds near the ends.
 */
#include "time_model.h"

#include <stdlib.h>
#include <string.h>

const char *const am_term_names[] = {"latency", "bandwidth", "compute", NULL};
int am_time_rank_by_rank = 0;

/* ---- links ---------------------------------------------------------------------------------- */

static uint64_t nic_of(const machine *m, uint64_t x)
{
    uint64_t per_node = (m->gpus_per_node + m->gpus_per_nic - 1) / m->gpus_per_nic;
    return rank_node(x, m->gpus_per_node) * per_node + (x % m->gpus_per_node) / m->gpus_per_nic;
}

/* Where rank x sends in one step of a phase. */
typedef struct {
    const am_config *c;
    const am_phase_desc *ph;
    uint64_t shift; /* ring steps: 1; all-to-all round k: k */
} step_dest;

static uint64_t dest_of(const step_dest *s, uint64_t x)
{
    if (s->ph->pattern == PAT_PAIRWISE) return s->ph->peer(s->c, x);
    am_group g = am_comm_group(s->c, s->ph->comm, x);
    return g.first + ((g.index + s->shift) % g.size) * g.stride;
}

/* The latency part of a message's time on a tier (the regime its size falls in). */
static double alpha_of(const machine *m, int tier, double bytes)
{
    return m->break_bytes[tier] > 0 && bytes >= m->break_bytes[tier] ? m->alpha_large_s[tier]
                                                                     : m->alpha_s[tier];
}

/* Time of one synchronous step in which every rank x sends `bytes` to dest(x): the slowest
 * rank (the first in rank order among equals), with NIC sharing among the ranks that cross
 * nodes in this step. Sets the latency and bandwidth parts of the slowest hop, and *inter. */
static double step_time(const machine *m, const step_dest *s, double bytes, double *alpha_part,
                        double *bw_part, int *inter)
{
    uint64_t P = s->c->P;
    uint64_t nics = nic_of(m, P - 1) + 1;
    uint64_t *load = calloc(nics, sizeof *load);
    for (uint64_t x = 0; x < P; x++) {
        uint64_t y = dest_of(s, x);
        if (y != x && rank_node(x, m->gpus_per_node) != rank_node(y, m->gpus_per_node))
            load[nic_of(m, x)]++;
    }
    double worst = 0.0;
    *alpha_part = *bw_part = 0.0;
    for (uint64_t x = 0; x < P; x++) {
        uint64_t y = dest_of(s, x);
        if (y == x) continue;
        int tier = rank_node(x, m->gpus_per_node) != rank_node(y, m->gpus_per_node) ? TIER_INTER
                                                                                    : TIER_INTRA;
        double t = machine_message_s(m, tier, bytes, (double)load[nic_of(m, x)]);
        if (tier == TIER_INTER) *inter = 1;
        if (t > worst) { /* split into latency and bandwidth parts for the critical path */
            worst = t;
            *alpha_part = alpha_of(m, tier, bytes);
            *bw_part = t - *alpha_part;
        }
    }
    free(load);
    return worst;
}

/* One node of an all-to-all round over g consecutive ranks (ranks x -> x + k mod g): the
 * slowest hop of its ranks, first in rank order. Local rank l of a node of `size` ranks sends
 * within the node iff l + k < size (no wrap) or l + k >= g (the wrap lands back in it). */
typedef struct {
    double t;
    int tier, inter;
} node_worst;

static node_worst alltoall_node(const machine *m, uint64_t size, uint64_t g, uint64_t k,
                                double bytes)
{
    uint64_t gpn = m->gpus_per_nic;
    node_worst w = {0.0, TIER_INTRA, 0};
    for (uint64_t l0 = 0; l0 < size; l0 += gpn) { /* one NIC: its crossing senders first */
        uint64_t end = l0 + gpn < size ? l0 + gpn : size, load = 0;
        for (uint64_t l = l0; l < end; l++) load += !(l + k < size || l + k >= g);
        for (uint64_t l = l0; l < end; l++) {
            int tier = l + k < size || l + k >= g ? TIER_INTRA : TIER_INTER;
            double t = machine_message_s(m, tier, bytes, (double)load);
            if (tier == TIER_INTER) w.inter = 1;
            if (t > w.t) w.t = t, w.tier = tier;
        }
    }
    return w;
}

/* An all-to-all round k over groups of g consecutive ranks whose node structure repeats from
 * group to group (regular_groups): the same result as step_time (bit for bit) in
 * O(G) (node 0 and a partial last node stand for all nodes), and O(1) where k leaves every
 * rank's node (G <= k <= g - G: every rank crosses, the fullest NIC is node 0's first). */
typedef struct {
    int have_middle;
    double middle_t, middle_a, middle_b;
} round_cache;

static double alltoall_round(const machine *m, uint64_t g, uint64_t k, double bytes,
                             round_cache *cache, double *alpha_part, double *bw_part, int *inter)
{
    uint64_t G = m->gpus_per_node, nodes = (g + G - 1) / G, last = g - (nodes - 1) * G;
    if (nodes >= 2 && k >= G && k <= g - G) {
        *inter = 1;
        if (!cache->have_middle) {
            uint64_t first_nic = m->gpus_per_nic < G ? m->gpus_per_nic : G;
            cache->middle_t = machine_message_s(m, TIER_INTER, bytes, (double)first_nic);
            cache->middle_a = alpha_of(m, TIER_INTER, bytes);
            cache->middle_b = cache->middle_t - cache->middle_a;
            cache->have_middle = 1;
        }
        *alpha_part = cache->middle_a, *bw_part = cache->middle_b;
        return cache->middle_t;
    }
    node_worst w = alltoall_node(m, nodes >= 2 ? G : last, g, k, bytes);
    if (nodes >= 2) { /* the last node (full or not) after all full ones */
        node_worst wl = alltoall_node(m, last, g, k, bytes);
        w.inter |= wl.inter;
        if (wl.t > w.t) w.t = wl.t, w.tier = wl.tier;
    }
    if (w.inter) *inter = 1;
    *alpha_part = alpha_of(m, w.tier, bytes);
    *bw_part = w.t - *alpha_part;
    return w.t;
}

/* Whether the groups of an all-to-all are g consecutive ranks with the node structure
 * alltoall_round assumes (the whole world, whole nodes, or inside one node); else the rounds
 * are evaluated rank by rank. */
static int regular_groups(const am_config *c, const machine *m, am_comm comm, uint64_t *g)
{
    am_group gr = am_comm_group(c, comm, 0);
    uint64_t G = m->gpus_per_node;
    *g = gr.size;
    if (gr.stride != 1) return 0;
    return gr.size == c->P || gr.size % G == 0 || G % gr.size == 0;
}

void am_rank_inter_counts(const am_config *c, const machine *m, uint64_t x, am_count *out)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    am_count all[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    am_rank_counts(c, x, all);
    uint64_t node = rank_node(x, m->gpus_per_node);
    for (int f = 0; f < F; f++) {
        memset(&out[f], 0, sizeof out[f]);
        if (ph[f]->pattern == PAT_NONE || all[f].msgs_sent == 0) continue;
        if (ph[f]->pattern == PAT_ALLTOALL) { /* round k sends to the k-th member after x */
            uint64_t g = am_comm_group(c, ph[f]->comm, x).size;
            for (uint64_t k = 1; k < g; k++) {
                step_dest s = {c, ph[f], k};
                uint64_t y = dest_of(&s, x);
                if (rank_node(y, m->gpus_per_node) == node) continue;
                out[f].bytes_sent += ph[f]->peer_bytes(c, x, y);
                out[f].msgs_sent++;
            }
            continue;
        }
        /* every message of a ring phase goes to the successor, a pairwise exchange's to its
         * partner */
        step_dest s = {c, ph[f], 1};
        uint64_t y = dest_of(&s, x);
        if (y != x && rank_node(y, m->gpus_per_node) != node)
            out[f].bytes_sent = all[f].bytes_sent, out[f].msgs_sent = all[f].msgs_sent;
    }
}

/* ---- compute -------------------------------------------------------------------------------- */

/* FLOPs and compulsory bytes of a tile of nq query rows against nk keys for `heads` query heads
 * (and heads / g K/V heads), busiest rank. */
static double tile_time(const am_config *c, const machine *m, const am_tile *tl, int bwd)
{
    double e = (double)am_elem_bytes(c), d = (double)c->head_dim, b = (double)c->batch;
    double g = (double)(c->heads / c->kv_heads), heads = tl->heads, nq = tl->nq, nk = tl->nk;
    double flops = (double)attn_pair_flops(c->head_dim, bwd) * tl->pairs * b * heads;
    double bytes = e * b * d * (heads * nq * (bwd ? 4 : 2) + (heads / g) * nk * (bwd ? 4 : 2));
    double tc = flops / (m->peak_flops[c->dtype] * m->sustained_fraction *
                         (bwd ? m->backward_rate_ratio : 1.0));
    double tm = bytes / m->hbm_bytes_per_s;
    return m->kernel_overhead_s + (tc > tm ? tc : tm);
}

/* Compute of step s of phase ph (0 where it computes nothing). */
static double step_compute(const am_config *c, const machine *m, const am_phase_desc *ph,
                           uint64_t s, uint64_t steps)
{
    am_tile tl;
    if (!ph->tile || !ph->tile(c, s, steps, &tl)) return 0.0;
    return tile_time(c, m, &tl, ph->part == AM_BWD);
}

double am_phase_flops(const am_config *c, int f)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    am_phases(c, ph);
    if (!ph[f]->tile) return 0.0;
    uint64_t g = am_phase_group_size(c, f);
    uint64_t steps = ph[f]->pattern == PAT_NONE         ? 0
                     : ph[f]->pattern == PAT_RETURN_HOP ? (g > 1)
                                                        : g - 1;
    double sum = 0.0;
    for (uint64_t s = 0; s <= steps; s++) {
        am_tile tl;
        if (ph[f]->tile(c, s, steps, &tl))
            sum += (double)attn_pair_flops(c->head_dim, ph[f]->part == AM_BWD) * tl.pairs *
                   (double)c->batch * tl.heads;
    }
    return sum;
}

/* ---- phases --------------------------------------------------------------------------------- */

typedef struct {
    double lat, bw, comp;
} parts;

static void add_comm(parts *p, double alpha, double bw)
{
    p->lat += alpha, p->bw += bw;
}

/* An all-to-all: g - 1 rounds, round k every member sends to member + k. */
static double alltoall_time(const am_config *c, const machine *m, const am_phase_desc *ph,
                            double msg, parts *pp, int *inter)
{
    uint64_t g;
    int regular = regular_groups(c, m, ph->comm, &g) && !am_time_rank_by_rank;
    round_cache cache = {0, 0, 0, 0};
    double t = 0.0, a = 0.0, bwt = 0.0;
    for (uint64_t k = 1; k < g; k++) {
        double tk;
        if (regular) {
            tk = alltoall_round(m, g, k, msg, &cache, &a, &bwt, inter);
        } else {
            step_dest sd = {c, ph, k};
            tk = step_time(m, &sd, msg, &a, &bwt, inter);
        }
        t += tk;
        add_comm(pp, a, bwt);
    }
    return t;
}

/* A ring pattern over g members (shift, all-gather, reduce-scatter, return hop): per step the
 * slowest hop, overlapped with the step's compute where the phase overlaps. */
static double ring_time(const am_config *c, const machine *m, const am_phase_desc *ph, double msg,
                        parts *pp, int *inter)
{
    uint64_t g = am_comm_group(c, ph->comm, 0).size;
    uint64_t steps = ph->pattern == PAT_RETURN_HOP ? (g > 1) : g - 1;
    step_dest sd = {c, ph, 1};
    double t = 0.0, a = 0.0, bwt = 0.0, comm = 0.0;
    if (g > 1)
        comm = step_time(m, &sd, ph->step_bytes ? (double)ph->step_bytes(c) : msg, &a, &bwt, inter);
    /* a reduce-scatter combines each received block into its own (merge operator or sum)
     * before passing it on: own and received read, own written, from memory */
    double red = ph->pattern == PAT_REDUCE_SCATTER ? 3.0 * msg / m->hbm_bytes_per_s : 0.0;
    /* step s: communication (s < steps) overlapped with the compute of step s */
    for (uint64_t s = 0; s <= steps; s++) {
        if (red > 0 && s < steps) {
            t += red;
            pp->comp += red;
        }
        double comp = step_compute(c, m, ph, s, steps), cm = s < steps ? comm : 0.0;
        if (ph->tail_bytes && s == steps && g > 1) { /* the last block goes home */
            double a2, b2;
            cm = step_time(m, &sd, (double)ph->tail_bytes(c), &a2, &b2, inter);
            t += cm;
            add_comm(pp, a2, b2);
            continue;
        }
        if (comp >= cm) {
            t += comp;
            pp->comp += comp;
        } else {
            t += cm;
            add_comm(pp, a, bwt);
        }
    }
    return t;
}

void am_predict_time(const am_config *c, const machine *m, am_time *out)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    memset(out, 0, sizeof *out);
    out->F = F;
    parts total = {0, 0, 0};
    for (int f = 0; f < F; f++) {
        const am_phase_desc *p = ph[f];
        int inter = 0;
        double msg = (double)am_phase_max_message(c, f), a = 0, bwt = 0, t = 0;
        parts pp = {0, 0, 0};
        switch (p->pattern) {
        case PAT_NONE:
            t = step_compute(c, m, p, 0, 0);
            pp.comp = t;
            break;
        case PAT_PAIRWISE: {
            step_dest sd = {c, p, 0};
            t = step_time(m, &sd, msg, &a, &bwt, &inter);
            add_comm(&pp, a, bwt);
            break;
        }
        case PAT_ALLTOALL:
            t = alltoall_time(c, m, p, msg, &pp, &inter);
            break;
        default: /* ring shift, all-gather, reduce-scatter, return hop */
            t = ring_time(c, m, p, msg, &pp, &inter);
            break;
        }
        out->phase_s[f] = t;
        if (pp.comp == 0 && pp.lat == 0 && pp.bw == 0) /* nothing happens: no term */
            out->phase_term[f] = p->pattern == PAT_NONE ? TERM_COMPUTE : TERM_LATENCY;
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
