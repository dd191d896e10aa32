/* attn_decode.c - the C reference decode kernels (see kn_attn_decode.h, algorithms.md section 3).
 *
 * Every scheme is the same three steps on a "segment" (one CTA's tiles of one unit):
 *   segment  read Q of the unit's group rows once, stream the tiles through a per-CTA K/V slot
 *            with the online softmax, leaving the partial (m, l, o) of each row in SRAM;
 *   finish   normalise (kn_state_finalize) and write O and LSE;
 *   partial  write (m, l, o) to the f32 scratch tensor, or read one back and merge it
 *            (kn_merge_state).
 * The scratch is a counted kn_tensor of f32, so a partial costs (d + 2) 4 bytes per row each way
 * and the counters see it like any other HBM traffic. The schemes differ only in which CTA runs
 * which segment (kn_decode.h) and who merges: FA2 never splits a unit; FlashDecoding writes s
 * partials per unit and a second "kernel" combines them; Lean's host merges the partials of the
 * higher-numbered CTAs that continue its unit. kn_decode_predict_bytes walks the same plan
 * without data; the two must agree byte for byte (tests/unit/test_decode.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_attn.h"
#include "kn_attn_decode.h"
#include "kn_merge.h"
#include "kn_tile_ops.h"

/* Geometry of unit u: sequence, kv head, its query head rows [row0, row0 + rows) of h. */
typedef struct {
    long long seq, kv, row0, rows, len, n;
} dec_unit;

static dec_unit dec_unit_of(const kn_dec_plan *p, const int *lens, long long u)
{
    dec_unit x;
    long long per = kn_dec_units_per_seq(p), rest = u % per, grp = rest % p->groups;
    x.seq = u / per;
    x.kv = rest / p->groups;
    x.row0 = x.kv * p->g + grp * p->group;
    /* the last group of a kv head may be short when KN_DEC_MAX_GROUP does not divide g */
    x.rows = p->g - grp * p->group < p->group ? p->g - grp * p->group : p->group;
    x.len = lens[x.seq];
    x.n = kn_dec_seq_tiles(p, x.len);
    return x;
}

static long long dec_max_tiles(const kn_dec_plan *p, const int *lens)
{
    long long mx = 1;
    for (long long i = 0; i < p->b; i++) {
        long long n = kn_dec_seq_tiles(p, lens[i]);
        if (n > mx) mx = n;
    }
    return mx;
}

/* ---- execution ----------------------------------------------------------------------------- */

typedef struct {
    const kn_dec_plan *p;
    kn_decode_io *t;
    kn_counters *c;
    float scale;
    size_t d, prow; /* prow = d + 2: one partial row (m, l, o) in the scratch */
    /* SRAM of the one CTA running: Q and the running state of the group rows, the K/V slot
     * (K, then V once the scores are formed), the score tile, and a partial row buffer. */
    kn_sram sram;
    float *q, *o, *m, *l, *lse, *kv, *S, *part;
    kn_tensor scratch; /* f32 [slot][KN_DEC_MAX_GROUP rows][d + 2] */
} dec_ctx;

static void state_clear(dec_ctx *x, long long rows)
{
    for (long long r = 0; r < rows; r++) {
        x->m[r] = -INFINITY;
        x->l[r] = 0.0f;
    }
    memset(x->o, 0, (size_t)rows * x->d * sizeof(float));
}

/* Tiles [k0, k1) of unit `u` (indices within the unit) into the running state. An empty range
 * (a FlashDecoding split past the unit's last tile) reads nothing, not even Q, and leaves the
 * empty state; a range of only an empty tile (a sequence with no token) still reads Q, as a
 * kernel does before it finds no key to load. */
