/* dist_record.h - writing a distributed or model run into the HDF5 file (schema attnsim/1):
 * phases, the rank map, predicted arrays (and, for executed runs, measured ones), per-phase
 * maxima, attributes and the /summary row. One writer for `attnsim model` and `attnsim run`. */
#ifndef ATTNSIM_DIST_RECORD_H
#define ATTNSIM_DIST_RECORD_H

#include <hdf5.h>

#include "h5out.h"
#include "predict.h"

/* The common attributes of a run of configuration c; kind "model" or "distributed". */
void record_config_attrs(h5node *g, const char *kind, const am_config *c, const char *backend,
                         const char *comm, const machine *m);

/* Rows of a thinned per-rank array (above --rank-arrays). */
#define RECORD_THIN_ROWS 64

/* The ranks a thinned array keeps (at most RECORD_THIN_ROWS, evenly spaced from 0 to P - 1);
 * returns how many. */
size_t record_thin_ranks(uint64_t P, uint64_t *ranks);

/* phases [F] and the predicted/ datasets: per-phase maxima, phase and total times, the dominant
 * term; ranks [R][4] (rank, node, grid_row, grid_col: from rank_map [P][4] when given, else
 * from m) and the per-rank [R][F] arrays: R = P when p->per_rank is kept and !thin; otherwise
 * the rows of record_thin_ranks (counted again when p->per_rank is NULL), and the attribute
 * per_rank_arrays says so ("thinned: ...; " why). */
void record_prediction(h5node *g, const am_prediction *p, const int32_t *rank_map, const machine *m,
                       int thin, const char *why);

/* The /summary row of a prediction (measured columns: NaN time, -1 bytes). */
void summary_from_prediction(h5_summary_row *row, const char *kind, const am_prediction *p,
                             const char *backend);

#endif
