/* run_report.c - rank 0's part of a distributed run (see run.h): every rank's bytes and
 * messages of every phase compared with the model's prediction (any difference names the first
 * one), the tier of every message (what each rank sent to other nodes) compared with the
 * model's placement, the run's table (measured vs predicted per phase) and verdict, the hidden
 * transfer time of the overlapped phases (predicted and measured) and the one-rate-per-tier
 * model beside the pattern-aware one, and its kind=distributed record in the HDF5 file
 * (docs/hdf5-schema.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_record.h"
#include "fail.h"
#include "predict.h"
#include "run.h"

/* What rank 0 derives from the reports: the first count that differs from the prediction,
 * and the measured critical path of every phase. */
typedef struct {
    int match;
    char first[300];
    /* Measured phase time for the synchronous model: from the last rank to enter the phase to
     * the last to leave it (times from the barrier that starts the run). A rank's own phase
     * time also holds its wait for slower ranks; the local work between phases (packing,
     * assembling gathered blocks) belongs to no phase and shows in the total only. */
    double crit[AM_MAX_PHASES];
    double total_s;                 /* the last phase end of the slowest rank */
    uint64_t sent_max;              /* max over ranks of the bytes a rank sent in total */
    uint64_t max[AM_MAX_PHASES][3]; /* max over ranks: bytes sent, received, messages sent */
    /* the tier of every message: what each rank sent to other nodes against the model's
     * placement (am_rank_inter_counts) */
    int tiers_match;
    char first_tier[300];
    uint64_t inter_msgs; /* messages sent across nodes, all ranks */
    int64_t *inter_pred; /* [P][F][2]: predicted bytes and messages sent to other nodes */
} run_measured;

static void compare_counts(const am_prediction *pr, const rank_report *all, int P, run_measured *ms)
{
    static const char *const what[4] = {"bytes_sent", "bytes_recv", "messages_sent",
                                        "messages_recv"};
    int F = pr->F;
    ms->match = 1;
    ms->first[0] = '\0';
    for (int r = 0; r < P && ms->match; r++)
        for (int f = 0; f < F && ms->match; f++) {
            const am_count *pc = &pr->per_rank[(size_t)r * F + f];
            uint64_t want[4] = {pc->bytes_sent, pc->bytes_recv, pc->msgs_sent, pc->msgs_recv};
            for (int k = 0; k < 4 && ms->match; k++)
                if (all[r].v[f][k] != want[k]) {
                    ms->match = 0;
                    snprintf(ms->first, sizeof ms->first,
                             "rank %d, phase %s: %s measured %llu, predicted %llu", r,
                             pr->phases[f]->name, what[k], (unsigned long long)all[r].v[f][k],
                             (unsigned long long)want[k]);
                }
        }
    ms->total_s = 0.0;
    ms->sent_max = 0;
    for (int r = 0; r < P; r++) {
        uint64_t s = 0;
        for (int f = 0; f < F; f++) s += all[r].v[f][0];
        ms->sent_max = s > ms->sent_max ? s : ms->sent_max;
    }
    for (int f = 0; f < F; f++) {
        double end = 0.0, start = 0.0;
        for (int k = 0; k < 3; k++) ms->max[f][k] = 0;
        for (int r = 0; r < P; r++) {
            for (int k = 0; k < 3; k++)
                ms->max[f][k] = all[r].v[f][k] > ms->max[f][k] ? all[r].v[f][k] : ms->max[f][k];
            end = fmax(end, all[r].end[f]);
            start = fmax(start, all[r].start[f]);
        }
        ms->crit[f] = fmax(end - start, 0.0);
        ms->total_s = fmax(ms->total_s, end);
    }
}

/* The overlapped phases' steps as the model prices them: each step by its busiest rank (the
 * others wait for it), so the measurement follows the rank that computed longest in each step:
 * its compute, the time it then still waited for its transfers (exposed), and in the probe
 * (--overlap-probe) the time its transfers took alone; hidden = alone - exposed (NAN without
 * the probe, and for phases without steps). */
typedef struct {
    double compute[AM_MAX_PHASES], exposed[AM_MAX_PHASES], transfer[AM_MAX_PHASES];
    double hidden[AM_MAX_PHASES];
} run_overlap;