static void dec_segment(dec_ctx *x, const dec_unit *u, long long k0, long long k1)
{
    const kn_dec_plan *p = x->p;
    size_t d = x->d, rows = (size_t)u->rows;
    state_clear(x, u->rows);
    if (k0 >= k1) return;
    kn_hbm_read(x->c, &x->t->q, (size_t)(u->seq * p->h + u->row0) * d, rows * d, x->q);
    size_t kvhead = (size_t)(u->seq * p->h_kv + u->kv) * x->t->n_cap;
    for (long long k = k0; k < k1; k++) {
        size_t cols = (size_t)kn_dec_tile_tokens(p, u->len, k);
        if (!cols) continue;
        size_t at = (kvhead + (size_t)(k * p->tile)) * d;
        kn_hbm_read_tile(x->c, &x->t->k, at, cols, d, d, x->kv);
        for (size_t r = 0; r < rows; r++) {
            const float *qr = x->q + r * d;
            float *Sr = x->S + r * cols;
            for (size_t cc = 0; cc < cols; cc++) {
                const float *kc = x->kv + cc * d;
                float acc = 0.0f;
                for (size_t e = 0; e < d; e++) acc += qr[e] * kc[e];
                Sr[cc] = x->scale * acc;
            }
            float mn, a_old, a_tile;
            kn_merge_coeffs(x->m[r], kn_row_max(Sr, cols), &mn, &a_old, &a_tile);
            /* exp(S - mn) is the tile's partial already rescaled by a_tile */
            x->l[r] = a_old * x->l[r] + kn_row_exp(Sr, cols, mn);
            x->m[r] = mn;
            for (size_t e = 0; e < d; e++) x->o[r * d + e] *= a_old;
        }
        kn_hbm_read_tile(x->c, &x->t->v, at, cols, d, d, x->kv);
        kn_tile_pv(x->S, x->kv, rows, cols, d, x->o);
        x->c->flops += 4ull * rows * cols * d;
    }
}

/* Normalise the running state and write O and LSE of the unit's rows. */
static void dec_finish(dec_ctx *x, const dec_unit *u)
{
    size_t d = x->d, rows = (size_t)u->rows, row = (size_t)(u->seq * x->p->h + u->row0);
    for (size_t r = 0; r < rows; r++)
        kn_state_finalize(d, x->m[r], x->l[r], x->o + r * d, &x->lse[r]);
    kn_hbm_write(x->c, &x->t->o, row * d, rows * d, x->o);
    kn_hbm_write(x->c, &x->t->lse, row, rows, x->lse);
}

static void dec_write_partial(dec_ctx *x, const dec_unit *u, long long slot)
{
    size_t d = x->d, pr = x->prow, rows = (size_t)u->rows;
    for (size_t r = 0; r < rows; r++) {
        x->part[r * pr] = x->m[r];
        x->part[r * pr + 1] = x->l[r];
        memcpy(x->part + r * pr + 2, x->o + r * d, d * sizeof(float));
    }
    kn_hbm_write(x->c, &x->scratch, (size_t)slot * KN_DEC_MAX_GROUP * pr, rows * pr, x->part);
}

static void dec_merge_partial(dec_ctx *x, const dec_unit *u, long long slot)
{
    size_t d = x->d, pr = x->prow, rows = (size_t)u->rows;
    kn_hbm_read(x->c, &x->scratch, (size_t)slot * KN_DEC_MAX_GROUP * pr, rows * pr, x->part);
    for (size_t r = 0; r < rows; r++) {
        const float *pp = x->part + r * pr;
        kn_merge_state(d, &x->m[r], &x->l[r], x->o + r * d, pp[0], pp[1], pp + 2);
    }
}

static void dec_check(const kn_dec_plan *p, long long slots, const kn_decode_io *t)
{
    if (p->b < 1 || p->h_kv < 1 || p->d < 1 || p->h < p->h_kv || p->h % p->h_kv)
        kn_fatal("kn_decode", "bad plan: need b, h_kv, d >= 1 and h a multiple of h_kv");
    if (slots < 1) kn_fatal("kn_decode", "slots must be >= 1");
    if (t->lse.dtype != KN_F32) kn_fatal("kn_decode", "lse must be an f32 tensor");
    for (long long i = 0; i < p->b; i++)
        if (t->lens[i] < 0 || (size_t)t->lens[i] > t->n_cap) {
            char why[120];
            snprintf(why, sizeof why, "lens[%lld] = %d outside [0, n_cap = %zu]", i, t->lens[i],
                     t->n_cap);
            kn_fatal("kn_decode", why);
        }
}

