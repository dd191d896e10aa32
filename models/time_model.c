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

/* The rate of a hop of phase ph on a tier: the machine's line for the phase's pattern and group
 * size (machine_link_rate), with the profile's share of it. */
static link_rate hop_rate(const machine *m, const am_config *c, const am_phase_desc *ph, int tier,
                          uint64_t g)
{
    link_rate r = machine_link_rate(m, tier, ph->pattern, g, NULL);
    double f = profile_link_fraction(&m->prof, c->algo, ph->pattern);
    r.bytes_per_s *= f, r.bytes_per_s_large *= f;
    return r;
}

/* The rates of a phase's hops, by tier (computed once per phase). */
typedef struct {
    link_rate r[2];
} phase_rates;

static phase_rates rates_of(const machine *m, const am_config *c, const am_phase_desc *ph,
                            uint64_t g)
{
    phase_rates pr = {{hop_rate(m, c, ph, TIER_INTRA, g), hop_rate(m, c, ph, TIER_INTER, g)}};
    return pr;
}

/* Time of one synchronous step in which every rank x sends `bytes` to dest(x): the slowest
 * rank (the first in rank order among equals), with NIC sharing among the ranks that cross
 * nodes in this step. Sets the latency and bandwidth parts of the slowest hop, its tier, and
 * *inter when any hop crosses nodes. */
