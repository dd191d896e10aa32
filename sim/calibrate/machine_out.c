/* machine_out.c - the machine file attnsim calibrate writes (calibrate.h): the base machine with
 * the measured values in place, every line saying whether its value was measured or kept, and
 * only values the file format accepts (machine_write, the parser's own key table), the pattern
 * lines of the fits (the poor ones commented out); the tiers set from the fitted link series
 * (across nodes, the NIC's own rate and how many ranks share it); the fits too poor to use
 * silently, listed for stdout and the file; the calibrated machine fitted from one calibration's
 * results (cal_fit_machine) and the file's text (cal_machine_text). */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "calibrate.h"
#include "fail.h"

/* What the machine file says of each key's value: measured, or kept from the base machine. */
typedef struct {
    const machine *base, *m;
    double nic_ratio; /* > 0: the inter-node tier is the one-rank-per-node shift */
    size_t head_dim;  /* of the kernels measured */
    char buf[160];
} key_notes;

static const char *key_note(const char *key, void *ctx)
{
    key_notes *kn = ctx;
    static const char *const peaks[3] = {"peak_f32", "peak_f16", "peak_bf16"};
    for (int d = 0; d < 3; d++)
        if (!strcmp(key, peaks[d]))
            return kn->m->peak_flops[d] == kn->base->peak_flops[d]
                       ? "kept (no kernel of this type measured)"
                       : (snprintf(kn->buf, sizeof kn->buf,
                                   "measured: FA2 tiles at d = %zu, every rank at once",
                                   kn->head_dim),
                          kn->buf);
    for (int t = 0; t < 2; t++) {
        char alpha[32], bw[32];
        snprintf(alpha, sizeof alpha, "%s_alpha", t ? "inter" : "intra");
        snprintf(bw, sizeof bw, "%s_bandwidth", t ? "inter" : "intra");
        if (!strcmp(key, alpha) || !strcmp(key, bw))
            return !kn->m->measured[t] ? "NOT MEASURED: kept"
                   : t == TIER_INTER && kn->nic_ratio > 0
                       ? "measured: ring shift, one rank per node (one NIC), robust fit"
                       : "measured: ring shift, robust fit";
    }
    if (!strcmp(key, "gpus_per_nic") && kn->nic_ratio > 0) {
        snprintf(kn->buf, sizeof kn->buf,
                 "measured: inter-node ring shift with one rank per node is %.2fx as fast as "
                 "with every rank",
                 kn->nic_ratio);
        return kn->buf;
    }
    if (!strcmp(key, "overlap.intra.hidden") || !strcmp(key, "overlap.inter.hidden"))
        return "measured: share of min(compute, transfer) hidden in a ring step";
    if (!strcmp(key, "overlap.compute_ratio")) return "measured: compute beside a transfer / alone";
    if (!strcmp(key, "gpus_per_node")) return "measured: ranks per node";
    if (!strcmp(key, "sms")) {
        snprintf(kn->buf, sizeof kn->buf, "kept from %s", kn->base->name);
        return kn->buf;
    }
    if (!strcmp(key, "smem_per_sm") || !strcmp(key, "l2") || !strcmp(key, "gpus_per_nic"))
        return "kept";
    if (!strcmp(key, "hbm_bandwidth"))
        return "measured: memory copy (read + write), every rank at once";
    if (!strcmp(key, "sustained_fraction"))
        return "the peaks above are the kernels' measured forward rates";
    return NULL;
}

/* The machine file: base machine with the measured values in place, each line commented; the
 * pattern lines from the fits. */
