/* summary.c - the terminal summary of attnsim calibrate (calibrate.h; docs/calibration.md): the
 * links' table with the NIC sharing, the kernels' table, the memory rate, the overlap steps, the
 * patterns and their fits, the time the measurements took and the poor fits. Tables have units
 * in the column names and numbers in the cells, with '#' lines around them. */
#include <stdio.h>

#include "calibrate.h"
#include "kn_common.h"

/* The links' table (units in the column names, numbers in the cells, '#' lines around it), the
 * NIC sharing and whether the inter-node tier was measured. */
static void print_links(const cal_results *r, const machine *base)
{
    printf("# links: t(m) = alpha + m / bandwidth; a sample is the median of its exchanges, "
           "the robust fit (relative error) goes through the quietest of %d samples per size; "
           "a row per regime, from its first message size; fit: ok, or POOR (R^2 < %.2g or "
           "rel RMS > %.0f %%)\n",
           LINK_SAMPLES, FIT_MIN_R2, 100 * FIT_MAX_REL_RMS);
    static const char *const names[5] = {"intra_ring_shift", "intra_ping_pong", "inter_ring_shift",
                                         "inter_ping_pong", "inter_shift_1_per_node"};
    const series *s[5] = {&r->shift[0], &r->pp[0], &r->shift[1], &r->pp[1], &r->nic};
    print_series_header();
    for (int i = 0; i < 5; i++) print_series(names[i], s[i]);
    for (int i = 0; i < 5; i++) print_series_note(names[i], s[i]);
    if (r->per_nic)
        printf("# NIC: one rank per node %.2fx as fast as every rank: gpus_per_nic %llu; the "
               "inter-node tier is the one-rank-per-node shift: %.4f GB/s fitted for large "
               "messages, %.4f GB/s at its largest sizes (up to %.0f B)\n",
               r->nic_ratio, (unsigned long long)r->per_nic, 1e-9 * cal_large_bandwidth(&r->nic),
               1e-9 * r->nic.largest_rate, r->nic.bytes[r->nic.n - 1]);
    if (!r->shift[1].ok)
        printf("# inter-node tier NOT MEASURED (one node): the machine file keeps %s's values "
               "and says so; predictions across nodes with it are warned about\n",
               base->name);
}

/* The kernels' table per storage type and pass, and what the machine file takes from it. */
static void print_kernels(const cal_env *e, const cal_results *r, const machine *m)
{
    printf("# kernels: FA2 forward and backward, %s, d = %zu, causal and not; t = overhead + "
           "FLOPs / rate\n",
           e->cuda ? "CUDA kernels on 1k..8k tokens, 8 heads" : "tiles 64..512, 4 heads",
           calibrate_head_dim(e));
    printf("# %-5s %-8s %12s %12s %7s %11s %s\n", "dtype", "pass", "rate_GFLOPs", "overhead_us",
           "r2", "rel_rms_pct", "fit");
    for (int d = 0; d < 3; d++) {
        const kernel_series *k = &r->ks[d];
        const char *dn = kn_dtype_name((kn_dtype)d);
        if (!k->n) {
            printf("# %s: not measured (no kernel of this type on this backend)\n", dn);
            continue;
        }
        const lin_fit *kf[2] = {&k->fit, &k->bwd_fit};
        for (int b = 0; b < 2; b++)
            printf("  %-5s %-8s %12.3f %12.2f %7.4f %11.1f %s\n", dn, b ? "backward" : "forward",
                   k->ok ? 1e-9 / kf[b]->beta : 0.0, kf[b]->alpha * 1e6, kf[b]->r2,
                   100 * kf[b]->rel_rms, fit_is_poor(kf[b]) ? "POOR" : "ok");
    }
    printf("# machine file: forward rates as peaks, backward_rate_ratio %.3f, kernel_overhead "
           "%.2f us (medians)\n",
           m->backward_rate_ratio, m->kernel_overhead_s * 1e6);
}

/* The terminal summary: links, kernels, memory, overlap, patterns and their fits, the time it
 * took and the poor fits. */
void cal_print_summary(const cal_env *e, const cal_results *r, const machine *m,
                       const machine *base)
{
    print_links(r, base);
    print_kernels(e, r, m);
    printf("# memory copy %.2f GB/s per rank (read + write), every rank at once%s\n",
           r->copy_bps * 1e-9, e->cuda ? " (device to device)" : "");
    print_overlap(r->ovl);
    print_patterns(r->pats, r->npat, r->configured);
    print_pattern_fits(r->fits, r->nfit, m);
    printf("# calibration took %.1f s\n", r->took);
    if (r->pf.n) {
        cal_print_poor_fits(stdout, &r->pf, "# WARNING: ");
        printf("# WARNING: %d poor fit%s: predictions with this machine file can miss by as "
               "much (they are marked in it); calibrate on an idle machine, at most one rank "
               "per core\n",
               r->pf.n, r->pf.n > 1 ? "s" : "");
    }
}