static void run_fa2(dec_ctx *x, kn_decode_stats *st)
{
    const kn_dec_plan *p = x->p;
    st->ctas = p->units;
    for (long long u = 0; u < p->units; u++) {
        dec_unit un = dec_unit_of(p, x->t->lens, u);
        dec_segment(x, &un, 0, un.n);
        dec_finish(x, &un);
        if (un.n > st->busiest) st->busiest = un.n;
    }
}

static void run_split(dec_ctx *x, long long slots, kn_decode_stats *st)
{
    const kn_dec_plan *p = x->p;
    const int *lens = x->t->lens;
    long long s = kn_dec_splits(p, dec_max_tiles(p, lens), slots);
    st->splits = s;
    st->ctas = p->units * s;
    if (s > 1)
        kn_tensor_alloc(&x->scratch, KN_F32, (size_t)(p->units * s) * KN_DEC_MAX_GROUP * x->prow,
                        "flash-decoding partials");
    /* the split kernel: CTA u s + j, in grid order */
    for (long long u = 0; u < p->units; u++) {
        dec_unit un = dec_unit_of(p, lens, u);
        for (long long j = 0; j < s; j++) {
            long long k0, k1;
            kn_dec_split_range(un.n, s, j, &k0, &k1);
            if (k1 - k0 > st->busiest) st->busiest = k1 - k0;
            dec_segment(x, &un, k0, k1);
            if (s == 1) {
                dec_finish(x, &un);
                continue;
            }
            /* every split writes its partial, an empty one too (m = -inf, l = 0), so the
             * combine reads exactly s per unit */
            dec_write_partial(x, &un, u * s + j);
            st->partials++;
        }
    }
    if (s == 1) return;
    /* the combine kernel: per unit, merge the s partials into the empty state */
    st->max_partials = s;
    for (long long u = 0; u < p->units; u++) {
        dec_unit un = dec_unit_of(p, lens, u);
        state_clear(x, un.rows);
        for (long long j = 0; j < s; j++) dec_merge_partial(x, &un, u * s + j);
        dec_finish(x, &un);
    }
}

static void run_lean(dec_ctx *x, long long slots, kn_decode_stats *st)
{
    const kn_dec_plan *p = x->p;
    const int *lens = x->t->lens;
    long long w = kn_dec_total_tiles(p, lens), nc = kn_dec_lean_ctas(p, lens, w, slots);
    st->ctas = nc;
    kn_tensor_alloc(&x->scratch, KN_F32, (size_t)nc * KN_DEC_MAX_GROUP * x->prow, "lean partials");
    /* written[c] = 1 + the unit whose partial CTA c has stored: the flag a host waits on */
    long long *written = kn_xcalloc((size_t)nc, sizeof(long long), "lean flags");
    /* Descending CTA order: a host waits only on higher-numbered CTAs, which have all run. */
    for (long long c = nc - 1; c >= 0; c--) {
        long long begin, end;
        kn_dec_lean_range(w, nc, c, &begin, &end);
        if (end - begin > st->busiest) st->busiest = end - begin;
        for (long long t0 = begin; t0 < end;) {
            long long first, n;
            long long u = kn_dec_locate(p, lens, t0, &first, &n);
            long long t1 = first + n < end ? first + n : end;
            dec_unit un = dec_unit_of(p, lens, u);
            dec_segment(x, &un, t0 - first, t1 - first);
            if (t0 > first) { /* contributor: the unit started in a lower-numbered CTA */
                if (written[c]) kn_fatal("kn_decode", "lean: a CTA wrote a second partial");
                dec_write_partial(x, &un, c);
                written[c] = u + 1;
                st->partials++;
            } else { /* host: merge the CTAs that continue the unit, then write O */
                long long last = kn_dec_lean_cta(w, nc, first + n - 1);
                for (long long cc = c + 1; cc <= last; cc++) {
                    if (written[cc] != u + 1)
                        kn_fatal("kn_decode", "lean: host merges a partial not yet written");
                    dec_merge_partial(x, &un, cc);
                }
                if (last - c > st->max_partials) st->max_partials = last - c;
                dec_finish(x, &un);
            }
            t0 = t1;
        }
    }
    free(written);
}

