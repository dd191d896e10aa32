/* kc_attn.h - the CUDA attention kernels (algorithms.md section 2), callable from C.
 *
 * Tensors live in device memory, laid out as the C reference kernels lay them out (kn_attn.h):
 * Q, O, dQ, dO [b][h][nq][d]; K, V, dK, dV [b][h_kv][nk][d], in the storage type (f16 or bf16;
 * f32 runs on the generic path only); LSE [b][h][nq] in f32 (natural log). Grouped-query
 * attention reads K/V head hq / (h / h_kv) without copying; causal masking is bottom-right
 * aligned (key j visible to query i iff j <= i + nk - nq), or by token positions when the shape
 * gives them (kc_shape.qpos, kpos: FA2 forward, partial forward and backward, both paths; the
 * standard and FA1 kernels refuse them); a row that sees no key gets O = 0 and LSE = -inf, never
 * NaN. nq may differ from nk and the last block of either may be ragged.
 *
 * Paths: the tensor-core kernels take f16/bf16 with d in {64, 128} (on Hopper the wgmma/TMA
 * kernels of kc_fa3_*.cu where usable, else the mma.sync m16n8k16 kernels of kc_fa2_*.cu, sm_80
 * and later); every other (dtype, d <= 256) takes the generic path (one warp per query row, f32
 * arithmetic, correct but slow); kc_attn_path() says which a shape gets. The kc_attn_* entry
 * points pick the kernel (kc_dispatch.cu).
 *
 * Every function launches on `stream` (a cudaStream_t; NULL for the default stream), returns a
 * cudaError_t as int (0 = cudaSuccess: launch errors are returned, asynchronous faults surface
 * at the caller's next synchronisation) and never synchronises. kernels/ knows nothing of MPI;
 * the caller reports errors through its error path.
 */
#ifndef ATTNSIM_KC_ATTN_H
#define ATTNSIM_KC_ATTN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int dtype; /* kn_dtype: 0 f32, 1 f16, 2 bf16 */
    size_t b, h, h_kv, nq, nk, d;
    int causal;
    const unsigned long long *qpos, *kpos; /* device arrays of nq and nk token positions, each
        strictly increasing, or both NULL. With causal set and positions given, key j is visible
        to query i iff kpos[j] <= qpos[i] (instead of bottom-right alignment); ignored when not
        causal. One of the two NULL under causal masking: kc_attn_path says unsupported. */
} kc_shape;

typedef enum { KC_PATH_TENSOR_CORE = 0, KC_PATH_GENERIC = 1, KC_PATH_UNSUPPORTED = 2 } kc_path;
kc_path kc_attn_path(const kc_shape *s);
const char *kc_path_name(kc_path p);

/* The query/key block sizes the tensor-core kernels use for head dim d on the current device
 * (the Hopper kernels where kc_fa3_fwd_available, else mma.sync), for the IO model: the same
 * numbers predict the logical traffic. */
void kc_attn_fwd_blocks(size_t d, size_t *br, size_t *bc);
void kc_attn_bwd_blocks(size_t d, size_t *br, size_t *bc);

/* FlashAttention-2 forward: O and LSE from Q, K, V. */
int kc_attn_fwd(const kc_shape *s, const void *q, const void *k, const void *v, void *o, float *lse,
                void *stream);

/* Partial forward over the keys [kv_begin, kv_end) (0 <= kv_begin <= kv_end <= nk; the causal
 * mask still uses the full nq and nk): the unnormalised online-softmax state (m, l, o) in f32,
 * m and l [b][h][nq], o [b][h][nq][d]; m is in natural-log units of the scaled scores. With
 * `accumulate` the kernel starts from the state already in m, l, o (the merge operator:
 * algorithms.md section 1) instead of the empty state. FA1 is a sequence of these, one per K/V
 * block; distributed algorithms compute their tiles with it. */
int kc_attn_fwd_partial(const kc_shape *s, const void *q, const void *k, const void *v,
                        size_t kv_begin, size_t kv_end, int accumulate, float *m, float *l,
                        float *o, void *stream);
/* O and LSE from a state (m, l, o): O = o / l (0 where l = 0), LSE = m + log l. */
int kc_finalize(const kc_shape *s, const float *m, const float *l, const float *o, void *o_out,
                float *lse, void *stream);

