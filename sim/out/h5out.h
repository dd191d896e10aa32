/* h5out.h - the HDF5 output of attnsim, schema "attnsim/1" (docs/hdf5-schema.md).
 *
 * Runs are built in memory (h5rec.h) and published in batches (docs/hdf5-schema.md, "Crash
 * safety"). In place (h5append.h, the default): with the file locked (a lock per file, waited
 * for at most the lock timeout), a batch's objects, the new entries of /runs and rows of
 * /summary and new headers of /runs, /summary and the root go past the end of the file,
 * nothing a published version refers to is written, and one write of the superblock commits
 * them after an fdatasync: a reader, or a crash at any instant, sees the file before the batch
 * or after it, never a partial run, never damaged earlier runs. A batch is published when it
 * is ATTNSIM_H5_BATCH_SECONDS (2) old, holds ATTNSIM_H5_BATCH_RUNS (65536) runs or 8 MiB of
 * records, but no sooner than four times the previous publication took. By copy (files the
 * in-place writer does not handle, runs the encoder cannot write, ATTNSIM_H5_COPY=1): the
 * batch is staged into a private hidden copy of the file (".NAME.attnsim-tmp.HOST.PID"),
 * linked with the HDF5 library, and the copy is fsynced and rename()d over the path. Where the
 * HDF5 library is thread-safe a publisher thread publishes while the command goes on;
 * ATTNSIM_H5_BATCH=N publishes exactly every N runs, synchronously, instead. A killed writer
 * loses the batch in progress and leaves at most bytes past the end of the file's data (in
 * place) or its hidden copy (by copy, removed by the next writer of the file on the same host).
 */
#ifndef ATTNSIM_H5OUT_H
#define ATTNSIM_H5OUT_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "h5rec.h"
#include "provenance.h"

#define H5OUT_SCHEMA "attnsim/1"

/* Seconds a writer waits for another writer's lock on the same file by default
 * (--lock-timeout). */
#define H5OUT_LOCK_TIMEOUT_DEFAULT 600.0

/* Checks an output path before any work starts (exit status 2 on failure, nothing written):
 * the directory exists and is writable and neither it nor the file is append-only or
 * immutable; an existing file is a writable, intact attnsim/1 file (h5out_check_existing).
 * A symlink is followed to the file it names (which need not exist yet). Returns 0, or -1
 * with a one-line reason naming what is accepted. */
int h5out_check_path(const char *path, char *err, size_t errlen);

/* Structural validation of an existing file before anything is appended, run in a child
 * process with a deadline (a damaged file may crash or hang the HDF5 library): the schema;
 * /runs holds only run groups (numbered names, `kind` and `complete` attributes); /summary
 * has the layout of this version and its rows are exactly the complete runs attnsim wrote
 * (kinds distributed, model, kernel, calibration), each once; every run's datasets have the
 * shapes its attributes imply (e.g. [P][F] per-rank arrays, F = len(phases)); HDF5 verifies
 * the checksums of the metadata it reads. Returns 0, or -1 with "'PATH' is damaged: ...". */
int h5out_check_existing(const char *path, char *err, size_t errlen);

/* 0 when `path` names a file (new or not) in an existing writable directory; else -1 and a
 * one-line reason naming what is accepted. */
int h5out_dir_writable(const char *path, char *err, size_t errlen);

/* The file `path` refers to: `path` itself, or the end of its chain of symlinks (which need
 * not exist). */
void h5out_resolve(const char *path, char *out, size_t outlen);

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

/* Opens `path` for appending runs, creating it (with the root provenance) if it does not
 * exist; lock waits give up after lock_timeout_s seconds (exit status 1). */
h5out *h5out_open(const char *path, const attn_provenance *prov, double lock_timeout_s);
/* Starts a run: a new record with the per-run provenance attributes; returns its root. */
h5node *h5out_run_begin(h5out *h);
/* Ends the run: `complete` = 1 (last attribute), the summary row (row->run is set when
 * published); publishes the batch when it is due. */
void h5out_run_commit(h5out *h, h5node *run, const h5_summary_row *row);
/* Publishes the runs committed so far. */
void h5out_flush(h5out *h);
/* Publishes what is left and releases the writer. */
void h5out_close(h5out *h);

/* The in-memory compound type of h5_summary_row (caller closes). */
hid_t h5_summary_type(void);

#endif
