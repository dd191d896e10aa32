/* kernel_record.c - a kernel run in the HDF5 file (see kernel_record.h). */
#include "kernel_record.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fail.h"

void record_kernel_run(h5out *h, const ks_config *c, const ks_result *r, const double *times,
                       uint64_t reps, double median, uint64_t seed, int counts_match, int cuda,
                       const char *device)
{
    const char *backend = cuda ? "cuda" : "cpu";
    h5node *g = h5out_run_begin(h);
    h5_attr_str(g, "kind", "kernel");
    h5_attr_str(g, "algorithm", c->k->name);
    h5_attr_str(g, "pass", c->k->pass);
    h5_attr_i64(g, "P", 1);
    h5_attr_i64(g, "grid_rows", 1);
    h5_attr_i64(g, "grid_cols", 1);
    h5_attr_i64(g, "seq_len", (int64_t)c->s.nq);
    h5_attr_i64(g, "seq_len_kv", (int64_t)c->s.nk);
    h5_attr_i64(g, "batch", (int64_t)c->s.batch);
    h5_attr_i64(g, "heads", (int64_t)c->s.heads);
    h5_attr_i64(g, "kv_heads", (int64_t)c->s.kv_heads);
    h5_attr_i64(g, "head_dim", (int64_t)c->s.d);
    h5_attr_i64(g, "causal", c->s.causal);
    h5_attr_str(g, "dtype", kn_dtype_name(c->dtype));
    h5_attr_str(g, "backend", backend);
    h5_attr_str(g, "comm", "none");
    h5_attr_str(g, "machine", "none");
    if (cuda) {
        h5_attr_str(g, "gpu", device);
        h5_attr_str(g, "check_method",
                    r->check_sampled ? "float64 reference, 64 sampled query rows and 64 "
                                       "sampled key rows of batch 0"
                                     : "float64 reference, every element");
    } else {
        h5_attr_i64(g, "sram_elems", (int64_t)c->sram);
    }
    h5_attr_i64(g, "block_rows", (int64_t)r->blocks.br);
    h5_attr_i64(g, "block_cols", (int64_t)r->blocks.bc);
    h5_attr_i64(g, "seed", (int64_t)seed);
    if (!cuda) h5_attr_i64(g, "counts_match", counts_match);
    if (r->checked) {
        h5_attr_f64(g, "max_abs_err", r->max_abs_err);
        h5_attr_f64(g, "max_rel_err", r->max_rel_err);
        h5_attr_i64(g, "check_passed", r->check_passed);
    }
    attn_kill_point("kernels:attrs");
    int64_t v;
    hsize_t nreps = reps;
    if (r->dram) { /* DRAM bytes under ncu: checked against [compulsory, logical] */
        v = (int64_t)r->dram_read;
        h5_write(g, "measured/dram_bytes_read", H5_I64, 0, NULL, &v, "bytes");
        v = (int64_t)r->dram_written;
        h5_write(g, "measured/dram_bytes_written", H5_I64, 0, NULL, &v, "bytes");
        h5_attr_i64(g, "dram_in_band", r->dram_in_band);
        h5_attr_i64(g, "dram_kernel_launches", r->dram_launches);
    }
    if (!cuda) { /* the GPU does not count logical transfers */
        v = (int64_t)r->measured.bytes_read;
        h5_write(g, "measured/hbm_bytes_read", H5_I64, 0, NULL, &v, "bytes");
        v = (int64_t)r->measured.bytes_written;
        h5_write(g, "measured/hbm_bytes_written", H5_I64, 0, NULL, &v, "bytes");
    }
    v = (int64_t)r->measured.flops;
    h5_write(g, "measured/flops", H5_I64, 0, NULL, &v, "flop");
    h5_write(g, "measured/time_s", H5_F64, 0, NULL, &median, "s");
    h5_write(g, "measured/time_s_reps", H5_F64, 1, &nreps, times, "s");
    v = (int64_t)r->predicted.bytes_read;
    h5_write(g, "predicted/hbm_bytes_read", H5_I64, 0, NULL, &v, "bytes");
    v = (int64_t)r->predicted.bytes_written;
    h5_write(g, "predicted/hbm_bytes_written", H5_I64, 0, NULL, &v, "bytes");
    v = (int64_t)r->predicted.flops;
    h5_write(g, "predicted/flops", H5_I64, 0, NULL, &v, "flop");
    v = (int64_t)r->predicted.compulsory_read;
    h5_write(g, "predicted/compulsory_bytes_read", H5_I64, 0, NULL, &v, "bytes");
    v = (int64_t)r->predicted.compulsory_written;
    h5_write(g, "predicted/compulsory_bytes_written", H5_I64, 0, NULL, &v, "bytes");
    double nan = NAN;
    h5_write(g, "predicted/time_s", H5_F64, 0, NULL, &nan, "s");
    h5_attr_str(h5_member(g, "predicted/time_s"), "note",
                "NaN: the kernel study has no machine description, so its kernel "
                "time is not predicted");

    h5_summary_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.kind, sizeof row.kind, "kernel");
    snprintf(row.algorithm, sizeof row.algorithm, "%s", c->k->name);
    snprintf(row.pass, sizeof row.pass, "%s", c->k->pass);
    snprintf(row.dtype, sizeof row.dtype, "%s", kn_dtype_name(c->dtype));
    snprintf(row.backend, sizeof row.backend, "%s", backend);
    row.P = row.grid_rows = row.grid_cols = 1;
    row.seq_len = (int64_t)c->s.nq;
    row.seq_len_kv = (int64_t)c->s.nk;
    row.batch = (int64_t)c->s.batch;
    row.heads = (int64_t)c->s.heads;
    row.kv_heads = (int64_t)c->s.kv_heads;
    row.head_dim = (int64_t)c->s.d;
    row.causal = c->s.causal;
    row.check_passed = r->checked ? r->check_passed : -1;
    row.measured_time_s = median;
    row.predicted_time_s = NAN;
    row.measured_bytes_max =
        cuda ? -1 : (int64_t)(r->measured.bytes_read + r->measured.bytes_written);
    row.predicted_bytes_max = (int64_t)(r->predicted.bytes_read + r->predicted.bytes_written);
    h5out_run_commit(h, g, &row);
}