/* Bytes of device workspace kc_attn_bwd needs: the f32 dQ accumulator and D = rowsum(dO * O). */
size_t kc_attn_bwd_workspace_bytes(const kc_shape *s);
/* FlashAttention-2 backward: dQ, dK, dV from Q, K, V, O, dO and the forward's LSE. */
int kc_attn_bwd(const kc_shape *s, const void *q, const void *k, const void *v, const void *o,
                const void *d_o, const float *lse, void *dq, void *dk, void *dv, void *workspace,
                void *stream);

/* Backward of one tile of a distributed attention (Q, dO rows of the tile against its K, V; same
 * masking and positions as the forward). lse and dsum [b][h][nq] (f32) come from the whole
 * attention, not this tile: LSE (natural log; -inf for a row that saw no key anywhere, which
 * contributes nothing) and D = rowsum(dO * O) (kc_rowdot). ADDS the tile's contributions to f32
 * accumulators, never overwriting them: dq_acc [b][h][nq][d] += scale dS K, dk_acc
 * [b][h_kv][nk][d] += scale dS^T Q, dv_acc [b][h_kv][nk][d] += P^T dO, with scale = 1/sqrt(d),
 * P = exp(scale S - LSE), dS = P (dP - D). Needs no workspace. */
int kc_attn_bwd_tile(const kc_shape *s, const void *q, const void *k, const void *v,
                     const void *d_o, const float *lse, const float *dsum, float *dq_acc,
                     float *dk_acc, float *dv_acc, void *stream);

/* D = rowsum(dO * O) in f32: dsum [b][h][nq] from O, dO [b][h][nq][d] (storage type). */
int kc_rowdot(const kc_shape *s, const void *o, const void *d_o, float *dsum, void *stream);

/* Element-wise operations of a distributed attention (any dtype; sizes in elements or rows). */
/* The merge operator (algorithms.md section 1, exactly kn_merge_state) on `rows` rows:
 * (dst_m, dst_l, dst_o) = merge(dst, src). States as kc_attn_fwd_partial's: m, l [rows]
 * (m in natural-log units), o [rows][d], f32. A side with m = -inf contributes nothing (merging
 * with the empty state leaves the other unchanged; two empty stay empty), never NaN. */
int kc_state_merge(size_t rows, size_t d, float *dst_o, float *dst_m, float *dst_l,
                   const float *src_o, const float *src_m, const float *src_l, void *stream);
/* The empty state on `rows` rows: o [rows][d] = 0, m [rows] = -inf, l [rows] = 0. */
int kc_state_empty(size_t rows, size_t d, float *o, float *m, float *l, void *stream);
/* Rows by an index (index: device array of n entries, each < total; row_bytes a multiple of 4;
 * 16-byte vectors when row_bytes and both pointers allow). For p < planes, k < n:
 * scatter = 1: dst row (p * total + index[k]) = src row (p * n + k);
 * scatter = 0: dst row (p * n + k) = src row (p * total + index[k]).
 * Rows are row_bytes apart from the pointer. n == 0 or planes == 0: nothing, success. */
int kc_rows_copy(void *dst, const void *src, const unsigned long long *index, size_t planes,
                 size_t n, size_t total, size_t row_bytes, int scatter, void *stream);
/* a[i] += b[i] for i < n (f32). */
int kc_add_f32(float *a, const float *b, size_t n, void *stream);
/* dst[i] = src[i] for i < n, in storage type dtype (0 f32: exact copy, 1 f16, 2 bf16: rounded
 * to nearest). */
int kc_to_storage(int dtype, const float *src, void *dst, size_t n, void *stream);

/* Standard attention: S = scale Q K^T and P = softmax(S) materialised in f32 in `sp`
 * ([b][h][nq][nk] floats), then O = P V. LSE is written too (so its output checks like FA2's). */
size_t kc_standard_workspace_bytes(const kc_shape *s);
int kc_standard_fwd(const kc_shape *s, const void *q, const void *k, const void *v, void *o,
                    float *lse, void *sp, void *stream);

