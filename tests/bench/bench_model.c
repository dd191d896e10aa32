/* bench_model.c - speed of the model (a benchmark that prints figures; it asserts nothing
 * about time). Goals: 10^4 configurations in under 1 s, and one P = 65536 prediction with
 * per-rank arrays (Ring, Attention2D, Ulysses train) in under 1 s, on one core.
 * Usage: bench_model [configurations]   (default 10000) */
#include <stdio.h>
#include <stdlib.h>

#include "predict.h"
#include "timing.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng % n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    machine m;
    char err[400];
    if (machine_load("dgx-h100", &m, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    static const uint64_t procs[] = {4, 8, 16, 32, 64, 128, 256, 512, 1024};
    double sink = 0.0, t0 = timing_now_s();
    uint64_t ranks = 0;
    for (long i = 0; i < n; i++) {
        am_config c = {(am_algo)rnd(3),
                       (part_layout)rnd(3),
                       (am_pass)rnd(3),
                       procs[rnd(9)],
                       1,
                       0,
                       (uint64_t)(4096u << rnd(6)),
                       1,
                       32,
                       8u << rnd(3),
                       128,
                       (int)rnd(2),
                       2};
        c.cols = c.P;
        if (c.algo != ALGO_RING)
            c.rows = 1u << (rnd(64 - __builtin_clzll(c.P)) / 1), c.cols = c.P / c.rows;
        if (c.rows * c.cols != c.P) c.rows = 1, c.cols = c.P;
        am_prediction p;
        am_predict(&c, &m, 0, &p);
        sink += p.time.total_s;
        ranks += c.P;
    }
    double t = timing_now_s() - t0;
    printf("# bench_model: machine dgx-h100, ring/a2d-no/a2d-o, P in 4..1024, N in 4k..128k\n");
    printf("%ld configurations (%llu ranks) in %.3f s: %.0f configurations/s\n", n,
           (unsigned long long)ranks, t, (double)n / t);

    const am_algo big_algos[] = {ALGO_RING, ALGO_A2D_NO, ALGO_A2D_O};
    for (int k = 0; k < 3; k++) {
        am_config c = {
            big_algos[k], LAYOUT_ZIGZAG, AM_TRAIN, 65536, 256, 256, 1u << 24, 1, 32, 8, 128, 1, 2};
        if (c.algo == ALGO_RING) c.rows = 1, c.cols = c.P;
        t0 = timing_now_s();
        am_prediction p;
        am_predict(&c, &m, 1, &p);
        t = timing_now_s() - t0;
        printf("P = 65536 %-7s train, N = 16M, per-rank [65536][%d] arrays: %.3f s (predicted "
               "%.3f s)\n",
               am_algo_name(c.algo), p.F, t, p.time.total_s);
        sink += p.time.total_s;
        am_prediction_free(&p);
    }
    /* Ulysses: 4 all-to-alls of P - 1 rounds each (heads = kv-heads = P) */
    am_config u = {ALGO_ULYSSES,
                   LAYOUT_CONTIGUOUS,
                   AM_TRAIN,
                   65536,
                   1,
                   65536,
                   1u << 24,
                   1,
                   65536,
                   65536,
                   128,
                   1,
                   2};
    t0 = timing_now_s();
    am_prediction p;
    am_predict(&u, &m, 1, &p);
    t = timing_now_s() - t0;
    printf("P = 65536 ulysses train, N = 16M, per-rank [65536][%d] arrays: %.3f s (predicted "
           "%.3f s)\n",
           p.F, t, p.time.total_s);
    sink += p.time.total_s;
    am_prediction_free(&p);
    return sink < 0; /* keep the work observable */
}
