/* test_time_patterns.c - pattern-aware links, measured overlap, fixed costs and implementation
 * profiles in the time model: machine files' pattern lines parse, round-trip and are looked up
 * in the documented order; a pattern line changes the phases of that pattern and no other, by
 * the documented formula; overlap off, ideal and measured give compute + transfer, their max,
 * and what lies between; NCCL collectives pay one latency; split staircase kernels cost only
 * causal A2D-O's row ring; compute_scale scales compute; the one-rate-per-tier model is the
 * machine without its lines; profiles parse, refuse bad lines and round-trip; every preset has
 * a fixed cost per kernel call. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "predict.h"
#include "test_util.h"

static int close_to(double a, double b)
{
    return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)) + 1e-15;
}

static machine load(const char *name)
{
    machine m;
    char err[600];
    if (machine_load(name, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return m;
}

static void set_profile(machine *m, const char *text)
{
    char err[600];
    CHECK(profile_parse(text, "test profile", &m->prof, err, sizeof err) == 0, "profile: %s", err);
}

static int phase_of(const am_config *c, const char *name)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    for (int f = 0; f < F; f++)
        if (!strcmp(ph[f]->name, name)) return f;
    return -1;
}

static void machine_lines(void)
{
    machine m = load("dev-4gpu");
    char text[16384], err[600];
    size_t len = machine_format(&m, text, sizeof text);
    machine_format_optional(&m, text + len, sizeof text - len);
    strcat(text, "link.intra.allgather.g2.alpha = 3 us\n"
                 "link.intra.allgather.g2.bandwidth = 250 GB/s\n"
                 "link.intra.ring_shift.alpha = 20 us\n"
                 "link.intra.ring_shift.bandwidth = 140 GB/s\n"
                 "link.inter.alltoall.g4.alpha = 30 us\n"
                 "link.inter.alltoall.g4.bandwidth = 20 GB/s\n"
                 "link.inter.alltoall.g4.break = 64 KiB\n"
                 "link.inter.alltoall.g4.large_alpha = 50 us\n"
                 "link.inter.alltoall.g4.large_bandwidth = 40 GB/s\n"
                 "intra_injection = 400 GB/s\n"
                 "overlap.intra.hidden = 0\n"
                 "overlap.compute_ratio = 1.25\n");
    machine a;
    CHECK(machine_parse(text, "lines", &a, err, sizeof err) == 0, "pattern lines: %s", err);
    CHECK(a.n_links == 3 && a.injection_bytes_per_s[0] == 400e9 && a.overlap_hidden[0] == 0 &&
              a.overlap_hidden[1] < 0 && a.overlap_compute_ratio == 1.25,
          "pattern lines read: %d links", a.n_links);
    /* round trip */
    len = machine_format(&a, text, sizeof text);
    machine_format_optional(&a, text + len, sizeof text - len);
    machine b;
    CHECK(machine_parse(text, "round trip", &b, err, sizeof err) == 0, "round trip: %s", err);
    CHECK(b.n_links == a.n_links && !memcmp(b.links, a.links, sizeof a.links[0] * a.n_links) &&
              b.overlap_compute_ratio == a.overlap_compute_ratio &&
              b.overlap_hidden[0] == a.overlap_hidden[0],
          "pattern lines changed in the round trip");
    /* lookup order: the group's line, any group's, a return hop's ring shift, the tier */
    const machine_link *w;
    link_rate r = machine_link_rate(&a, TIER_INTRA, PAT_ALLGATHER, 2, &w);
    CHECK(w && r.bytes_per_s == 250e9 && r.alpha_s == 3e-6, "allgather g2: its own line");
    r = machine_link_rate(&a, TIER_INTRA, PAT_ALLGATHER, 4, &w);
    CHECK(!w && r.bytes_per_s == a.bytes_per_s[0], "allgather g4: the tier's rate");
    r = machine_link_rate(&a, TIER_INTRA, PAT_RING_SHIFT, 8, &w);
    CHECK(w && r.bytes_per_s == 140e9, "ring shift g8: the any-group line");
    r = machine_link_rate(&a, TIER_INTRA, PAT_RETURN_HOP, 4, &w);
    CHECK(w && r.bytes_per_s == 140e9, "return hop: the ring shift's line");
    r = machine_link_rate(&a, TIER_INTER, PAT_ALLTOALL, 4, &w);
    CHECK(w && close_to(link_rate_time(&r, 1e6, 2), 50e-6 + 2e6 / 40e9) &&
              close_to(link_rate_time(&r, 1e3, 1), 30e-6 + 1e3 / 20e9),
          "all-to-all g4 regimes");
    r = machine_link_rate(&a, TIER_INTER, PAT_PAIRWISE, 2, &w);
    CHECK(!w && r.bytes_per_s == a.bytes_per_s[1], "inter pairwise: the tier's rate");

    /* bad pattern lines: one line naming what is wrong */
    static const struct {
        const char *add, *want;
    } bad[] = {
        {"link.intra.allgather.g2.alpha = 3 us\n", "has no bandwidth"},
        {"link.intra.allgather.g2.bandwidth = 3 GB/s\n", "has no alpha"},
        {"link.middle.allgather.alpha = 3 us\n", "is not a pattern line"},
        {"link.intra.gather.alpha = 3 us\n", "is not a pattern line"},
        {"link.intra.allgather.g1.alpha = 3 us\n", "is not a pattern line"},
        {"link.intra.allgather.gx.alpha = 3 us\n", "is not a pattern line"},
        {"link.intra.allgather.speed = 3 us\n", "is not a pattern line"},
        {"link.intra.allgather.alpha = 3 GB/s\n", "unit 'GB/s' is not accepted"},
        {"link.intra.allgather.alpha = 3 us\nlink.intra.allgather.alpha = 4 us\n", "appears twice"},
        {"link.intra.allgather.alpha = 3 us\nlink.intra.allgather.bandwidth = 3 GB/s\n"
         "link.intra.allgather.break = 1 MiB\n",
         "go together"},
        {"overlap.intra.hidden = 1.5\n", "outside [0, 1]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        len = machine_format(&m, text, sizeof text);
        strcat(text, bad[i].add);
        machine x;
        int rc = machine_parse(text, "bad", &x, err, sizeof err);
        CHECK(rc == -1 && strstr(err, bad[i].want), "bad line %zu: rc %d, '%s' (want '%s')", i, rc,
              err, bad[i].want);
    }
}

