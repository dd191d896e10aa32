/* patterns.c - the communication patterns of the configured runs, measured as the algorithms
 * run them (the comm layer's rings, pairwise exchanges and all-to-alls, every group of a
 * communicator busy at once), and fitted per tier into the machine file's pattern lines; their
 * terminal tables and their records in the kind=calibration run (calibrate.h;
 * docs/calibration.md, "Patterns"). */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "fail.h"

/* ---- which patterns ---------------------------------------------------------------------- */

/* Adds (pattern, comm, grid) or raises its largest message. A return hop is one step of a ring
 * shift on the same communicator, and is measured as one. */
static int add_pattern(pattern_meas *pm, int n, int max, const am_config *c,
                       const am_phase_desc *ph, uint64_t bytes)
{
    am_pattern pat = ph->pattern == PAT_RETURN_HOP ? PAT_RING_SHIFT : ph->pattern;
    am_comm comm = pat == PAT_PAIRWISE ? AM_COMM_WORLD : ph->comm;
    uint64_t g = pat == PAT_PAIRWISE ? 2 : am_comm_group(c, comm, 0).size;
    if (g < 2 || bytes == 0) return n;
    if (pat == PAT_PAIRWISE) { /* a permutation that keeps every rank's data moves nothing */
        uint64_t movers = 0;
        for (uint64_t x = 0; x < c->P; x++) movers += ph->peer(c, x) != x;
        if (!movers) return n;
    }
    for (int i = 0; i < n; i++)
        if (pm[i].pattern == pat && pm[i].comm == comm && pm[i].cfg.rows == c->rows &&
            (pat != PAT_PAIRWISE || pm[i].ph->peer == ph->peer)) {
            if (bytes > pm[i].max_bytes) pm[i].max_bytes = bytes;
            return n;
        }
    if (n == max) return n;
    pattern_meas *p = &pm[n];
    memset(p, 0, sizeof *p);
    p->pattern = pat, p->comm = comm, p->ph = ph, p->cfg = *c, p->max_bytes = bytes, p->g = g;
    snprintf(p->name, sizeof p->name, "%s on %s (%llux%llu grid, g = %llu)", am_pattern_names[pat],
             pat == PAT_PAIRWISE ? ph->name : am_comm_names[comm], (unsigned long long)c->rows,
             (unsigned long long)c->cols, (unsigned long long)g);
    return n + 1;
}

int patterns_of(const am_config *cfgs, int ncfg, pattern_meas *out, int max)
{
    int n = 0;
    for (int i = 0; i < ncfg; i++) {
        const am_phase_desc *ph[AM_MAX_PHASES];
        int F = am_phases(&cfgs[i], ph);
        for (int f = 0; f < F; f++) {
            if (ph[f]->pattern == PAT_NONE) continue;
            uint64_t m = am_phase_max_message(&cfgs[i], f);
            if (ph[f]->step_bytes) { /* two payloads travel together in one step */
                uint64_t sb = ph[f]->step_bytes(&cfgs[i]);
                m = sb > m ? sb : m;
            }
            n = add_pattern(out, n, max, &cfgs[i], ph[f], m);
        }
    }
    return n;
}

/* ---- measuring --------------------------------------------------------------------------- */

typedef struct {
    const exec_dev *dev;
    size_t chunk;
} sum_ctx;

static void sum_f32(void *own, const void *in, int j, void *ctx)
{
    (void)j;
    const sum_ctx *c = ctx;
    c->dev->add_f32(own, in, c->chunk / sizeof(float));
}

/* The rank this one receives from in a pairwise exchange (the rank whose partner it is). */
static int pairwise_source(const pattern_meas *pm, int me)
{
    for (uint64_t y = 0; y < pm->cfg.P; y++)
        if (pm->ph->peer(&pm->cfg, y) == (uint64_t)me && y != (uint64_t)me) return (int)y;
    return MPI_PROC_NULL;
}

