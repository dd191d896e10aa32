/* cmd_model.c - `attnsim model`: predict without executing, any P, any machine.
 *
 * For every point of the sweep (storage type x head dim x causal x N x P x algorithm) it builds
 * the configuration, picks the grid (--grid RxC, or auto: the least predicted time), predicts
 * bytes, messages and time per rank and phase (models/predict.h), prints one row and writes one
 * kind=model run. Combinations an algorithm cannot run (N < P, Ulysses with kv-heads < P) are
 * listed as skipped; if nothing is left the command fails with status 2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "dist_record.h"
#include "fail.h"
#include "h5out.h"
#include "kn_common.h"
#include "outputs.h"
#include "predict.h"
#include "progress.h"
#include "sweep.h"

static const opt_id model_opts[] = {OPT_ALGO,         OPT_LAYOUT,   OPT_PROCS,        OPT_SEQ,
                                    OPT_BATCH,        OPT_HEADS,    OPT_KV_HEADS,     OPT_HEAD_DIM,
                                    OPT_CAUSAL,       OPT_GRID,     OPT_ULYSSES_SIZE, OPT_PASS,
                                    OPT_DTYPE,        OPT_MACHINE,  OPT_RANK_ARRAYS,  OPT_OUT,
                                    OPT_LOCK_TIMEOUT, OPT_PROGRESS, OPT_END};

static const cli_command model_cmd = {
    "model",
    "predict only (no execution), any P, any machine",
    "Predicts the bytes and messages every rank sends and receives in every phase, and the\n"
    "time of each phase, for the distributed attention algorithms (--algo) on a described\n"
    "machine, without executing anything (docs/model.md). Defaults: --algo (every algorithm)\n"
    "--layout contiguous --procs 4,16,64 --seq 32k,128k --batch 1 --heads 32 --head-dim 128\n"
    "--causal=no --pass fwd --dtype bf16 --machine dgx-h100 --rank-arrays 4096 (above: the\n"
    "per-rank arrays of 64 evenly spaced ranks); --grid: the square grid where P is a square,\n"
    "else auto; --ulysses-size: the machine's GPUs per node.\n"
    "Presets: a2d-paper-a100, a2d-paper-h100, dev-4gpu, dev-h100, dgx-a100, dgx-h100,\n"
    "h200-node (files in models/machines/, format in docs/machine.md).",
    model_opts,
    NULL,
    1u << 16};

/* Table cells are numbers with the unit in the column's name (time_ms, max_sent_B), so the
 * output splits into columns as nccl-tests' and OSU's do. */
static void fmt_ms(double s, char *buf, size_t n)
{
    snprintf(buf, n, "%.6g", s * 1e3);
}

int model_options(int argc, char **argv, attn_opts *o, machine *m)
{
    memset(o, 0, sizeof *o);
    o->algos = (1u << AM_NUM_ALGOS) - 1;
    o->layout = LAYOUT_CONTIGUOUS;
    o->procs.n = 3;
    o->procs.v[0] = 4, o->procs.v[1] = 16, o->procs.v[2] = 64;
    o->seq.n = 2;
    o->seq.v[0] = 32768, o->seq.v[1] = 131072;
    o->batch = 1;
    o->heads = 32;
    o->head_dim.n = 1;
    o->head_dim.v[0] = 128;
    o->causal = 1;
    o->pass = AM_FWD;
    o->dtypes = 1u << 2;
    o->machine = "dgx-h100";
    o->rank_arrays = 4096;
    int rc = cli_parse(&model_cmd, argc, argv, o);
    if (rc == 0) rc = cli_check_outputs(o);
    if (rc) return rc;
    if ((rc = cli_resolve_kv_heads(o)) != 0) return rc;
    char err[600];
    if (machine_load(o->machine, m, err, sizeof err)) return cli_error(o, "--machine", "%s", err);
    unsigned grid_algos = 0;
    for (int a = 0; a < AM_NUM_ALGOS; a++)
        if (am_algo_desc_of((am_algo)a)->grid == AM_GRID_2D) grid_algos |= 1u << a;
    if (!o->grid.is_auto && o->grid.rows && (o->algos & grid_algos))
        for (size_t i = 0; i < o->procs.n; i++)
            if (o->grid.rows * o->grid.cols != o->procs.v[i])
                return cli_error(o, "--grid",
                                 "%llux%llu has %llu devices but --procs includes "
                                 "%llu; accepted: RxC with R C equal to every P, "
                                 "or auto",
                                 (unsigned long long)o->grid.rows, (unsigned long long)o->grid.cols,
                                 (unsigned long long)(o->grid.rows * o->grid.cols),
                                 (unsigned long long)o->procs.v[i]);
    return 0;
}

/* The second table, printed after the first: a row per phase of each prediction. */
typedef struct {
    char *text;
    size_t len, cap;
} phase_table;

