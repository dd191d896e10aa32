/* test_decode.c - the decode work plan (kn_decode.h), the C reference decode kernels
 * (kn_attn_decode.h) and the decode time model (models/decode.h):
 *   1. the plan: every tile streamed by exactly one CTA under each scheme, Lean ranges and their
 *      inverse, unit lookup, one partial per Lean CTA and hosts waiting only on higher CTAs, and
 *      FlashDecoding's split count recomputed from its definition;
 *   2. kn_decode against the float64 reference for every scheme and storage type, with ragged
 *      and empty sequences, GQA groups, units split over many CTAs and many units per CTA;
 *   3. the counted bytes and the stats against kn_decode_predict_bytes;
 *   4. the time model: floor, a lone CTA, Lean at full bandwidth, the wave-quantisation cliff,
 *      FlashDecoding never ahead of Lean, and its agreement with the kernels' grid. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "kn_attn_decode.h"
#include "test_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1p-53;
}

static const long long SLOTS[] = {1, 2, 3, 7, 132, 264, 1000};
#define NSLOTS (sizeof SLOTS / sizeof SLOTS[0])
/* (h, h_kv): g = 1, 4, 8, 20 (two groups: 16 + 4 rows), 32 (two full groups) */
static const long long HEADS[][2] = {{4, 4}, {8, 2}, {16, 2}, {40, 2}, {20, 1}, {32, 1}};
#define NHEADS (sizeof HEADS / sizeof HEADS[0])
static const long long DIMS[] = {64, 128, 96};
static const kn_dec_scheme SCHEMES[] = {KN_DEC_FA2, KN_DEC_SPLIT, KN_DEC_LEAN};

/* Sequence lengths of pattern `pat` for b sequences with tile T: the edge lengths (0, 1,
 * T - 1, T, T + 1), equal multi-tile lengths, or random ones up to 4 T. */
static void make_lens(int pat, long long b, long long T, int *lens)
{
    const long long edge[] = {0, 1, T - 1, T, T + 1, 3 * T + 5};
    for (long long i = 0; i < b; i++) {
        switch (pat) {
        case 0:
            lens[i] = (int)edge[i % 6];
            break;
        case 1:
            lens[i] = (int)edge[(i + 3) % 6];
            break;
        case 2:
            lens[i] = (int)(3 * T);
            break;
        default:
            lens[i] = (int)(urand() * 4 * (double)T);
        }
    }
}
#define NPATS 4

static long long max_tiles(const kn_dec_plan *p, const int *lens)
{
    long long mx = 1;
    for (long long i = 0; i < p->b; i++)
        if (kn_dec_seq_tiles(p, lens[i]) > mx) mx = kn_dec_seq_tiles(p, lens[i]);
    return mx;
}

/* FlashDecoding's split count from its definition (flash-attn's num_splits_heuristic), with the
 * efficiencies as exact fractions reduced by their gcd and compared in long double. */
