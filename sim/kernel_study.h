/* kernel_study.h - the catalogue of single-device kernels and one checked, counted, timed run
 * of a kernel (what `attnsim kernels` does per configuration).
 *
 * Like nccl-tests' per-collective structs: each catalogue entry names a kernel and pass and
 * points at its run and block functions, the SRAM it needs, and its IO model. Adding a kernel
 * is one entry here.
 */
#ifndef ATTNSIM_KERNEL_STUDY_H
#define ATTNSIM_KERNEL_STUDY_H

#include "kernel_io.h"
#include "kn_problem.h"

typedef struct {
    const char *name; /* "standard", "fa1", "fa2" */
    const char *pass; /* "fwd" or "bwd" */
    void (*run)(const kn_shape *s, size_t sram_elems, kn_attn_io *t, kn_counters *c);
    kn_blocks (*blocks)(const kn_shape *s, size_t sram_elems);
    kn_working_set_fn working_set;
    unsigned need; /* KN_NEED_* tensors */
    kio_kernel model;
} ks_kernel;

extern const ks_kernel ks_kernels[];
extern const size_t ks_num_kernels;

/* Entry for (name, pass), or NULL. */
const ks_kernel *ks_find(const char *name, const char *pass);
/* Smallest SRAM (elements) the kernel can run with at head dimension d (1 x 1 blocks). */
size_t ks_min_sram(const ks_kernel *k, size_t d);

typedef struct {
    kn_blocks blocks;
    kn_counters measured;  /* counted transfers and FLOPs of the timed kernel call */
    kio_traffic predicted; /* the model for the same blocks */
    double time_s;         /* wall time of the kernel call */
    int checked;           /* 1 when compared with the float64 reference */
    double max_abs_err, max_rel_err;
    int check_passed;
} ks_result;

/* Builds the problem from `seed`, runs the kernel once (a backward first runs the FA2 forward,
 * uncounted, for O and LSE), and fills `r`. With `check`, compares every output with the
 * float64 reference (ref_f64.h). Returns 0; a kernel whose SRAM is too small is a caller error
 * (validate with ks_min_sram first). */
int ks_run(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, size_t sram_elems, uint64_t seed,
           int check, ks_result *r);

/* measured == predicted (bytes read, written and FLOPs). */
int ks_counts_match(const ks_result *r);

#endif