void cal_write_machine(FILE *f, const machine *base, const machine *m, const char *host,
                       const char *when, int nodes, const char *backend, const char *comm,
                       double nic_ratio, size_t head_dim, const pattern_fit *fits, int nfit)
{
    fprintf(f, "# Written by attnsim calibrate on %s (%s), %d node(s), backend %s, comm %s.\n",
            host, when, nodes, backend, comm);
    fprintf(f, "# Measured values say so; the others are kept from the base machine '%s'.\n",
            base->origin);
    key_notes kn = {base, m, nic_ratio, head_dim, ""};
    machine keys = *m; /* the keys; the pattern lines follow, one comment each */
    keys.n_links = 0;
    char text[8192];
    machine_write(&keys, MACHINE_REQUIRED | MACHINE_OPTIONAL, key_note, &kn, text, sizeof text);
    fputs(text, f);
    static const char *const tiers[2] = {"intra", "inter"};
    for (int k = 0; k < nfit; k++) {
        const pattern_fit *pf = &fits[k];
        char key[96];
        snprintf(key, sizeof key, "link.%s.%s.g%llu", tiers[pf->tier],
                 am_pattern_names[pf->pattern], (unsigned long long)pf->g);
        if (pf->poor)
            fprintf(f, "# POOR FIT (%s), not used: %s (the tier's rate applies)\n", pf->why, key);
        else
            fprintf(f, "# measured: %s; R^2 %.4f, rel RMS %.1f %%\n", pf->source, pf->r2,
                    100 * pf->rel_rms);
        if (!pf->ok) continue;
        machine_link l = {pf->tier, pf->pattern, pf->g, pattern_fit_rate(pf)};
        char lines[1024];
        machine_format_link(&l, pf->poor ? "# " : "", lines, sizeof lines);
        fputs(lines, f);
    }
}

int cal_link_in_range(const pattern_fit *pf)
{
    link_rate r = pattern_fit_rate(pf);
    double lo, hi,
        vals[5] = {r.alpha_s, r.bytes_per_s, r.break_bytes, r.alpha_large_s, r.bytes_per_s_large};
    static const char *const keys[5] = {"intra_alpha", "intra_bandwidth", "intra_break",
                                        "intra_large_alpha", "intra_large_bandwidth"};
    for (int i = 0; i < (r.break_bytes > 0 ? 5 : 2); i++) {
        if (machine_key_range(keys[i], &lo, &hi) != 0) continue;
        int time = i == 0 || i == 3;
        if (!isfinite(vals[i]) || vals[i] > hi || (vals[i] < lo && !(time && vals[i] == 0)))
            return 0;
    }
    return 1;
}

double cal_tier_alpha(double fitted, const series *s)
{
    if (fitted > 0) return fitted;
    double t = s->time[0];
    for (size_t i = 1; i < s->n; i++) t = fmin(t, s->time[i]);
    return t;
}

double cal_large_bandwidth(const series *s)
{
    return 1.0 / (s->fit.two_regimes ? s->fit.large.beta : s->fit.small.beta);
}

void cal_set_tier(machine *m, int t, const series *s)
{
    m->measured[t] = s->ok;
    if (!s->ok) return;
    m->alpha_s[t] = cal_tier_alpha(s->fit.small.alpha, s);
    m->bytes_per_s[t] = 1.0 / s->fit.small.beta;
    m->break_bytes[t] = 0;
    if (s->fit.two_regimes) {
        m->break_bytes[t] = s->fit.break_x;
        m->alpha_large_s[t] = cal_tier_alpha(s->fit.large.alpha, s);
        m->bytes_per_s_large[t] = 1.0 / s->fit.large.beta;
    }
}

uint64_t cal_nic_sharing(const series *all, const series *one, int per_node, double *ratio)
{
    *ratio = 0.0;
    if (!all->ok || !one->ok) return 0;
    *ratio = cal_large_bandwidth(one) / cal_large_bandwidth(all);
    uint64_t best = 1;
    for (int d = 1; d <= per_node; d++)
        if (per_node % d == 0 && fabs(log(*ratio / d)) < fabs(log(*ratio / (double)best)))
            best = (uint64_t)d;
    return best;
}

static void poor_add(cal_poor_fits *pf, const char *what, const char *keys, const char *group,
                     const lin_fit *f)
{
    if (pf->n == 8 || !fit_is_poor(f)) return;
    snprintf(pf->what[pf->n], sizeof pf->what[0], "%s", what);
    snprintf(pf->keys[pf->n], sizeof pf->keys[0], "%s", keys);
    snprintf(pf->group[pf->n], sizeof pf->group[0], "%s", group);
    pf->r2[pf->n] = f->r2, pf->rel_rms[pf->n] = f->rel_rms;
    pf->n++;
}

