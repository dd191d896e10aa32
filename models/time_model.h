/* time_model.h - predicted time of each phase of a distributed attention run on a described
 * machine (cost-model.md, "Communication cost" and "Time"; docs/model.md).
 *
 * Each phase is charged by the communication pattern its descriptor declares (algo.h).
 * Messages: T = alpha + m beta on the tier the two ranks use (same node: intra, else inter), at
 * the machine's rate for the phase's pattern and group size (machine_link_rate; the tier's own
 * rate where the machine has none), times the implementation profile's share of it;
 * inter-node bandwidth is divided among the GPUs of one NIC that cross at the same time. A ring
 * step lasts as long as its slowest hop carrying the largest message (steps are synchronous);
 * phases without overlap add. An overlapped step (Ring, A2D-O) computes while it transfers: its
 * compute c (stretched by the measured compute ratio where the two run together) hides a share
 * h of min(c, transfer) (h measured by calibrate, or set by the profile: 1 ideal, 0 off), so it
 * lasts c + transfer - h min(c, transfer). Compute of a tile is a fixed cost per kernel call plus
 * its FLOPs (visible query-key pairs only under the causal mask) over peak x sustained fraction,
 * or its compulsory bytes over HBM bandwidth if that is longer (roofline). Implementation
 * profiles (profile.h, in machine.prof) change collectives, staircase masks and rates.
 */
#ifndef ATTNSIM_TIME_MODEL_H
#define ATTNSIM_TIME_MODEL_H

#include "algo.h"
#include "machine.h"

typedef enum { TERM_LATENCY = 0, TERM_BANDWIDTH = 1, TERM_COMPUTE = 2 } am_term;
extern const char *const am_term_names[]; /* latency, bandwidth, compute */

typedef struct {
    int F;
    double phase_s[AM_MAX_PHASES];
    double total_s;
    double term_s[3]; /* the critical path split into latency, bandwidth and compute */
    am_term dominant;
    uint64_t inter_node_phases;        /* bit f: phase f sends some message across nodes */
    am_term phase_term[AM_MAX_PHASES]; /* what dominates each phase */
    /* Per phase: its transfers as if alone (the sum of its steps' slowest hops), the part of
     * them hidden behind compute (overlapped phases), and its compute (slowed where it runs
     * beside a transfer). */
    double transfer_s[AM_MAX_PHASES], hidden_s[AM_MAX_PHASES], compute_s[AM_MAX_PHASES];
} am_time;

void am_predict_time(const am_config *c, const machine *m, am_time *out);

/* What rank x sends across nodes in every phase (out[F]: bytes_sent and msgs_sent; the receive
 * fields 0), with the ranks packed m->gpus_per_node per node: the tier of every message as
 * am_predict_time prices it (the group successor of a ring, the partner of a pairwise
 * exchange, round k's rank of an all-to-all). */
void am_rank_inter_counts(const am_config *c, const machine *m, uint64_t x, am_count *out);

/* 1: every all-to-all round is evaluated rank by rank (O(P) a round) instead of from the node
 * structure; the results are the same bit for bit (the tests compare the two). */
extern int am_time_rank_by_rank;

/* Local attention FLOPs of the busiest rank in phase f, over all its steps (attn_pair_flops per
 * visible pair, head and batch entry); 0 for phases without compute. */
double am_phase_flops(const am_config *c, int f);

#endif
