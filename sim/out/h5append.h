/* h5append.h - runs appended to an attnsim/1 file in place, committed by one write of its
 * superblock (docs/hdf5-schema.md, "Crash safety").
 *
 * Nothing that a published version of the file refers to is ever written again. A
 * publication writes, past the end of the file: the runs' objects (h5enc.h); the new entries
 * of /runs, a group in the symbol-table form (a version-1 B-tree of symbol nodes and a local
 * heap of names) of which only the nodes on the path to the new entries are written anew (a
 * copy of each: the old ones stay as they were); the new /summary rows (in room reserved
 * after the rows of the version before, which no version refers to, or in a new block twice
 * as large); and new object headers of /runs, /summary and the root group. It then syncs the
 * data and writes the superblock (48 bytes at offset 0: the end of the file's data and the
 * root group's address, with their checksum) in one write: before it the file is the version
 * before, after it the new one. The cost is the batch's bytes plus O(log runs).
 *
 * A file made by the HDF5 library (dense /runs, chunked /summary: older attnsim writers) is
 * converted by its first publication: /runs indexed anew in the symbol-table form and /summary
 * rewritten contiguous, the same way (in place, one superblock write). Files this cannot
 * append to (superblock version 0 or 1, a superblock extension, a root group with dense links,
 * a /summary of another row type) are appended to by copy-append-rename (h5out.c). */
#ifndef ATTNSIM_H5APPEND_H
#define ATTNSIM_H5APPEND_H

#include <stddef.h>
#include <stdint.h>

#include "h5enc.h"
#include "h5out.h"
#include "h5rec.h"

typedef struct h5ap h5ap;

/* What one writer remembers between its publications: the room it reserved. */
h5ap *h5ap_new(void);
void h5ap_free(h5ap *a);

/* Appends runs[0..n) (their trees; every one h5enc_fits) and their summary rows (rows[i].run
 * is set to the number run i gets, NNNNNN in /runs) to the file open read-write as fd (path:
 * for the library's read-only look at a file to convert, and messages), with the file locked
 * by the caller; enc is the encoder to use. n = 0 with nrows > 0 appends summary rows only
 * (the runs were linked by the library). The batch's data is synced before the superblock is
 * written; the superblock itself is synced when `final` (the writer's last batch) and
 * otherwise with the next batch's data. Returns 0 when published, 1 when the file's layout
 * is one this cannot append to (why says what; nothing was written), and fails (attn_fail) on
 * an I/O error. */
int h5ap_publish(h5ap *a, int fd, const char *path, h5enc *enc, h5node *const *runs, size_t n,
                 h5_summary_row *rows, size_t nrows, int final, char *why, size_t whylen);

/* 1 when the file's /summary is stored contiguous (appended to by h5ap_publish), 0 when
 * chunked (the library appends to it), -1 when it cannot be read. */
int h5ap_summary_contiguous(int fd);

#endif