void cal_collect_poor_fits(cal_poor_fits *pf, const series *const *tier, const char *const *groups,
                           const kernel_series *ks)
{
    static const char *const tiers[2] = {"intra", "inter"}, *const dn[3] = {"f32", "f16", "bf16"};
    memset(pf, 0, sizeof *pf);
    for (int t = 0; t < 2; t++) {
        if (!tier[t]->ok) continue;
        const link_fit *f = &tier[t]->fit;
        char what[48], keys[48], group[48];
        snprintf(group, sizeof group, "%s", groups[t]);
        snprintf(what, sizeof what, "%s-node ring shift%s", tiers[t],
                 f->two_regimes ? ", small messages" : "");
        snprintf(keys, sizeof keys, "%s_alpha, %s_bandwidth", tiers[t], tiers[t]);
        poor_add(pf, what, keys, group, f->two_regimes ? &f->small : &f->single);
        if (f->two_regimes) {
            snprintf(what, sizeof what, "%s-node ring shift, large messages", tiers[t]);
            snprintf(keys, sizeof keys, "%s_large_alpha, %s_large_bandwidth", tiers[t], tiers[t]);
            poor_add(pf, what, keys, group, &f->large);
        }
    }
    for (int d = 0; d < 3; d++) {
        if (!ks[d].ok) continue;
        char what[48], keys[48], group[48];
        snprintf(group, sizeof group, "kernels/%s", dn[d]);
        snprintf(what, sizeof what, "%s forward kernel", dn[d]);
        snprintf(keys, sizeof keys, "peak_%s", dn[d]);
        poor_add(pf, what, keys, group, &ks[d].fit);
        snprintf(what, sizeof what, "%s backward kernel", dn[d]);
        poor_add(pf, what, "backward_rate_ratio", group, &ks[d].bwd_fit);
    }
}

void cal_print_poor_fits(FILE *f, const cal_poor_fits *pf, const char *prefix)
{
    for (int i = 0; i < pf->n; i++)
        fprintf(f,
                "%sPOOR FIT: %s: R^2 %.4f, rel RMS %.1f %% (accepted: R^2 >= %.2g and rel RMS "
                "<= %.0f %%); used for %s\n",
                prefix, pf->what[i], pf->r2[i], 100 * pf->rel_rms[i], FIT_MIN_R2,
                100 * FIT_MAX_REL_RMS, pf->keys[i]);
}

/* 1 when v is within the range the machine file accepts for `key` (docs/machine.md). */
static int in_range(const char *key, double v, double *lo)
{
    double hi;
    if (machine_key_range(key, lo, &hi) != 0) return 0;
    return isfinite(v) && v >= *lo && v <= hi;
}

/* The machine file holds only values it reads back (docs/machine.md, "Ranges"): a fitted
 * latency below the range (under the timer's resolution, or a negative intercept) is written as
 * the smallest accepted value; any other fitted value out of range is not used (the base
 * machine's is kept, or the optional key left out). Says so on stdout. */