void kn_decode(const kn_dec_plan *p, kn_dec_scheme scheme, long long slots, kn_decode_io *t,
               kn_counters *c, kn_decode_stats *st)
{
    dec_check(p, slots, t);
    kn_decode_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    st->splits = 1;

    dec_ctx x;
    memset(&x, 0, sizeof x);
    x.p = p;
    x.t = t;
    x.c = c;
    x.d = (size_t)p->d;
    x.prow = x.d + 2;
    x.scale = kn_softmax_scale(x.d);
    size_t G = (size_t)p->group, T = (size_t)p->tile, d = x.d;
    kn_sram_init(&x.sram, 2 * G * d + 3 * G + T * d + G * T + G * x.prow);
    x.q = kn_sram_take(&x.sram, G * d, "decode: Q rows");
    x.o = kn_sram_take(&x.sram, G * d, "decode: O accumulator");
    x.m = kn_sram_take(&x.sram, G, "decode: row max");
    x.l = kn_sram_take(&x.sram, G, "decode: row sum");
    x.lse = kn_sram_take(&x.sram, G, "decode: LSE");
    x.kv = kn_sram_take(&x.sram, T * d, "decode: K/V slot");
    x.S = kn_sram_take(&x.sram, G * T, "decode: score tile");
    x.part = kn_sram_take(&x.sram, G * x.prow, "decode: partial rows");

    switch (scheme) {
    case KN_DEC_FA2:
        run_fa2(&x, st);
        break;
    case KN_DEC_SPLIT:
        run_split(&x, slots, st);
        break;
    case KN_DEC_LEAN:
        run_lean(&x, slots, st);
        break;
    default:
        kn_fatal("kn_decode", "unknown scheme");
    }
    if (x.scratch.data) kn_tensor_free(&x.scratch);
    kn_sram_free(&x.sram);
}

/* ---- prediction from the plan ------------------------------------------------------------- */