/* One call of the pattern with messages of `bytes` on comm layer cc. */
/* Where one call's data lives. Received data lands where the executor puts it: a ring shift
 * into the step's buffer, reused from step to step; the collectives and the exchanges into
 * blocks the phase allocates (sim/exec/: fresh memory each time, whose first touch a run pays,
 * e.g. as page faults on the CPU), so those are allocated before each call here too, outside
 * its time, with this rank's own block filled (as the executor fills it before the phase). */
typedef struct {
    void **blocks, **recv;
    uint64_t *sizes;
} call_bufs;

static void call_prepare(cal_env *e, const pattern_meas *pm, const call_bufs *kept, call_bufs *c,
                         uint64_t bytes, int own)
{
    int g = (int)pm->g;
    *c = *kept;
    for (int j = 0; j < g; j++) c->sizes[j] = bytes;
    if (pm->pattern == PAT_RING_SHIFT) return;
    c->blocks = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    c->recv = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    for (int j = 0; j < g; j++) {
        c->blocks[j] = e->dev->alloc(bytes, "pattern block");
        c->recv[j] = e->dev->alloc(bytes, "pattern block");
        /* an all-gather's own block is filled, the others receive; the rest send every block */
        if (pm->pattern != PAT_ALLGATHER || j == own)
            e->dev->copy(c->blocks[j], kept->blocks[0], bytes);
    }
    e->dev->sync();
}

static void call_release(cal_env *e, const pattern_meas *pm, call_bufs *c)
{
    if (pm->pattern == PAT_RING_SHIFT) return;
    for (int j = 0; j < (int)pm->g; j++) e->dev->release(c->blocks[j]), e->dev->release(c->recv[j]);
    free(c->blocks), free(c->recv);
}

/* One call of the pattern with messages of `bytes` on comm layer cc. */
static void run_once(cal_env *e, comm_ctx *cc, const pattern_meas *pm, MPI_Comm on,
                     const call_bufs *b, uint64_t bytes)
{
    void **blocks = b->blocks, **recv = b->recv;
    uint64_t *sizes = b->sizes;
    switch (pm->pattern) {
    case PAT_RING_SHIFT: {
        int k, n;
        MPICALL(MPI_Comm_rank(on, &k));
        MPICALL(MPI_Comm_size(on, &n));
        comm_sendrecv(cc, on, (k + 1) % n, blocks[0], bytes, (k + n - 1) % n, recv[0], bytes);
        break;
    }
    case PAT_PAIRWISE: {
        uint64_t dest = pm->ph->peer(&pm->cfg, (uint64_t)e->rank);
        int to = dest == (uint64_t)e->rank ? MPI_PROC_NULL : (int)dest;
        comm_sendrecv(cc, cc->world, to, blocks[0], bytes, pairwise_source(pm, e->rank), recv[0],
                      bytes);
        break;
    }
    case PAT_ALLGATHER:
        comm_ring_allgather(cc, on, blocks, sizes);
        break;
    case PAT_REDUCE_SCATTER: {
        sum_ctx sc = {e->dev, bytes};
        comm_ring_reduce_scatter(cc, on, blocks, sizes, sum_f32, &sc);
        break;
    }
    default:
        comm_alltoall(cc, on, blocks, sizes, recv, sizes);
        break;
    }
}