void cal_keep_in_range(machine *m, const machine *base)
{
    static const char *const tier[2] = {"intra", "inter"};
    static const char *const dn[3] = {"f32", "f16", "bf16"};
    double lo;
    char key[64];
    if (!in_range("hbm_bandwidth", m->hbm_bytes_per_s, &lo)) {
        printf("# note: memory copy %g B/s is outside the machine file's range; kept %s's\n",
               m->hbm_bytes_per_s, base->name);
        m->hbm_bytes_per_s = base->hbm_bytes_per_s;
    }
    for (int d = 0; d < 3; d++) {
        snprintf(key, sizeof key, "peak_%s", dn[d]);
        if (in_range(key, m->peak_flops[d], &lo)) continue;
        printf("# note: %s rate %g FLOP/s is outside the machine file's range; kept %s's\n", dn[d],
               m->peak_flops[d], base->name);
        m->peak_flops[d] = base->peak_flops[d];
    }
    for (int t = 0; t < 2; t++) {
        if (!m->measured[t]) continue;
        double *alphas[2] = {&m->alpha_s[t], &m->alpha_large_s[t]};
        for (int a = 0; a < (m->break_bytes[t] > 0 ? 2 : 1); a++) {
            snprintf(key, sizeof key, "%s_alpha", tier[t]);
            if (!in_range(key, *alphas[a], &lo) && isfinite(*alphas[a]) && *alphas[a] < lo) {
                printf("# note: %s-node latency fit %g s is below the timer's resolution; "
                       "written as %g s, the smallest accepted\n",
                       tier[t], *alphas[a], lo);
                *alphas[a] = lo;
            }
        }
        snprintf(key, sizeof key, "%s_alpha", tier[t]);
        int ok = in_range(key, m->alpha_s[t], &lo);
        snprintf(key, sizeof key, "%s_bandwidth", tier[t]);
        ok &= in_range(key, m->bytes_per_s[t], &lo);
        if (!ok) {
            printf("# note: the %s-node fit (%g s, %g B/s) is outside the machine file's range; "
                   "the tier is kept from %s and marked NOT MEASURED\n",
                   tier[t], m->alpha_s[t], m->bytes_per_s[t], base->name);
            m->measured[t] = 0;
            m->alpha_s[t] = base->alpha_s[t], m->bytes_per_s[t] = base->bytes_per_s[t];
            m->break_bytes[t] = 0;
            continue;
        }
        if (m->break_bytes[t] > 0) {
            snprintf(key, sizeof key, "%s_break", tier[t]);
            ok = in_range(key, m->break_bytes[t], &lo);
            snprintf(key, sizeof key, "%s_large_alpha", tier[t]);
            ok &= in_range(key, m->alpha_large_s[t], &lo);
            snprintf(key, sizeof key, "%s_large_bandwidth", tier[t]);
            ok &= in_range(key, m->bytes_per_s_large[t], &lo);
            if (!ok) {
                printf("# note: the %s-node large-message regime is outside the machine file's "
                       "range; one regime is written\n",
                       tier[t]);
                m->break_bytes[t] = 0;
            }
        }
    }
    if (m->kernel_overhead_s > 0 && !in_range("kernel_overhead", m->kernel_overhead_s, &lo)) {
        printf("# note: kernel overhead %g s is outside the machine file's range; left out\n",
               m->kernel_overhead_s);
        m->kernel_overhead_s = 0;
    }
    if (!in_range("backward_rate_ratio", m->backward_rate_ratio, &lo)) {
        printf("# note: backward rate ratio %g is outside the machine file's range; left out\n",
               m->backward_rate_ratio);
        m->backward_rate_ratio = 1.0;
    }
}

/* ---- the calibrated machine ---------------------------------------------------------------- */

/* The kernels' values of machine m: forward rates as peaks, the medians over the storage types
 * measured of the per-call overhead and of the forward/backward rate ratio. */
static void fit_kernels(machine *m, const kernel_series ks[3])
{
    double overheads[6], ratios[3];
    size_t nk = 0;
    for (int d = 0; d < 3; d++) {
        if (!ks[d].ok) continue;
        m->peak_flops[d] = 1.0 / ks[d].fit.beta;
        overheads[2 * nk] = ks[d].fit.alpha;
        overheads[2 * nk + 1] = ks[d].bwd_fit.alpha;
        ratios[nk++] = ks[d].fit.beta / ks[d].bwd_fit.beta;
    }
    if (nk) {
        gsl_sort(overheads, 1, 2 * nk);
        gsl_sort(ratios, 1, nk);
        m->kernel_overhead_s = gsl_stats_median_from_sorted_data(overheads, 1, 2 * nk);
        m->backward_rate_ratio = gsl_stats_median_from_sorted_data(ratios, 1, nk);
    }
}

/* The calibrated machine *m (rank 0): the base machine with the measured values in place, the
 * tiers, NIC sharing, overlap and pattern lines fitted into r (its poor fits collected). */
