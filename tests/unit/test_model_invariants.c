/* test_model_invariants.c - properties of the model over random configurations: total bytes
 * sent == total received, causal masks change no byte, Ring's bytes per rank stay flat in P,
 * Attention2D's fall as 1/sqrt(P), A2D-NO and A2D-O move the same bytes, no rank sends more than
 * its messages x the phase's largest message, all-to-all per-peer bytes sum to the counts, the
 * inter-node part of what a rank sends is none on one node and all of it at one rank per node;
 * and of the time model: single-node machines use
 * no inter-node link, NIC sharing slows inter-node phases, and on the Attention2D paper's
 * cluster shapes Attention2D beats Ring at long sequences as the paper reports; the hybrid is
 * Ring at u = 1 and Ulysses at u = P; all-to-all rounds from the node structure equal their
 * rank-by-rank evaluation. Also every preset parses and a machine file round-trips; the
 * registry's descriptors are complete and their phase ids unique. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "predict.h"
#include "test_util.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng % n;
}

static uint64_t max_sent_total(const am_config *c)
{
    machine m;
    char err[300];
    machine_load("dgx-h100", &m, err, sizeof err);
    am_prediction p;
    am_predict(c, &m, 0, &p);
    return p.total_sent_max;
}

int main(void)
{
    machine m;
    char err[400];
    for (const char *const *n = machine_preset_names(); *n; n++) {
        CHECK(machine_load(*n, &m, err, sizeof err) == 0, "preset %s: %s", *n, err);
        char text[2048];
        machine_format(&m, text, sizeof text);
        machine m2;
        CHECK(machine_parse(text, "round trip", &m2, err, sizeof err) == 0, "round trip %s: %s", *n,
              err);
        CHECK(m2.gpus_per_node == m.gpus_per_node && m2.hbm_bytes_per_s == m.hbm_bytes_per_s &&
                  m2.alpha_s[1] == m.alpha_s[1] && m2.bytes_per_s[0] == m.bytes_per_s[0] &&
                  m2.peak_flops[2] == m.peak_flops[2] && !strcmp(m2.name, m.name),
              "round trip of %s changed values", *n);
    }

    /* the optional keys round-trip and change message times as documented */
    machine cal;
    machine_load("dev-4gpu", &cal, err, sizeof err);
    cal.break_bytes[0] = 65536, cal.alpha_large_s[0] = 2e-5, cal.bytes_per_s_large[0] = 8e9;
    cal.kernel_overhead_s = 3e-6, cal.calibrated = 1, cal.measured[0] = 1;
    char text[4096];
    size_t len = machine_format(&cal, text, sizeof text);
    machine_format_optional(&cal, text + len, sizeof text - len);
    machine back;
    CHECK(machine_parse(text, "calibrated", &back, err, sizeof err) == 0, "optional keys: %s", err);
    CHECK(back.break_bytes[0] == 65536 && back.alpha_large_s[0] == 2e-5 &&
              back.bytes_per_s_large[0] == 8e9 && back.kernel_overhead_s == 3e-6 &&
              back.calibrated && back.measured[0] && !back.measured[1],
          "optional keys changed in the round trip");
    CHECK(machine_message_s(&back, TIER_INTRA, 1000, 1) ==
                  back.alpha_s[0] + 1000 / back.bytes_per_s[0] &&
              machine_message_s(&back, TIER_INTRA, 1 << 20, 1) == 2e-5 + 1048576 / 8e9,
          "two-regime message time");
    /* a zero latency or overhead (what calibrate fits on some links) reads back */
    cal.alpha_large_s[0] = 0, cal.kernel_overhead_s = 0;
    len = machine_format(&cal, text, sizeof text);
    machine_format_optional(&cal, text + len, sizeof text - len);
    CHECK(machine_parse(text, "zero times", &back, err, sizeof err) == 0 &&
              back.alpha_large_s[0] == 0 && back.kernel_overhead_s == 0,
          "zero latency: %s", err);

    /* the registry: names and phase ids unique, each phase's description consistent */
    for (int a = 0; a < AM_NUM_ALGOS; a++) {
        const am_algo_desc *d = am_algo_desc_of((am_algo)a);
        CHECK(d && d->name && !strcmp(am_algo_names()[a], d->name) && d->shard_len &&
                  d->shard_tokens && d->n_fwd > 0 && d->n_bwd > 0 &&
                  d->n_fwd + d->n_bwd <= AM_MAX_PHASES,
              "algorithm %d: incomplete descriptor", a);
        for (int b = 0; b < a; b++)
            CHECK(strcmp(d->name, am_algo_name((am_algo)b)), "two algorithms named %s", d->name);
        for (int i = 0; i < d->n_fwd + d->n_bwd; i++) {
            const am_phase_desc *ph = i < d->n_fwd ? d->fwd[i] : d->bwd[i - d->n_fwd];
            CHECK(am_phase_by_id(ph->id) == ph, "%s: phase %s not found by its id", d->name,
                  ph->name);
            CHECK(ph->part == (i < d->n_fwd ? AM_FWD : AM_BWD), "%s %s: wrong pass", d->name,
                  ph->name);
            CHECK((ph->pattern == PAT_NONE) == (ph->comm == AM_COMM_NONE) &&
                      (ph->pattern == PAT_NONE || (ph->counts && ph->max_message)) &&
                      (ph->pattern != PAT_PAIRWISE || ph->peer) &&
                      (ph->pattern != PAT_NONE || ph->tile) && (!ph->overlap || ph->tile),
                  "%s %s: pattern %s on %s without what it needs", d->name, ph->name,
                  am_pattern_names[ph->pattern], am_comm_names[ph->comm]);
            for (int b = 0; b < AM_NUM_ALGOS; b++) { /* ids: one phase each over all algorithms */
                const am_algo_desc *e = am_algo_desc_of((am_algo)b);
                for (int j = 0; j < e->n_fwd + e->n_bwd; j++) {
                    const am_phase_desc *q = j < e->n_fwd ? e->fwd[j] : e->bwd[j - e->n_fwd];
                    CHECK(q->id != ph->id || q == ph, "%s %s and %s %s share id %d", d->name,
                          ph->name, e->name, q->name, ph->id);
                }
            }
        }
    }
    am_config ring_cfg = {ALGO_RING, LAYOUT_CONTIGUOUS, AM_TRAIN, 4, 1, 4, 64, 1, 4, 4, 8, 0, 2};
    CHECK(am_phase_index(&ring_cfg, am_algo_desc_of(ALGO_ULYSSES)->fwd[0]->id) == -1 &&
              am_phase_index(&ring_cfg, am_algo_desc_of(ALGO_RING)->bwd[1]->id) == 2,
          "phase ids of another algorithm must not be found in Ring's list");

    for (int trial = 0; trial < 3000; trial++) {
        am_config c;
        memset(&c, 0, sizeof c);
        c.algo = (am_algo)rnd(AM_NUM_ALGOS);
        c.layout = (part_layout)rnd(3);
        c.pass = (am_pass)rnd(3);
        c.P = 1 + rnd(40);
        c.kv_heads = 1 + rnd(8) + (c.algo == ALGO_ULYSSES ? c.P : 0);
        c.heads = c.kv_heads * (1 + rnd(4));
        c.N = c.P + rnd(300);
        c.batch = 1 + rnd(3);
        c.head_dim = 8 * (1 + rnd(16));
        c.dtype = (int)rnd(3);
        c.rows = 1, c.cols = c.P;
        if (am_algo_desc_of(c.algo)->grid != AM_GRID_LINE) {
            do c.rows = 1 + rnd(c.P);
            while (c.P % c.rows);
            c.cols = c.P / c.rows;
        }
        if (c.algo == ALGO_HYBRID) c.kv_heads += c.rows, c.heads = c.kv_heads * (1 + rnd(4));
        CHECK(am_validate(&c, err, sizeof err) == 0, "random config invalid: %s", err);
        const am_phase_desc *ph[AM_MAX_PHASES];
        int F = am_phases(&c, ph);
        am_count cnt[AM_MAX_PHASES];
        uint64_t s[AM_MAX_PHASES] = {0}, r[AM_MAX_PHASES] = {0}, ms[AM_MAX_PHASES] = {0},
                 mr[AM_MAX_PHASES] = {0};
        am_config causal = c;
        causal.causal = 1;
        for (uint64_t x = 0; x < c.P; x++) {
            am_rank_counts(&c, x, cnt);
            am_count cc[AM_MAX_PHASES];
            am_rank_counts(&causal, x, cc);
            for (int f = 0; f < F; f++) {
                s[f] += cnt[f].bytes_sent, r[f] += cnt[f].bytes_recv;
                ms[f] += cnt[f].msgs_sent, mr[f] += cnt[f].msgs_recv;
                CHECK(cnt[f].bytes_sent <= cnt[f].msgs_sent * am_phase_max_message(&c, f),
                      "%s phase %s rank %llu sends %llu bytes in %llu messages of at most %llu",
                      am_algo_name(c.algo), ph[f]->name, (unsigned long long)x,
                      (unsigned long long)cnt[f].bytes_sent, (unsigned long long)cnt[f].msgs_sent,
                      (unsigned long long)am_phase_max_message(&c, f));
                CHECK(!memcmp(&cc[f], &cnt[f], sizeof cc[f]), "causal changed the bytes of %s",
                      ph[f]->name);
            }
        }
        /* all-to-all: the per-peer bytes over the rank's group sum to what it sends and
         * receives */
        for (int f = 0; f < F; f++) {
            if (ph[f]->pattern != PAT_ALLTOALL) continue;
            CHECK(ph[f]->peer_bytes != NULL, "%s: an all-to-all without per-peer bytes",
                  ph[f]->name);
            if (!ph[f]->peer_bytes) continue;
            for (uint64_t x = 0; x < c.P; x++) {
                am_group gr = am_comm_group(&c, ph[f]->comm, x);
                uint64_t to = 0, from = 0;
                for (uint64_t k = 0; k < gr.size; k++) {
                    uint64_t y = gr.first + k * gr.stride;
                    to += ph[f]->peer_bytes(&c, x, y), from += ph[f]->peer_bytes(&c, y, x);
                }
                am_rank_counts(&c, x, cnt);
                CHECK(to == cnt[f].bytes_sent && from == cnt[f].bytes_recv,
                      "%s rank %llu: per-peer bytes sum to %llu sent, %llu received; counts %llu, "
                      "%llu",
                      ph[f]->name, (unsigned long long)x, (unsigned long long)to,
                      (unsigned long long)from, (unsigned long long)cnt[f].bytes_sent,
                      (unsigned long long)cnt[f].bytes_recv);
            }
        }
        /* tiers: nothing crosses on one node, everything on nodes of one rank, and in between
         * a part of what the rank sends */
        machine tiers;
        machine_load("dgx-h100", &tiers, err, sizeof err);
        for (uint64_t x = 0; x < c.P; x++) {
            am_count in[AM_MAX_PHASES], one[AM_MAX_PHASES], all[AM_MAX_PHASES];
            am_rank_counts(&c, x, cnt);
            tiers.gpus_per_node = c.P;
            am_rank_inter_counts(&c, &tiers, x, one);
            tiers.gpus_per_node = 1;
            am_rank_inter_counts(&c, &tiers, x, all);
            tiers.gpus_per_node = 1 + rnd(c.P);
            am_rank_inter_counts(&c, &tiers, x, in);
            for (int f = 0; f < F; f++) {
                CHECK(one[f].bytes_sent == 0 && one[f].msgs_sent == 0,
                      "%s on one node: %llu bytes cross nodes", ph[f]->name,
                      (unsigned long long)one[f].bytes_sent);
                CHECK(all[f].bytes_sent == cnt[f].bytes_sent &&
                          all[f].msgs_sent == cnt[f].msgs_sent,
                      "%s, one rank per node: %llu of %llu bytes cross nodes", ph[f]->name,
                      (unsigned long long)all[f].bytes_sent, (unsigned long long)cnt[f].bytes_sent);
                CHECK(in[f].bytes_sent <= cnt[f].bytes_sent && in[f].msgs_sent <= cnt[f].msgs_sent,
                      "%s: more crosses nodes than is sent", ph[f]->name);
            }
        }
        for (int f = 0; f < F; f++)
            CHECK(s[f] == r[f] && ms[f] == mr[f], "%s %s P=%llu: sent %llu != received %llu",
                  am_algo_name(c.algo), ph[f]->name, (unsigned long long)c.P,
                  (unsigned long long)s[f], (unsigned long long)r[f]);
        if (c.algo == ALGO_A2D_NO || c.algo == ALGO_A2D_O) {
            am_config o = c;
            o.algo = c.algo == ALGO_A2D_NO ? ALGO_A2D_O : ALGO_A2D_NO;
            for (uint64_t x = 0; x < c.P; x++) {
                am_count a[AM_MAX_PHASES], b[AM_MAX_PHASES];
                am_rank_counts(&c, x, a);
                am_rank_counts(&o, x, b);
                uint64_t ta = 0, tb = 0, na = 0, nb = 0;
                int Fa = am_phases(&c, ph), Fb = am_phases(&o, ph);
                for (int f = 0; f < Fa; f++) ta += a[f].bytes_sent, na += a[f].msgs_sent;
                for (int f = 0; f < Fb; f++) tb += b[f].bytes_sent, nb += b[f].msgs_sent;
                CHECK(ta == tb && na == nb, "A2D-NO and A2D-O differ at rank %llu: %llu vs %llu",
                      (unsigned long long)x, (unsigned long long)ta, (unsigned long long)tb);
            }
        }
    }

    /* Ring: flat in P; Attention2D: falls as 1/sqrt(P) (ratio (1/p1 - 1/P1)/(1/p2 - 1/P2) for
     * the all-gathers, exactly 28/15 from P = 64 to 256 up to the transpose term) */
    am_config ring = {ALGO_RING, LAYOUT_CONTIGUOUS, AM_FWD, 4, 1, 4, 1 << 16, 1, 8, 8, 128, 0, 2};
    uint64_t r4 = max_sent_total(&ring);
    ring.P = ring.cols = 256;
    uint64_t r256 = max_sent_total(&ring);
    CHECK(r256 >= r4 && (double)r256 <= (double)r4 / 0.75 + 1, "ring not flat: %llu -> %llu",
          (unsigned long long)r4, (unsigned long long)r256);
    am_config a2d = {ALGO_A2D_NO, LAYOUT_CONTIGUOUS, AM_FWD, 64, 8, 8, 1 << 16, 1, 8, 8, 128, 0, 2};
    uint64_t a64 = max_sent_total(&a2d);
    a2d.P = 256, a2d.rows = a2d.cols = 16;
    uint64_t a256 = max_sent_total(&a2d);
    double ratio = (double)a64 / (double)a256;
    CHECK(ratio > 1.8 && ratio < 2.0, "A2D bytes ratio P=64 -> 256 is %.3f, expected ~28/15",
          ratio);
    a2d.P = 4096, a2d.rows = a2d.cols = 64;
    CHECK((double)max_sent_total(&a2d) < (double)a256 / 3.5, "A2D not falling at P = 4096");

    /* time model */
    machine dev4, paper_a100, paper_h100, shared;
    machine_load("dev-4gpu", &dev4, err, sizeof err);
    machine_load("a2d-paper-a100", &paper_a100, err, sizeof err);
    machine_load("a2d-paper-h100", &paper_h100, err, sizeof err);
    am_config c4 = {ALGO_A2D_NO, LAYOUT_CONTIGUOUS, AM_TRAIN, 4, 2, 2, 32768, 1, 32, 32, 128, 0, 2};
    am_time t;
    am_predict_time(&c4, &dev4, &t);
    CHECK(t.inter_node_phases == 0, "a single node used an inter-node link");
    am_config big = {
        ALGO_A2D_NO, LAYOUT_CONTIGUOUS, AM_FWD, 64, 8, 8, 131072, 1, 32, 32, 128, 1, 2};
    am_predict_time(&big, &paper_h100, &t);
    CHECK(t.inter_node_phases != 0, "64 nodes x 1 GPU without inter-node phases");
    shared = paper_a100;
    shared.gpus_per_nic = 4;
    am_config ringbig = big;
    ringbig.algo = ALGO_RING, ringbig.rows = 1, ringbig.cols = 64;
    am_time t1, t2;
    big.rows = big.cols = 8;
    am_predict_time(&big, &paper_a100, &t1);
    am_predict_time(&big, &shared, &t2);
    CHECK(t2.total_s > t1.total_s, "NIC sharing did not slow the run: %g vs %g", t2.total_s,
          t1.total_s);
    const machine *papers[2] = {&paper_a100, &paper_h100};
    for (int k = 0; k < 2; k++) {
        am_time tr, ta;
        am_predict_time(&ringbig, papers[k], &tr);
        am_predict_time(&big, papers[k], &ta);
        double speedup = tr.total_s / ta.total_s;
        CHECK(speedup > 1.5 && speedup < 20, "%s: A2D-NO speedup over Ring %.2f", papers[k]->name,
              speedup);
        printf("  %s, P = 64, N = 128k, causal fwd: A2D-NO %.2fx faster than Ring\n",
               papers[k]->name, speedup);
    }
    /* all-to-all rounds from the node structure == rank by rank, bit for bit: partial last
     * nodes, shared NICs, two-regime links, equal intra and inter rates (ties) */
    long compared = 0;
    for (int trial = 0; trial < 400; trial++) {
        machine mm = dev4;
        mm.gpus_per_node = 1 + rnd(9);
        mm.gpus_per_nic = 1 + rnd(4);
        if (rnd(2))
            mm.break_bytes[1] = 4096, mm.alpha_large_s[1] = 3e-5, mm.bytes_per_s_large[1] = 9e9;
        if (rnd(3) == 0) mm.alpha_s[1] = mm.alpha_s[0], mm.bytes_per_s[1] = mm.bytes_per_s[0];
        am_config u = {
            ALGO_ULYSSES,      LAYOUT_CONTIGUOUS, (am_pass)rnd(3), 1 + rnd(40), 1, 0, 0, 1, 0, 0,
            8 * (1 + rnd(16)), (int)rnd(2),       (int)rnd(3)};
        u.cols = u.P, u.kv_heads = u.P + rnd(5), u.heads = u.kv_heads * (1 + rnd(2));
        u.N = u.P + rnd(5000);
        if (trial % 2) { /* the hybrid's all-to-alls in groups of u */
            u.algo = ALGO_HYBRID;
            do u.rows = 1 + rnd(u.P);
            while (u.P % u.rows);
            u.cols = u.P / u.rows;
        }
        am_time fast, slow;
        am_time_rank_by_rank = 0;
        am_predict_time(&u, &mm, &fast);
        am_time_rank_by_rank = 1;
        am_predict_time(&u, &mm, &slow);
        am_time_rank_by_rank = 0;
        CHECK(!memcmp(&fast, &slow, sizeof fast),
              "all-to-all P=%llu G=%llu nic=%llu: %.17g s from the node structure, %.17g s rank "
              "by rank",
              (unsigned long long)u.P, (unsigned long long)mm.gpus_per_node,
              (unsigned long long)mm.gpus_per_nic, fast.total_s, slow.total_s);
        compared++;
    }
    printf("  %ld all-to-all predictions identical from the node structure and rank by rank\n",
           compared);

    /* the hybrid at its ends: u = 1 is Ring, u = P is Ulysses, in bytes, messages and time */
    for (int trial = 0; trial < 200; trial++) {
        uint64_t P = 1 + rnd(24);
        am_config h = {ALGO_HYBRID,
                       (part_layout)rnd(2),
                       (am_pass)rnd(3),
                       P,
                       1,
                       P,
                       P + rnd(900),
                       1 + rnd(2),
                       0,
                       P + rnd(3),
                       8 * (1 + rnd(8)),
                       (int)rnd(2),
                       (int)rnd(3)};
        h.heads = h.kv_heads * (1 + rnd(2));
        const machine *ms[2] = {&dev4, &paper_a100};
        for (int end = 0; end < 2; end++) {
            am_config o = h;
            o.algo = end ? ALGO_ULYSSES : ALGO_RING;
            if (end) h.rows = P, h.cols = 1;
            am_prediction ph, po;
            am_predict(&h, ms[trial % 2], 1, &ph);
            am_predict(&o, ms[trial % 2], 1, &po);
            int same = ph.time.total_s == po.time.total_s && ph.total_sent_sum == po.total_sent_sum;
            for (uint64_t x = 0; x < P && same; x++) { /* the same phases, or empty ones */
                uint64_t sh = 0, so = 0, mh = 0, mo = 0;
                for (int f = 0; f < ph.F; f++)
                    sh += ph.per_rank[x * ph.F + f].bytes_sent,
                        mh += ph.per_rank[x * ph.F + f].msgs_sent;
                for (int f = 0; f < po.F; f++)
                    so += po.per_rank[x * po.F + f].bytes_sent,
                        mo += po.per_rank[x * po.F + f].msgs_sent;
                same = sh == so && mh == mo;
            }
            CHECK(same, "hybrid u = %llu differs from %s at P = %llu: %.17g s vs %.17g s",
                  (unsigned long long)h.rows, am_algo_name(o.algo), (unsigned long long)P,
                  ph.time.total_s, po.time.total_s);
            am_prediction_free(&ph), am_prediction_free(&po);
        }
    }

    /* a compute-bound single GPU pair: Ring hides its communication */
    am_config small = {ALGO_RING, LAYOUT_CONTIGUOUS, AM_FWD, 4, 1, 4, 131072, 1, 32, 32, 128, 0, 2};
    am_predict_time(&small, &dev4, &t);
    CHECK(t.dominant == TERM_COMPUTE, "ring at N = 128k on 4 GPUs should be compute-bound (%s)",
          am_term_names[t.dominant]);
    return test_finish("test_model_invariants");
}