static void pattern_rates(void)
{
    machine m = load("dev-4gpu");
    set_profile(&m, "overlap = ideal\n");
    am_config c = {ALGO_A2D_NO, LAYOUT_CONTIGUOUS, AM_FWD, 4, 2, 2, 65536, 1, 16, 16, 64, 0, 2};
    am_time t0, t1;
    am_predict_time(&c, &m, &t0);
    machine fast = m;
    fast.n_links = 1;
    fast.links[0] = (machine_link){TIER_INTRA, PAT_ALLGATHER, 2, {2e-6, 2.5e11, 0, 0, 0}};
    am_predict_time(&c, &fast, &t1);
    int qa = phase_of(&c, "q_allgather"), ka = phase_of(&c, "kv_allgather");
    for (int f = 0; f < t0.F; f++) {
        if (f == qa || f == ka) continue;
        CHECK(t0.phase_s[f] == t1.phase_s[f], "phase %d changed by the all-gather line", f);
    }
    /* one step (g - 1 = 1) of alpha + m / bandwidth with the largest message */
    double m_q = (double)am_phase_max_message(&c, qa);
    CHECK(close_to(t1.phase_s[qa], 2e-6 + m_q / 2.5e11), "q_allgather %.9g, want %.9g",
          t1.phase_s[qa], 2e-6 + m_q / 2.5e11);
    CHECK(t1.phase_s[qa] < t0.phase_s[qa] && t1.phase_s[ka] < t0.phase_s[ka],
          "a faster all-gather line did not speed up the all-gathers");
    /* a reduce-scatter's line was measured with its combine: the model adds none */
    int rs = phase_of(&c, "partial_reduce_scatter");
    machine rsm = m;
    rsm.n_links = 1;
    rsm.links[0] = (machine_link){TIER_INTRA, PAT_REDUCE_SCATTER, 2, {4e-6, 1e11, 0, 0, 0}};
    am_time t4;
    am_predict_time(&c, &rsm, &t4);
    double m_p = (double)am_phase_max_message(&c, rs);
    CHECK(close_to(t4.phase_s[rs], 4e-6 + m_p / 1e11) && t0.phase_s[rs] > t0.transfer_s[rs],
          "reduce-scatter line: %.9g, want %.9g", t4.phase_s[rs], 4e-6 + m_p / 1e11);
    /* the profile's share of a pattern's rate */
    machine slow = fast;
    set_profile(&slow, "overlap = ideal\nlink_fraction.allgather = 0.5\n");
    am_time t2;
    am_predict_time(&c, &slow, &t2);
    CHECK(close_to(t2.phase_s[qa], 2e-6 + 2 * m_q / 2.5e11), "link fraction 0.5: %.9g",
          t2.phase_s[qa]);
    /* the one-rate-per-tier model: the machine without its lines, ideal overlap */
    machine tier;
    machine_tier_only(&fast, &tier);
    am_time t3;
    am_predict_time(&c, &tier, &t3);
    CHECK(!memcmp(t3.phase_s, t0.phase_s, sizeof t0.phase_s), "tier-only model differs");
}

