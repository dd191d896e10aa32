/* test_cuda_decode.c - the CUDA decode kernels (FA2-style, FlashDecoding, Lean Attention)
 * against the float64 reference (kn_decode_ref_f64) over shapes with ragged and empty caches,
 * caches shorter than one tile, grouped-query heads (g = 1, 4, 8, 20: more than one head group
 * per KV head), and slot counts that split one unit over many Lean CTAs or put many units in
 * one; then 1000 back-to-back Lean launches and 200 CUDA graph replays whose outputs must be
 * bit-identical to the first launch (the per-launch epoch must not leak state between
 * launches), and the refusals (too many Lean CTAs, unsupported head dim). `--small` runs a few
 * small shapes (for compute-sanitizer). Exit 77 (ctest: skipped) when no CUDA device is usable.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_attn.h"
#include "kn_attn_decode.h"

static int failures, checks;

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (cudaError_t)(call);                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "test_cuda_decode: %s failed: %s (%s:%d)\n", #call,                    \
                    cudaGetErrorString(e_), __FILE__, __LINE__);                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL ");                                                                       \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static const char *scheme_names[] = {"fa2", "flash-decoding", "lean"};

typedef struct {
    size_t b, h, h_kv, d, n_cap;
    int lens[8];
} dcase;

static uint64_t rng = 88172645463325252ull;
static float urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

typedef struct {
    kn_decode_io io;
    kn_dec_plan plan;
    kc_dec_shape ks;
    void *dq, *dk, *dv, *dout, *ws;
    float *dlse;
    int *dlens;
    int max_len;
    size_t ws_bytes;
    double *ro, *rlse;
} problem;

static void upload(void **dst, const kn_tensor *t)
{
    size_t bytes = t->elems * kn_dtype_bytes(t->dtype);
    CK(cudaMalloc(dst, bytes));
    CK(cudaMemcpy(*dst, t->data, bytes, cudaMemcpyHostToDevice));
}

static void problem_init(problem *p, const dcase *c, kn_dtype dt, int slots)
{
    memset(p, 0, sizeof *p);
    p->plan =
        kn_dec_make_plan((long long)c->b, (long long)c->h, (long long)c->h_kv, (long long)c->d);
    p->ks = (kc_dec_shape){(int)dt, c->b, c->h, c->h_kv, c->d, c->n_cap};
    size_t nq = c->b * c->h * c->d, nkv = c->b * c->h_kv * c->n_cap * c->d;
    kn_tensor_alloc(&p->io.q, dt, nq, "q");
    kn_tensor_alloc(&p->io.k, dt, nkv, "k");
    kn_tensor_alloc(&p->io.v, dt, nkv, "v");
    kn_tensor_alloc(&p->io.o, dt, nq, "o");
    kn_tensor_alloc(&p->io.lse, KN_F32, c->b * c->h, "lse");
    for (size_t i = 0; i < nq; i++) kn_tensor_set(&p->io.q, i, 2.0f * urand());
    for (size_t i = 0; i < nkv; i++) {
        kn_tensor_set(&p->io.k, i, urand());
        kn_tensor_set(&p->io.v, i, urand());
    }
    p->io.n_cap = c->n_cap;
    p->io.lens = c->lens;
    for (size_t i = 0; i < c->b; i++)
        if (c->lens[i] > p->max_len) p->max_len = c->lens[i];
    p->ro = malloc(nq * sizeof(double));
    p->rlse = malloc(c->b * c->h * sizeof(double));
    kn_decode_ref_f64(&p->plan, &p->io, p->ro, p->rlse);
    upload(&p->dq, &p->io.q);
    upload(&p->dk, &p->io.k);
    upload(&p->dv, &p->io.v);
    CK(cudaMalloc(&p->dout, nq * kn_dtype_bytes(dt)));
    CK(cudaMalloc((void **)&p->dlse, c->b * c->h * sizeof(float)));
    CK(cudaMalloc((void **)&p->dlens, c->b * sizeof(int)));
    CK(cudaMemcpy(p->dlens, c->lens, c->b * sizeof(int), cudaMemcpyHostToDevice));
    p->ws_bytes = 0; /* enough for every scheme at every slot count up to `slots` */
    for (int s = 0; s < 3; s++)
        for (int sl = 1; sl <= slots; sl++) {
            size_t w = kc_decode_workspace_bytes(&p->ks, s, sl, p->max_len);
            if (w > p->ws_bytes) p->ws_bytes = w;
        }
    CK(cudaMalloc(&p->ws, p->ws_bytes));
    CK(cudaMemset(p->ws, 0, p->ws_bytes));
}

