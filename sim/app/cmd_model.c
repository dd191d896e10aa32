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
#include "predict.h"
#include "sweep.h"

static const opt_id model_opts[] = {
    OPT_ALGO,     OPT_LAYOUT,   OPT_PROCS,       OPT_SEQ,  OPT_BATCH,        OPT_HEADS,
    OPT_KV_HEADS, OPT_HEAD_DIM, OPT_CAUSAL,      OPT_GRID, OPT_ULYSSES_SIZE, OPT_PASS,
    OPT_DTYPE,    OPT_MACHINE,  OPT_RANK_ARRAYS, OPT_OUT,  OPT_END};

static const cli_command model_cmd = {
    "model",
    "predict only (no execution), any P, any machine",
    "Predicts the bytes and messages every rank sends and receives in every phase, and the\n"
    "time of each phase, for the distributed attention algorithms (--algo) on a described\n"
    "machine, without executing anything (docs/model.md). Defaults: --algo (every algorithm)\n"
    "--layout contiguous --procs 4,16,64 --seq 32k,128k --batch 1 --heads 32 --head-dim 128\n"
    "--causal=no --pass fwd --dtype bf16 --machine dgx-h100 --rank-arrays 4096; --grid: the\n"
    "square grid where P is a square, else auto; --ulysses-size: the machine's GPUs per node.\n"
    "Presets: a2d-paper-a100, a2d-paper-h100, dev-4gpu, dev-h100, dgx-a100, dgx-h100,\n"
    "h200-node (files in models/machines/, format in docs/machine.md).",
    model_opts,
    NULL,
    1u << 16};

static void fmt_time(double s, char *buf, size_t n)
{
    if (s >= 1.0)
        snprintf(buf, n, "%.3fs", s);
    else if (s >= 1e-3)
        snprintf(buf, n, "%.3fms", s * 1e3);
    else
        snprintf(buf, n, "%.1fus", s * 1e6);
}

