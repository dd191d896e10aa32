/* pattern_fits.c - the measured communication patterns (patterns.c) fitted per tier into the
 * machine file's pattern lines, with NIC sharing and a quality per line; the terminal tables of
 * the patterns and their fits, and their records in the kind=calibration run (calibrate.h;
 * docs/calibration.md, "Patterns"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "fail.h"

/* ---- fitting ----------------------------------------------------------------------------- */

/* The hops of one step of the pattern: whether some hop crosses nodes, and the most ranks that
 * cross through one NIC (ranks of a node share its NICs gpus_per_nic at a time). */
static void step_hops(const cal_env *e, const pattern_meas *pm, uint64_t shift,
                      uint64_t gpus_per_nic, int *inter, double *load)
{
    int P = e->P;
    int *crossing = kn_xcalloc((size_t)P * P, sizeof(int), "loads"); /* [node][NIC of node] */
    *inter = 0;
    int most = 0;
    for (int x = 0; x < P; x++) {
        uint64_t y;
        if (pm->pattern == PAT_PAIRWISE) {
            y = pm->ph->peer(&pm->cfg, (uint64_t)x);
        } else {
            am_group gr = am_comm_group(&pm->cfg, pm->comm, (uint64_t)x);
            y = gr.first + ((gr.index + shift) % gr.size) * gr.stride;
        }
        if (y == (uint64_t)x || e->node_of[x] == e->node_of[y]) continue;
        *inter = 1;
        int nic = e->node_of[x] * P + e->local_of[x] / (int)gpus_per_nic;
        if (++crossing[nic] > most) most = crossing[nic];
    }
    *load = most > 0 ? most : 1;
    free(crossing);
}

/* Weighted (1/t^2) R^2 and the RMS of the relative residuals of fit f over the points. */
static void quality(const link_fit *f, const double *x, const double *t, size_t n, double *r2,
                    double *rel_rms)
{
    double sw = 0, swt = 0;
    for (size_t i = 0; i < n; i++) sw += 1 / (t[i] * t[i]), swt += t[i] / (t[i] * t[i]);
    double mean = swt / sw, res = 0, tot = 0;
    for (size_t i = 0; i < n; i++) {
        double r = (link_fit_eval(f, x[i]) - t[i]) / t[i], d = (t[i] - mean) / t[i];
        res += r * r, tot += d * d;
    }
    *r2 = tot > 0 ? 1 - res / tot : 0;
    *rel_rms = sqrt(res / (double)n);
}