static void phase_table_add(phase_table *t, const char *line, size_t len)
{
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (t->len + len + 1 > cap) cap *= 2;
        char *bigger = kn_xmalloc(cap, "phase table");
        if (t->text) memcpy(bigger, t->text, t->len + 1);
        free(t->text);
        t->text = bigger, t->cap = cap;
    }
    memcpy(t->text + t->len, line, len + 1);
    t->len += len;
}

/* One prediction (row `id` of the first table): its row on stdout, its phases' rows in the
 * phase table, and its run in the file. */
static void model_one(const attn_opts *o, const machine *m, const am_config *c, int grid_auto,
                      double ring_s, long id, phase_table *phases, h5out *h)
{
    am_prediction pr;
    int keep = c->P <= o->rank_arrays && h;
    am_predict(c, m, keep, &pr);
    char grid[32] = "-", tbuf[32];
    const char *grid_by = "-";
    const am_algo_desc *d = am_algo_desc_of(c->algo);
    if (d->grid != AM_GRID_LINE) {
        snprintf(grid, sizeof grid, "%llux%llu", (unsigned long long)c->rows,
                 (unsigned long long)c->cols);
        grid_by = grid_auto ? "auto" : o->grid.rows ? "given" : "square";
    }
    fmt_ms(pr.time.total_s, tbuf, sizeof tbuf);
    for (int f = 0; f < pr.F; f++) {
        char pt[32], line[160];
        fmt_ms(pr.time.phase_s[f], pt, sizeof pt);
        int len = snprintf(line, sizeof line, "  %5ld %-24s %11s %-9s %s\n", id, pr.phases[f]->name,
                           pt, am_term_names[pr.time.phase_term[f]],
                           (pr.time.inter_node_phases >> f) & 1 ? "yes" : "no");
        phase_table_add(phases, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    }
    printf("  %5ld %-8s %-10s %-5s %7llu %-9s %-7s %8llu %4llu %6s %-5s %11s %7.2f %-9s %14llu\n",
           id, d->name, d->uses_layout ? am_layout_names[c->layout] : "-", am_pass_names[c->pass],
           (unsigned long long)c->P, grid, grid_by, (unsigned long long)c->N,
           (unsigned long long)c->head_dim, c->causal ? "yes" : "no", cli_dtype_names[c->dtype],
           tbuf, ring_s / pr.time.total_s, am_term_names[pr.time.dominant],
           (unsigned long long)pr.total_sent_max);
    const char *warn = am_unmeasured_tier_note(m, &pr.time);
    if (warn) printf("# warning: %s\n", warn);
    if (h) {
        h5node *g = h5out_run_begin(h);
        record_config_attrs(g, "model", c, "none", "none", m);
        h5_attr_i64(g, "grid_auto", grid_auto);
        h5_attr_f64(g, "speedup_over_ring", ring_s / pr.time.total_s);
        char why[160];
        snprintf(why, sizeof why, "P = %llu is above --rank-arrays %llu", (unsigned long long)c->P,
                 (unsigned long long)o->rank_arrays);
        record_prediction(g, &pr, NULL, m, 0, keep ? NULL : why);
        h5_summary_row row;
        summary_from_prediction(&row, "model", &pr, "none");
        h5out_run_commit(h, g, &row);
    }
    am_prediction_free(&pr);
}

int cmd_model(int argc, char **argv, int full_argc, char **full_argv)
{
    attn_opts o;
    machine m;
    char err[600] = "";
    int rc = model_options(argc, argv, &o, &m);
    if (rc == 1) return 0;
    if (rc) return rc;

    /* refuse a sweep with nothing feasible before anything is written */
    long feasible = 0;
    sweep_iter fs = {0};
    int FS = sweep_list(&fs, &o.seq), FP = sweep_list(&fs, &o.procs),
        FA = sweep_mask(&fs, o.algos, AM_NUM_ALGOS);
    while (sweep_next(&fs)) {
        am_config c;
        sweep_config(&o, &m, (int)fs.v[FA], fs.v[FP], fs.v[FS], o.head_dim.v[0], 0, 2, 1, 0, &c);
        if (am_validate(&c, err, sizeof err) == 0) feasible++;
    }
    if (!feasible) { /* every N below every P, or too few K/V heads to split */
        uint64_t most_n = 0, least_p = UINT64_MAX;
        for (size_t i = 0; i < o.seq.n; i++) most_n = o.seq.v[i] > most_n ? o.seq.v[i] : most_n;
        for (size_t i = 0; i < o.procs.n; i++)
            least_p = o.procs.v[i] < least_p ? o.procs.v[i] : least_p;
        if (most_n < least_p)
            return cli_error(&o, "--seq",
                             "no point of the sweep can run: every N (at most %llu) is smaller "
                             "than every P of --procs (at least %llu); accepted: N >= P (every "
                             "rank holds at least one token)",
                             (unsigned long long)most_n, (unsigned long long)least_p);
        return cli_error(&o, strstr(err, "kv-heads") ? "--kv-heads" : NULL,
                         "no point of the sweep can run (%s); accepted: kv-heads at least the "
                         "ranks the K/V heads are split over, or another --algo",
                         err);
    }

    attn_provenance prov;
    prov_init(&prov, full_argc, full_argv);
    h5out *h = o.out ? h5out_open(o.out, &prov, cli_lock_timeout(&o)) : NULL;
    printf("# attnsim model: machine %s (%s), %llu GPUs per node; batch %llu, heads %llu, "
           "kv-heads %llu\n",
           m.name, m.origin, (unsigned long long)m.gpus_per_node, (unsigned long long)o.batch,
           (unsigned long long)o.heads, (unsigned long long)o.kv_heads);
    /* Two tables: a row per prediction, then a row per phase of each (id: the prediction's);
     * units in the column names, one value per cell. */
    printf("# %5s %-8s %-10s %-5s %7s %-9s %-7s %8s %4s %6s %-5s %11s %7s %-9s %14s\n", "id",
           "algo", "layout", "pass", "P", "grid", "grid_by", "N", "d", "causal", "dtype", "time_ms",
           "vs_ring", "dominant", "max_sent_B");
    /* progress: the work of a prediction grows with P (every rank is predicted) */
    long total_runs = 0;
    double total_work = 0;
    {
        sweep_iter pw = {0};
        int DT = sweep_mask(&pw, o.dtypes, KN_NUM_DTYPES), HD = sweep_list(&pw, &o.head_dim),
            CA = sweep_mask(&pw, o.causal, 2), SQ = sweep_list(&pw, &o.seq),
            PR = sweep_list(&pw, &o.procs), AL = sweep_mask(&pw, o.algos, AM_NUM_ALGOS);
        while (sweep_next(&pw)) {
            am_config c;
            sweep_config(&o, &m, (int)pw.v[AL], pw.v[PR], pw.v[SQ], pw.v[HD], (int)pw.v[CA],
                         (int)pw.v[DT], 1, 0, &c);
            if (am_validate(&c, err, sizeof err) == 0) total_runs++, total_work += (double)c.P;
        }
    }
    progress prog;
    progress_begin(&prog, "model", o.progress, total_runs, total_work, "rank predictions");
    phase_table phases = {NULL, 0, 0};
    phase_table_add(&phases, "", 0);
    long rows = 0, skipped = 0;
    double ring_s = NAN;
    sweep_iter sw = {0};
    int DT = sweep_mask(&sw, o.dtypes, KN_NUM_DTYPES), HD = sweep_list(&sw, &o.head_dim),
        CA = sweep_mask(&sw, o.causal, 2), SQ = sweep_list(&sw, &o.seq),
        PR = sweep_list(&sw, &o.procs), AL = sweep_mask(&sw, o.algos, AM_NUM_ALGOS);
    while (sweep_next(&sw)) {
        int dt = (int)sw.v[DT], causal = (int)sw.v[CA];
        if (sw.changed < AL) { /* a new point of the outer dimensions: Ring's time there */
            am_config base;
            sweep_config(&o, &m, ALGO_RING, sw.v[PR], sw.v[SQ], sw.v[HD], causal, dt, 1, 0, &base);
            ring_s = NAN;
            if (am_validate(&base, err, sizeof err) == 0) {
                am_time rt;
                am_predict_time(&base, &m, &rt);
                ring_s = rt.total_s;
            }
        }
        am_config c;
        int grid_auto = sweep_config(&o, &m, (int)sw.v[AL], sw.v[PR], sw.v[SQ], sw.v[HD], causal,
                                     dt, 1, 0, &c) == 1;
        if (am_validate(&c, err, sizeof err)) {
            printf("# skipped %s P=%llu N=%llu: %s\n", am_algo_name(c.algo),
                   (unsigned long long)c.P, (unsigned long long)c.N, err);
            skipped++;
            continue;
        }
        rows++;
        model_one(&o, &m, &c, grid_auto, ring_s, rows, &phases, h);
        progress_step(&prog, (double)c.P);
    }
    h5out_close(h);
    progress_end(&prog);
    prov_free(&prov);
    printf("# %ld predictions%s; time_ms: predicted total; vs_ring: ring (same layout) time over "
           "this time; grid_by: auto (--grid auto: least predicted time), square (the default) "
           "or given (--grid RxC)\n",
           rows, skipped ? " (some combinations skipped)" : "");
    printf("# the phases of each prediction (id: its row above): predicted time, dominant term, "
           "whether it crosses nodes\n");
    printf("# %5s %-24s %11s %-9s %s\n", "id", "phase", "time_ms", "term", "inter_node");
    fputs(phases.text, stdout);
    free(phases.text);
    char shown[4200];
    if (o.out)
        printf("# wrote %ld runs to %s\n", rows, outputs_display(o.out, shown, sizeof shown));
    return 0;
}
