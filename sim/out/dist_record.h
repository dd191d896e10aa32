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

/* phases [F] and the predicted/ datasets: per-phase maxima, phase and total times, the dominant
 * term; and, when p->per_rank is set, ranks [P][4] (rank_map: rank, node, grid_row, grid_col)
 * and the per-rank [P][F] arrays (otherwise an attribute says they were omitted and why). */
void record_prediction(h5node *g, const am_prediction *p, const int32_t *rank_map,
                       const char *omitted_reason);

/* The rank map of a model run: ranks packed gpus_per_node per node (caller frees). */
int32_t *rank_map_from_machine(const am_config *c, const machine *m);

/* The /summary row of a prediction (measured columns: NaN time, -1 bytes). */
void summary_from_prediction(h5_summary_row *row, const char *kind, const am_prediction *p,
                             const char *backend);

#endif
