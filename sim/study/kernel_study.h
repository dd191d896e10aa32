/* kernel_study.h - the catalogue of single-device kernels and one checked, counted, timed run
 * of a kernel (what `attnsim kernels` does per configuration).
 *
 * Like nccl-tests' per-collective structs: each catalogue entry names a kernel and pass and
 * points at its run and block functions, the SRAM it needs, and its IO model. Adding a kernel
 * is one entry here.
 */
#ifndef ATTNSIM_KERNEL_STUDY_H
#define ATTNSIM_KERNEL_STUDY_H

#include "cli.h"
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
    int check_sampled;     /* cuda: sampled rows of a large problem, not every element */
    int dram;              /* cuda --dram: DRAM bytes measured under ncu */
    uint64_t dram_read, dram_written;
    int dram_launches, dram_in_band; /* compulsory <= DRAM read <= logical read */
    double max_abs_err, max_rel_err;
    int check_passed;
} ks_result;

/* One kernel run of a sweep: the kernel, its shape, storage type and (CPU) SRAM size. */
typedef struct {
    const ks_kernel *k;
    kn_shape s;
    kn_dtype dtype;
    size_t sram;
} ks_config;

/* Builds the problem from `seed`, runs the kernel once (a backward first runs the FA2 forward,
 * uncounted, for O and LSE), and fills `r`. With `check`, compares every output with the
 * float64 reference (ref_f64.h). Returns 0; a kernel whose SRAM is too small is a caller error
 * (validate with ks_min_sram first). */
int ks_run(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, size_t sram_elems, uint64_t seed,
           int check, ks_result *r);

/* measured == predicted (bytes read, written and FLOPs). */
int ks_counts_match(const ks_result *r);

/* `attnsim kernels --decode` (kernel_decode.c): every configuration of o (dtype x head dim x
 * cache length) for the schemes in `schemes` (bit kn_dec_scheme), printed and written to h
 * (may be NULL); device names the GPU (cuda). Returns 1 when every run checked and counted
 * right. */
struct h5out;
int kd_study(const attn_opts *o, unsigned schemes, struct h5out *h, const char *device);

#ifdef ATTNSIM_HAVE_CUDA
/* The kernel on the GPU (kernels/cuda): builds the problem from `seed`, uploads it, runs the
 * kernel once and checks it against the float64 reference (every element when b h nq nk d <=
 * 2^30, else 64 sampled query rows and 64 sampled key rows of batch 0: check_sampled), then
 * times `reps` launches with CUDA events after two warm-up launches (times[], unsorted). The
 * predicted traffic is the IO model at the CUDA kernels' blocks; measured bytes stay 0 (the
 * GPU does not count logical transfers: --dram measures DRAM bytes instead). */
int ks_run_cuda(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, uint64_t seed, uint64_t reps,
                double *times, ks_result *r);
kn_blocks ks_cuda_blocks(const ks_kernel *k, const kn_shape *s);
size_t ks_cuda_workspace_bytes(const ks_kernel *k, const kn_shape *s, kn_dtype dtype);
const char *ks_cuda_device(char *buf, size_t n);
/* Nsight Compute's ncu (PATH, then /usr/local/cuda/bin), or NULL. */
const char *ks_cuda_ncu_path(void);
/* DRAM bytes read and written by one call of the kernel (all its launches), measured by
 * running the same configuration in a child attnsim under ncu (caches flushed before each
 * kernel, ncu's default); launches = kernels profiled. Failures go through the error path. */
int ks_cuda_dram(const ks_kernel *k, const kn_shape *s, kn_dtype dtype, uint64_t seed,
                 uint64_t *bytes_read, uint64_t *bytes_written, int *launches);
uint64_t ks_cuda_free_bytes(void);
#endif

#endif