static void fmt_tokens(uint64_t v, char *buf, size_t n)
{
    if (v % (1u << 20) == 0)
        snprintf(buf, n, "%lluM", (unsigned long long)(v >> 20));
    else if (v % 1024 == 0)
        snprintf(buf, n, "%lluk", (unsigned long long)(v >> 10));
    else
        snprintf(buf, n, "%llu", (unsigned long long)v);
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
    for (size_t si = 0; si < o.seq.n; si++)
        for (size_t pi = 0; pi < o.procs.n; pi++)
            for (int a = 0; a < AM_NUM_ALGOS; a++) {
                am_config c;
                sweep_config(&o, &m, a, o.procs.v[pi], o.seq.v[si], o.head_dim.v[0], 0, 2, 1, 0,
                             &c);
                if ((o.algos & (1u << a)) && am_validate(&c, err, sizeof err) == 0) feasible++;
            }
    if (!feasible)
        return cli_error(&o, NULL,
                         "no point of the sweep can run (%s); accepted: N >= P, and "
                         "kv-heads at least the ranks the K/V heads are split over",
                         err);

    attn_provenance prov;
    prov_init(&prov, full_argc, full_argv);
    h5out *h = o.out ? h5out_open(o.out, &prov) : NULL;
    printf("# attnsim model: machine %s (%s), %llu GPUs per node; batch %llu, heads %llu, "
           "kv-heads %llu\n",
           m.name, m.origin, (unsigned long long)m.gpus_per_node, (unsigned long long)o.batch,
           (unsigned long long)o.heads, (unsigned long long)o.kv_heads);
    printf("# %-8s %-10s %-5s %7s %-9s %6s %4s %6s %-5s %10s %7s %-9s %14s  %s\n", "algo", "layout",
           "pass", "P", "grid", "N", "d", "causal", "dtype", "time", "vs_ring", "dominant",
           "max_sent_B", "phases");
    long rows = 0, skipped = 0;
    for (int dt = 0; dt < 3; dt++) {
        if (!(o.dtypes & (1u << dt))) continue;
        for (size_t di = 0; di < o.head_dim.n; di++)
            for (int causal = 0; causal < 2; causal++) {
                if (!(o.causal & (1u << causal))) continue;
                for (size_t si = 0; si < o.seq.n; si++)
                    for (size_t pi = 0; pi < o.procs.n; pi++) {
                        am_config base;
                        sweep_config(&o, &m, ALGO_RING, o.procs.v[pi], o.seq.v[si],
                                     o.head_dim.v[di], causal, dt, 1, 0, &base);
                        double ring_s = NAN;
                        if (am_validate(&base, err, sizeof err) == 0) {
                            am_time rt;
                            am_predict_time(&base, &m, &rt);
                            ring_s = rt.total_s;
                        }
                        for (int a = 0; a < AM_NUM_ALGOS; a++) {
                            if (!(o.algos & (1u << a))) continue;
                            am_config c;
                            int grid_auto = sweep_config(&o, &m, a, base.P, base.N, base.head_dim,
                                                         causal, dt, 1, 0, &c) == 1;
                            if (am_validate(&c, err, sizeof err)) {
                                printf("# skipped %s P=%llu N=%llu: %s\n", am_algo_name(a),
                                       (unsigned long long)c.P, (unsigned long long)c.N, err);
                                skipped++;
                                continue;
                            }
                            am_prediction pr;
                            int keep = c.P <= o.rank_arrays && h;
                            am_predict(&c, &m, keep, &pr);
                            char grid[32], tbuf[32], nbuf[24], phases[1024] = "";
                            const am_algo_desc *d = am_algo_desc_of(c.algo);
                            if (d->grid != AM_GRID_LINE)
                                snprintf(grid, sizeof grid, "%llux%llu%s",
                                         (unsigned long long)c.rows, (unsigned long long)c.cols,
                                         grid_auto ? "*" : "");
                            else
                                snprintf(grid, sizeof grid, "-");
                            fmt_time(pr.time.total_s, tbuf, sizeof tbuf);
                            fmt_tokens(c.N, nbuf, sizeof nbuf);
                            for (int f = 0; f < pr.F; f++) {
                                char pt[32];
                                fmt_time(pr.time.phase_s[f], pt, sizeof pt);
                                size_t len = strlen(phases);
                                snprintf(phases + len, sizeof phases - len, "%s%s=%s", f ? " " : "",
                                         pr.phases[f]->name, pt);
                            }
                            printf("  %-8s %-10s %-5s %7llu %-9s %6s %4llu %6s %-5s %10s %7.2f "
                                   "%-9s %14llu  %s\n",
                                   am_algo_name(a),
                                   d->uses_layout ? am_layout_names[c.layout] : "-",
                                   am_pass_names[c.pass], (unsigned long long)c.P, grid, nbuf,
                                   (unsigned long long)c.head_dim, causal ? "yes" : "no",
                                   cli_dtype_names[dt], tbuf, ring_s / pr.time.total_s,
                                   am_term_names[pr.time.dominant],
                                   (unsigned long long)pr.total_sent_max, phases);
                            rows++;
                            const char *warn = am_unmeasured_tier_note(&m, &pr.time);
                            if (warn) printf("# warning: %s\n", warn);
                            if (h) {
                                int64_t id;
                                hid_t g = h5out_run_begin(h, &id);
                                record_config_attrs(g, "model", &c, "none", "none", &m);
                                h5_attr_i64(g, "grid_auto", grid_auto);
                                h5_attr_f64(g, "speedup_over_ring", ring_s / pr.time.total_s);
                                char why[160];
                                snprintf(why, sizeof why,
                                         "omitted: P = %llu is above "
                                         "--rank-arrays %llu",
                                         (unsigned long long)c.P,
                                         (unsigned long long)o.rank_arrays);
                                int32_t *map = keep ? rank_map_from_machine(&c, &m) : NULL;
                                record_prediction(g, &pr, map, why);
                                free(map);
                                h5_summary_row row;
                                summary_from_prediction(&row, "model", &pr, "none");
                                h5out_run_commit(h, g, &row);
                            }
                            am_prediction_free(&pr);
                        }
                    }
            }
    }
    h5out_close(h);
    prov_free(&prov);
    printf("# %ld predictions%s; time: predicted total; vs_ring: ring (same layout) time over "
           "this time; *: grid chosen by --grid auto\n",
           rows, skipped ? " (some combinations skipped)" : "");
    if (o.out) printf("# wrote %ld runs to %s\n", rows, o.out);
    return 0;
}