static void problem_free(problem *p)
{
    kn_tensor_free(&p->io.q);
    kn_tensor_free(&p->io.k);
    kn_tensor_free(&p->io.v);
    kn_tensor_free(&p->io.o);
    kn_tensor_free(&p->io.lse);
    free(p->ro);
    free(p->rlse);
    cudaFree(p->dq);
    cudaFree(p->dk);
    cudaFree(p->dv);
    cudaFree(p->dout);
    cudaFree(p->dlse);
    cudaFree(p->dlens);
    cudaFree(p->ws);
}

static int null_lens; /* launch with lens = NULL (every sequence holds max_len tokens) */

static int launch(problem *p, int scheme, int slots, cudaStream_t st)
{
    return kc_decode(&p->ks, scheme, p->dq, p->dk, p->dv, null_lens ? NULL : p->dlens, p->max_len,
                     p->dout, p->dlse, p->ws, slots, st);
}

/* O within tol of the reference (relative to max |O|), LSE within 2e-3 absolute, -inf where the
 * reference has it, nothing NaN; the outputs are poisoned with NaN before the launch. */
static void check_against_ref(problem *p, const dcase *c, int scheme, int slots)
{
    const size_t nq = c->b * c->h * c->d, rows = c->b * c->h;
    const kn_dtype dt = (kn_dtype)p->ks.dtype;
    CK(cudaMemset(p->dout, 0xff, nq * kn_dtype_bytes(dt)));
    CK(cudaMemset(p->dlse, 0xff, rows * sizeof(float)));
    CK(launch(p, scheme, slots, 0));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(p->io.o.data, p->dout, nq * kn_dtype_bytes(dt), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(p->io.lse.data, p->dlse, rows * sizeof(float), cudaMemcpyDeviceToHost));
    double scale = 1e-30, worst = 0, worst_lse = 0;
    int bad = 0;
    for (size_t i = 0; i < nq; i++) scale = fmax(scale, fabs(p->ro[i]));
    for (size_t i = 0; i < nq; i++) {
        double x = kn_tensor_get(&p->io.o, i);
        if (!isfinite(x)) bad = 1;
        worst = fmax(worst, fabs(x - p->ro[i]));
    }
    for (size_t i = 0; i < rows; i++) {
        double x = kn_tensor_get(&p->io.lse, i);
        if (isinf(p->rlse[i]) || isinf(x) || isnan(x)) {
            if (!(isinf(p->rlse[i]) && x == p->rlse[i])) bad = 1;
            continue;
        }
        worst_lse = fmax(worst_lse, fabs(x - p->rlse[i]));
    }
    const double tol = dt == KN_BF16 ? 1.5e-2 : 3e-3;
    EXPECT(!bad && worst <= tol * scale && worst_lse <= 2e-3,
           "%-14s %s d=%zu b=%zu h=%zu/%zu lens=%d..%s slots=%d: O err %.3g (tol %.3g), LSE err "
           "%.3g, non-finite %d",
           scheme_names[scheme], kn_dtype_name(dt), c->d, c->b, c->h, c->h_kv, c->lens[0],
           null_lens ? " (lens NULL)" : "", slots, worst / scale, tol, worst_lse, bad);
}

