/* test_kernel_io.c - every kernel's counted HBM traffic and FLOPs equal the model's prediction
 * exactly, over N in {1, 17, 64, 255, 1024}, d in {16, 64, 128}, SRAM sizes from 4d to N d,
 * causal on and off, GQA on and off, N_q != N_k, and all three storage types.
 * Usage: test_kernel_io [d ...]   (default: all three head dimensions) */
#include <stdlib.h>
#include <string.h>

#include "kernel_study.h"
#include "test_util.h"

static long runs;

static void one(const ks_kernel *k, const kn_shape *s, kn_dtype dt, size_t M)
{
    if (M < ks_min_sram(k, s->d)) {
        /* too small for this kernel: the block chooser must say so rather than overrun */
        kn_blocks b = k->blocks(s, M);
        CHECK(b.br == 0 && b.bc == 0, "%s %s d=%zu M=%zu below minimum but blocks %zux%zu", k->name,
              k->pass, s->d, M, b.br, b.bc);
        return;
    }
    kn_blocks b = k->blocks(s, M);
    CHECK(b.br >= 1 && b.bc >= 1 && k->working_set(b.br, b.bc, s->d) <= M,
          "%s %s: blocks %zux%zu do not fit M=%zu", k->name, k->pass, b.br, b.bc, M);
    ks_result r;
    ks_run(k, s, dt, M, 7, 0, &r);
    runs++;
    CHECK(ks_counts_match(&r),
          "%s %s %s b=%zu h=%zu hkv=%zu nq=%zu nk=%zu d=%zu causal=%d M=%zu (br=%zu bc=%zu): "
          "read %llu/%llu written %llu/%llu flops %llu/%llu (measured/predicted)",
          k->name, k->pass, kn_dtype_name(dt), s->batch, s->heads, s->kv_heads, s->nq, s->nk, s->d,
          s->causal, M, r.blocks.br, r.blocks.bc, (unsigned long long)r.measured.bytes_read,
          (unsigned long long)r.predicted.bytes_read, (unsigned long long)r.measured.bytes_written,
          (unsigned long long)r.predicted.bytes_written, (unsigned long long)r.measured.flops,
          (unsigned long long)r.predicted.flops);
    /* the logical traffic can never be below the compulsory traffic */
    CHECK(r.predicted.bytes_read >= r.predicted.compulsory_read &&
              r.predicted.bytes_written >= r.predicted.compulsory_written,
          "%s %s below compulsory", k->name, k->pass);
}

int main(int argc, char **argv)
{
    size_t dims[3] = {16, 64, 128}, ndims = 3;
    if (argc > 1) {
        ndims = 0;
        for (int i = 1; i < argc && ndims < 3; i++) dims[ndims++] = (size_t)atol(argv[i]);
    }
    const size_t ns[] = {1, 17, 64, 255, 1024};
    for (size_t di = 0; di < ndims; di++) {
        size_t d = dims[di];
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            size_t n = ns[ni];
            /* SRAM sizes: 4d (the smallest the paper allows), a few in between, and N d */
            size_t Ms[5] = {4 * d, 7 * d + 5, 16 * d, 64 * d, n * d}, nM = 0, uniq[5];
            for (int i = 0; i < 5; i++) {
                size_t M = Ms[i];
                if (M < 4 * d || (i > 0 && M > kn_max(4 * d, n * d))) continue;
                int dup = 0;
                for (size_t j = 0; j < nM; j++) dup |= uniq[j] == M;
                if (!dup) uniq[nM++] = M;
            }
            for (size_t mi = 0; mi < nM; mi++)
                for (int causal = 0; causal < 2; causal++)
                    for (int gqa = 0; gqa < 2; gqa++) {
                        kn_shape s = {1, 2, gqa ? 1 : 2, n, n, d, causal, NULL, NULL};
                        for (size_t ki = 0; ki < ks_num_kernels; ki++)
                            one(&ks_kernels[ki], &s, KN_F32, uniq[mi]);
                    }
        }
        /* N_q != N_k both ways (causal rows with no visible key when nq > nk), batch > 1,
         * and the 2-byte storage types */
        const size_t pairs[][2] = {{17, 64}, {64, 17}, {100, 33}, {1, 255}, {255, 1}};
        for (size_t pi = 0; pi < sizeof pairs / sizeof pairs[0]; pi++)
            for (int causal = 0; causal < 2; causal++)
                for (int dt = 0; dt < KN_NUM_DTYPES; dt++) {
                    kn_shape s = {2, 4, 2, pairs[pi][0], pairs[pi][1], d, causal, NULL, NULL};
                    size_t Ms[3] = {4 * d, 9 * d, 40 * d};
                    for (int mi = 0; mi < 3; mi++)
                        for (size_t ki = 0; ki < ks_num_kernels; ki++)
                            one(&ks_kernels[ki], &s, (kn_dtype)dt, Ms[mi]);
                }
    }
    printf("test_kernel_io: %ld kernel runs compared\n", runs);
    return test_finish("test_kernel_io");
}
