/* dist_record.c - distributed and model runs in the HDF5 file (see dist_record.h). */
#include "dist_record.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"

static const char *const dtype_names[] = {"f32", "f16", "bf16"};

/* A machine's description as text, formatted once for the process (a sweep records the same
 * machine in every run; the records keep the text until the writer is closed). */
static const char *machine_text(const machine *m)
{
    static struct {
        machine m;
        char *text;
    } known[8];
    static int n;
    for (int i = 0; i < n; i++)
        if (!memcmp(&known[i].m, m, sizeof *m)) return known[i].text;
    char *text = kn_xmalloc(4096, "machine description");
    size_t len = machine_format(m, text, 4096);
    if (len < 4096) machine_format_optional(m, text + len, 4096 - len);
    if (n == 8) return text; /* more machines than a command records: not kept (small leak) */
    memcpy(&known[n].m, m, sizeof *m);
    known[n].text = text;
    return known[n++].text;
}

void record_config_attrs(h5node *g, const char *kind, const am_config *c, const char *backend,
                         const char *comm, const machine *m)
{
    h5_attr_str(g, "kind", kind);
    h5_attr_str(g, "algorithm", am_algo_name(c->algo));
    if (am_algo_desc_of(c->algo)->uses_layout) h5_attr_str(g, "layout", am_layout_names[c->layout]);
    h5_attr_str(g, "pass", am_pass_names[c->pass]);
    h5_attr_i64(g, "P", (int64_t)c->P);
    h5_attr_i64(g, "grid_rows", (int64_t)c->rows);
    h5_attr_i64(g, "grid_cols", (int64_t)c->cols);
    h5_attr_i64(g, "seq_len", (int64_t)c->N);
    h5_attr_i64(g, "batch", (int64_t)c->batch);
    h5_attr_i64(g, "heads", (int64_t)c->heads);
    h5_attr_i64(g, "kv_heads", (int64_t)c->kv_heads);
    h5_attr_i64(g, "head_dim", (int64_t)c->head_dim);
    h5_attr_i64(g, "causal", c->causal);
    h5_attr_str(g, "dtype", dtype_names[c->dtype]);
    h5_attr_str(g, "backend", backend);
    h5_attr_str(g, "comm", comm);
    h5_attr_str(g, "machine", m->name);
    h5_attr_str(g, "machine_origin", m->origin);
    /* The description itself, in machine-file syntax (docs/machine.md), so that a reader can
     * model the same machine again (plots/gallery.py draws the scaling lines from it). */
    h5_attr_str_kept(g, "machine_description", machine_text(m));
    h5_attr_i64(g, "gpus_per_node", (int64_t)m->gpus_per_node);
}

size_t record_thin_ranks(uint64_t P, uint64_t *ranks)
{
    size_t n = P < RECORD_THIN_ROWS ? (size_t)P : RECORD_THIN_ROWS;
    for (size_t i = 0; i < n; i++) ranks[i] = n > 1 ? (uint64_t)i * (P - 1) / (n - 1) : 0;
    return n;
}

