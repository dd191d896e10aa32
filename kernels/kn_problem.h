/* kn_problem.h - an attention problem in "HBM": inputs generated from a seed, the tensors a
 * kernel variant needs, and conversion to float64 for checking.
 *
 * Inputs are a pure function of (seed, tensor, element index), uniform in [-1, 1), so any
 * process can rebuild any slice of any tensor (the distributed executor relies on this to check
 * a rank's shard without communication).
 */
#ifndef ATTNSIM_KN_PROBLEM_H
#define ATTNSIM_KN_PROBLEM_H

#include "kn_attn.h"

/* Which input a generated value belongs to. */
typedef enum { KN_GEN_Q = 1, KN_GEN_K = 2, KN_GEN_V = 3, KN_GEN_DO = 4 } kn_gen_tensor;

/* Input value number `index` of tensor `which` for `seed`: uniform in [-1, 1). */
float kn_gen_value(uint64_t seed, kn_gen_tensor which, uint64_t index);

/* Which tensors to allocate. */
enum {
    KN_NEED_FWD = 1,      /* q, k, v, o, lse */
    KN_NEED_FA1 = 2,      /* m, l, o_acc */
    KN_NEED_STANDARD = 4, /* s, p */
    KN_NEED_BWD = 8       /* d_o, dq, dk, dv, dq_acc, dsum */
};

typedef struct {
    kn_shape shape;
    kn_dtype dtype;
    kn_attn_io t;
} kn_problem;

/* Elements of each tensor class. */
size_t kn_q_elems(const kn_shape *s);   /* batch * heads * nq * d */
size_t kn_kv_elems(const kn_shape *s);  /* batch * kv_heads * nk * d */
size_t kn_row_elems(const kn_shape *s); /* batch * heads * nq */

/* Host bytes kn_problem_init would allocate for `need` (for refusing impossible sizes early). */
uint64_t kn_problem_bytes(const kn_shape *s, kn_dtype dtype, unsigned need);

/* Allocates the tensors in `need` and fills q, k, v (and d_o when KN_NEED_BWD) from `seed`. */
void kn_problem_init(kn_problem *p, const kn_shape *s, kn_dtype dtype, unsigned need,
                     uint64_t seed);
void kn_problem_free(kn_problem *p);

/* A freshly allocated float64 copy of a tensor's values (caller frees). */
double *kn_tensor_to_f64(const kn_tensor *t);

#endif