/* 1000 launches back to back and 200 graph replays give the first launch's bytes. */
static void check_repeatable(const dcase *c, kn_dtype dt, int slots)
{
    problem p;
    problem_init(&p, c, dt, slots);
    const size_t nq = c->b * c->h * c->d, ob = nq * kn_dtype_bytes(dt);
    unsigned char *first = malloc(ob), *again = malloc(ob);
    CK(launch(&p, KN_DEC_LEAN, slots, 0));
    CK(cudaMemcpy(first, p.dout, ob, cudaMemcpyDeviceToHost));
    int same = 1;
    for (int r = 0; r < 1000; r++) {
        CK(launch(&p, KN_DEC_LEAN, slots, 0));
        if (r % 100 == 99) {
            CK(cudaMemcpy(again, p.dout, ob, cudaMemcpyDeviceToHost));
            same &= memcmp(first, again, ob) == 0;
        }
    }
    EXPECT(same, "lean: 1000 launches (slots %d) are not bit-identical to the first", slots);
    cudaStream_t st;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamCreate(&st));
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    CK(launch(&p, KN_DEC_LEAN, slots, st));
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    same = 1;
    for (int r = 0; r < 200; r++) {
        CK(cudaMemsetAsync(p.dout, 0, ob, st));
        CK(cudaGraphLaunch(exec, st));
        if (r % 50 == 49) {
            CK(cudaStreamSynchronize(st));
            CK(cudaMemcpy(again, p.dout, ob, cudaMemcpyDeviceToHost));
            same &= memcmp(first, again, ob) == 0;
        }
    }
    EXPECT(same, "lean: 200 CUDA graph replays are not bit-identical to the first launch");
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(st));
    free(first);
    free(again);
    problem_free(&p);
}

/* The read-ceiling probe reads every word exactly once, including a last partial chunk, and its
 * chunk counter starts from zero again on the next launch: the wrapping sum of the words it
 * returns equals the host's, launch after launch. */
static void check_read_probes(void)
{
    const size_t sizes[] = {16, 65536, 65536 * 37 + 4096 + 48, (size_t)9 << 20};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t n = sizes[si] / 4;
        unsigned *h = malloc(n * sizeof(unsigned)), want = 0;
        if (!h) {
            fprintf(stderr, "test_cuda_decode: out of memory\n");
            exit(1);
        }
        for (size_t i = 0; i < n; i++)
            want += h[i] = (unsigned)i * 2654435761u ^ (unsigned)(i >> 9);
        void *buf;
        unsigned *sum;
        float *sink;
        CK(cudaMalloc(&buf, sizes[si]));
        CK(cudaMalloc((void **)&sum, sizeof(unsigned)));
        CK(cudaMalloc((void **)&sink, sizeof(float)));
        CK(cudaMemcpy(buf, h, sizes[si], cudaMemcpyHostToDevice));
        for (int rep = 0; rep < 3; rep++) {
            unsigned got = 0;
            CK(cudaMemset(sum, 0, sizeof(unsigned)));
            CK(kc_read_ceiling_probe(buf, sizes[si], sum, 0));
            CK(kc_read_bandwidth_probe(buf, sizes[si], sink, 0)); /* between two: shares nothing */
            CK(cudaMemcpy(&got, sum, sizeof got, cudaMemcpyDeviceToHost));
            EXPECT(got == want, "read ceiling probe over %zu bytes, launch %d: sum %08x, want %08x",
                   sizes[si], rep, got, want);
        }
        CK(cudaFree(buf));
        CK(cudaFree(sum));
        CK(cudaFree(sink));
        free(h);
    }
}

