/* h5check.h - structural validation of an attnsim/1 file (docs/hdf5-schema.md, "Validation").
 *
 * Reads the file with the HDF5 library, which verifies the checksums of the metadata it loads
 * (object headers, B-trees and heaps of the HDF5 1.8 format; files of the older format carry
 * none), and checks the layout attnsim relies on:
 *   - the root attribute schema = "attnsim/1", a group /runs and a /summary table of this
 *     version's columns;
 *   - /runs holds only runs: hard links with numbered names to groups with a `kind`;
 *   - /summary lists each complete run attnsim writes (kinds distributed, model, kernel,
 *     calibration) exactly once and nothing else (runs other tools add, e.g. kind benchmark,
 *     and runs without `complete` = 1 need no row);
 *   - each complete run's datasets have the shapes its attributes imply: F = len(phases) for
 *     every per-phase array, [R][F] per-rank arrays with R = P (or fewer rows when
 *     per_rank_arrays says they are thinned, rows named by ranks[:, 0]), scalars where one
 *     value is recorded, equal lengths within a calibration series.
 * Use it through h5out_check_existing (a child process with a deadline): a damaged file may
 * crash or hang the library.
 */
#ifndef ATTNSIM_H5CHECK_H
#define ATTNSIM_H5CHECK_H

#include <stddef.h>

/* 0 when the file at `path` is an intact attnsim/1 file; else -1 and one line in err
 * ("'PATH' is damaged: ...; accepted: ..." or why it is not an attnsim/1 file). */
int h5check_file(const char *path, char *err, size_t errlen);

#endif
