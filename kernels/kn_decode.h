/* kn_decode.h - the decode work plan (algorithms.md section 3): which CTA streams which K/V
 * tiles under FA2-style decode, FlashDecoding (split-KV) and Lean Attention (stream-K).
 *
 * One owner of these facts: the CUDA decode kernels (kernels/cuda/kc_decode.cu), the C
 * reference schedules (kernels/attn_decode.c) and the decode time model (models/decode.c) all
 * call the functions below, so the model's busiest CTA is the kernel's busiest CTA.
 *
 * Problem: b sequences, h query heads, h_kv KV heads (g = h / h_kv), head dim d, one query
 * token per (sequence, query head), a KV cache [b][h_kv][n_cap][d] of which sequence i holds
 * lens[i] <= n_cap tokens. A work unit is (sequence, kv head, head group): the group's query
 * heads (at most KN_DEC_MAX_GROUP of the g) are processed together, so each K/V tile is read
 * once per group. Unit u = (i * h_kv + kv) * groups + grp. A unit has
 * n(i) = max(1, ceil(lens[i] / T)) tiles of T tokens (a sequence with an empty cache still has
 * one, empty, tile: its unit writes O = 0 and LSE = -inf). Tiles are laid end to end, unit
 * after unit: W = sum over units of n.
 *
 * Header-only (host and device): every function is a few integer operations or a loop over
 * the b sequences.
 */
#ifndef ATTNSIM_KN_DECODE_H
#define ATTNSIM_KN_DECODE_H

#ifdef __CUDACC__
#define KN_DEC_FN __host__ __device__ __forceinline__ static
#else
#define KN_DEC_FN static inline
#endif

/* query heads one unit processes together: the row count of one m16 MMA tile */
#define KN_DEC_MAX_GROUP 16
/* FlashDecoding never splits a unit into more parts than this (flash-attn's bound) */
#define KN_DEC_MAX_SPLITS 128

/* The plan's integer type: 64-bit in C; a CUDA file may define KN_DEC_INT as int before the
 * include, so the kernels' index arithmetic (divisions included) runs on 32-bit integers. */
#ifndef KN_DEC_INT
#define KN_DEC_INT long long
#endif
typedef KN_DEC_INT kn_dec_int;

typedef enum { KN_DEC_FA2 = 0, KN_DEC_SPLIT = 1, KN_DEC_LEAN = 2 } kn_dec_scheme;

typedef struct {
    kn_dec_int b, h, h_kv, d;
    kn_dec_int g;           /* h / h_kv */
    kn_dec_int group;       /* query heads per unit: min(g, KN_DEC_MAX_GROUP) */
    kn_dec_int groups;      /* units per kv head: ceil(g / group) */
    kn_dec_int tile;        /* T: tokens per tile */
    kn_dec_int units;       /* b * h_kv * groups */
    kn_dec_int uniform_len; /* >= 0: every sequence holds this many tokens (lens unused) */
} kn_dec_plan;

/* T for head dim d (algorithms.md: 256 tokens for d <= 64, 128 for d <= 128, 64 above); a
 * constant expression, so kernels can size their blocks from it at compile time. */
#define KN_DEC_TILE(d) ((d) <= 64 ? 256 : (d) <= 128 ? 128 : 64)
KN_DEC_FN kn_dec_int kn_dec_tile(kn_dec_int d)
{
    return KN_DEC_TILE(d);
}

KN_DEC_FN kn_dec_plan kn_dec_make_plan(kn_dec_int b, kn_dec_int h, kn_dec_int h_kv, kn_dec_int d)
{
    kn_dec_plan p;
    p.b = b;
    p.h = h;
    p.h_kv = h_kv;
    p.d = d;
    p.g = h / h_kv;
    p.group = p.g < KN_DEC_MAX_GROUP ? p.g : KN_DEC_MAX_GROUP;
    p.groups = (p.g + p.group - 1) / p.group;
    p.tile = kn_dec_tile(d);
    p.units = b * h_kv * p.groups;
    p.uniform_len = -1;
    return p;
}