static void overlap_modes(void)
{
    machine m = load("dev-4gpu");
    /* Ring forward, P = 4: compute and transfers of similar size */
    am_config c = {ALGO_RING, LAYOUT_CONTIGUOUS, AM_FWD, 4, 1, 4, 16384, 1, 32, 32, 128, 0, 2};
    am_time off, ideal, mid;
    set_profile(&m, "overlap = off\n");
    am_predict_time(&c, &m, &off);
    set_profile(&m, "overlap = ideal\n");
    am_predict_time(&c, &m, &ideal);
    int f = phase_of(&c, "ring_kv_steps");
    CHECK(off.hidden_s[f] == 0 && close_to(off.phase_s[f], off.compute_s[f] + off.transfer_s[f]),
          "overlap off: %.9g != %.9g + %.9g", off.phase_s[f], off.compute_s[f], off.transfer_s[f]);
    CHECK(ideal.hidden_s[f] > 0 &&
              close_to(ideal.phase_s[f],
                       ideal.compute_s[f] + ideal.transfer_s[f] - ideal.hidden_s[f]),
          "ideal overlap: phase %.9g, compute %.9g, transfer %.9g, hidden %.9g", ideal.phase_s[f],
          ideal.compute_s[f], ideal.transfer_s[f], ideal.hidden_s[f]);
    /* measured: half hidden, compute 1.2x slower beside a transfer */
    m.overlap_hidden[0] = 0.5, m.overlap_compute_ratio = 1.2;
    set_profile(&m, "overlap = measured\n");
    am_predict_time(&c, &m, &mid);
    CHECK(mid.phase_s[f] > ideal.phase_s[f] && mid.compute_s[f] > ideal.compute_s[f] &&
              close_to(mid.phase_s[f], mid.compute_s[f] + mid.transfer_s[f] - mid.hidden_s[f]),
          "measured overlap: %.9g (ideal %.9g, off %.9g)", mid.phase_s[f], ideal.phase_s[f],
          off.phase_s[f]);
    /* per step: stretched compute c' = c + 0.2 min(c, x), hidden 0.5 min(c', x) */
    double x = mid.transfer_s[f] / 3, c0 = ideal.compute_s[f] / 4;
    double cs = c0 + 0.2 * fmin(c0, x), want = 3 * (cs + x - 0.5 * fmin(cs, x)) + c0;
    CHECK(close_to(mid.phase_s[f], want), "measured overlap %.9g, want %.9g", mid.phase_s[f], want);
    /* a measured share of 1 with no slowdown is the ideal */
    m.overlap_hidden[0] = 1.0, m.overlap_compute_ratio = 1.0;
    am_predict_time(&c, &m, &mid);
    CHECK(close_to(mid.phase_s[f], ideal.phase_s[f]), "measured 1 != ideal");
    /* a phase rule beats the algorithm's */
    set_profile(&m, "overlap.ring = ideal\noverlap.ring.ring_kv_steps = off\n");
    am_predict_time(&c, &m, &mid);
    CHECK(close_to(mid.phase_s[f], off.phase_s[f]), "phase rule not applied");
    /* attnsim's own profile: Ring's backward sends its accumulators after the compute */
    machine own = load("dev-4gpu");
    am_config b = c;
    b.pass = AM_BWD;
    am_time tb;
    am_predict_time(&b, &own, &tb);
    int g = phase_of(&b, "ring_kv_grad_steps");
    CHECK(tb.hidden_s[g] == 0, "attnsim profile hid %.9g s of ring_kv_grad_steps", tb.hidden_s[g]);
}

