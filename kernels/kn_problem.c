/* kn_problem.c - problem set-up for the reference kernels (see kn_problem.h). */
#include "kn_problem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float kn_softmax_scale(size_t d)
{
    return (float)(1.0 / sqrt((double)d));
}

/* splitmix64 finaliser: a well-mixed 64-bit hash of a counter. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

float kn_gen_value(uint64_t seed, kn_gen_tensor which, uint64_t index)
{
    uint64_t h = mix64(mix64(seed ^ ((uint64_t)which << 56)) ^ index);
    /* top 24 bits -> [0, 1) exactly representable in f32, then [-1, 1) */
    return (float)(h >> 40) * 0x1p-23f - 1.0f;
}

size_t kn_q_elems(const kn_shape *s)
{
    return s->batch * s->heads * s->nq * s->d;
}
size_t kn_kv_elems(const kn_shape *s)
{
    return s->batch * s->kv_heads * s->nk * s->d;
}
size_t kn_row_elems(const kn_shape *s)
{
    return s->batch * s->heads * s->nq;
}

uint64_t kn_problem_bytes(const kn_shape *s, kn_dtype dtype, unsigned need)
{
    uint64_t e = kn_dtype_bytes(dtype), q = kn_q_elems(s), kv = kn_kv_elems(s);
    uint64_t rows = kn_row_elems(s), total = 0;
    if (need & KN_NEED_FWD) total += e * (2 * q + 2 * kv) + 4 * rows;
    if (need & KN_NEED_FA1) total += 8 * rows + 4 * q;
    if (need & KN_NEED_STANDARD) total += 2 * 4 * (uint64_t)rows * s->nk;
    if (need & KN_NEED_BWD) total += e * (2 * q + 2 * kv) + 4 * q + 4 * rows;
    return total;
}

static void fill(kn_tensor *t, uint64_t seed, kn_gen_tensor which)
{
    for (size_t i = 0; i < t->elems; i++) kn_tensor_set(t, i, kn_gen_value(seed, which, i));
}

void kn_problem_init(kn_problem *p, const kn_shape *s, kn_dtype dtype, unsigned need, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->shape = *s;
    p->dtype = dtype;
    kn_attn_io *t = &p->t;
    size_t q = kn_q_elems(s), kv = kn_kv_elems(s), rows = kn_row_elems(s);
    kn_tensor_alloc(&t->q, dtype, q, "Q");
    kn_tensor_alloc(&t->k, dtype, kv, "K");
    kn_tensor_alloc(&t->v, dtype, kv, "V");
    kn_tensor_alloc(&t->o, dtype, q, "O");
    kn_tensor_alloc(&t->lse, KN_F32, rows, "LSE");
    fill(&t->q, seed, KN_GEN_Q);
    fill(&t->k, seed, KN_GEN_K);
    fill(&t->v, seed, KN_GEN_V);
    if (need & KN_NEED_FA1) {
        kn_tensor_alloc(&t->m, KN_F32, rows, "m");
        kn_tensor_alloc(&t->l, KN_F32, rows, "l");
        kn_tensor_alloc(&t->o_acc, KN_F32, q, "O accumulator");
    }
    if (need & KN_NEED_STANDARD) {
        kn_tensor_alloc(&t->s, KN_F32, rows * s->nk, "S"); /* f32 whatever the inputs: */
        kn_tensor_alloc(&t->p, KN_F32, rows * s->nk, "P"); /* f16 would overflow at |S| > 65504 */
    }
    if (need & KN_NEED_BWD) {
        kn_tensor_alloc(&t->d_o, dtype, q, "dO");
        kn_tensor_alloc(&t->dq, dtype, q, "dQ");
        kn_tensor_alloc(&t->dk, dtype, kv, "dK");
        kn_tensor_alloc(&t->dv, dtype, kv, "dV");
        kn_tensor_alloc(&t->dq_acc, KN_F32, q, "dQ accumulator");
        kn_tensor_alloc(&t->dsum, KN_F32, rows, "D");
        fill(&t->d_o, seed, KN_GEN_DO);
    }
}

void kn_problem_free(kn_problem *p)
{
    kn_tensor *all[] = {&p->t.q,  &p->t.k,     &p->t.v,      &p->t.o,   &p->t.lse, &p->t.m,
                        &p->t.l,  &p->t.o_acc, &p->t.s,      &p->t.p,   &p->t.d_o, &p->t.dq,
                        &p->t.dk, &p->t.dv,    &p->t.dq_acc, &p->t.dsum};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kn_tensor_free(all[i]);
}

double *kn_tensor_to_f64(const kn_tensor *t)
{
    double *x = kn_xmalloc(t->elems * sizeof(double), "float64 copy");
    for (size_t i = 0; i < t->elems; i++) x[i] = kn_tensor_get(t, i);
    return x;
}