/* Tokens of sequence i: lens[i], or the plan's uniform length. */
KN_DEC_FN kn_dec_int kn_dec_len(const kn_dec_plan *p, const int *lens, kn_dec_int i)
{
    return p->uniform_len >= 0 ? p->uniform_len : lens[i];
}

/* Tiles of each unit of sequence i. */
KN_DEC_FN kn_dec_int kn_dec_seq_tiles(const kn_dec_plan *p, kn_dec_int len)
{
    kn_dec_int n = (len + p->tile - 1) / p->tile;
    return n > 0 ? n : 1;
}

/* Units per sequence. */
KN_DEC_FN kn_dec_int kn_dec_units_per_seq(const kn_dec_plan *p)
{
    return p->h_kv * p->groups;
}

/* W: the total tile count. */
KN_DEC_FN kn_dec_int kn_dec_total_tiles(const kn_dec_plan *p, const int *lens)
{
    kn_dec_int w = 0;
    for (kn_dec_int i = 0; i < p->b; i++) w += kn_dec_seq_tiles(p, kn_dec_len(p, lens, i));
    return w * kn_dec_units_per_seq(p);
}

/* First tile (in the global order) of unit u and its tile count. */
KN_DEC_FN kn_dec_int kn_dec_unit_first(const kn_dec_plan *p, const int *lens, kn_dec_int u,
                                       kn_dec_int *ntiles)
{
    kn_dec_int per = kn_dec_units_per_seq(p), i = u / per, first = 0;
    for (kn_dec_int j = 0; j < i; j++) first += kn_dec_seq_tiles(p, kn_dec_len(p, lens, j)) * per;
    kn_dec_int n = kn_dec_seq_tiles(p, kn_dec_len(p, lens, i));
    if (ntiles) *ntiles = n;
    return first + (u - i * per) * n;
}

/* The unit that holds global tile t, the unit's first tile and tile count. */
KN_DEC_FN kn_dec_int kn_dec_locate(const kn_dec_plan *p, const int *lens, kn_dec_int t,
                                   kn_dec_int *first, kn_dec_int *ntiles)
{
    kn_dec_int per = kn_dec_units_per_seq(p), base = 0, i = 0;
    for (; i < p->b - 1; i++) {
        kn_dec_int span = kn_dec_seq_tiles(p, kn_dec_len(p, lens, i)) * per;
        if (t < base + span) break;
        base += span;
    }
    kn_dec_int n = kn_dec_seq_tiles(p, kn_dec_len(p, lens, i)), k = (t - base) / n;
    if (first) *first = base + k * n;
    if (ntiles) *ntiles = n;
    return i * per + k;
}

/* Lean Attention: W tiles cut into c_count contiguous ranges, q = W / C, r = W mod C; CTA c
 * starts at c q + min(c, r) and takes q + [c < r] tiles. */
KN_DEC_FN void kn_dec_lean_range(kn_dec_int w, kn_dec_int c_count, kn_dec_int c, kn_dec_int *begin,
                                 kn_dec_int *end)
{
    kn_dec_int q = w / c_count, r = w % c_count;
    *begin = c * q + (c < r ? c : r);
    *end = *begin + q + (c < r ? 1 : 0);
}

/* The CTA whose Lean range holds tile t (the inverse of kn_dec_lean_range). */
KN_DEC_FN kn_dec_int kn_dec_lean_cta(kn_dec_int w, kn_dec_int c_count, kn_dec_int t)
{
    kn_dec_int q = w / c_count, r = w % c_count, big = r * (q + 1);
    if (t < big) return t / (q + 1);
    return r + (t - big) / q; /* q > 0 here: t < W = r (q + 1) + (C - r) q */
}

/* The Lean grid for W tiles on `slots` co-resident CTAs: min(slots, W) (a CTA with no tile
 * would only wait); except where every unit has the same tile count n, the units fit the slots
 * and n is no more than the busiest CTA's share ceil(W / slots) anyway: then one CTA per unit
 * (units CTAs: equal ranges are whole units), the same busiest CTA with no partial crossing
 * CTAs, stream-K's data-parallel case (e.g. 128 units of 16 tiles on 132 slots). */