static int cmp_pair(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

int fit_patterns(const cal_env *e, pattern_meas *pm, int n, const machine *m, pattern_fit *out,
                 int max)
{
    int nf = 0;
    for (int i = 0; i < n; i++) {
        pattern_meas *p = &pm[i];
        if (!p->n) continue;
        /* per step type: tier and load; an all-to-all has g - 1 rounds, the rest one kind */
        uint64_t kinds = p->pattern == PAT_ALLTOALL ? p->g - 1 : 1;
        int any_inter = 0, all_inter = 1;
        double load_sum = 0.0;
        uint64_t inter_steps = 0, intra_steps = 0;
        for (uint64_t k = 1; k <= kinds; k++) {
            int inter;
            double load;
            step_hops(e, p, k, m->gpus_per_nic, &inter, &load);
            any_inter |= inter, all_inter &= inter;
            if (inter)
                inter_steps++, load_sum += load;
            else
                intra_steps++;
        }
        int tier = any_inter ? TIER_INTER : TIER_INTRA;
        /* the points: per step of the tier, against the bytes one flow (intra) or the busiest
         * NIC (inter) carries; an all-to-all's intra-node rounds priced at the intra-node
         * rate and taken out */
        double *xy = kn_xmalloc(2 * p->n * sizeof(double), "fit points");
        size_t np = 0;
        link_rate intra = machine_link_rate(m, TIER_INTRA, p->pattern, p->g, NULL);
        for (size_t j = 0; j < p->n; j++) {
            double b = p->bytes[j], t = p->time[j] * (double)p->steps; /* the whole call */
            if (tier == TIER_INTER && !all_inter)
                t -= (double)intra_steps * link_rate_time(&intra, b, 1);
            uint64_t s =
                tier == TIER_INTER && p->pattern == PAT_ALLTOALL ? inter_steps : (uint64_t)p->steps;
            double x =
                tier == TIER_INTER ? b * load_sum / (double)(inter_steps ? inter_steps : 1) : b;
            if (t <= 0) continue; /* below what the rest of the model already charges */
            xy[2 * np] = x, xy[2 * np + 1] = t / (double)s;
            np++;
        }
        qsort(xy, np, 2 * sizeof(double), cmp_pair);
        /* the same (tier, pattern, g) from another communicator joins these points */
        int k;
        for (k = 0; k < nf; k++)
            if (out[k].tier == tier && out[k].pattern == p->pattern && out[k].g == p->g) break;
        if (k == nf) {
            if (nf == max) {
                free(xy);
                continue;
            }
            memset(&out[nf], 0, sizeof out[nf]);
            out[nf].tier = tier, out[nf].pattern = p->pattern, out[nf].g = p->g;
            snprintf(out[nf].source, sizeof out[nf].source, "%s", p->name);
            nf++;
        } else {
            size_t len = strlen(out[k].source);
            snprintf(out[k].source + len, sizeof out[k].source - len, "; %s", p->name);
        }
        pattern_fit *pf = &out[k];
        double *x = kn_xmalloc((pf->n + np) * sizeof(double), "fit points");
        double *t = kn_xmalloc((pf->n + np) * sizeof(double), "fit points");
        double *all = kn_xmalloc(2 * (pf->n + np) * sizeof(double), "fit points");
        for (size_t j = 0; j < pf->n; j++) all[2 * j] = pf->x[j], all[2 * j + 1] = pf->t[j];
        memcpy(all + 2 * pf->n, xy, 2 * np * sizeof(double));
        size_t total = pf->n + np;
        qsort(all, total, 2 * sizeof(double), cmp_pair);
        size_t kept = 0; /* the quietest sample of each size (as the links, links.c) */
        for (size_t j = 0; j < total; j++) {
            if (kept > 0 && x[kept - 1] == all[2 * j]) {
                t[kept - 1] = fmin(t[kept - 1], all[2 * j + 1]);
                continue;
            }
            x[kept] = all[2 * j], t[kept] = all[2 * j + 1], kept++;
        }
        free(all), free(xy), free(pf->x), free(pf->t);
        pf->x = x, pf->t = t, pf->n = kept;
    }
    for (int k = 0; k < nf; k++) { /* fit, judge */
        pattern_fit *pf = &out[k];
        pf->ok = pf->n >= 3 && fit_link(pf->x, pf->t, pf->n, &pf->fit) == 0 &&
                 pf->fit.small.beta > 0 && (!pf->fit.two_regimes || pf->fit.large.beta > 0);
        if (!pf->ok) {
            snprintf(pf->why, sizeof pf->why, "no fit (time does not grow with size)");
            pf->poor = 1;
            continue;
        }
        quality(&pf->fit, pf->x, pf->t, pf->n, &pf->r2, &pf->rel_rms);
        pf->poor = pf->r2 < 0.9 || pf->rel_rms > 0.15;
        if (pf->poor)
            snprintf(pf->why, sizeof pf->why, "R^2 %.3f%s, rel RMS %.1f %%%s", pf->r2,
                     pf->r2 < 0.9 ? " < 0.9" : "", 100 * pf->rel_rms,
                     pf->rel_rms > 0.15 ? " > 15 %" : "");
    }
    return nf;
}

void pattern_fit_free(pattern_fit *pf)
{
    free(pf->x), free(pf->t);
    pf->x = pf->t = NULL;
}

link_rate pattern_fit_rate(const pattern_fit *pf)
{
    /* an intercept below zero is written as zero */
    link_rate r = {fmax(pf->fit.small.alpha, 0.0), 1.0 / pf->fit.small.beta, 0, 0, 0};
    if (pf->fit.two_regimes) {
        r.break_bytes = pf->fit.break_x;
        r.alpha_large_s = fmax(pf->fit.large.alpha, 0.0);
        r.bytes_per_s_large = 1.0 / pf->fit.large.beta;
    }
    return r;
}

void print_patterns(const pattern_meas *pats, int npat, int configured)
{
    printf("# patterns of the %s, measured as they run them (every group at once; time per "
           "step)\n",
           configured ? "configured runs" : "algorithms");
    printf("# %-14s %-22s %-5s %5s %6s %11s %11s\n", "pattern", "on", "grid", "group", "points",
           "largest_B", "step_ms");
    for (int k = 0; k < npat; k++) {
        const pattern_meas *pm = &pats[k];
        char grid_s[32];
        snprintf(grid_s, sizeof grid_s, "%llux%llu", (unsigned long long)pm->cfg.rows,
                 (unsigned long long)pm->cfg.cols);
        printf("  %-14s %-22s %-5s %5llu %6zu %11.0f %11.3f\n", am_pattern_names[pm->pattern],
               pm->pattern == PAT_PAIRWISE ? pm->ph->name : am_comm_names[pm->comm], grid_s,
               (unsigned long long)pm->g, pm->n, pm->bytes[pm->n - 1], pm->time[pm->n - 1] * 1e3);
    }
}

void print_pattern_fits(const pattern_fit *fits, int nfit, const machine *mach)
{
    printf("# pattern lines: t = alpha + m / bandwidth per step, m the bytes of one flow "
           "(intra-node) or of the busiest NIC (inter-node); a row per regime, from its first "
           "size; tier_err_pct: the tier's own rate at the largest size; fit: ok, or POOR (R^2 "
           "< %.2g or rel RMS > %.0f %%: not used, the tier's rate applies)\n",
           FIT_MIN_R2, 100 * FIT_MAX_REL_RMS);
    printf("# %-30s %9s %10s %14s %7s %11s %13s %s\n", "line", "from_B", "alpha_us",
           "bandwidth_GBps", "r2", "rel_rms_pct", "tier_err_pct", "fit");
    for (int k = 0; k < nfit; k++) {
        const pattern_fit *f = &fits[k];
        char key[96];
        snprintf(key, sizeof key, "link.%s.%s.g%llu", f->tier ? "inter" : "intra",
                 am_pattern_names[f->pattern], (unsigned long long)f->g);
        if (!f->ok) {
            printf("  %-30s %9s %10s %14s %7s %11s %13s POOR\n", key, "-", "-", "-", "-", "-", "-");
            continue;
        }
        /* what the tier's own rate would make of the largest size */
        link_rate tr = machine_tier_rate(mach, f->tier);
        double xl = f->x[f->n - 1], tl = f->t[f->n - 1];
        double tier_err = 100 * (link_rate_time(&tr, xl, 1) - tl) / tl;
        for (int r = 0; r < (f->fit.two_regimes ? 2 : 1); r++) {
            const lin_fit *l = r ? &f->fit.large : &f->fit.small;
            printf("  %-30s %9.0f %10.3f %14.3f %7.4f %11.1f %13.0f %s\n", key,
                   r ? f->fit.break_x : f->x[0], l->alpha * 1e6, 1e-9 / l->beta, f->r2,
                   100 * f->rel_rms, tier_err, f->poor ? "POOR" : "ok");
        }
    }
    for (int k = 0; k < nfit; k++)
        if (fits[k].poor)
            printf("# POOR FIT: link.%s.%s.g%llu (%s): not used, the tier's rate applies\n",
                   fits[k].tier ? "inter" : "intra", am_pattern_names[fits[k].pattern],
                   (unsigned long long)fits[k].g, fits[k].why);
}

void write_patterns(h5node *g, const pattern_meas *pats, int npat)
{
    for (int k = 0; k < npat; k++) {
        char p[240];
        hsize_t n = pats[k].n;
        snprintf(p, sizeof p, "patterns/%d/bytes", k);
        h5_write(g, p, H5_F64, 1, &n, pats[k].bytes, "bytes");
        snprintf(p, sizeof p, "patterns/%d/time_s", k);
        h5_write(g, p, H5_F64, 1, &n, pats[k].time, "s");
        snprintf(p, sizeof p, "patterns/%d", k);
        h5node *pg = h5_member(g, p);
        h5_attr_str(pg, "pattern", am_pattern_names[pats[k].pattern]);
        h5_attr_str(pg, "communicator", am_comm_names[pats[k].comm]);
        h5_attr_str(pg, "description", pats[k].name);
        h5_attr_i64(pg, "group_size", (int64_t)pats[k].g);
        h5_attr_i64(pg, "grid_rows", (int64_t)pats[k].cfg.rows);
        h5_attr_i64(pg, "steps_per_call", pats[k].steps);
    }
}

void write_pattern_fits(h5node *g, const pattern_fit *fits, int nfit)
{
    for (int k = 0; k < nfit; k++) {
        const pattern_fit *f = &fits[k];
        char p[240];
        snprintf(p, sizeof p, "pattern_fits/%s.%s.g%llu", f->tier ? "inter" : "intra",
                 am_pattern_names[f->pattern], (unsigned long long)f->g);
        hsize_t n = f->n;
        char q[300];
        snprintf(q, sizeof q, "%s/bytes", p);
        h5_write(g, q, H5_F64, 1, &n, f->x, "bytes");
        snprintf(q, sizeof q, "%s/time_s", p);
        h5_write(g, q, H5_F64, 1, &n, f->t, "s");
        h5node *pg = h5_member(g, p);
        h5_attr_i64(pg, "ok", f->ok);
        h5_attr_i64(pg, "poor_fit", f->poor);
        h5_attr_str(pg, "measured_on", f->source);
        if (f->ok) {
            h5_attr_f64(pg, "alpha_s", f->fit.small.alpha);
            h5_attr_f64(pg, "bandwidth_bytes_per_s", 1.0 / f->fit.small.beta);
            h5_attr_f64(pg, "r2", f->r2);
            h5_attr_f64(pg, "rel_rms", f->rel_rms);
            h5_attr_i64(pg, "two_regimes", f->fit.two_regimes);
            if (f->fit.two_regimes) {
                h5_attr_f64(pg, "break_bytes", f->fit.break_x);
                h5_attr_f64(pg, "large_alpha_s", f->fit.large.alpha);
                h5_attr_f64(pg, "large_bandwidth_bytes_per_s", 1.0 / f->fit.large.beta);
            }
        }
        if (f->poor) h5_attr_str(pg, "poor_fit_reason", f->why);
    }
}