static double step_time(const machine *m, const phase_rates *pr, const step_dest *s, double bytes,
                        double *alpha_part, double *bw_part, int *worst_tier, int *inter)
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
    *worst_tier = TIER_INTRA;
    for (uint64_t x = 0; x < P; x++) {
        uint64_t y = dest_of(s, x);
        if (y == x) continue;
        int tier = rank_node(x, m->gpus_per_node) != rank_node(y, m->gpus_per_node) ? TIER_INTER
                                                                                    : TIER_INTRA;
        double t = link_rate_time(&pr->r[tier], bytes,
                                  tier == TIER_INTER ? (double)load[nic_of(m, x)] : 1.0);
        if (tier == TIER_INTER) *inter = 1;
        if (t > worst) { /* split into latency and bandwidth parts for the critical path */
            worst = t;
            *alpha_part = link_rate_alpha(&pr->r[tier], bytes);
            *bw_part = t - *alpha_part;
            *worst_tier = tier;
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

static node_worst alltoall_node(const machine *m, const phase_rates *pr, uint64_t size, uint64_t g,
                                uint64_t k, double bytes)
{
    uint64_t gpn = m->gpus_per_nic;
    node_worst w = {0.0, TIER_INTRA, 0};
    for (uint64_t l0 = 0; l0 < size; l0 += gpn) { /* one NIC: its crossing senders first */
        uint64_t end = l0 + gpn < size ? l0 + gpn : size, load = 0;
        for (uint64_t l = l0; l < end; l++) load += !(l + k < size || l + k >= g);
        for (uint64_t l = l0; l < end; l++) {
            int tier = l + k < size || l + k >= g ? TIER_INTRA : TIER_INTER;
            double t = link_rate_time(&pr->r[tier], bytes, tier == TIER_INTER ? (double)load : 1);
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

static double alltoall_round(const machine *m, const phase_rates *pr, uint64_t g, uint64_t k,
                             double bytes, round_cache *cache, double *alpha_part, double *bw_part,
                             int *worst_tier, int *inter)
{
    uint64_t G = m->gpus_per_node, nodes = (g + G - 1) / G, last = g - (nodes - 1) * G;
    if (nodes >= 2 && k >= G && k <= g - G) {
        *inter = 1;
        if (!cache->have_middle) {
            uint64_t first_nic = m->gpus_per_nic < G ? m->gpus_per_nic : G;
            cache->middle_t = link_rate_time(&pr->r[TIER_INTER], bytes, (double)first_nic);
            cache->middle_a = link_rate_alpha(&pr->r[TIER_INTER], bytes);
            cache->middle_b = cache->middle_t - cache->middle_a;
            cache->have_middle = 1;
        }
        *alpha_part = cache->middle_a, *bw_part = cache->middle_b;
        *worst_tier = TIER_INTER;
        return cache->middle_t;
    }
    node_worst w = alltoall_node(m, pr, nodes >= 2 ? G : last, g, k, bytes);
    if (nodes >= 2) { /* the last node (full or not) after all full ones */
        node_worst wl = alltoall_node(m, pr, last, g, k, bytes);
        w.inter |= wl.inter;
        if (wl.t > w.t) w.t = wl.t, w.tier = wl.tier;
    }
    if (w.inter) *inter = 1;
    *alpha_part = link_rate_alpha(&pr->r[w.tier], bytes);
    *bw_part = w.t - *alpha_part;
    *worst_tier = w.tier;
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

/* The fixed cost of one kernel call: the profile's, else the machine's. */
static double kernel_overhead(const machine *m)
{
    return m->prof.kernel_overhead_s >= 0 ? m->prof.kernel_overhead_s : m->kernel_overhead_s;
}

/* FLOPs and compulsory bytes of a tile of nq query rows against nk keys for `heads` query heads
 * (and heads / g K/V heads), busiest rank; `calls` kernel calls (a staircase mask split into
 * ordinary triangles) at `eff` of the rate. */
static double tile_time(const am_config *c, const machine *m, const am_tile *tl, int bwd,
                        double calls, double eff)
{
    double e = (double)am_elem_bytes(c), d = (double)c->head_dim, b = (double)c->batch;
    double g = (double)(c->heads / c->kv_heads), heads = tl->heads, nq = tl->nq, nk = tl->nk;
    double flops = (double)attn_pair_flops(c->head_dim, bwd) * tl->pairs * b * heads;
    double bytes = e * b * d * (heads * nq * (bwd ? 4 : 2) + (heads / g) * nk * (bwd ? 4 : 2));
    double rate = m->peak_flops[c->dtype] * m->sustained_fraction *
                  (bwd ? m->backward_rate_ratio : 1.0) * profile_compute_scale(&m->prof, c->algo) *
                  eff;
    double tc = flops / rate;
    double tm = bytes / m->hbm_bytes_per_s;
    return calls * kernel_overhead(m) + (tc > tm ? tc : tm);
}

/* Compute of step s of phase ph (0 where it computes nothing). */
static double step_compute(const am_config *c, const machine *m, const am_phase_desc *ph,
                           uint64_t s, uint64_t steps)
{
    am_tile tl;
    if (!ph->tile || !ph->tile(c, s, steps, &tl)) return 0.0;
    double calls = 1.0, eff = 1.0;
    if (c->causal && ph->staircase != AM_COMM_NONE &&
        profile_staircase(&m->prof, c->algo) == STAIR_SPLIT) {
        calls = (double)am_comm_group(c, ph->staircase, 0).size;
        eff = profile_staircase_efficiency(&m->prof, c->algo);
    }
    return tile_time(c, m, &tl, ph->part == AM_BWD, calls, eff);
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

/* ---- overlap -------------------------------------------------------------------------------- */

/* How an overlapped step of phase ph behaves (profile.h): the share of min(compute, transfer)
 * hidden, and the compute time while the transfer runs over its time alone. */
static void overlap_of(const am_config *c, const machine *m, const am_phase_desc *ph, int tier,
                       double *hidden, double *ratio)
{
    double v = profile_overlap(&m->prof, c->algo, ph->id);
    *ratio = 1.0;
    if (v == PROF_MEASURED) {
        double h = m->overlap_hidden[tier];
        if (h < 0) h = m->overlap_hidden[!tier]; /* the other tier's measurement */
        *hidden = h < 0 ? 1.0 : h;
        if (h >= 0) *ratio = m->overlap_compute_ratio;
        return;
    }
    *hidden = v;
    if (v > 0 && v < 1) *ratio = m->overlap_compute_ratio; /* a real overlap, partly hidden */
}

/* ---- phases --------------------------------------------------------------------------------- */

typedef struct {
    double lat, bw, comp;
    double transfer, hidden, compute; /* the phase's transfers alone, hidden, compute */
} parts;

static void add_comm(parts *p, double alpha, double bw)
{
    p->lat += alpha, p->bw += bw;
    p->transfer += alpha + bw;
}

/* The collective call of an implementation that runs it as one (profile collectives = nccl):
 * its latency, once. */
static double collective_alpha(const machine *m, const phase_rates *pr, int tier, double bytes)
{
    if (m->prof.collective_alpha_s >= 0) return m->prof.collective_alpha_s;
    return link_rate_alpha(&pr->r[tier], bytes);
}

/* An all-to-all as one call, every member sending to all others at once: per tier, the bytes
 * of the busiest sender (intra: one GPU's flows, capped by its injection rate; inter: one NIC's,
 * at the NIC's rate), the slower of the two; plus one latency. */
static double alltoall_concurrent(const am_config *c, const machine *m, const am_phase_desc *ph,
                                  const phase_rates *pr, double msg, parts *pp, int *inter)
{
    am_group gr = am_comm_group(c, ph->comm, 0);
    uint64_t P = c->P, nics = nic_of(m, P - 1) + 1;
    double *nic_bytes = calloc(nics, sizeof *nic_bytes);
    double worst_intra = 0.0;
    for (uint64_t x = 0; x < P; x++) {
        am_group g = am_comm_group(c, ph->comm, x);
        double intra = 0.0;
        for (uint64_t k = 1; k < g.size; k++) {
            uint64_t y = g.first + ((g.index + k) % g.size) * g.stride;
            if (rank_node(x, m->gpus_per_node) != rank_node(y, m->gpus_per_node))
                nic_bytes[nic_of(m, x)] += msg, *inter = 1;
            else
                intra += msg;
        }
        worst_intra = intra > worst_intra ? intra : worst_intra;
    }
    double worst_nic = 0.0;
    for (uint64_t k = 0; k < nics; k++)
        worst_nic = nic_bytes[k] > worst_nic ? nic_bytes[k] : worst_nic;
    free(nic_bytes);
    link_rate ri = pr->r[TIER_INTRA], rx = pr->r[TIER_INTER];
    double inj = m->injection_bytes_per_s[TIER_INTRA];
    double ti =
        worst_intra > 0 ? link_rate_time(&ri, worst_intra, 1) - link_rate_alpha(&ri, msg) : 0.0;
    if (inj > 0 && worst_intra / inj > ti) ti = worst_intra / inj;
    double tx = worst_nic > 0 ? link_rate_time(&rx, worst_nic, 1) - link_rate_alpha(&rx, msg) : 0.0;
    double injx = m->injection_bytes_per_s[TIER_INTER];
    if (injx > 0 && worst_nic / injx > tx) tx = worst_nic / injx;
    int tier = tx > ti ? TIER_INTER : TIER_INTRA;
    double a = gr.size > 1 ? collective_alpha(m, pr, tier, msg) : 0.0, b = tx > ti ? tx : ti;
    add_comm(pp, a, b);
    return a + b;
}

/* An all-to-all: g - 1 rounds, round k every member sends to member + k. */
static double alltoall_time(const am_config *c, const machine *m, const am_phase_desc *ph,
                            double msg, parts *pp, int *inter)
{
    uint64_t g;
    int regular = regular_groups(c, m, ph->comm, &g) && !am_time_rank_by_rank;
    phase_rates pr = rates_of(m, c, ph, g);
    if (profile_collectives(&m->prof, c->algo) == COLL_NCCL)
        return alltoall_concurrent(c, m, ph, &pr, msg, pp, inter);
    round_cache cache = {0, 0, 0, 0};
    double t = 0.0, a = 0.0, bwt = 0.0;
    for (uint64_t k = 1; k < g; k++) {
        double tk;
        int tier;
        if (regular) {
            tk = alltoall_round(m, &pr, g, k, msg, &cache, &a, &bwt, &tier, inter);
        } else {
            step_dest sd = {c, ph, k};
            tk = step_time(m, &pr, &sd, msg, &a, &bwt, &tier, inter);
        }
        t += tk;
        add_comm(pp, a, bwt);
    }
    return t;
}

/* A ring pattern over g members (shift, all-gather, reduce-scatter, return hop): per step the
 * slowest hop; an overlapped phase computes while it transfers (overlap_of), the others add.
 * A collective run as one call (profile collectives = nccl) pays one latency and fuses its
 * reductions into the transfers. */
static double ring_time(const am_config *c, const machine *m, const am_phase_desc *ph, double msg,
                        parts *pp, int *inter)
{
    uint64_t g = am_comm_group(c, ph->comm, 0).size;
    uint64_t steps = ph->pattern == PAT_RETURN_HOP ? (g > 1) : g - 1;
    step_dest sd = {c, ph, 1};
    phase_rates pr = rates_of(m, c, ph, g);
    int one_call = (ph->pattern == PAT_ALLGATHER || ph->pattern == PAT_REDUCE_SCATTER) &&
                   profile_collectives(&m->prof, c->algo) == COLL_NCCL;
    double t = 0.0, a = 0.0, bwt = 0.0, comm = 0.0;
    int tier = TIER_INTRA;
    double step_msg = ph->step_bytes ? (double)ph->step_bytes(c) : msg;
    if (g > 1) comm = step_time(m, &pr, &sd, step_msg, &a, &bwt, &tier, inter);
    if (one_call && g > 1) { /* one latency for the call, the steps pipelined */
        double a1 = collective_alpha(m, &pr, tier, step_msg);
        t += a1;
        add_comm(pp, a1, 0.0);
        comm = bwt, a = 0.0;
    }
    /* a reduce-scatter combines each received block into its own (merge operator or sum)
     * before passing it on: own and received read, own written, from memory; one kernel call.
     * A machine's reduce-scatter line was measured with the combine in its steps: it has it. */
    const machine_link *rs_line = NULL;
    if (ph->pattern == PAT_REDUCE_SCATTER)
        machine_link_rate(m, tier, PAT_REDUCE_SCATTER, g, &rs_line);
    double red = ph->pattern == PAT_REDUCE_SCATTER && !one_call && !rs_line
                     ? kernel_overhead(m) + 3.0 * msg / m->hbm_bytes_per_s
                     : 0.0;
    double hidden_share = 1.0, ratio = 1.0;
    if (ph->overlap) overlap_of(c, m, ph, tier, &hidden_share, &ratio);
    /* step s: communication (s < steps) and the compute of step s */
    for (uint64_t s = 0; s <= steps; s++) {
        if (red > 0 && s < steps) {
            t += red;
            pp->comp += red;
            pp->compute += red;
        }
        double comp = step_compute(c, m, ph, s, steps), cm = s < steps ? comm : 0.0;
        if (ph->tail_bytes && s == steps && g > 1) { /* the last block goes home */
            double a2, b2;
            int t2;
            cm = step_time(m, &pr, &sd, (double)ph->tail_bytes(c), &a2, &b2, &t2, inter);
            t += cm;
            add_comm(pp, a2, b2);
            continue;
        }
        if (!ph->overlap || cm == 0.0 || comp == 0.0) { /* nothing to overlap: they add */
            t += comp + cm;
            pp->comp += comp;
            pp->compute += comp;
            if (cm > 0) add_comm(pp, cm * (a / comm), cm * (bwt / comm));
            continue;
        }
        double cs = comp + (ratio - 1.0) * (comp < cm ? comp : cm); /* slowed while it runs */
        double hide = hidden_share * (cs < cm ? cs : cm);
        t += hidden_share >= 1.0 ? (cs > cm ? cs : cm) : cs + cm - hide;
        pp->compute += cs;
        pp->transfer += cm;
        pp->hidden += hide;
        if (hidden_share >= 1.0) { /* the longer one is the step's critical path */
            if (cs >= cm)
                pp->comp += cs;
            else
                pp->lat += a, pp->bw += bwt;
        } else {
            pp->comp += cs;
            pp->lat += (cm - hide) * (a / cm), pp->bw += (cm - hide) * (bwt / cm);
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
    parts total = {0, 0, 0, 0, 0, 0};
    for (int f = 0; f < F; f++) {
        const am_phase_desc *p = ph[f];
        int inter = 0, tier;
        double msg = (double)am_phase_max_message(c, f), a = 0, bwt = 0, t = 0;
        parts pp = {0, 0, 0, 0, 0, 0};
        switch (p->pattern) {
        case PAT_NONE:
            t = step_compute(c, m, p, 0, 0);
            pp.comp = pp.compute = t;
            break;
        case PAT_PAIRWISE: {
            step_dest sd = {c, p, 0};
            phase_rates pr = rates_of(m, c, p, 2);
            t = step_time(m, &pr, &sd, msg, &a, &bwt, &tier, &inter);
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
        out->transfer_s[f] = pp.transfer;
        out->hidden_s[f] = pp.hidden;
        out->compute_s[f] = pp.compute;
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
