/* dev_cpu.c - the CPU device of the executor (exec.h): host memory, the C reference kernels
 * (kernels/: FA2 forward and backward, the merge operator), one thread per rank. */
#include <math.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "exec.h"
#include "fail.h"
#include "kn_merge.h"

/* Host memory of the CPU device. Blocks of 64 KiB and more are kept when released and handed
 * out again for an allocation of the same size, as the CUDA device's stream-ordered pool keeps
 * device memory: a run's phases allocate their blocks afresh, the same sizes in every
 * repetition, and without the pool every repetition would touch new pages (a page fault a
 * page), which a GPU run does not pay and the links' calibration does not measure. Never more is
 * held, in use and kept together, than the most ever in use at once: a block that would exceed
 * it is freed, and kept blocks of other sizes are freed to make room. cpu_trim frees every kept
 * block (after a run's timed repetitions: the host memory estimate of a run counts no pool). */
#define POOL_MIN   ((size_t)64 << 10)
#define POOL_HDR   64 /* before every block: its size (0: not pooled); keeps 16-alignment */
#define POOL_SIZES 64 /* distinct sizes kept at once */

typedef struct pool_blk {
    struct pool_blk *next;
    size_t size;
} pool_blk;

static struct {
    pthread_mutex_t mu;
    struct {
        size_t size;
        pool_blk *free;
    } cls[POOL_SIZES];
    size_t live, kept, peak;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* the kept blocks of `size` (with pool.mu held); a free entry is taken for it with `add` */
static pool_blk **pool_list(size_t size, int add)
{
    int spare = -1;
    for (int i = 0; i < POOL_SIZES; i++) {
        if (pool.cls[i].size == size) return &pool.cls[i].free;
        if (spare < 0 && !pool.cls[i].free) spare = i;
    }
    if (!add || spare < 0) return NULL;
    pool.cls[spare].size = size;
    return &pool.cls[spare].free;
}

static void pool_unmap(pool_blk *b)
{
    if (munmap(b, POOL_HDR + b->size) != 0)
        attn_fail("munmap", __FILE__, __LINE__, "%zu bytes: %s", b->size, strerror(errno));
}

/* frees kept blocks until `room` more fit under the peak (with pool.mu held; all: every one) */
static void pool_evict(size_t room, int all)
{
    for (int i = 0; i < POOL_SIZES; i++)
        while (pool.cls[i].free && (all || pool.live + pool.kept + room > pool.peak)) {
            pool_blk *b = pool.cls[i].free;
            pool.cls[i].free = b->next;
            pool.kept -= b->size;
            pool_unmap(b);
        }
}

static void *cpu_alloc(size_t bytes, const char *what)
{
    pool_blk *b = NULL;
    if (bytes >= POOL_MIN) {
        pthread_mutex_lock(&pool.mu);
        pool_blk **list = pool_list(bytes, 0);
        if (list && *list) {
            b = *list;
            *list = b->next;
            pool.kept -= bytes;
        } else {
            pool_evict(bytes, 0);
        }
        pool.live += bytes;
        if (pool.live + pool.kept > pool.peak) pool.peak = pool.live + pool.kept;
        pthread_mutex_unlock(&pool.mu);
    }
    if (!b && bytes >= POOL_MIN) { /* mapped: freeing it returns its pages at once */
        b = mmap(NULL, POOL_HDR + bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
        if (b == MAP_FAILED)
            attn_fail("mmap", __FILE__, __LINE__, "%zu bytes for %s: %s", bytes, what,
                      strerror(errno));
        b->size = bytes;
    } else if (!b) {
        b = kn_xmalloc(POOL_HDR + bytes + 1, what);
        b->size = 0;
    }
    return (char *)b + POOL_HDR;
}

static void cpu_release(void *p)
{
    if (!p) return;
    pool_blk *b = (pool_blk *)((char *)p - POOL_HDR);
    if (!b->size) {
        free(b);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    pool.live -= b->size;
    pool_blk **list = pool_list(b->size, 1);
    if (list) {
        b->next = *list;
        *list = b;
        pool.kept += b->size;
        b = NULL;
    }
    pthread_mutex_unlock(&pool.mu);
    if (b) pool_unmap(b);
}

static void cpu_trim(void)
{
    pthread_mutex_lock(&pool.mu);
    pool_evict(0, 1);
    pool.peak = pool.live;
    pthread_mutex_unlock(&pool.mu);
}

static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                       size_t height)
{
    for (size_t i = 0; i < height; i++)
        memcpy((char *)dst + i * dpitch, (const char *)src + i * spitch, width);
}

static void cpu_zero(void *p, size_t bytes)
{
    memset(p, 0, bytes);
}

static void cpu_sync(void) {}

static const void *cpu_upload_pos(const uint64_t *host, size_t n)
{
    uint64_t *p = kn_xmalloc(n * sizeof *p + 1, "positions");
    if (n) memcpy(p, host, n * sizeof *p);
    return p;
}

static void cpu_release_pos(const void *d, const uint64_t *host)
{
    (void)host;
    free((void *)d);
}

static void cpu_rows_copy(void *dst, const void *src, const void *index, size_t planes, size_t n,
                          size_t total, size_t rb, int scatter)
{
    const uint64_t *idx = index;
    for (size_t p = 0; p < planes; p++)
        for (size_t k = 0; k < n; k++) {
            size_t g = (p * total + idx[k]) * rb, b = (p * n + k) * rb;
            if (scatter)
                memcpy((char *)dst + g, (const char *)src + b, rb);
            else
                memcpy((char *)dst + b, (const char *)src + g, rb);
        }
}

static void cpu_state_empty(float *state, size_t rows, size_t d)
{
    memset(state, 0, rows * d * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        state[rows * d + r] = -INFINITY, state[rows * d + rows + r] = 0;
}

static void cpu_state_merge(float *dst, const float *src, size_t rows, size_t d)
{
    float *dm = dst + rows * d, *dl = dm + rows;
    const float *sm = src + rows * d, *sl = sm + rows;
    for (size_t r = 0; r < rows; r++)
        kn_merge_state(d, &dm[r], &dl[r], dst + r * d, sm[r], sl[r], src + r * d);
}

static void cpu_tile_forward(const exec_ctx *x, size_t hq, size_t hk, const void *q,
                             const exec_pos *qpos, const void *k, const void *v,
                             const exec_pos *kpos, float *state, int accumulate)
{
    const am_config *c = &x->cfg;
    size_t nq = qpos->n, nk = kpos->n;
    size_t rows = c->batch * hq * nq, d = c->head_dim;
    float *out = state;
    if (accumulate) out = cpu_alloc(state_floats(rows, d) * sizeof(float), "tile state");
    kn_shape s = {c->batch, hq, hk, nq, nk, d, c->causal, qpos->h, kpos->h};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, c->batch * hq * nq * d);
    t.k = exec_view((void *)k, x->dtype, c->batch * hk * nk * d);
    t.v = exec_view((void *)v, x->dtype, c->batch * hk * nk * d);
    t.o = exec_view(out, KN_F32, rows * d);
    t.m = exec_view(out + rows * d, KN_F32, rows);
    t.l = exec_view(out + rows * d + rows, KN_F32, rows);
    t.fwd_partial = 1;
    kn_counters cnt = {0};
    kn_fa2_fwd(&s, x->sram, &t, &cnt);
    if (accumulate) {
        cpu_state_merge(state, out, rows, d);
        cpu_release(out);
    }
}

static void cpu_tile_backward(const exec_ctx *x, size_t hq, size_t hk, const void *q,
                              const void *d_o, const float *lse, const float *dsum,
                              const exec_pos *qpos, const void *k, const void *v,
                              const exec_pos *kpos, float *dq, float *dk, float *dv)
{
    const am_config *c = &x->cfg;
    size_t nq = qpos->n, nk = kpos->n, d = c->head_dim;
    size_t qe = c->batch * hq * nq * d, ke = c->batch * hk * nk * d;
    kn_shape s = {c->batch, hq, hk, nq, nk, d, c->causal, qpos->h, kpos->h};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, qe);
    t.d_o = exec_view((void *)d_o, x->dtype, qe);
    t.k = exec_view((void *)k, x->dtype, ke);
    t.v = exec_view((void *)v, x->dtype, ke);
    t.lse = exec_view((float *)lse, KN_F32, c->batch * hq * nq);
    t.dsum = exec_view((float *)dsum, KN_F32, c->batch * hq * nq);
    t.bwd_dsum_given = 1;
    float *tmp = cpu_alloc((2 * qe + 2 * ke) * sizeof(float), "backward tile");
    t.dq_acc = exec_view(tmp, KN_F32, qe);
    t.dq = exec_view(tmp + qe, KN_F32, qe);
    t.dk = exec_view(tmp + 2 * qe, KN_F32, ke);
    t.dv = exec_view(tmp + 2 * qe + ke, KN_F32, ke);
    kn_counters cnt = {0};
    kn_fa2_bwd(&s, x->sram, &t, &cnt);
    for (size_t i = 0; i < qe; i++) dq[i] += tmp[qe + i];
    for (size_t i = 0; i < ke; i++) dk[i] += tmp[2 * qe + i], dv[i] += tmp[2 * qe + ke + i];
    cpu_release(tmp);
}

static void cpu_attn_forward(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                             const void *k, const void *v, void *o, float *lse)
{
    const am_config *c = &x->cfg;
    size_t B = c->batch, d = c->head_dim;
    kn_shape sh = {B, hq, hk, n, n, d, c->causal, NULL, NULL};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, B * hq * n * d);
    t.k = exec_view((void *)k, x->dtype, B * hk * n * d);
    t.v = exec_view((void *)v, x->dtype, B * hk * n * d);
    t.o = exec_view(o, x->dtype, B * hq * n * d);
    t.lse = exec_view(lse, KN_F32, B * hq * n);
    kn_counters cnt = {0};
    kn_fa2_fwd(&sh, x->sram, &t, &cnt);
}