int main(int argc, char **argv)
{
    int small = argc > 1 && strcmp(argv[1], "--small") == 0;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("test_cuda_decode: SKIP: no usable CUDA device\n");
        return 77;
    }
    const dcase cases[] = {
        {1, 4, 1, 64, 1000, {1000}},                /* g = 4, one unit */
        {2, 8, 2, 64, 300, {0, 77}},                /* an empty cache, N < one tile */
        {3, 20, 1, 64, 400, {5, 300, 129}},         /* g = 20: two head groups per KV head */
        {1, 2, 2, 64, 8, {1}},                      /* one token */
        {1, 32, 8, 64, 4096, {4096}},               /* many tiles per unit */
        {4, 32, 8, 64, 3000, {2999, 100, 3000, 1}}, /* ragged batch */
        {2, 12, 12, 64, 5000, {5000, 2500}},        /* g = 1 */
        {1, 64, 8, 64, 2048, {2048}},               /* g = 8 */
        {1, 1, 1, 64, 25600, {25600}},  /* one unit over every CTA: its host folds up to 131
                                         * partials, more than one chunk at full slots (staged in
                                         * shared memory: small partials) */
        {1, 16, 1, 64, 25600, {25600}}, /* the same with 16 rows: too many partials to stage,
                                         * gathered from L2 */
    };
    const size_t ncases = small ? 3 : sizeof cases / sizeof cases[0];
    const size_t dims[] = {64, 128};
    const kn_dtype dts[] = {KN_F16, KN_BF16};
    for (int di = 0; di < 2; di++)
        for (int ti = 0; ti < 2; ti++) {
            if (small && (di + ti) % 2) continue;
            int full;
            CK(kc_decode_slots(dts[ti], dims[di], &full));
            const int slot_list[] = {full, 1, 3, 7, full / 2};
            for (size_t ci = 0; ci < ncases; ci++) {
                dcase c = cases[ci];
                c.d = dims[di];
                problem p;
                problem_init(&p, &c, dts[ti], full);
                int uniform = 1; /* every sequence full: lens = NULL must give the same */
                for (size_t i = 0; i < c.b; i++) uniform &= c.lens[i] == p.max_len;
                for (int scheme = 0; scheme < 3; scheme++)
                    for (int si = 0; si < (small ? 2 : 5); si++) {
                        if (scheme == KN_DEC_FA2 && si > 0) continue; /* slots do not matter */
                        check_against_ref(&p, &c, scheme, slot_list[si]);
                        if (uniform && si < 2) {
                            null_lens = 1;
                            check_against_ref(&p, &c, scheme, slot_list[si]);
                            null_lens = 0;
                        }
                    }
                problem_free(&p);
            }
        }

    check_read_probes();

    /* refusals: more Lean CTAs than fit at once; head dim 96 */
    {
        dcase c = {1, 8, 8, 128, 512, {512}};
        problem p;
        int full;
        CK(kc_decode_slots(KN_BF16, 128, &full));
        problem_init(&p, &c, KN_BF16, full + 1);
        EXPECT(launch(&p, KN_DEC_LEAN, full + 1, 0) != 0,
               "lean accepted %d CTAs, more than the %d that fit at once", full + 1, full);
        kc_dec_shape bad = p.ks;
        bad.d = 96;
        EXPECT(!kc_decode_supported(&bad), "head dim 96 reported supported");
        EXPECT(kc_decode(&bad, KN_DEC_LEAN, p.dq, p.dk, p.dv, p.dlens, p.max_len, p.dout, p.dlse,
                         p.ws, full, 0) != 0,
               "kc_decode accepted head dim 96");
        cudaGetLastError();
        problem_free(&p);
    }

    if (!small) {
        int full;
        CK(kc_decode_slots(KN_BF16, 128, &full));
        dcase c = {1, 32, 8, 128, 16384, {16384}}; /* units of 128 tiles over ~33 CTAs each */
        check_repeatable(&c, KN_BF16, full);
        dcase c2 = {3, 20, 4, 128, 700, {700, 3, 650}}; /* many partials per tiny unit */
        check_repeatable(&c2, KN_BF16, full);
    } else { /* a host's partials staged in shared memory, then too many to stage */
        const dcase cs[] = {{1, 8, 2, 64, 2000, {2000}}, {1, 16, 1, 64, 25600, {25600}}};
        int full;
        CK(kc_decode_slots(KN_F16, 64, &full));
        for (int i = 0; i < 2; i++) {
            dcase c = cs[i];
            problem p;
            problem_init(&p, &c, KN_F16, full);
            for (int r = 0; r < 3 - 2 * i; r++) check_against_ref(&p, &c, KN_DEC_LEAN, full);
            problem_free(&p);
        }
    }
    printf("test_cuda_decode: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