void record_prediction(h5node *g, const am_prediction *p, const int32_t *rank_map, const machine *m,
                       int thin, const char *why)
{
    const am_config *c = &p->cfg;
    int F = p->F;
    size_t P = (size_t)c->P;
    const char *names[AM_MAX_PHASES] = {0}, *patterns[AM_MAX_PHASES] = {0};
    int64_t group[AM_MAX_PHASES];
    for (int f = 0; f < F; f++) {
        names[f] = p->phases[f]->name;
        patterns[f] = am_pattern_names[p->phases[f]->pattern];
        group[f] = (int64_t)am_phase_group_size(c, f);
    }
    h5_write_strs(g, "phases", names, (size_t)F);
    /* how each phase communicates (models/algo.h): its pattern and the members of its group */
    h5_write_strs(g, "phase_pattern", patterns, (size_t)F);

    hsize_t fdim[1] = {(hsize_t)F};
    h5_write(g, "phase_group_size", H5_I64, 1, fdim, group, "ranks");
    int64_t v[4][AM_MAX_PHASES];
    double t[AM_MAX_PHASES];
    for (int f = 0; f < F; f++) {
        v[0][f] = (int64_t)p->max[f].bytes_sent;
        v[1][f] = (int64_t)p->max[f].bytes_recv;
        v[2][f] = (int64_t)p->max[f].msgs_sent;
        t[f] = p->time.phase_s[f];
    }
    h5_write(g, "predicted/bytes_sent_max", H5_I64, 1, fdim, v[0], "bytes");
    h5_write(g, "predicted/bytes_recv_max", H5_I64, 1, fdim, v[1], "bytes");
    h5_write(g, "predicted/messages_max", H5_I64, 1, fdim, v[2], "messages");
    h5_write(g, "predicted/phase_time_s", H5_F64, 1, fdim, t, "s");
    h5_write(g, "predicted/total_time_s", H5_F64, 0, NULL, &p->time.total_s, "s");
    hsize_t three[1] = {3};
    h5_write(g, "predicted/critical_path_s", H5_F64, 1, three, p->time.term_s, "s");
    h5_attr_strs(h5_member(g, "predicted/critical_path_s"), "terms",
                 (const char *const *)am_term_names, 3);
    h5_attr_str(g, "dominant_term", am_term_names[p->time.dominant]);
    const char *terms[AM_MAX_PHASES] = {0};
    int32_t inter[AM_MAX_PHASES];
    for (int f = 0; f < F; f++) {
        terms[f] = am_term_names[p->time.phase_term[f]];
        inter[f] = (p->time.inter_node_phases >> f) & 1;
    }
    h5_write_strs(g, "predicted/phase_term", terms, (size_t)F);
    h5_write(g, "predicted/phase_inter_node", H5_I32, 1, fdim, inter, NULL);

    /* per-rank arrays: every rank, or (thin, or no per-rank counts kept) the rows of
     * RECORD_THIN_ROWS evenly spaced ranks, named by ranks[:, 0] */
    uint64_t sample[RECORD_THIN_ROWS];
    size_t R = P;
    if (thin || !p->per_rank) {
        R = record_thin_ranks(c->P, sample);
        char note[300];
        snprintf(note, sizeof note,
                 "thinned: %zu of %zu ranks, evenly spaced from 0 to P - 1 (row i is rank "
                 "ranks[i, 0]); predicted/*_max hold the maxima over all ranks%s%s",
                 R, P, why ? "; " : "", why ? why : "");
        h5_attr_str(g, "per_rank_arrays", note);
    } else {
        h5_attr_str(g, "per_rank_arrays", "present");
    }
    int thinned = R != P || thin || !p->per_rank;
    hsize_t pf[2] = {(hsize_t)R, (hsize_t)F}, p4[2] = {(hsize_t)R, 4};
    int32_t *map = kn_xmalloc(R * 4 * sizeof(int32_t) + 1, "rank map");
    am_count *counts = kn_xmalloc(R * (size_t)F * sizeof(am_count) + 1, "per-rank counts");
    for (size_t i = 0; i < R; i++) {
        uint64_t x = thinned ? sample[i] : i;
        if (rank_map) {
            memcpy(map + 4 * i, rank_map + 4 * x, 4 * sizeof(int32_t));
        } else {
            map[4 * i] = (int32_t)x;
            map[4 * i + 1] = (int32_t)rank_node(x, m->gpus_per_node);
            map[4 * i + 2] = (int32_t)grid_row(x, c->rows);
            map[4 * i + 3] = (int32_t)grid_col(x, c->rows);
        }
        if (p->per_rank)
            memcpy(counts + i * (size_t)F, p->per_rank + x * (size_t)F, (size_t)F * sizeof *counts);
        else
            am_rank_counts(c, x, counts + i * (size_t)F);
    }
    h5_write(g, "ranks", H5_I32, 2, p4, map, NULL);
    int64_t *a = kn_xmalloc(R * (size_t)F * sizeof(int64_t) + 1, "per-rank array");
    double *tt = kn_xmalloc(R * (size_t)F * sizeof(double) + 1, "per-rank times");
#define PER_RANK(field, path, units)                                                               \
    do {                                                                                           \
        for (size_t i = 0; i < R * (size_t)F; i++) a[i] = (int64_t)counts[i].field;                \
        h5_write(g, path, H5_I64, 2, pf, a, units);                                                \
    } while (0)
    PER_RANK(bytes_sent, "predicted/bytes_sent", "bytes");
    PER_RANK(bytes_recv, "predicted/bytes_recv", "bytes");
    PER_RANK(msgs_sent, "predicted/messages", "messages");
#undef PER_RANK
    for (size_t x = 0; x < R; x++)
        for (int f = 0; f < F; f++) tt[x * (size_t)F + (size_t)f] = p->time.phase_s[f];
    h5_write(g, "predicted/time_s", H5_F64, 2, pf, tt, "s");
    free(a);
    free(tt);
    free(map);
    free(counts);
}

void summary_from_prediction(h5_summary_row *row, const char *kind, const am_prediction *p,
                             const char *backend)
{
    const am_config *c = &p->cfg;
    memset(row, 0, sizeof *row);
    snprintf(row->kind, sizeof row->kind, "%s", kind);
    snprintf(row->algorithm, sizeof row->algorithm, "%s", am_algo_name(c->algo));
    snprintf(row->pass, sizeof row->pass, "%s", am_pass_names[c->pass]);
    snprintf(row->dtype, sizeof row->dtype, "%s", dtype_names[c->dtype]);
    snprintf(row->backend, sizeof row->backend, "%s", backend);
    row->P = (int32_t)c->P;
    row->grid_rows = (int32_t)c->rows;
    row->grid_cols = (int32_t)c->cols;
    row->seq_len = row->seq_len_kv = (int64_t)c->N;
    row->batch = (int64_t)c->batch;
    row->heads = (int64_t)c->heads;
    row->kv_heads = (int64_t)c->kv_heads;
    row->head_dim = (int64_t)c->head_dim;
    row->causal = c->causal;
    row->check_passed = -1;
    row->measured_time_s = NAN;
    row->predicted_time_s = p->time.total_s;
    row->measured_bytes_max = -1;
    row->predicted_bytes_max = (int64_t)p->total_sent_max;
}