static void cpu_attn_backward(const exec_ctx *x, size_t hq, size_t hk, size_t n, const void *q,
                              const void *k, const void *v, const void *o, const void *d_o,
                              const float *lse, void *dq, void *dk, void *dv)
{
    const am_config *c = &x->cfg;
    size_t B = c->batch, d = c->head_dim, qe = B * hq * n * d, ke = B * hk * n * d;
    kn_shape sh = {B, hq, hk, n, n, d, c->causal, NULL, NULL};
    kn_attn_io t;
    memset(&t, 0, sizeof t);
    t.q = exec_view((void *)q, x->dtype, qe);
    t.k = exec_view((void *)k, x->dtype, ke);
    t.v = exec_view((void *)v, x->dtype, ke);
    t.o = exec_view((void *)o, x->dtype, qe);
    t.d_o = exec_view((void *)d_o, x->dtype, qe);
    t.lse = exec_view((float *)lse, KN_F32, B * hq * n);
    t.dq = exec_view(dq, x->dtype, qe);
    t.dk = exec_view(dk, x->dtype, ke);
    t.dv = exec_view(dv, x->dtype, ke);
    float *ws = cpu_alloc((qe + B * hq * n) * sizeof(float), "backward workspace");
    t.dq_acc = exec_view(ws, KN_F32, qe);
    t.dsum = exec_view(ws + qe, KN_F32, B * hq * n);
    kn_counters cnt = {0};
    kn_fa2_bwd(&sh, x->sram, &t, &cnt);
    cpu_release(ws);
}