static void collectives_and_kernels(void)
{
    machine m = load("a2d-paper-h100");
    am_config c = {ALGO_A2D_NO, LAYOUT_CONTIGUOUS, AM_FWD, 16, 4, 4, 65536, 1, 16, 16, 64, 1, 2};
    am_time ring, nccl;
    set_profile(&m, "overlap = ideal\n");
    am_predict_time(&c, &m, &ring);
    set_profile(&m, "overlap = ideal\ncollectives.a2d-no = nccl\ncollective_alpha = 25 us\n");
    am_predict_time(&c, &m, &nccl);
    int qa = phase_of(&c, "q_allgather"), rs = phase_of(&c, "partial_reduce_scatter");
    double msg = (double)am_phase_max_message(&c, qa);
    /* one latency, three steps of bandwidth on the NDR link (64 nodes x 1: every hop crosses) */
    CHECK(close_to(nccl.phase_s[qa], 25e-6 + 3 * msg / m.bytes_per_s[1]),
          "nccl all-gather %.9g, want %.9g", nccl.phase_s[qa], 25e-6 + 3 * msg / m.bytes_per_s[1]);
    CHECK(nccl.phase_s[rs] < ring.phase_s[rs], "nccl reduce-scatter not cheaper");
    /* staircase masks: split only costs causal A2D-O's row ring */
    am_config o = c;
    o.algo = ALGO_A2D_O;
    am_time fused, split;
    set_profile(&m, "overlap = ideal\n");
    am_predict_time(&o, &m, &fused);
    set_profile(&m, "overlap = ideal\nstaircase = split\nstaircase_efficiency = 0.5\n");
    am_predict_time(&o, &m, &split);
    int rr = phase_of(&o, "q_row_ring"), cr = phase_of(&o, "kv_column_ring");
    CHECK(split.compute_s[rr] > fused.compute_s[rr] && split.phase_s[cr] == fused.phase_s[cr],
          "staircase split: row ring %.9g vs %.9g, column ring %.9g vs %.9g", split.compute_s[rr],
          fused.compute_s[rr], split.phase_s[cr], fused.phase_s[cr]);
    o.causal = 0;
    am_predict_time(&o, &m, &split);
    set_profile(&m, "overlap = ideal\n");
    am_predict_time(&o, &m, &fused);
    CHECK(!memcmp(split.phase_s, fused.phase_s, sizeof fused.phase_s),
          "staircase split changed a non-causal run");
    /* compute_scale: the tile's rate */
    am_time one, two;
    am_predict_time(&c, &m, &one);
    set_profile(&m, "overlap = ideal\ncompute_scale = 2\nkernel_overhead = 0 us\n");
    am_predict_time(&c, &m, &two);
    set_profile(&m, "overlap = ideal\nkernel_overhead = 0 us\n");
    am_predict_time(&c, &m, &one);
    int at = phase_of(&c, "attention");
    CHECK(close_to(two.phase_s[at], one.phase_s[at] / 2), "compute_scale 2: %.9g vs %.9g",
          two.phase_s[at], one.phase_s[at]);
}