static void critical_steps(const step_tables *steps, int P, int F, run_overlap *ov)
{
    for (int f = 0; f < F; f++) {
        ov->compute[f] = ov->exposed[f] = ov->transfer[f] = ov->hidden[f] = NAN;
        int S = steps->S[f];
        if (!S) continue;
        double sum[3] = {0, 0, 0};
        for (int k = 0; k < S; k++) {
            int busy = -1;
            for (int r = 0; r < P; r++) {
                double cr = steps->a[f][0][(size_t)r * S + k];
                if (!isnan(cr) && (busy < 0 || cr > steps->a[f][0][(size_t)busy * S + k])) busy = r;
            }
            if (busy < 0) continue;
            for (int q = 0; q < 3; q++) sum[q] += steps->a[f][q][(size_t)busy * S + k];
        }
        ov->compute[f] = sum[0], ov->exposed[f] = sum[1], ov->transfer[f] = sum[2];
        ov->hidden[f] = ov->transfer[f] - ov->exposed[f];
    }
}

static void compare_tiers(const am_config *c, const machine *m, const am_prediction *pr,
                          const rank_report *all, int P, run_measured *ms)
{
    int F = pr->F;
    ms->inter_pred = kn_xmalloc((size_t)P * F * 2 * sizeof(int64_t) + 1, "tiers");
    ms->tiers_match = 1;
    ms->first_tier[0] = '\0';
    ms->inter_msgs = 0;
    for (int r = 0; r < P; r++) {
        am_count ic[AM_MAX_PHASES];
        am_rank_inter_counts(c, m, (uint64_t)r, ic);
        for (int f = 0; f < F; f++) {
            int64_t *tp = ms->inter_pred + 2 * ((size_t)r * F + f);
            tp[0] = (int64_t)ic[f].bytes_sent, tp[1] = (int64_t)ic[f].msgs_sent;
            ms->inter_msgs += all[r].inter[f][1];
            if (ms->tiers_match &&
                (all[r].inter[f][0] != ic[f].bytes_sent || all[r].inter[f][1] != ic[f].msgs_sent)) {
                ms->tiers_match = 0;
                snprintf(ms->first_tier, sizeof ms->first_tier,
                         "rank %d, phase %s: sent to other nodes %llu bytes in %llu messages, "
                         "the model %llu in %llu",
                         r, pr->phases[f]->name, (unsigned long long)all[r].inter[f][0],
                         (unsigned long long)all[r].inter[f][1],
                         (unsigned long long)ic[f].bytes_sent, (unsigned long long)ic[f].msgs_sent);
            }
        }
    }
}

static void fmt_ms(double s, char *buf, size_t n)
{
    snprintf(buf, n, "%.3f", s * 1e3);
}

