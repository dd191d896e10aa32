/* h5out.h - the HDF5 output of attnsim, schema "attnsim/1" (docs/hdf5-schema.md).
 *
 * Crash safety (docs/hdf5-schema.md, "Crash safety"): the file at the user's path is never
 * written in place. Each run is written into a private copy next to it
 * (".NAME.attnsim-tmp.HOST.PID"), flushed, closed and fsync'ed, and then rename()d over the
 * path. rename is atomic on POSIX file systems, so a reader, or a crash at any instant, sees
 * either the file before the run or the file with the complete run; never a partial run and
 * never damaged earlier runs. Writers of the same directory are serialised with flock() on the
 * directory. A killed writer leaves at most its hidden temporary copy behind. Each run group
 * also ends with the attribute complete = 1, written last, for readers of copies.
 */
#ifndef ATTNSIM_H5OUT_H
#define ATTNSIM_H5OUT_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "provenance.h"

#define H5OUT_SCHEMA "attnsim/1"

/* Checks an output path before any work starts: its directory exists and is writable; if the
 * file exists it is a writable attnsim/1 file. Returns 0, or -1 with a one-line reason naming
 * what is accepted. */
int h5out_check_path(const char *path, char *err, size_t errlen);

/* 0 when `path` names a file (new or not) in an existing writable directory; else -1 and a
 * one-line reason naming what is accepted. */
int h5out_dir_writable(const char *path, char *err, size_t errlen);

/* One row of /summary (docs/hdf5-schema.md lists the columns and their units). */
typedef struct {
    int64_t run;
    char kind[16];
    char algorithm[24];
    char pass[8];
    char dtype[8];
    char backend[8];
    int32_t P, grid_rows, grid_cols;
    int64_t seq_len, seq_len_kv, batch, heads, kv_heads, head_dim;
    int32_t causal;
    int32_t check_passed; /* 1, 0, or -1 when not checked */
    double measured_time_s, predicted_time_s;
    int64_t measured_bytes_max, predicted_bytes_max;
} h5_summary_row;

typedef struct h5out h5out;

/* Opens `path` for appending runs, creating it (with the root provenance) if it does not exist.
 * Nothing stays open between runs. */
h5out *h5out_open(const char *path, const attn_provenance *prov);
/* Starts a run: locks, copies the file privately, creates /runs/NNNNNN with the provenance
 * attributes and returns the group; *run_id gets its number. */
hid_t h5out_run_begin(h5out *h, int64_t *run_id);
/* Appends the summary row (row->run is set), marks the run complete and publishes the copy by
 * rename. Closes `group`. */
void h5out_run_commit(h5out *h, hid_t group, h5_summary_row *row);
void h5out_close(h5out *h);

/* Writing helpers; every call is checked through the one error path. */
void h5_attr_str(hid_t loc, const char *name, const char *value);
void h5_attr_strs(hid_t loc, const char *name, const char *const *values, size_t n);
void h5_attr_i64(hid_t loc, const char *name, int64_t v);
void h5_attr_f64(hid_t loc, const char *name, double v);
/* A dataset at `path` (intermediate groups created) of `rank` dims (0 = scalar), with a
 * `units` attribute unless units is NULL. */
void h5_write(hid_t loc, const char *path, hid_t memtype, int rank, const hsize_t *dims,
              const void *data, const char *units);
void h5_write_strs(hid_t loc, const char *path, const char *const *values, size_t n);

/* The in-memory compound type of h5_summary_row (caller closes). */
hid_t h5_summary_type(void);

#endif
