/* dist_record.c - distributed and model runs in the HDF5 file (see dist_record.h). */
#include "dist_record.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"

static const char *const dtype_names[] = {"f32", "f16", "bf16"};

void record_config_attrs(hid_t g, const char *kind, const am_config *c, const char *backend,
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
    char text[4096];
    size_t len = machine_format(m, text, sizeof text);
    if (len < sizeof text) machine_format_optional(m, text + len, sizeof text - len);
    h5_attr_str(g, "machine_description", text);
    h5_attr_i64(g, "gpus_per_node", (int64_t)m->gpus_per_node);
}

void record_prediction(hid_t g, const am_prediction *p, const int32_t *rank_map,
                       const char *omitted_reason)
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
    h5_write(g, "phase_group_size", H5T_NATIVE_INT64, 1, fdim, group, "ranks");
    int64_t v[4][AM_MAX_PHASES];
    double t[AM_MAX_PHASES];
    for (int f = 0; f < F; f++) {
        v[0][f] = (int64_t)p->max[f].bytes_sent;
        v[1][f] = (int64_t)p->max[f].bytes_recv;
        v[2][f] = (int64_t)p->max[f].msgs_sent;
        t[f] = p->time.phase_s[f];
    }
    h5_write(g, "predicted/bytes_sent_max", H5T_NATIVE_INT64, 1, fdim, v[0], "bytes");
    h5_write(g, "predicted/bytes_recv_max", H5T_NATIVE_INT64, 1, fdim, v[1], "bytes");
    h5_write(g, "predicted/messages_max", H5T_NATIVE_INT64, 1, fdim, v[2], "messages");
    h5_write(g, "predicted/phase_time_s", H5T_NATIVE_DOUBLE, 1, fdim, t, "s");
    h5_write(g, "predicted/total_time_s", H5T_NATIVE_DOUBLE, 0, NULL, &p->time.total_s, "s");
    hsize_t three[1] = {3};
    h5_write(g, "predicted/critical_path_s", H5T_NATIVE_DOUBLE, 1, three, p->time.term_s, "s");
    hid_t ds = H5CALL(H5Dopen2(g, "predicted/critical_path_s", H5P_DEFAULT));
    h5_attr_strs(ds, "terms", (const char *const *)am_term_names, 3);
    H5CALL(H5Dclose(ds));
    h5_attr_str(g, "dominant_term", am_term_names[p->time.dominant]);
    const char *terms[AM_MAX_PHASES] = {0};
    int32_t inter[AM_MAX_PHASES];
    for (int f = 0; f < F; f++) {
        terms[f] = am_term_names[p->time.phase_term[f]];
        inter[f] = (p->time.inter_node_phases >> f) & 1;
    }
    h5_write_strs(g, "predicted/phase_term", terms, (size_t)F);
    h5_write(g, "predicted/phase_inter_node", H5T_NATIVE_INT32, 1, fdim, inter, NULL);

    if (!p->per_rank) {
        h5_attr_str(g, "per_rank_arrays", omitted_reason ? omitted_reason : "omitted");
        return;
    }
    h5_attr_str(g, "per_rank_arrays", "present");
    hsize_t pf[2] = {(hsize_t)P, (hsize_t)F}, p4[2] = {(hsize_t)P, 4};
    h5_write(g, "ranks", H5T_NATIVE_INT32, 2, p4, rank_map, NULL);
    int64_t *a = kn_xmalloc(P * (size_t)F * sizeof(int64_t) + 1, "per-rank array");
    double *tt = kn_xmalloc(P * (size_t)F * sizeof(double) + 1, "per-rank times");
#define PER_RANK(field, path, units)                                                               \
    do {                                                                                           \
        for (size_t i = 0; i < P * (size_t)F; i++) a[i] = (int64_t)p->per_rank[i].field;           \
        h5_write(g, path, H5T_NATIVE_INT64, 2, pf, a, units);                                      \
    } while (0)
    PER_RANK(bytes_sent, "predicted/bytes_sent", "bytes");
    PER_RANK(bytes_recv, "predicted/bytes_recv", "bytes");
    PER_RANK(msgs_sent, "predicted/messages", "messages");
#undef PER_RANK
    for (size_t x = 0; x < P; x++)
        for (int f = 0; f < F; f++) tt[x * (size_t)F + (size_t)f] = p->time.phase_s[f];
    h5_write(g, "predicted/time_s", H5T_NATIVE_DOUBLE, 2, pf, tt, "s");
    free(a);
    free(tt);
}

int32_t *rank_map_from_machine(const am_config *c, const machine *m)
{
    int32_t *map = kn_xmalloc((size_t)c->P * 4 * sizeof(int32_t), "rank map");
    for (uint64_t x = 0; x < c->P; x++) {
        map[4 * x] = (int32_t)x;
        map[4 * x + 1] = (int32_t)rank_node(x, m->gpus_per_node);
        map[4 * x + 2] = (int32_t)grid_row(x, c->rows);
        map[4 * x + 3] = (int32_t)grid_col(x, c->rows);
    }
    return map;
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