static void print_run(const exec_ctx *x, int P, const machine *m, const am_prediction *pr,
                      const run_measured *ms, const run_check_result *chk, int valid,
                      const am_time *tier_only, const run_overlap *ov, const step_tables *steps)
{
    const am_config *c = &x->cfg;
    const am_algo_desc *d = am_algo_desc_of(c->algo);
    int F = pr->F;
    char grid[32] = "-";
    if (d->grid != AM_GRID_LINE)
        snprintf(grid, sizeof grid, "%llux%llu", (unsigned long long)c->rows,
                 (unsigned long long)c->cols);
    printf(
        "# %s%s%s %s, P = %d, grid %s, N = %llu, batch %llu, heads %llu, kv-heads %llu, d = %llu, "
        "causal %s, %s\n",
        d->name, d->uses_layout ? " " : "", d->uses_layout ? am_layout_names[c->layout] : "",
        am_pass_names[c->pass], P, grid, (unsigned long long)c->N, (unsigned long long)c->batch,
        (unsigned long long)c->heads, (unsigned long long)c->kv_heads,
        (unsigned long long)c->head_dim, c->causal ? "yes" : "no", kn_dtype_name(x->dtype));
    /* a table: units in the column names, numbers in the cells (maxima over the ranks) */
    printf("#   %-24s %14s %14s %8s %9s %14s %12s %12s %7s\n", "phase", "sent_B_max", "pred_sent_B",
           "msgs_max", "pred_msgs", "recv_B_max", "crit_ms", "pred_ms", "err_pct");
    for (int f = 0; f < F; f++) {
        char tm[32], tp[32];
        fmt_ms(ms->crit[f], tm, sizeof tm);
        fmt_ms(pr->time.phase_s[f], tp, sizeof tp);
        printf("    %-24s %14llu %14llu %8llu %9llu %14llu %12s %12s %+7.1f\n", pr->phases[f]->name,
               (unsigned long long)ms->max[f][0], (unsigned long long)pr->max[f].bytes_sent,
               (unsigned long long)ms->max[f][2], (unsigned long long)pr->max[f].msgs_sent,
               (unsigned long long)ms->max[f][1], tm, tp,
               ms->crit[f] > 0 ? 100.0 * (pr->time.phase_s[f] - ms->crit[f]) / ms->crit[f] : 0.0);
    }
    char checktxt[120] = "not checked (--check)";
    if (chk->checked)
        snprintf(checktxt, sizeof checktxt, "check %s (max abs err %.2e, rel %.2e)",
                 chk->passed ? "passed" : "FAILED", chk->max_abs, chk->max_rel);
    if (ms->match)
        printf("# %s: measured == predicted bytes and messages on all %d ranks and %d phases; %s; "
               "%.3f ms (predicted %.3f ms on %s, %+.1f%%). %s\n",
               d->name, P, F, checktxt, ms->total_s * 1e3, pr->time.total_s * 1e3, m->name,
               100.0 * (pr->time.total_s - ms->total_s) / ms->total_s, valid ? "VALID" : "INVALID");
    else
        printf("# %s: COUNTS DIFFER: %s; %s. INVALID\n", d->name, ms->first, checktxt);
    if (ms->tiers_match)
        printf("# tiers: every message crossed nodes or stayed on its node as the model places it "
               "(%llu inter-node messages, %llu ranks per node)\n",
               (unsigned long long)ms->inter_msgs, (unsigned long long)m->gpus_per_node);
    else
        printf("# warning: TIERS DIFFER from the model's placement (%llu ranks per node, in rank "
               "order): %s\n",
               (unsigned long long)m->gpus_per_node, ms->first_tier);
    /* the one-rate-per-tier model with ideal overlap on the same run, to compare against */
    if (m->n_links || m->overlap_hidden[0] >= 0 || m->overlap_hidden[1] >= 0 ||
        strcmp(m->prof.name, "attnsim"))
        printf("#   one rate per tier, ideal overlap (the model without pattern lines, measured "
               "overlap or profile): %.3f ms (%+.1f%%)\n",
               tier_only->total_s * 1e3, 100.0 * (tier_only->total_s - ms->total_s) / ms->total_s);
    /* overlapped phases: hidden transfer time, predicted and measured */
    for (int f = 0; f < F; f++) {
        if (!steps->S[f]) continue;
        printf("#   overlap %-24s hidden: predicted %.3f ms of %.3f ms alone", pr->phases[f]->name,
               pr->time.hidden_s[f] * 1e3, pr->time.transfer_s[f] * 1e3);
        if (!isnan(ov->hidden[f]))
            printf("; measured %.3f ms of %.3f ms alone", ov->hidden[f] * 1e3,
                   ov->transfer[f] * 1e3);
        printf(" (exposed: predicted %.3f ms, measured %.3f ms; compute: predicted %.3f ms, "
               "measured %.3f ms%s)\n",
               (pr->time.transfer_s[f] - pr->time.hidden_s[f]) * 1e3, ov->exposed[f] * 1e3,
               pr->time.compute_s[f] * 1e3, ov->compute[f] * 1e3,
               isnan(ov->hidden[f]) ? "; --overlap-probe measures the transfers alone" : "");
    }
    const char *warn = am_unmeasured_tier_note(m, &pr->time);
    if (warn) printf("# warning: %s\n", warn);
    fflush(stdout);
}

/* A [R][F] dataset of one field of the reports of the ranks rows[0..R-1]: 0 ... 2 the counts,
 * 3 ... 5 the times, 6 and 7 the bytes and messages sent to other nodes, 8 ... 10 the overlap
 * sums (compute, exposed, transfers alone), 11 the hidden time. */
static void write_per_rank(h5node *g, const char *path, const rank_report *all, const int *rows,
                           size_t R, int F, int field, const char *units)
{
    hsize_t pf[2] = {(hsize_t)R, (hsize_t)F};
    if (field < 3 || field == 6 || field == 7) {
        int64_t *a = kn_xmalloc(R * (size_t)F * sizeof(int64_t) + 1, "measured");
        for (size_t i = 0; i < R; i++)
            for (int f = 0; f < F; f++)
                a[i * (size_t)F + f] = (int64_t)(field < 3 ? all[rows[i]].v[f][field]
                                                           : all[rows[i]].inter[f][field - 6]);
        h5_write(g, path, H5_I64, 2, pf, a, units);
        free(a);
        return;
    }
    double *t = kn_xmalloc(R * (size_t)F * sizeof(double) + 1, "measured");
    for (size_t i = 0; i < R; i++) {
        const rank_report *r = &all[rows[i]];
        for (int f = 0; f < F; f++)
            t[i * (size_t)F + f] = field == 3   ? r->t[f]
                                   : field == 4 ? r->start[f]
                                   : field == 5 ? r->end[f]
                                   : field < 11 ? r->ov[f][field - 8] /* compute, exposed, alone */
                                                : r->ov[f][2] - r->ov[f][1]; /* hidden */
    }
    h5_write(g, path, H5_F64, 2, pf, t, units);
    free(t);
}