static void cpu_state_finalize(const float *state, size_t rows, size_t d, int dtype, void *o,
                               float *lse)
{
    float *row = kn_xmalloc(d * sizeof(float), "row");
    kn_tensor ot = exec_view(o, (kn_dtype)dtype, rows * d);
    const float *m = state + rows * d, *l = m + rows;
    for (size_t r = 0; r < rows; r++) {
        memcpy(row, state + r * d, d * sizeof(float));
        float lse_r;
        kn_state_finalize(d, m[r], l[r], row, &lse_r);
        for (size_t e = 0; e < d; e++) kn_tensor_set(&ot, r * d + e, row[e]);
        lse[r] = lse_r;
    }
    free(row);
}

static void cpu_rowdot(int dtype, const void *o, const void *d_o, size_t rows, size_t d,
                       float *dsum)
{
    kn_tensor ot = exec_view((void *)o, (kn_dtype)dtype, rows * d);
    kn_tensor dt = exec_view((void *)d_o, (kn_dtype)dtype, rows * d);
    for (size_t r = 0; r < rows; r++) {
        float acc = 0.0f;
        for (size_t e = 0; e < d; e++)
            acc += kn_tensor_get(&dt, r * d + e) * kn_tensor_get(&ot, r * d + e);
        dsum[r] = acc;
    }
}

static void cpu_add_f32(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

static void cpu_to_storage(int dtype, const float *src, void *dst, size_t n)
{
    kn_tensor t = exec_view(dst, (kn_dtype)dtype, n);
    for (size_t i = 0; i < n; i++) kn_tensor_set(&t, i, src[i]);
}

const exec_dev exec_dev_cpu = {"cpu",
                               cpu_alloc,
                               cpu_release,
                               cpu_copy,
                               cpu_copy2d,
                               cpu_zero,
                               cpu_copy,
                               cpu_copy,
                               cpu_sync,
                               cpu_upload_pos,
                               cpu_release_pos,
                               cpu_rows_copy,
                               cpu_tile_forward,
                               cpu_tile_backward,
                               cpu_attn_forward,
                               cpu_attn_backward,
                               cpu_state_empty,
                               cpu_state_merge,
                               cpu_state_finalize,
                               cpu_rowdot,
                               cpu_add_f32,
                               cpu_to_storage,
                               cpu_trim};