static void profiles(void)
{
    char err[600], text[8192];
    impl_profile p, q;
    for (const char *const *n = profile_preset_names(); *n; n++) {
        CHECK(profile_load(*n, &p, err, sizeof err) == 0, "profile preset %s: %s", *n, err);
        profile_format(&p, text, sizeof text);
        CHECK(profile_parse(text, "round trip", &q, err, sizeof err) == 0, "%s: %s", *n, err);
        for (int a = 0; a < AM_NUM_ALGOS; a++) {
            const am_phase_desc *ph[AM_MAX_PHASES];
            am_config c = {(am_algo)a, 0, AM_TRAIN, 4, 2, 2, 4096, 1, 4, 4, 32, 1, 2};
            int F = am_phases(&c, ph);
            for (int f = 0; f < F; f++)
                CHECK(profile_overlap(&p, (am_algo)a, ph[f]->id) ==
                          profile_overlap(&q, (am_algo)a, ph[f]->id),
                      "%s: overlap of %s changed in the round trip", *n, ph[f]->name);
            CHECK(profile_collectives(&p, (am_algo)a) == profile_collectives(&q, (am_algo)a) &&
                      profile_staircase(&p, (am_algo)a) == profile_staircase(&q, (am_algo)a) &&
                      profile_compute_scale(&p, (am_algo)a) ==
                          profile_compute_scale(&q, (am_algo)a) &&
                      profile_link_fraction(&p, (am_algo)a, PAT_RING_SHIFT) ==
                          profile_link_fraction(&q, (am_algo)a, PAT_RING_SHIFT),
                  "%s: settings changed in the round trip", *n);
        }
    }
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"colour = blue\n", "is not a key of a profile"},
        {"overlap = sometimes\n", "accepted: measured, ideal, off"},
        {"overlap = 1.5\n", "accepted: measured, ideal, off"},
        {"overlap.rings = off\n", "'rings' is not an algorithm; accepted: ring"},
        {"overlap.ring.attention = off\n",
         "not an overlapped phase of ring; accepted: ring_kv_steps"},
        {"collectives = mpi\n", "accepted: ring, nccl"},
        {"link_fraction = 0.5\n", "needs a pattern"},
        {"link_fraction.gather = 0.5\n", "'gather' is not a pattern"},
        {"link_fraction.allgather = 0\n", "a fraction in (0, 1]"},
        {"compute_scale = 101\n", "a factor in (0, 100]"},
        {"kernel_overhead = 3\n", "a time 0 ... 10 s"},
        {"staircase = split\nstaircase = fused\n", "appears twice"},
        {"name = x\nstaircase.a2d-o.q_row_ring = split\n", "too many qualifiers"},
        {"overlap\n", "is not 'key = value'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = profile_parse(bad[i].text, "bad.profile", &p, err, sizeof err);
        CHECK(rc == -1 && strstr(err, bad[i].want) && strstr(err, "bad.profile:"),
              "bad profile %zu: rc %d, '%s' (want '%s')", i, rc, err, bad[i].want);
    }
    CHECK(profile_load("no-such-profile", &p, err, sizeof err) == -1 &&
              strstr(err, "accepted: a2d-paper, attnsim, ideal, torch-cp"),
          "unknown profile: %s", err);
}

static void fixed_costs(void)
{
    /* every preset has a fixed cost per kernel call, so a small shard's compute is not zero */
    for (const char *const *n = machine_preset_names(); *n; n++) {
        machine m = load(*n);
        CHECK(m.kernel_overhead_s > 0, "preset %s has no kernel_overhead", *n);
        am_config c = {ALGO_RING, LAYOUT_CONTIGUOUS, AM_FWD, 64, 1, 64, 1024, 1, 1, 1, 16, 0, 2};
        am_time t;
        am_predict_time(&c, &m, &t);
        CHECK(t.compute_s[0] >= 64 * m.kernel_overhead_s, "preset %s: a step's compute %.3g s", *n,
              t.compute_s[0]);
    }
}

int main(void)
{
    machine_lines();
    pattern_rates();
    overlap_modes();
    collectives_and_kernels();
    profiles();
    fixed_costs();
    return test_finish("test_time_patterns");
}