/* The steps of each overlapped phase, [R][S] for the ranks rows[0..R-1]. */
static void write_steps(h5node *g, const am_prediction *pr, const step_tables *steps,
                        const int *rows, size_t R)
{
    static const char *const sn[3] = {"compute_s", "exposed_s", "transfer_s"};
    for (int f = 0; f < pr->F; f++) {
        size_t S = (size_t)steps->S[f];
        if (!S) continue;
        hsize_t ps[2] = {(hsize_t)R, (hsize_t)S};
        double *a = kn_xmalloc(R * S * sizeof(double), "steps");
        for (int k = 0; k < 3; k++) {
            for (size_t i = 0; i < R; i++)
                memcpy(a + i * S, steps->a[f][k] + (size_t)rows[i] * S, S * sizeof(double));
            char path[160];
            snprintf(path, sizeof path, "measured/steps/%s/%s", pr->phases[f]->name, sn[k]);
            h5_write(g, path, H5_F64, 2, ps, a, "s");
        }
        free(a);
    }
}

static void record_run(run_env *env, const exec_ctx *x, const machine *m, const am_prediction *pr,
                       const rank_report *all, const run_measured *ms, const run_check_result *chk,
                       const am_time *tier_only, const run_overlap *ov, const step_tables *steps)
{
    const am_config *c = &x->cfg;
    int P = env->P, F = pr->F;
    h5node *g = h5out_run_begin(env->h);
    record_config_attrs(g, "distributed", c, cli_backend_names[env->o.backend],
                        cli_comm_names[env->o.comm], m);
    h5_attr_i64(g, "seed", (int64_t)x->seed);
    h5_attr_i64(g, "reps", env->o.reps ? (int64_t)env->o.reps : 1);
    h5_attr_i64(g, "counts_match", ms->match);
    if (!ms->match) h5_attr_str(g, "first_difference", ms->first);
    h5_attr_i64(g, "tiers_match", ms->tiers_match);
    if (!ms->tiers_match) h5_attr_str(g, "first_tier_difference", ms->first_tier);
    if (chk->checked) {
        h5_attr_f64(g, "max_abs_err", chk->max_abs);
        h5_attr_f64(g, "max_rel_err", chk->max_rel);
        h5_attr_i64(g, "check_passed", chk->passed);
        h5_attr_str(g, "check_method", chk->method);
    }
    int32_t *map = kn_xmalloc((size_t)P * 4 * sizeof(int32_t), "rank map");
    for (int r = 0; r < P; r++) {
        map[4 * r] = r;
        map[4 * r + 1] = env->node_of[r];
        map[4 * r + 2] = (int32_t)grid_row((uint64_t)r, c->rows);
        map[4 * r + 3] = (int32_t)grid_col((uint64_t)r, c->rows);
    }
    /* above --rank-arrays the per-rank arrays keep the rows of evenly spaced ranks */
    int thin = (uint64_t)P > env->o.rank_arrays;
    char why[96];
    snprintf(why, sizeof why, "P = %d is above --rank-arrays %llu", P,
             (unsigned long long)env->o.rank_arrays);
    record_prediction(g, pr, map, m, thin, thin ? why : NULL);
    size_t R = (size_t)P;
    int *rows = kn_xmalloc((size_t)P * sizeof(int), "rank rows");
    if (thin) {
        uint64_t kept[RECORD_THIN_ROWS];
        R = record_thin_ranks((uint64_t)P, kept);
        for (size_t i = 0; i < R; i++) rows[i] = (int)kept[i];
    } else {
        for (int r = 0; r < P; r++) rows[r] = r;
    }
    write_per_rank(g, "measured/bytes_sent", all, rows, R, F, 0, "bytes");
    write_per_rank(g, "measured/bytes_recv", all, rows, R, F, 1, "bytes");
    write_per_rank(g, "measured/messages", all, rows, R, F, 2, "messages");
    write_per_rank(g, "measured/time_s", all, rows, R, F, 3, "s");
    write_per_rank(g, "measured/phase_start_s", all, rows, R, F, 4, "s");
    write_per_rank(g, "measured/phase_end_s", all, rows, R, F, 5, "s");
    /* the tier of every message: measured and as the model places it */
    write_per_rank(g, "measured/bytes_sent_inter", all, rows, R, F, 6, "bytes");
    write_per_rank(g, "measured/messages_inter", all, rows, R, F, 7, "messages");
    static const char *const inter_pred[2][2] = {{"predicted/bytes_sent_inter", "bytes"},
                                                 {"predicted/messages_inter", "messages"}};
    int64_t *ip = kn_xmalloc(R * (size_t)F * sizeof(int64_t) + 1, "predicted tiers");
    hsize_t rf[2] = {(hsize_t)R, (hsize_t)F};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < R; i++)
            for (int f = 0; f < F; f++)
                ip[i * (size_t)F + f] = ms->inter_pred[2 * ((size_t)rows[i] * F + f) + k];
        h5_write(g, inter_pred[k][0], H5_I64, 2, rf, ip, inter_pred[k][1]);
    }
    free(ip);
    hsize_t fd[1] = {(hsize_t)F};
    h5_write(g, "measured/critical_path_phase_s", H5_F64, 1, fd, ms->crit, "s");
    h5_write(g, "predicted/tier_only_phase_time_s", H5_F64, 1, fd, tier_only->phase_s, "s");
    h5_write(g, "predicted/tier_only_total_time_s", H5_F64, 0, NULL, &tier_only->total_s, "s");
    /* overlapped phases: per rank the sums over its steps, per phase the busiest rank of each
     * step (what the model predicts), and every step */
    write_per_rank(g, "measured/overlap_compute_s", all, rows, R, F, 8, "s");
    write_per_rank(g, "measured/overlap_exposed_s", all, rows, R, F, 9, "s");
    write_per_rank(g, "measured/overlap_transfer_s", all, rows, R, F, 10, "s");
    write_per_rank(g, "measured/overlap_hidden_s", all, rows, R, F, 11, "s");
    h5_write(g, "measured/overlap_critical_compute_s", H5_F64, 1, fd, ov->compute, "s");
    h5_write(g, "measured/overlap_critical_exposed_s", H5_F64, 1, fd, ov->exposed, "s");
    h5_write(g, "measured/overlap_critical_transfer_s", H5_F64, 1, fd, ov->transfer, "s");
    h5_write(g, "measured/overlap_critical_hidden_s", H5_F64, 1, fd, ov->hidden, "s");
    h5_attr_i64(g, "overlap_probe", env->o.overlap_probe);
    write_steps(g, pr, steps, rows, R);
    /* who sent how much to whom (the monitoring cross-check compares these): rows of the same
     * ranks, every peer */
    hsize_t pp[2] = {(hsize_t)R, (hsize_t)P};
    uint64_t *sel = kn_xmalloc(2 * R * (size_t)P * sizeof(uint64_t), "peer rows");
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < R; i++)
            memcpy(sel + ((size_t)k * R + i) * (size_t)P,
                   env->peers + ((size_t)k * (size_t)P + (size_t)rows[i]) * (size_t)P,
                   (size_t)P * sizeof(uint64_t));
    h5_write(g, "measured/peer_bytes_sent", H5_U64, 2, pp, sel, "bytes");
    h5_write(g, "measured/peer_messages_sent", H5_U64, 2, pp, sel + R * (size_t)P, "messages");
    free(sel), free(rows);
    h5_summary_row row;
    summary_from_prediction(&row, "distributed", pr, cli_backend_names[env->o.backend]);
    row.check_passed = chk->checked ? chk->passed : -1;
    row.measured_time_s = ms->total_s;
    row.measured_bytes_max = (int64_t)ms->sent_max;
    h5out_run_commit(env->h, g, &row);
    free(map);
}

int run_report(run_env *env, const exec_ctx *x, const rank_report *all, const step_tables *steps,
               const run_check_result *chk)
{
    machine m = env->m;
    /* the tiers follow the actual placement when ranks are packed evenly in rank order */
    if (env->ranks_per_node) m.gpus_per_node = env->ranks_per_node;
    am_prediction pr;
    am_predict(&x->cfg, &m, 1, &pr);
    run_measured ms;
    compare_counts(&pr, all, env->P, &ms);
    compare_tiers(&x->cfg, &m, &pr, all, env->P, &ms);
    int valid = ms.match && (!chk->checked || chk->passed);
    /* the one-rate-per-tier model with ideal overlap, to compare against */
    machine tier_only;
    machine_tier_only(&m, &tier_only);
    am_time base;
    am_predict_time(&x->cfg, &tier_only, &base);
    run_overlap ov;
    critical_steps(steps, env->P, pr.F, &ov);
    print_run(x, env->P, &m, &pr, &ms, chk, valid, &base, &ov, steps);
    if (env->h) record_run(env, x, &m, &pr, all, &ms, chk, &base, &ov, steps);
    free(ms.inter_pred);
    am_prediction_free(&pr);
    return valid;
}