KN_DEC_FN kn_dec_int kn_dec_lean_ctas(const kn_dec_plan *p, const int *lens, kn_dec_int w,
                                      kn_dec_int slots)
{
    kn_dec_int c = w < slots ? w : slots;
    if (p->units < 1 || p->units > slots || w % p->units != 0) return c;
    const kn_dec_int n = w / p->units;
    if (n > (w + slots - 1) / slots) return c;
    if (p->uniform_len < 0)
        for (kn_dec_int i = 0; i < p->b; i++)
            if (kn_dec_seq_tiles(p, kn_dec_len(p, lens, i)) != n) return c;
    return p->units;
}

/* FlashDecoding's split count for this launch (flash-attn's wave-efficiency heuristic, with
 * `slots` co-resident CTAs standing for its 2 x SM count): 1 when the units alone fill 80 % of
 * the slots; otherwise, among s = 1 .. min(KN_DEC_MAX_SPLITS, slots, max tiles per unit) that
 * change the tiles per split, the smallest whose wave efficiency (units s / slots over its
 * ceiling) is within 85 % of the best.
 * Exact integer arithmetic: the efficiency of s is work / (waves slots) with work = units s and
 * waves = ceil(work / slots), so comparisons cross-multiply and slots cancels. (Doubles broke
 * exact ties, e.g. units 106, 40 tiles, 264 slots: s = 2 sits exactly at 85 % of the best but
 * rounded below it, giving 6.) Past the first test units < 0.8 slots, so work <= 103 slots and
 * waves <= 103: the products stay far inside 64 bits. */
KN_DEC_FN kn_dec_int kn_dec_splits(const kn_dec_plan *p, kn_dec_int max_tiles_, kn_dec_int slots_)
{
    /* 64-bit inside whatever kn_dec_int is: the cross-multiplications below */
    long long units = p->units, max_tiles = max_tiles_, slots = slots_;
    if (10 * units >= 8 * slots) return 1;
    long long lim = KN_DEC_MAX_SPLITS;
    if (slots < lim) lim = slots;
    if (max_tiles < lim) lim = max_tiles;
    if (lim < 1) return 1;
    long long best_work = 0, best_waves = 1; /* the best efficiency, as work / waves */
    for (long long s = 1; s <= lim; s++) {
        if (s > 1 && (max_tiles + s - 1) / s == (max_tiles + s - 2) / (s - 1)) continue;
        long long work = units * s, waves = (work + slots - 1) / slots;
        if (work * best_waves > best_work * waves) {
            best_work = work;
            best_waves = waves;
        }
    }
    for (long long s = 1; s <= lim; s++) {
        if (s > 1 && (max_tiles + s - 1) / s == (max_tiles + s - 2) / (s - 1)) continue;
        long long work = units * s, waves = (work + slots - 1) / slots;
        if (100 * work * best_waves >= 85 * best_work * waves) return (kn_dec_int)s;
    }
    return 1;
}

/* Split j of s of a unit with n tiles: tiles [begin, end) of the unit (possibly empty). */
KN_DEC_FN void kn_dec_split_range(kn_dec_int n, kn_dec_int s, kn_dec_int j, kn_dec_int *begin,
                                  kn_dec_int *end)
{
    kn_dec_int per = (n + s - 1) / s;
    kn_dec_int b0 = j * per, e0 = b0 + per;
    *begin = b0 < n ? b0 : n;
    *end = e0 < n ? e0 : n;
}

/* Tokens of tile k (0-based within its unit) of a sequence of len tokens. */
KN_DEC_FN kn_dec_int kn_dec_tile_tokens(const kn_dec_plan *p, kn_dec_int len, kn_dec_int k)
{
    kn_dec_int lo = k * p->tile, hi = lo + p->tile;
    if (hi > len) hi = len;
    return hi > lo ? hi - lo : 0;
}

#endif
