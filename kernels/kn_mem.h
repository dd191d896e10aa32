/* kn_mem.h - the CPU "HBM" and "SRAM" of the reference kernels, and the transfer counters.
 *
 * A kn_tensor is an array in "HBM" stored as f32, f16 or bf16. A kernel may compute only on
 * data in its SRAM arena (kn_sram: M f32 elements, carved up with kn_sram_take); every element
 * that crosses between the two goes through kn_hbm_read / kn_hbm_write, which convert the type
 * and add the bytes moved (at the tensor's storage width) to a kn_counters. That is what makes
 * measured HBM traffic a count, not an estimate, and lets tests demand measured == predicted.
 */
#ifndef ATTNSIM_KN_MEM_H
#define ATTNSIM_KN_MEM_H

#include "kn_common.h"

typedef struct {
    uint64_t bytes_read;    /* HBM -> SRAM */
    uint64_t bytes_written; /* SRAM -> HBM */
    uint64_t flops;         /* matrix-multiply FLOPs performed (2 per multiply-add) */
} kn_counters;

typedef struct {
    void *data;
    kn_dtype dtype;
    size_t elems;
} kn_tensor;

void kn_tensor_alloc(kn_tensor *t, kn_dtype dtype, size_t elems, const char *what);
void kn_tensor_free(kn_tensor *t);
/* Uncounted host access, for setting up inputs and checking outputs (not for kernels). */
float kn_tensor_get(const kn_tensor *t, size_t i);
void kn_tensor_set(kn_tensor *t, size_t i, float v);

/* Counted transfers of `n` contiguous elements starting at element `at`. */
void kn_hbm_read(kn_counters *c, const kn_tensor *t, size_t at, size_t n, float *sram);
void kn_hbm_write(kn_counters *c, kn_tensor *t, size_t at, size_t n, const float *sram);
/* Counted transfers of a rows x cols tile whose rows are `ld` elements apart in HBM; the SRAM
 * side is dense (row stride cols). */
void kn_hbm_read_tile(kn_counters *c, const kn_tensor *t, size_t at, size_t rows, size_t cols,
                      size_t ld, float *sram);
void kn_hbm_write_tile(kn_counters *c, kn_tensor *t, size_t at, size_t rows, size_t cols, size_t ld,
                       const float *sram);

/* The SRAM arena: capacity M f32 elements. kn_sram_take hands out disjoint regions and calls
 * kn_fatal if a kernel asks for more than M in total (its block sizes must prevent that). */
typedef struct {
    float *base;
    size_t capacity;
    size_t used;
} kn_sram;

void kn_sram_init(kn_sram *s, size_t capacity_elems);
float *kn_sram_take(kn_sram *s, size_t elems, const char *what);
void kn_sram_reset(kn_sram *s); /* forget all regions (between passes of a kernel) */
void kn_sram_free(kn_sram *s);

#endif