/* FlashAttention-1 forward, literally (algorithm 1 of the paper, as kernels/attn_fa1.c): one
 * CTA per (batch, query head), outer loop over K/V blocks, inner loop over the Q blocks that
 * see them, running O (f32), m and l read from and written back to HBM on every visit; plain
 * f32 arithmetic (the IO study's baseline, not a fast path). Workspace: m, l, O_acc in f32
 * (m, l are outputs: LSE = m + log l, also written to lse by a separate pass). */
size_t kc_fa1_workspace_bytes(const kc_shape *s);
void kc_fa1_blocks(size_t d, size_t *br, size_t *bc);
int kc_fa1_fwd(const kc_shape *s, const void *q, const void *k, const void *v, void *o, float *lse,
               void *workspace, void *stream);

/* Decode (algorithms.md section 3; kernels/kn_decode.h holds the work plan): one query token
 * per (sequence, query head). Q, O [b][h][d] and the KV cache K, V [b][h_kv][n_cap][d] in the
 * storage type (f16 or bf16, d in {64, 128}: kc_decode_supported); sequence i holds lens[i]
 * tokens (lens: device array of b ints, each <= max_len <= n_cap; NULL: every sequence holds
 * max_len tokens, and the kernels read no lengths); LSE [b][h] f32, natural log
 * (a sequence with no token gets O = 0, LSE = -inf). The g = h / h_kv query heads of a KV head
 * (up to 16 at a time) are processed together, so each K/V tile is read once for them.
 * scheme: 0 FA2-style decode (one CTA per unit), 1 FlashDecoding (split-KV with the wave-
 * efficiency heuristic, then a combine kernel), 2 Lean Attention (stream-K over `slots` CTAs,
 * host fix-up through flags). `slots` is the co-resident CTA count the schedule assumes:
 * kc_decode_slots() for the device (Lean refuses more, since its hosts wait for contributors
 * that must be running; fewer is allowed, e.g. 1 to measure one CTA's streaming rate; every
 * scheme refuses more than 4096). The workspace (kc_decode_workspace_bytes for the scheme,
 * slots and max_len, or more: one workspace sized for the largest serves every scheme and slot
 * count) must be zeroed once after allocation and never between launches: Lean's flags carry
 * a per-launch epoch kept in the workspace itself, so back-to-back launches and CUDA graph
 * replays need no clearing pass. FlashDecoding's split count: kc_decode_splits. */
typedef struct {
    int dtype; /* 1 f16, 2 bf16 */
    size_t b, h, h_kv, d, n_cap;
} kc_dec_shape;
int kc_decode_supported(const kc_dec_shape *s);
int kc_decode_slots(int dtype, size_t d, int *slots);
size_t kc_decode_workspace_bytes(const kc_dec_shape *s, int scheme, int slots, int max_len);
int kc_decode_splits(const kc_dec_shape *s, int slots, int max_len);
int kc_decode(const kc_dec_shape *s, int scheme, const void *q, const void *k, const void *v,
              const int *lens, int max_len, void *o, float *lse, void *workspace, int slots,
              void *stream);

/* Two streaming reads of `bytes` bytes (a multiple of 16) timed by the decode benchmarks:
 * - kc_read_ceiling_probe, the HBM read ceiling: one CTA per SM, each claiming 64 KiB chunks in
 *   address order from a counter, so faster SMs take more of the buffer; adds every 32-bit word
 *   (mod 2^32) into *sum (which the caller zeroes), so a test can check each byte was read once.
 *   Launches on one device must be ordered (one stream): the claim counter is shared.
 * - kc_read_bandwidth_probe, the rate of a grid of equal shares: SMs x 8 CTAs reading the buffer
 *   grid-stride, every CTA the same bytes, as a Lean grid or a wave of equal CTAs streams; the
 *   decode model's HBM rate. Writes nothing (*sink only in theory). On an H100 the two differ
 *   by a few per cent: under load some SMs stream faster than others (docs/performance.md). */
int kc_read_ceiling_probe(const void *buf, size_t bytes, unsigned *sum, void *stream);
int kc_read_bandwidth_probe(const void *buf, size_t bytes, float *sink, void *stream);

#ifdef __cplusplus
}
#endif

#endif