void kn_decode_predict_bytes(const kn_dec_plan *p, kn_dec_scheme scheme, long long slots,
                             const int *lens, kn_dtype dtype, uint64_t *bytes_read,
                             uint64_t *bytes_written, kn_decode_stats *st)
{
    kn_decode_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    st->splits = 1;
    uint64_t e = kn_dtype_bytes(dtype), d = (uint64_t)p->d, prow = 4 * (d + 2);
    uint64_t rd = 0, wr = 0;
    /* per unit: its valid K and V rows once (every scheme streams each tile exactly once), O and
     * LSE once per row; Q once per segment and the partials depend on the scheme */
    long long s = 1, w = 0, nc = 0;
    if (scheme == KN_DEC_SPLIT) {
        s = kn_dec_splits(p, dec_max_tiles(p, lens), slots);
        st->splits = s;
        st->ctas = p->units * s;
        st->max_partials = s > 1 ? s : 0;
    } else if (scheme == KN_DEC_LEAN) {
        w = kn_dec_total_tiles(p, lens);
        nc = kn_dec_lean_ctas(p, lens, w, slots);
        st->ctas = nc;
        st->busiest = w / nc + (w % nc ? 1 : 0);
    } else {
        st->ctas = p->units;
    }
    long long first = 0; /* the unit's first tile: units lie end to end */
    for (long long u = 0; u < p->units; u++) {
        dec_unit un = dec_unit_of(p, lens, u);
        uint64_t rows = (uint64_t)un.rows, segments = 1, partials = 0;
        rd += 2 * (uint64_t)un.len * d * e;
        wr += rows * (d * e + 4);
        if (scheme == KN_DEC_FA2) {
            if (un.n > st->busiest) st->busiest = un.n;
        } else if (scheme == KN_DEC_SPLIT) {
            segments = 0;
            for (long long j = 0; j < s; j++) {
                long long k0, k1;
                kn_dec_split_range(un.n, s, j, &k0, &k1);
                segments += k1 > k0;
                if (k1 - k0 > st->busiest) st->busiest = k1 - k0;
            }
            partials = s > 1 ? (uint64_t)s : 0;
        } else {
            long long host = kn_dec_lean_cta(w, nc, first);
            long long last = kn_dec_lean_cta(w, nc, first + un.n - 1);
            segments = (uint64_t)(last - host + 1);
            partials = (uint64_t)(last - host);
            if (last - host > st->max_partials) st->max_partials = last - host;
        }
        rd += segments * rows * d * e;
        rd += partials * rows * prow; /* the host or the combine reads each partial once */
        wr += partials * rows * prow; /* written once by its CTA */
        st->partials += (long long)partials;
        first += un.n;
    }
    *bytes_read = rd;
    *bytes_written = wr;
}

/* ---- float64 reference --------------------------------------------------------------------- */

void kn_decode_ref_f64(const kn_dec_plan *p, const kn_decode_io *t, double *o, double *lse)
{
    size_t d = (size_t)p->d, g = (size_t)p->g, h = (size_t)p->h, hkv = (size_t)p->h_kv;
    double scale = 1.0 / sqrt((double)d);
    size_t ncap1 = t->n_cap ? t->n_cap : 1;
    double *s = kn_xmalloc(ncap1 * sizeof(double), "decode reference scores");
    double *qr = kn_xmalloc(d * sizeof(double), "decode reference q");
    /* one KV head's valid rows in double, shared by its g query heads */
    double *kh = kn_xmalloc(ncap1 * d * sizeof(double), "decode reference K");
    double *vh = kn_xmalloc(ncap1 * d * sizeof(double), "decode reference V");
    for (size_t b = 0; b < (size_t)p->b; b++) {
        size_t n = (size_t)t->lens[b];
        for (size_t kv = 0; kv < hkv; kv++) {
            size_t kvbase = (b * hkv + kv) * t->n_cap * d;
            for (size_t i = 0; i < n * d; i++) {
                kh[i] = kn_tensor_get(&t->k, kvbase + i);
                vh[i] = kn_tensor_get(&t->v, kvbase + i);
            }
            for (size_t hq = kv * g; hq < (kv + 1) * g; hq++) {
                size_t row = b * h + hq;
                double *orow = o + row * d;
                memset(orow, 0, d * sizeof(double));
                if (n == 0) {
                    lse[row] = -INFINITY;
                    continue;
                }
                for (size_t e = 0; e < d; e++) qr[e] = kn_tensor_get(&t->q, row * d + e);
                double mx = -INFINITY;
                for (size_t k = 0; k < n; k++) {
                    double acc = 0.0;
                    for (size_t e = 0; e < d; e++) acc += qr[e] * kh[k * d + e];
                    s[k] = scale * acc;
                    if (s[k] > mx) mx = s[k];
                }
                double sum = 0.0;
                for (size_t k = 0; k < n; k++) {
                    s[k] = exp(s[k] - mx);
                    sum += s[k];
                }
                for (size_t k = 0; k < n; k++)
                    for (size_t e = 0; e < d; e++) orow[e] += s[k] / sum * vh[k * d + e];
                lse[row] = mx + log(sum);
            }
        }
    }
    free(vh);
    free(kh);
    free(qr);
    free(s);
}