void measure_pattern(cal_env *e, pattern_meas *pm)
{
    comm_ctx cc;
    comm_init(&cc, &pm->cfg, MPI_COMM_WORLD, e->comm.mode, e->comm.stream, e->dev->alloc,
              e->dev->release);
    cc.recording = 0;
    MPI_Comm on = pm->comm == AM_COMM_ROW || pm->comm == AM_COMM_ACROSS_GROUPS ? cc.row
                  : pm->comm == AM_COMM_COL || pm->comm == AM_COMM_GROUP       ? cc.col
                                                                               : cc.world;
    int g = (int)pm->g;
    pm->steps = pm->pattern == PAT_RING_SHIFT || pm->pattern == PAT_PAIRWISE ? 1 : g - 1;
    uint64_t top = 8, upto = pm->runs_largest ? 2 * pm->max_bytes : pm->max_bytes;
    while (top < upto && top < (1u << 30)) top *= 2;
    size_t sizes_n = 0;
    for (uint64_t b = 8; b <= top; b *= 2) sizes_n++;
    pm->bytes = kn_xmalloc(PATTERN_SAMPLES * sizes_n * sizeof(double), "pattern samples");
    pm->time = kn_xmalloc(PATTERN_SAMPLES * sizes_n * sizeof(double), "pattern samples");
    call_bufs kept = {kn_xmalloc((size_t)g * sizeof(void *), "blocks"),
                      kn_xmalloc((size_t)g * sizeof(void *), "blocks"),
                      kn_xmalloc((size_t)g * sizeof(uint64_t), "sizes")};
    for (int j = 0; j < g; j++) {
        kept.blocks[j] = e->dev->alloc(top, "pattern block");
        kept.recv[j] = e->dev->alloc(top, "pattern block");
        e->dev->zero(kept.blocks[j], top);
    }
    int own;
    MPICALL(MPI_Comm_rank(on, &own));
    call_bufs c;
    pm->n = 0;
    /* as the links (links.c), on a smaller budget (a run has several patterns): PATTERN_SAMPLES
     * samples per size, each the median over enough timed calls for ~10 ms of the slowest
     * rank's time per call; sizes by fours up to 64 KiB, then by twos up to twice the largest
     * message (so that a large-message regime has sizes enough for its own line); from 64 KiB
     * on they stop after the first whose call takes LINK_LONGEST_S */
    for (uint64_t b = 8; b <= top; b *= b < 65536 ? 4 : 2) {
        polite_barrier();
        call_prepare(e, pm, &kept, &c, b, own);
        run_once(e, &cc, pm, on, &c, b); /* warm-up */
        e->dev->sync();
        call_release(e, pm, &c);
        call_prepare(e, pm, &kept, &c, b, own);
        MPICALL(MPI_Barrier(MPI_COMM_WORLD));
        double probe = MPI_Wtime();
        run_once(e, &cc, pm, on, &c, b);
        e->dev->sync();
        probe = MPI_Wtime() - probe;
        call_release(e, pm, &c);
        MPICALL(MPI_Allreduce(MPI_IN_PLACE, &probe, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        double want = 0.01 / fmax(probe, 1e-7);
        int reps = want < 3 ? 3 : want > 400 ? 400 : (int)want;
        double *one = kn_xmalloc((size_t)reps * sizeof(double), "pattern times");
        for (int k = 0; k < PATTERN_SAMPLES; k++) {
            polite_barrier();
            for (int i = 0; i < reps; i++) {
                call_prepare(e, pm, &kept, &c, b, own);
                double t0 = MPI_Wtime();
                run_once(e, &cc, pm, on, &c, b);
                e->dev->sync();
                one[i] = MPI_Wtime() - t0;
                call_release(e, pm, &c);
            }
            MPICALL(MPI_Allreduce(MPI_IN_PLACE, one, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
            gsl_sort(one, 1, (size_t)reps);
            pm->bytes[pm->n] = (double)b;
            pm->time[pm->n] = gsl_stats_median_from_sorted_data(one, 1, (size_t)reps) / pm->steps;
            pm->n++;
        }
        free(one);
        if (probe > LINK_LONGEST_S && b >= 65536) break; /* well inside the bandwidth regime */
    }
    for (int j = 0; j < g; j++) e->dev->release(kept.blocks[j]), e->dev->release(kept.recv[j]);
    free(kept.blocks), free(kept.recv), free(kept.sizes);
    comm_free(&cc);
}

void pattern_meas_free(pattern_meas *pm)
{
    free(pm->bytes), free(pm->time);
    pm->bytes = pm->time = NULL;
    pm->n = 0;
}

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