static long long gcd(long long a, long long b)
{
    while (b) {
        long long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static long long expected_splits(long long units, long long mt, long long slots)
{
    if (10 * units >= 8 * slots) return 1;
    long long lim = 128;
    if (slots < lim) lim = slots;
    if (mt < lim) lim = mt;
    long long num[129] = {0}, den[129] = {0};
    int ok[129] = {0};
    long long bn = 0, bd = 1;
    for (long long s = 1; s <= lim; s++) {
        long long per = (mt + s - 1) / s;
        ok[s] = s == 1 || per != (mt + s - 2) / (s - 1); /* s changes the tiles per split */
        if (!ok[s]) continue;
        long long work = units * s, cap = (work + slots - 1) / slots * slots, q = gcd(work, cap);
        num[s] = work / q;
        den[s] = cap / q;
        if ((long double)num[s] / den[s] > (long double)bn / bd) {
            bn = num[s];
            bd = den[s];
        }
    }
    for (long long s = 1; s <= lim; s++)
        if (ok[s] && 20 * num[s] * bd >= 17 * bn * den[s]) return s; /* eff >= 0.85 best */
    return 1;
}

/* ---- 1. the plan ---------------------------------------------------------------------------- */

static void check_plan(long long b, long long h, long long hkv, long long d, const int *lens,
                       long long slots)
{
    kn_dec_plan p = kn_dec_make_plan(b, h, hkv, d);
    long long w = kn_dec_total_tiles(&p, lens), units = p.units;
    CHECK(p.g == h / hkv && p.group * p.groups >= p.g && p.group <= KN_DEC_MAX_GROUP &&
              (p.groups - 1) * p.group < p.g,
          "groups of g=%lld: group %lld x %lld", p.g, p.group, p.groups);
    CHECK(units == b * hkv * p.groups, "units %lld", units);
    int *cover = calloc((size_t)w, sizeof(int));
    long long *unit_of = malloc((size_t)w * sizeof(long long));

    /* unit_first: units end to end, tile counts from the sequence; locate is its inverse */
    long long sum = 0;
    for (long long u = 0; u < units; u++) {
        long long n, first = kn_dec_unit_first(&p, lens, u, &n);
        long long len = lens[u / kn_dec_units_per_seq(&p)];
        long long want_n = len == 0 ? 1 : (len + p.tile - 1) / p.tile;
        CHECK(first == sum && n == want_n, "unit %lld: first %lld (want %lld) n %lld (want %lld)",
              u, first, sum, n, want_n);
        for (long long t = first; t < first + n && t < w; t++) {
            long long f2, n2, u2 = kn_dec_locate(&p, lens, t, &f2, &n2);
            CHECK(u2 == u && f2 == first && n2 == n, "locate(%lld) = %lld/%lld/%lld, want %lld", t,
                  u2, f2, n2, u);
            unit_of[t] = u;
        }
        sum += n;
    }
    CHECK(sum == w, "W %lld, sum of unit tiles %lld", w, sum);

    /* FA2: unit u's CTA takes its n tiles */
    memset(cover, 0, (size_t)w * sizeof(int));
    for (long long u = 0; u < units; u++) {
        long long n, first = kn_dec_unit_first(&p, lens, u, &n);
        for (long long k = 0; k < n; k++) cover[first + k]++;
    }
    for (long long t = 0; t < w; t++) CHECK(cover[t] == 1, "fa2: tile %lld x%d", t, cover[t]);

    /* FlashDecoding: the heuristic, then CTA (u, j) takes split j of unit u */
    long long mt = max_tiles(&p, lens), s = kn_dec_splits(&p, mt, slots);
    long long lim = mt < slots ? mt : slots;
    if (lim > KN_DEC_MAX_SPLITS) lim = KN_DEC_MAX_SPLITS;
    CHECK(s >= 1 && s <= lim, "splits %lld outside [1, %lld]", s, lim);
    if (10 * units >= 8 * slots)
        CHECK(s == 1, "splits %lld with %lld units >= 0.8 slots", s, units);
    CHECK(s == expected_splits(units, mt, slots),
          "splits %lld, want %lld (units %lld, mt %lld, "
          "slots %lld)",
          s, expected_splits(units, mt, slots), units, mt, slots);
    memset(cover, 0, (size_t)w * sizeof(int));
    for (long long u = 0; u < units; u++) {
        long long n, first = kn_dec_unit_first(&p, lens, u, &n), prev = 0;
        for (long long j = 0; j < s; j++) {
            long long k0, k1;
            kn_dec_split_range(n, s, j, &k0, &k1);
            CHECK(k0 == prev && k0 <= k1 && k1 <= n, "split %lld of %lld: [%lld, %lld) of %lld", j,
                  s, k0, k1, n);
            for (long long k = k0; k < k1 && k < n; k++) cover[first + k]++;
            prev = k1;
        }
    }
    for (long long t = 0; t < w; t++) CHECK(cover[t] == 1, "split: tile %lld x%d", t, cover[t]);

    /* Lean: min(W, slots) contiguous ranges of q or q + 1 tiles covering [0, W); one CTA per
     * unit where the units fit the slots, all have n tiles and n <= ceil(W / slots) */
    long long nc = kn_dec_lean_ctas(&p, lens, w, slots), prev = 0;
    long long want_nc = w < slots ? w : slots;
    {
        long long n0 = -1, same = 1;
        for (long long u = 0; u < units; u++) {
            long long n;
            kn_dec_unit_first(&p, lens, u, &n);
            if (n0 >= 0 && n != n0) same = 0;
            n0 = n;
        }
        if (same && units <= slots && n0 <= (w + slots - 1) / slots) want_nc = units;
    }
    CHECK(nc == want_nc, "lean grid %lld, want %lld", nc, want_nc);
    const int aligned = nc == units && units < (w < slots ? w : slots);
    memset(cover, 0, (size_t)w * sizeof(int));
    for (long long c = 0; c < nc; c++) {
        long long b0, e0;
        kn_dec_lean_range(w, nc, c, &b0, &e0);
        CHECK(b0 == prev && e0 - b0 >= w / nc && e0 - b0 <= w / nc + 1,
              "lean cta %lld: [%lld, %lld) after %lld", c, b0, e0, prev);
        for (long long t = b0; t < e0 && t < w; t++) {
            cover[t]++;
            long long c2 = kn_dec_lean_cta(w, nc, t);
            CHECK(c2 == c, "lean_cta(%lld) = %lld, want %lld", t, c2, c);
        }
        /* a CTA contributes only to the first unit it touches, and only if it starts inside */
        int contrib = 0;
        for (long long t = b0; t < e0 && t < w;) {
            long long first, n;
            kn_dec_locate(&p, lens, t, &first, &n);
            if (t > first) {
                contrib++;
                CHECK(t == b0, "lean cta %lld starts inside unit at tile %lld, not its first", c,
                      t);
            }
            t = first + n;
        }
        CHECK(contrib <= 1, "lean cta %lld contributes to %d units", c, contrib);
        CHECK(!aligned || contrib == 0, "lean cta %lld: a partial in the one-unit-per-CTA grid", c);
        prev = e0;
    }
    CHECK(prev == w, "lean ranges end at %lld, W %lld", prev, w);
    for (long long t = 0; t < w; t++) CHECK(cover[t] == 1, "lean: tile %lld x%d", t, cover[t]);
    /* a host waits only on the higher-numbered CTAs that hold the rest of its unit */
    for (long long u = 0; u < units; u++) {
        long long n, first = kn_dec_unit_first(&p, lens, u, &n);
        long long host = kn_dec_lean_cta(w, nc, first),
                  last = kn_dec_lean_cta(w, nc, first + n - 1);
        CHECK(last >= host, "unit %lld: last cta %lld < host %lld", u, last, host);
        for (long long c = host + 1; c <= last; c++) {
            long long b0, e0;
            kn_dec_lean_range(w, nc, c, &b0, &e0);
            CHECK(b0 > first && b0 < first + n && unit_of[b0] == u,
                  "unit %lld: cta %lld [%lld, %lld) is no contributor", u, c, b0, e0);
        }
    }
    free(cover);
    free(unit_of);
}

static void test_plan(void)
{
    int lens[8];
    for (long long b = 1; b <= 5; b++)
        for (size_t hi = 0; hi < NHEADS; hi++)
            for (size_t di = 0; di < 3; di++)
                for (int pat = 0; pat < NPATS; pat++) {
                    make_lens(pat, b, kn_dec_tile(DIMS[di]), lens);
                    for (size_t si = 0; si < NSLOTS; si++)
                        check_plan(b, HEADS[hi][0], HEADS[hi][1], DIMS[di], lens, SLOTS[si]);
                }
    /* Lean's one-CTA-per-unit grid: 128 units of 2 tiles on 132 slots (ceil(256 / 132) = 2),
     * not when one sequence is a tile longer or the units exceed the slots */
    {
        int eq[16];
        const long long T = kn_dec_tile(128);
        for (int i = 0; i < 16; i++) eq[i] = (int)(2 * T);
        check_plan(16, 32, 8, 128, eq, 132);
        kn_dec_plan p = kn_dec_make_plan(16, 32, 8, 128);
        CHECK(kn_dec_lean_ctas(&p, eq, kn_dec_total_tiles(&p, eq), 132) == 128, "aligned grid");
        check_plan(16, 32, 8, 128, eq, 100);
        CHECK(kn_dec_lean_ctas(&p, eq, kn_dec_total_tiles(&p, eq), 100) == 100, "grid of 100");
        eq[5] = (int)(3 * T);
        check_plan(16, 32, 8, 128, eq, 132);
        CHECK(kn_dec_lean_ctas(&p, eq, kn_dec_total_tiles(&p, eq), 132) == 132, "ragged grid");
    }
    /* the split heuristic on long sequences, where s > 1 and ineligible counts occur */
    for (long long units = 1; units <= 300; units += 7)
        for (long long mt = 1; mt <= 1100; mt = mt * 3 + 1)
            for (size_t si = 0; si < NSLOTS; si++) {
                kn_dec_plan p = kn_dec_make_plan(units, 1, 1, 128);
                long long s = kn_dec_splits(&p, mt, SLOTS[si]);
                CHECK(s == expected_splits(units, mt, SLOTS[si]),
                      "splits(units %lld, mt %lld, slots %lld) = %lld, want %lld", units, mt,
                      SLOTS[si], s, expected_splits(units, mt, SLOTS[si]));
            }
    /* an exact tie: s = 2 is at exactly 85 % of the best efficiency (s = 40), so it is chosen */
    {
        kn_dec_plan p = kn_dec_make_plan(106, 1, 1, 128);
        CHECK(kn_dec_splits(&p, 40, 264) == 2, "tie: splits %lld", kn_dec_splits(&p, 40, 264));
    }
    /* the tile size by head dim */
    CHECK(kn_dec_tile(64) == 256 && kn_dec_tile(128) == 128 && kn_dec_tile(96) == 128 &&
              kn_dec_tile(256) == 64,
          "tiles %lld %lld %lld", kn_dec_tile(64), kn_dec_tile(128), kn_dec_tile(256));
}

/* ---- 2 and 3. the kernels ------------------------------------------------------------------- */

typedef struct {
    kn_decode_io io;
    double *o, *lse;
} dec_problem;

/* Random q, k, v in the storage type; K/V rows past a sequence's length and the outputs are NaN,
 * so reading a stale row or skipping a write shows. */
static void problem_init(dec_problem *x, const kn_dec_plan *p, const int *lens, kn_dtype dt,
                         int with_ref)
{
    size_t ncap = 1, d = (size_t)p->d, rows = (size_t)(p->b * p->h);
    for (long long i = 0; i < p->b; i++)
        if ((size_t)lens[i] > ncap) ncap = (size_t)lens[i];
    ncap += 3;
    size_t kv = (size_t)(p->b * p->h_kv) * ncap * d;
    kn_tensor_alloc(&x->io.q, dt, rows * d, "q");
    kn_tensor_alloc(&x->io.o, dt, rows * d, "o");
    kn_tensor_alloc(&x->io.k, dt, kv, "k");
    kn_tensor_alloc(&x->io.v, dt, kv, "v");
    kn_tensor_alloc(&x->io.lse, KN_F32, rows, "lse");
    x->io.n_cap = ncap;
    x->io.lens = lens;
    for (size_t i = 0; i < rows * d; i++) {
        kn_tensor_set(&x->io.q, i, (float)((urand() * 2 - 1) * 3.0));
        kn_tensor_set(&x->io.o, i, NAN);
    }
    for (size_t i = 0; i < rows; i++) kn_tensor_set(&x->io.lse, i, NAN);
    for (size_t i = 0; i < kv; i++) {
        size_t tok = (i / d) % ncap, seq = i / d / ncap / (size_t)p->h_kv;
        int valid = tok < (size_t)lens[seq];
        kn_tensor_set(&x->io.k, i, valid ? (float)(urand() * 2 - 1) : NAN);
        kn_tensor_set(&x->io.v, i, valid ? (float)(urand() * 2 - 1) : NAN);
    }
    x->o = malloc(rows * d * sizeof(double));
    x->lse = malloc(rows * sizeof(double));
    if (with_ref) kn_decode_ref_f64(p, &x->io, x->o, x->lse);
}

static void problem_free(dec_problem *x)
{
    kn_tensor_free(&x->io.q);
    kn_tensor_free(&x->io.o);
    kn_tensor_free(&x->io.k);
    kn_tensor_free(&x->io.v);
    kn_tensor_free(&x->io.lse);
    free(x->o);
    free(x->lse);
}

/* O's storage rounding dominates: half an ulp near 1, plus f32 arithmetic. */
static double o_tolerance(kn_dtype dt)
{
    return dt == KN_F32 ? 2e-5 : dt == KN_F16 ? 1.5e-3 : 8e-3;
}

static long long runs, split_runs, lean_split_units;

static void check_stats_equal(const kn_decode_stats *a, const kn_decode_stats *b, const char *what)
{
    CHECK(a->ctas == b->ctas && a->splits == b->splits && a->busiest == b->busiest &&
              a->partials == b->partials && a->max_partials == b->max_partials,
          "%s: stats ctas %lld/%lld splits %lld/%lld busiest %lld/%lld partials %lld/%lld max "
          "%lld/%lld",
          what, a->ctas, b->ctas, a->splits, b->splits, a->busiest, b->busiest, a->partials,
          b->partials, a->max_partials, b->max_partials);
}

/* Runs every scheme on one problem: outputs against the reference, bytes and stats against the
 * prediction, flops against 4 d per (query head, valid key). */
static void check_kernels(long long b, long long h, long long hkv, long long d, const int *lens,
                          long long slots, kn_dtype dt, int check_values)
{
    kn_dec_plan p = kn_dec_make_plan(b, h, hkv, d);
    dec_problem x;
    problem_init(&x, &p, lens, dt, check_values);
    size_t rows = (size_t)(b * h);
    uint64_t keys = 0;
    for (long long i = 0; i < b; i++) keys += (uint64_t)lens[i];
    for (size_t si = 0; si < 3; si++) {
        kn_dec_scheme sc = SCHEMES[si];
        for (size_t i = 0; i < rows * (size_t)d; i++) kn_tensor_set(&x.io.o, i, NAN);
        for (size_t i = 0; i < rows; i++) kn_tensor_set(&x.io.lse, i, NAN);
        kn_counters c = {0};
        kn_decode_stats st, pst;
        kn_decode(&p, sc, slots, &x.io, &c, &st);
        runs++;
        if (sc == KN_DEC_SPLIT && st.splits > 1) split_runs++;
        uint64_t prd, pwr;
        kn_decode_predict_bytes(&p, sc, slots, lens, dt, &prd, &pwr, &pst);
        char what[160];
        snprintf(what, sizeof what, "%s %s b=%lld h=%lld hkv=%lld d=%lld slots=%lld lens[0]=%d",
                 kdm_scheme_name(sc), kn_dtype_name(dt), b, h, hkv, d, slots, lens[0]);
        CHECK(c.bytes_read == prd && c.bytes_written == pwr,
              "%s: read %llu (pred %llu) written %llu (pred %llu)", what,
              (unsigned long long)c.bytes_read, (unsigned long long)prd,
              (unsigned long long)c.bytes_written, (unsigned long long)pwr);
        CHECK(c.flops == 4ull * (uint64_t)d * (uint64_t)p.g * (uint64_t)hkv * keys,
              "%s: flops %llu", what, (unsigned long long)c.flops);
        check_stats_equal(&st, &pst, what);
        /* the time model builds the same grid */
        kdm_params mp = {3.35e12, 3e10, 3e-6, 1e-6, 0.0};
        kdm_prediction pr;
        int rc = kdm_predict(&p, lens, sc, slots, kn_dtype_bytes(dt), &mp, &pr);
        CHECK(rc == 0 && pr.ctas == st.ctas && pr.splits == st.splits &&
                  pr.busiest_tiles == st.busiest,
              "%s: model grid %lld s %lld busiest %lld", what, pr.ctas, pr.splits,
              pr.busiest_tiles);
        if (sc == KN_DEC_LEAN && st.max_partials > 0) lean_split_units++;
        if (!check_values) continue;
        double err = 0, lerr = 0;
        int nan = 0, inf_ok = 1;
        for (size_t r = 0; r < rows; r++) {
            double lse = kn_tensor_get(&x.io.lse, r);
            nan |= isnan(lse);
            if (isinf(x.lse[r]) || isinf(lse))
                inf_ok &= lse == x.lse[r];
            else
                lerr = fmax(lerr, fabs(lse - x.lse[r]) / fmax(1.0, fabs(x.lse[r])));
            for (size_t e = 0; e < (size_t)d; e++) {
                double o = kn_tensor_get(&x.io.o, r * (size_t)d + e);
                nan |= isnan(o);
                err = fmax(err, fabs(o - x.o[r * (size_t)d + e]));
            }
        }
        CHECK(!nan, "%s: NaN in O or LSE", what);
        CHECK(err <= o_tolerance(dt), "%s: max |O - ref| %.3g > %.3g", what, err, o_tolerance(dt));
        CHECK(lerr <= 2e-5 && inf_ok, "%s: LSE err %.3g, -inf rows %s", what, lerr,
              inf_ok ? "ok" : "wrong");
    }
    problem_free(&x);
}

static void test_kernels(void)
{
    static const kn_dtype dts[] = {KN_F32, KN_F16, KN_BF16};
    int lens[8];
    /* values: every scheme, storage type, GQA shape and head dim, with few and many slots */
    for (size_t hi = 0; hi < NHEADS; hi++)
        for (size_t di = 0; di < 3; di++)
            for (int pat = 0; pat < NPATS; pat++) {
                long long b = 1 + (long long)((hi + di + (size_t)pat) % 5),
                          T = kn_dec_tile(DIMS[di]);
                make_lens(pat, b, T, lens);
                for (size_t si = 0; si < NSLOTS; si += 2)
                    check_kernels(b, HEADS[hi][0], HEADS[hi][1], DIMS[di], lens, SLOTS[si],
                                  dts[(hi + di + si) % 3], 1);
            }
    /* short sequences (less than a tile) and units split over many CTAs */
    for (size_t ti = 0; ti < 3; ti++) {
        int shortl[4] = {5, 0, 17, 1}, longl[3] = {0, 1800, 700};
        check_kernels(4, 8, 2, 64, shortl, 264, dts[ti], 1);
        check_kernels(3, 20, 1, 128, longl, 1000, dts[ti], 1);
        check_kernels(3, 40, 2, 96, longl, 132, dts[ti], 1);
        check_kernels(3, 8, 8, 64, longl, 3, dts[ti], 1);
    }
    /* bytes and stats over the plan grid (values already covered above) */
    for (long long b = 1; b <= 5; b += 2)
        for (size_t hi = 0; hi < NHEADS; hi++)
            for (size_t di = 0; di < 3; di += 2)
                for (int pat = 0; pat < NPATS; pat += 3) {
                    make_lens(pat, b, kn_dec_tile(DIMS[di]), lens);
                    for (size_t si = 0; si < NSLOTS; si++)
                        check_kernels(b, HEADS[hi][0], HEADS[hi][1], DIMS[di], lens, SLOTS[si],
                                      dts[(size_t)b % 3], 0);
                }
    /* the grid must have exercised the splitting paths */
    CHECK(split_runs > 10 && lean_split_units > 10, "runs %lld: %lld split, %lld lean fix-ups",
          runs, split_runs, lean_split_units);
}

/* ---- 4. the time model ---------------------------------------------------------------------- */

static double rel(double a, double b)
{
    return fabs(a - b) / fmax(fabs(b), 1e-300);
}

static void test_model(void)
{
    static const kn_dec_scheme all[] = {KN_DEC_FA2, KN_DEC_SPLIT, KN_DEC_LEAN};
    kdm_params h100 = {3.35e12, 3e10, 3e-6, 1e-6, 0.0};
    kdm_prediction pr;
    int lens[64];

    CHECK(!strcmp(kdm_scheme_name(KN_DEC_FA2), "fa2") &&
              !strcmp(kdm_scheme_name(KN_DEC_SPLIT), "flash-decoding") &&
              !strcmp(kdm_scheme_name(KN_DEC_LEAN), "lean"),
          "scheme names");
    /* invalid inputs */
    {
        kn_dec_plan p = kn_dec_make_plan(1, 8, 2, 64);
        lens[0] = 100;
        kdm_params bad[4] = {h100, h100, h100, h100};
        bad[0].hbm_bw = 0;
        bad[1].cta_rate = -1;
        bad[2].hbm_bw = NAN;
        bad[3].cta_rate = 0;
        CHECK(kdm_predict(&p, lens, KN_DEC_LEAN, 0, 2, &h100, &pr) == -1, "slots 0 accepted");
        for (int i = 0; i < 4; i++)
            CHECK(kdm_predict(&p, lens, KN_DEC_LEAN, 132, 2, &bad[i], &pr) == -1,
                  "bad rates %d accepted", i);
        CHECK(kdm_predict(&p, lens, KN_DEC_LEAN, 132, 2, &h100, &pr) == 0, "valid input refused");
    }
    /* floor <= time everywhere, and the K/V bytes are the valid rows */
    for (long long b = 1; b <= 5; b++)
        for (size_t hi = 0; hi < NHEADS; hi++)
            for (int pat = 0; pat < NPATS; pat++) {
                kn_dec_plan p = kn_dec_make_plan(b, HEADS[hi][0], HEADS[hi][1], 128);
                make_lens(pat, b, p.tile, lens);
                double kv = 0;
                for (long long i = 0; i < b; i++) kv += 2.0 * lens[i] * 128 * 2 * p.h_kv * p.groups;
                for (size_t si = 0; si < NSLOTS; si++)
                    for (int k = 0; k < 3; k++) {
                        int rc = kdm_predict(&p, lens, all[k], SLOTS[si], 2, &h100, &pr);
                        CHECK(
                            rc == 0 && pr.floor_s <= pr.time_s && pr.stream_s >= 0 &&
                                pr.time_s >= pr.stream_s + h100.launch_s &&
                                rel(pr.kv_bytes, kv) < 1e-12 &&
                                rel(pr.floor_s, (kv / (double)p.groups + 2.0 * b * p.h * 128 * 2) /
                                                    h100.hbm_bw) < 1e-12 &&
                                pr.waves == (pr.ctas + SLOTS[si] - 1) / SLOTS[si],
                            "%s b=%lld h=%lld slots=%lld: floor %.4g time %.4g kv %.4g/%.4g",
                            kdm_scheme_name(all[k]), b, p.h, SLOTS[si], pr.floor_s, pr.time_s,
                            pr.kv_bytes, kv);
                    }
            }
    /* Lean at full bandwidth: with CTAs of equal bytes its streaming is the floor's K/V part */
    {
        kdm_params fast = {3.35e12, 1e30, 2e-6, 0.0, 0.0};
        long long shapes[][4] = {{2, 8, 8, 32}, {4, 32, 8, 264}, {3, 20, 1, 1000}, {1, 4, 4, 4}};
        for (int i = 0; i < 4; i++) {
            kn_dec_plan p = kn_dec_make_plan(shapes[i][0], shapes[i][1], shapes[i][2], 128);
            for (long long j = 0; j < p.b; j++) lens[j] = (int)(4 * p.tile);
            long long w = kn_dec_total_tiles(&p, lens), slots = shapes[i][3];
            if (w > slots && w % slots) continue;
            kdm_predict(&p, lens, KN_DEC_LEAN, slots, 2, &fast, &pr);
            CHECK(rel(pr.stream_s, pr.kv_bytes / fast.hbm_bw) < 1e-9 &&
                      rel(pr.time_s, fast.launch_s + pr.stream_s) < 1e-12,
                  "lean full bandwidth W=%lld slots=%lld: stream %.12g, kv/bw %.12g", w, slots,
                  pr.stream_s, pr.kv_bytes / fast.hbm_bw);
        }
    }
    /* a lone CTA streams at its own rate */
    for (int k = 0; k < 3; k++) {
        kn_dec_plan p = kn_dec_make_plan(1, 4, 1, 64);
        lens[0] = 1000;
        kdm_predict(&p, lens, all[k], 1, 2, &h100, &pr);
        double bytes = 2.0 * 1000 * 64 * 2;
        CHECK(pr.ctas == 1 && rel(pr.time_s, h100.launch_s + bytes / h100.cta_rate) < 1e-12,
              "%s lone CTA: time %.12g, want %.12g", kdm_scheme_name(all[k]), pr.time_s,
              h100.launch_s + bytes / h100.cta_rate);
    }
    /* the terms after streaming: Lean's host merges 3 partials (unit 0 = tiles 0..39 on CTAs
     * 0..3 of 10 tiles each), FlashDecoding's combine is a launch and a read of every partial */
    {
        kn_dec_plan p = kn_dec_make_plan(1, 8, 2, 128);
        lens[0] = (int)(40 * p.tile);
        kdm_params m = {3.35e12, 3e10, 3e-6, 1e-6, 0.0};
        kdm_prediction fd, lean;
        kdm_predict(&p, lens, KN_DEC_LEAN, 8, 2, &m, &lean);
        CHECK(lean.ctas == 8 &&
                  rel(lean.time_s, m.launch_s + lean.stream_s + 3 * m.fixup_s) < 1e-12,
              "lean fix-up: time %.12g stream %.12g", lean.time_s, lean.stream_s);
        kdm_predict(&p, lens, KN_DEC_SPLIT, 8, 2, &m, &fd);
        double part = 2.0 * 4 * (double)fd.splits * (128 + 2) * 4;
        CHECK(fd.splits == expected_splits(2, 40, 8) && fd.splits > 1 &&
                  rel(fd.time_s, 2 * m.launch_s + fd.stream_s + part / m.hbm_bw) < 1e-12,
              "combine: s %lld time %.12g stream %.12g", fd.splits, fd.time_s, fd.stream_s);
        /* g = 20: two units of 16 and 4 query heads, 20 partial rows per split */
        kn_dec_plan p20 = kn_dec_make_plan(1, 20, 1, 128);
        kdm_predict(&p20, lens, KN_DEC_SPLIT, 8, 2, &m, &fd);
        part = 20.0 * (double)fd.splits * (128 + 2) * 4;
        CHECK(fd.splits > 1 &&
                  rel(fd.time_s, 2 * m.launch_s + fd.stream_s + part / m.hbm_bw) < 1e-12,
              "combine g=20: s %lld time %.12g stream %.12g", fd.splits, fd.time_s, fd.stream_s);
    }
    /* A Lean host's fix-up latency is paid once, only where some host merges a partial. */
    {
        kn_dec_plan p = kn_dec_make_plan(1, 4, 1, 128);
        lens[0] = (int)(64 * p.tile); /* one unit: hosts merge partials at > 1 slot */
        kdm_params m0 = {3.35e12, 3e10, 3e-6, 1e-7, 0.0}, m1 = m0;
        m1.fixup_latency_s = 2e-6;
        kdm_prediction a, b;
        kdm_predict(&p, lens, KN_DEC_LEAN, 16, 2, &m0, &a);
        kdm_predict(&p, lens, KN_DEC_LEAN, 16, 2, &m1, &b);
        CHECK(fabs(b.time_s - a.time_s - 2e-6) < 1e-12, "latency once: %.9g vs %.9g", b.time_s,
              a.time_s);
        kdm_predict(&p, lens, KN_DEC_LEAN, 1, 2, &m0, &a); /* one CTA: no partial */
        kdm_predict(&p, lens, KN_DEC_LEAN, 1, 2, &m1, &b);
        CHECK(b.time_s == a.time_s, "no partial, no latency: %.9g vs %.9g", b.time_s, a.time_s);
        m1.fixup_latency_s = -1.0;
        CHECK(kdm_predict(&p, lens, KN_DEC_LEAN, 16, 2, &m1, &b) == -1,
              "negative latency accepted");
    }
    /* the wave-quantisation cliff: units = slots + 1 of equal length. FA2 (and FlashDecoding,
     * which does not split when the units fill the slots) runs one CTA alone in a second wave;
     * Lean spreads the extra unit over all CTAs. */
    {
        long long slots = 32;
        kn_dec_plan p = kn_dec_make_plan(slots + 1, 1, 1, 128);
        for (long long j = 0; j < p.b; j++) lens[j] = (int)(128 * p.tile);
        kdm_params m = {3.35e12, 1.1 * 3.35e12 / (double)slots, 3e-6, 0.0, 0.0};
        kdm_prediction fa2, fd, lean;
        kdm_predict(&p, lens, KN_DEC_FA2, slots, 2, &m, &fa2);
        kdm_predict(&p, lens, KN_DEC_SPLIT, slots, 2, &m, &fd);
        kdm_predict(&p, lens, KN_DEC_LEAN, slots, 2, &m, &lean);
        CHECK(fa2.waves == 2 && fd.splits == 1 && lean.waves == 1, "cliff grids %lld %lld %lld",
              fa2.waves, fd.splits, lean.waves);
        CHECK(lean.time_s < 0.6 * fa2.stream_s && fd.time_s > 1.5 * lean.time_s,
              "cliff: lean %.4g, fa2 stream %.4g, fd %.4g", lean.time_s, fa2.stream_s, fd.time_s);
    }
    /* FlashDecoding never ahead of Lean (full tiles, no fix-up cost, the same launch cost), on
     * grids up to 264 slots. Not a theorem of the fluid model: with 1000 slots, 1024 tiles and a
     * slow CTA (1e10 B/s), Lean's 24 two-tile CTAs finish alone below HBM bandwidth while
     * FlashDecoding's 512 two-tile CTAs share it to the end (2.9e-5 s against 2.6e-5 s). */
    {
        long long bs[] = {1, 2, 3, 8, 16, 33};
        long long ns[] = {1, 3, 16, 100};
        double rates[] = {1e10, 2.5e10, 1e30};
        int compared = 0, lean_ahead = 0;
        for (size_t bi = 0; bi < 6; bi++)
            for (size_t hi = 0; hi < NHEADS; hi++)
                for (size_t ni = 0; ni < 4; ni++)
                    for (size_t ri = 0; ri < 3; ri++)
                        for (size_t si = 3; si < 6; si++) {
                            kn_dec_plan p =
                                kn_dec_make_plan(bs[bi], HEADS[hi][0], HEADS[hi][1], 128);
                            for (long long j = 0; j < p.b; j++) lens[j] = (int)(ns[ni] * p.tile);
                            kdm_params m = {3.35e12, rates[ri], 3e-6, 0.0, 0.0};
                            kdm_prediction fd, lean;
                            kdm_predict(&p, lens, KN_DEC_SPLIT, SLOTS[si], 2, &m, &fd);
                            kdm_predict(&p, lens, KN_DEC_LEAN, SLOTS[si], 2, &m, &lean);
                            CHECK(fd.time_s >= lean.time_s * (1 - 1e-12),
                                  "b=%lld h=%lld n=%lld slots=%lld rate %.3g: fd %.6g < lean "
                                  "%.6g (s %lld)",
                                  p.b, p.h, ns[ni] * p.tile, SLOTS[si], rates[ri], fd.time_s,
                                  lean.time_s, fd.splits);
                            compared++;
                            lean_ahead += fd.time_s > 1.2 * lean.time_s;
                        }
        CHECK(lean_ahead > compared / 10, "lean ahead by 20%% in only %d of %d", lean_ahead,
              compared);
    }
}

int main(void)
{
    test_plan();
    test_kernels();
    test_model();
    return test_finish("test_decode");
}
