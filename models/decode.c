/* decode.c - the decode time model (see decode.h, cost-model.md "Decode (Lean Attention) model").
 *
 * The grid and each CTA's tiles come from kn_decode.h; a CTA's work is the K+V bytes of the valid
 * keys of its tiles (2 tokens d e). The streaming part is an exact event simulation of a fluid
 * model: CTAs take the `slots` places in index order, every running CTA streams at the common
 * rate min(cta_rate, hbm_bw / running), and when one finishes the next queued CTA takes its
 * place. Since all running CTAs share one rate, it suffices to track the bytes P that each running
 * CTA has streamed since time 0 "per capita": a CTA started at P0 with B bytes ends when P reaches
 * P0 + B, so the running CTAs are a min-heap of end points and each event costs O(log slots).
 */
#include "decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kn_common.h"

/* ---- a binary min-heap of doubles ----------------------------------------------------------- */

static void heap_push(double *h, long long *n, double v)
{
    long long i = (*n)++;
    while (i > 0) {
        long long up = (i - 1) / 2;
        if (h[up] <= v) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = v;
}

static double heap_pop(double *h, long long *n)
{
    double top = h[0], v = h[--*n];
    long long i = 0, m = *n;
    for (;;) {
        long long c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = v;
    return top;
}

/* Streamed seconds of CTAs with the given bytes, dispatched in order onto `slots` places. */
static double fluid_time(const double *bytes, long long ctas, long long slots, double hbm_bw,
                         double cta_rate)
{
    long long cap = ctas < slots ? ctas : slots, n = 0, next = 0;
    if (cap < 1) return 0.0;
    double *h = kn_xmalloc((size_t)cap * sizeof(double), "decode model heap");
    double P = 0.0, t = 0.0;
    while (next < ctas && n < slots) heap_push(h, &n, bytes[next++]);
    while (n > 0) {
        double rate = hbm_bw / (double)n;
        if (cta_rate < rate) rate = cta_rate;
        double end = h[0];
        if (end > P) t += (end - P) / rate;
        if (end > P) P = end;
        heap_pop(h, &n);
        if (next < ctas) heap_push(h, &n, P + bytes[next++]);
    }
    free(h);
    return t;
}

/* Valid tokens in tiles [k0, k1) of a unit whose sequence holds len tokens. */
static long long range_tokens(const kn_dec_plan *p, long long len, long long k0, long long k1)
{
    long long hi = k1 * p->tile < len ? k1 * p->tile : len;
    long long lo = k0 * p->tile < len ? k0 * p->tile : len;
    return hi - lo;
}

/* Query head rows of unit u (the last group of a kv head may be short). */
static long long unit_rows(const kn_dec_plan *p, long long u)
{
    long long grp = u % p->groups, left = p->g - grp * p->group;
    return left < p->group ? left : p->group;
}

int kdm_predict(const kn_dec_plan *p, const int *lens, kn_dec_scheme scheme, long long slots,
                size_t elem_bytes, const kdm_params *m, kdm_prediction *out)
{
    if (!p || !lens || !m || !out || slots < 1 || elem_bytes == 0) return -1;
    /* written so that NaN fails too */
    if (!(m->hbm_bw > 0.0) || !isfinite(m->hbm_bw) || !(m->cta_rate > 0.0)) return -1;
    if (!(m->launch_s >= 0.0) || !(m->fixup_s >= 0.0) || !(m->fixup_latency_s >= 0.0)) return -1;
    if (p->b < 1 || p->h_kv < 1 || p->d < 1 || p->h < p->h_kv || p->h % p->h_kv) return -1;
    if (scheme != KN_DEC_FA2 && scheme != KN_DEC_SPLIT && scheme != KN_DEC_LEAN) return -1;
    for (long long i = 0; i < p->b; i++)
        if (lens[i] < 0) return -1;

    memset(out, 0, sizeof *out);
    double e = (double)elem_bytes, d = (double)p->d, tok_bytes = 2.0 * d * e;
    long long per = kn_dec_units_per_seq(p), max_tiles = 1;
    for (long long i = 0; i < p->b; i++) {
        long long n = kn_dec_seq_tiles(p, lens[i]);
        if (n > max_tiles) max_tiles = n;
        out->kv_bytes += (double)per * (double)lens[i] * tok_bytes;
    }

    long long s = 1, ctas, max_partials = 0;
    double *bytes;
    if (scheme == KN_DEC_LEAN) {
        long long w = kn_dec_total_tiles(p, lens);
        ctas = kn_dec_lean_ctas(p, lens, w, slots);
        bytes = kn_xcalloc((size_t)ctas, sizeof(double), "decode model CTAs");
        /* walk CTAs and units together: O(CTAs + units) */
        long long u = 0, n, first = kn_dec_unit_first(p, lens, 0, &n);
        for (long long c = 0; c < ctas; c++) {
            long long begin, end;
            kn_dec_lean_range(w, ctas, c, &begin, &end);
            if (end - begin > out->busiest_tiles) out->busiest_tiles = end - begin;
            for (long long t = begin; t < end;) {
                while (t >= first + n) {
                    first += n;
                    u++;
                    n = kn_dec_seq_tiles(p, lens[u / per]);
                }
                long long stop = first + n < end ? first + n : end, len = lens[u / per];
                bytes[c] += (double)range_tokens(p, len, t - first, stop - first) * tok_bytes;
                if (t == first) { /* host: merges the CTAs after it that hold the unit */
                    long long last = kn_dec_lean_cta(w, ctas, first + n - 1);
                    if (last - c > max_partials) max_partials = last - c;
                }
                t = stop;
            }
        }
    } else {
        if (scheme == KN_DEC_SPLIT) s = kn_dec_splits(p, max_tiles, slots);
        ctas = p->units * s;
        bytes = kn_xcalloc((size_t)ctas, sizeof(double), "decode model CTAs");
        for (long long u = 0; u < p->units; u++) {
            long long len = lens[u / per], n = kn_dec_seq_tiles(p, len);
            for (long long j = 0; j < s; j++) {
                long long k0, k1;
                kn_dec_split_range(n, s, j, &k0, &k1);
                if (k1 - k0 > out->busiest_tiles) out->busiest_tiles = k1 - k0;
                bytes[u * s + j] = (double)range_tokens(p, len, k0, k1) * tok_bytes;
            }
        }
    }

    out->ctas = ctas;
    out->splits = s;
    out->waves = (ctas + slots - 1) / slots;
    out->stream_s = fluid_time(bytes, ctas, slots, m->hbm_bw, m->cta_rate);
    free(bytes);
    out->time_s = m->launch_s + out->stream_s;
    if (scheme == KN_DEC_SPLIT && s > 1) {
        /* the combine kernel: its own launch, then every partial (m, l, o in f32) read once */
        double rows = 0.0;
        for (long long u = 0; u < p->units; u++) rows += (double)unit_rows(p, u);
        out->time_s += m->launch_s + rows * (double)s * (d + 2.0) * 4.0 / m->hbm_bw;
    }
    if (scheme == KN_DEC_LEAN && max_partials > 0)
        out->time_s += m->fixup_latency_s + m->fixup_s * (double)max_partials;
    /* The floor reads the cache once: kv_bytes counts K/V once per head group (unit), which is
     * more than the cache when g > KN_DEC_MAX_GROUP. */
    double qo = 2.0 * (double)p->b * (double)p->h * d * e;
    out->floor_s = (out->kv_bytes / (double)p->groups + qo) / m->hbm_bw;
    return 0;
}

const char *kdm_scheme_name(kn_dec_scheme s)
{
    switch (s) {
    case KN_DEC_FA2:
        return "fa2";
    case KN_DEC_SPLIT:
        return "flash-decoding";
    case KN_DEC_LEAN:
        return "lean";
    }
    return "unknown";
}