void cal_fit_machine(const cal_env *e, const machine *base, const char *host, cal_results *r,
                     machine *m)
{
    *m = *base;
    snprintf(m->name, sizeof m->name, "calibrated-%.40s", host);
    if (e->cuda) { /* as much as the field holds: a long name loses the suffix */
        char full[sizeof r->gpu + 32] = {0};
        snprintf(full, sizeof full, "%s (attnsim backend cuda)", r->gpu);
        full[sizeof m->gpu - 1] = '\0';
        memcpy(m->gpu, full, sizeof m->gpu);
    } else {
        snprintf(m->gpu, sizeof m->gpu, "cpu rank (attnsim backend cpu)");
    }
    int most = 0;
    for (int n = 0; n < e->nodes; n++) most = e->per_node[n] > most ? e->per_node[n] : most;
    m->gpus_per_node = (uint64_t)most;
    m->hbm_bytes_per_s = r->copy_bps;
    m->sustained_fraction = 1.0;
    fit_kernels(m, r->ks);
    m->calibrated = 1;
    /* across nodes, the tier is the NIC itself: the ring shift with one rank per node (the
     * model divides its bandwidth among the ranks that cross at once, gpus_per_nic of them
     * per NIC: how much slower the shift of every rank is) */
    r->per_nic = cal_nic_sharing(&r->shift[TIER_INTER], &r->nic, most, &r->nic_ratio);
    if (r->per_nic) m->gpus_per_nic = r->per_nic;
    r->tier[TIER_INTRA] = &r->shift[TIER_INTRA];
    r->tier[TIER_INTER] = r->per_nic ? &r->nic : &r->shift[TIER_INTER];
    static const char *const tier_group[2][2] = {
        {"links/intra/ring_shift", "links/inter/ring_shift"},
        {"links/intra/ring_shift", "links/inter/ring_shift_nic"}};
    r->groups = tier_group[r->per_nic ? 1 : 0];
    for (int t = 0; t < 2; t++) cal_set_tier(m, t, r->tier[t]);
    for (int t = 0; t < 2; t++) /* measured overlap */
        if (r->ovl[t].ok) m->overlap_hidden[t] = r->ovl[t].hidden;
    if (r->ovl[0].ok || r->ovl[1].ok) m->overlap_compute_ratio = r->ovl[r->ovl[0].ok ? 0 : 1].ratio;
    /* the patterns, fitted with the NICs and the memory rate just measured */
    r->nfit = fit_patterns(e, r->pats, r->npat, m, r->fits, CAL_MAX_PATTERNS);
    m->n_links = 0;
    for (int k = 0; k < r->nfit; k++) /* the file holds only values it reads back */
        if (r->fits[k].ok && !r->fits[k].poor && !cal_link_in_range(&r->fits[k])) {
            r->fits[k].poor = 1;
            snprintf(r->fits[k].why, sizeof r->fits[k].why,
                     "a fitted value outside the machine file's range");
        }
    for (int k = 0; k < r->nfit; k++)
        if (!r->fits[k].poor && m->n_links < MACHINE_MAX_LINKS) {
            machine_link *l = &m->links[m->n_links++];
            l->tier = r->fits[k].tier, l->pattern = r->fits[k].pattern, l->group = r->fits[k].g;
            l->r = pattern_fit_rate(&r->fits[k]);
        }
    cal_keep_in_range(m, base);
    cal_collect_poor_fits(&r->pf, r->tier, r->groups, r->ks);
}

/* The machine file's text (the caller frees it), for --machine-out (or stdout) and the run's
 * machine_file attribute. */
char *cal_machine_text(const cal_env *e, const cal_results *r, const machine *m,
                       const machine *base, const char *host)
{
    char when[32];
    prov_utc_now(when, sizeof when);
    char *mtext = NULL;
    size_t mlen = 0;
    FILE *mf = open_memstream(&mtext, &mlen);
    if (!mf) attn_fail("open_memstream", __FILE__, __LINE__, "%s", strerror(errno));
    cal_write_machine(mf, base, m, host, when, e->nodes, r->backend, r->comm, r->nic_ratio,
                      calibrate_head_dim(e), r->fits, r->nfit);
    cal_print_poor_fits(mf, &r->pf, "# ");
    if (fclose(mf) != 0) attn_fail("fclose", __FILE__, __LINE__, "%s", strerror(errno));
    return mtext;
}
