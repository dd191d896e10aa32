/* record.c - the kind=calibration run attnsim calibrate appends to --out (calibrate.h;
 * product.md, the HDF5 schema; docs/calibration.md): its attributes (ranks, nodes, grid,
 * backend, the machine it started from), the link series, the kernels' points and fits per
 * storage type, the memory rate, the patterns and their fits, the overlap steps, the poor fits
 * marked on their groups and listed on the run, the machine file's text, and the summary row. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "calibrate.h"
#include "kn_common.h"

/* The kernels' points and fits, kernels/DTYPE/ (types measured only). */
static void write_kernels(h5node *g, const cal_env *e, const kernel_series ks[3])
{
    for (int d = 0; d < 3; d++) {
        const char *dn = kn_dtype_name((kn_dtype)d);
        char p[96];
        hsize_t n = ks[d].n;
        if (!n) continue; /* not measured on this backend */
        snprintf(p, sizeof p, "kernels/%s/flops", dn);
        h5_write(g, p, H5_F64, 1, &n, ks[d].flops, "flop");
        snprintf(p, sizeof p, "kernels/%s/time_s", dn);
        h5_write(g, p, H5_F64, 1, &n, ks[d].time, "s");
        snprintf(p, sizeof p, "kernels/%s/tile_rows", dn);
        h5_write(g, p, H5_I32, 1, &n, ks[d].nq, "tokens");
        snprintf(p, sizeof p, "kernels/%s/forward", dn);
        h5_write(g, p, H5_I32, 1, &n, ks[d].fwd, NULL);
        snprintf(p, sizeof p, "kernels/%s/causal", dn);
        h5_write(g, p, H5_I32, 1, &n, ks[d].causal, NULL);
        snprintf(p, sizeof p, "kernels/%s", dn);
        h5node *kg = h5_member(g, p);
        h5_attr_i64(kg, "head_dim", (int64_t)calibrate_head_dim(e));
        h5_attr_f64(kg, "rate_flop_per_s", ks[d].ok ? 1.0 / ks[d].fit.beta : 0.0);
        h5_attr_f64(kg, "overhead_s", ks[d].fit.alpha);
        h5_attr_f64(kg, "r2", ks[d].fit.r2);
        h5_attr_f64(kg, "rel_rms", ks[d].fit.rel_rms);
        h5_attr_f64(kg, "backward_rate_flop_per_s", ks[d].ok ? 1.0 / ks[d].bwd_fit.beta : 0.0);
        h5_attr_f64(kg, "backward_r2", ks[d].bwd_fit.r2);
        h5_attr_f64(kg, "backward_rel_rms", ks[d].bwd_fit.rel_rms);
    }
}

/* The poor fits: poor_fit on each fit's group, and the list on the run. */
static void write_poor_fits(h5node *g, const cal_poor_fits *pf)
{
    char list[8 * 48 * 2] = "";
    for (int i = 0; i < pf->n; i++) {
        h5node *fg = h5_member(g, pf->group[i]);
        if (!h5_attr_exists(fg, "poor_fit")) h5_attr_i64(fg, "poor_fit", 1);
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? "; " : "", pf->what[i]);
    }
    h5_attr_i64(g, "poor_fit_count", pf->n);
    h5_attr_str(g, "poor_fits", pf->n ? list : "none");
}

void cal_write_record(cal_env *e, const char *path, const attn_provenance *prov,
                      double lock_timeout_s, const cal_results *r, const machine *m,
                      const machine *base, const char *mtext)
{
    e->h = h5out_open(path, prov, lock_timeout_s);
    h5node *g = h5out_run_begin(e->h);
    h5_attr_str(g, "kind", "calibration");
    h5_attr_str(g, "algorithm", "calibrate");
    h5_attr_str(g, "pass", "-");
    h5_attr_i64(g, "P", e->P);
    h5_attr_i64(g, "nodes", e->nodes);
    h5_attr_i64(g, "grid_rows", (int64_t)r->grid_rows);
    h5_attr_i64(g, "grid_cols", (int64_t)r->grid_cols);
    h5_attr_str(g, "backend", r->backend);
    h5_attr_str(g, "comm", r->comm);
    if (e->cuda) h5_attr_str(g, "gpu", r->gpu);
    h5_attr_str(g, "machine", m->name);
    h5_attr_str(g, "base_machine", base->origin);
    h5_attr_f64(g, "duration_s", r->took);
    write_series(g, "links/intra/ring_shift", &r->shift[0]);
    write_series(g, "links/intra/ping_pong", &r->pp[0]);
    write_series(g, "links/inter/ring_shift", &r->shift[1]);
    write_series(g, "links/inter/ping_pong", &r->pp[1]);
    write_series(g, "links/inter/ring_shift_nic", &r->nic);
    h5_attr_i64(g, "gpus_per_nic", (int64_t)m->gpus_per_nic);
    h5_attr_f64(g, "nic_sharing_ratio", r->nic_ratio);
    write_kernels(g, e, r->ks);
    h5_attr_f64(g, "copy_bytes_per_s", r->copy_bps);
    for (int t = 0; t < 2; t++) { /* the large regime's RMS beside its R^2 */
        if (!r->tier[t]->ok || !r->tier[t]->fit.two_regimes) continue;
        h5_attr_f64(h5_member(g, r->groups[t]), "large_rel_rms", r->tier[t]->fit.large.rel_rms);
    }
    write_poor_fits(g, &r->pf);
    write_patterns(g, r->pats, r->npat);
    write_pattern_fits(g, r->fits, r->nfit);
    write_overlap(g, r->ovl);
    h5_attr_str(g, "machine_file", mtext);
    h5_summary_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.kind, sizeof row.kind, "calibration");
    snprintf(row.algorithm, sizeof row.algorithm, "calibrate");
    snprintf(row.backend, sizeof row.backend, "%s", r->backend);
    row.P = e->P, row.grid_rows = (int32_t)r->grid_rows, row.grid_cols = (int32_t)r->grid_cols;
    row.check_passed = -1;
    row.measured_time_s = r->took;
    row.predicted_time_s = NAN;
    row.measured_bytes_max = row.predicted_bytes_max = -1;
    h5out_run_commit(e->h, g, &row);
    h5out_close(e->h);
}
