/* predict.h - one whole prediction of a configuration on a machine: per-rank, per-phase bytes
 * and messages (algo.h), their maxima, and the phase times (time_model.h). Used by
 * `attnsim model` and, for the predicted side of every executed run, by `attnsim run`. */
#ifndef ATTNSIM_PREDICT_H
#define ATTNSIM_PREDICT_H

#include "algo.h"
#include "machine.h"
#include "time_model.h"

typedef struct {
    am_config cfg;
    int F;
    const am_phase_desc *phases[AM_MAX_PHASES];
    am_count *per_rank;          /* [P][F], or NULL when not kept */
    am_count max[AM_MAX_PHASES]; /* max over ranks, per field */
    uint64_t total_sent_max;     /* max over ranks of the bytes a rank sends in total */
    uint64_t total_sent_sum;     /* over all ranks and phases */
    uint64_t total_recv_sum;
    am_time time;
} am_prediction;

/* Fills p (per_rank allocated when keep_per_rank). */
void am_predict(const am_config *c, const machine *m, int keep_per_rank, am_prediction *p);
void am_prediction_free(am_prediction *p);

/* The R x C grid (R C = P) with the least predicted time for c (rows/cols ignored); returns R. */
uint64_t am_best_grid_rows(const am_config *c, const machine *m);

/* When m comes from attnsim calibrate and a tier the prediction uses was not measured there,
 * a one-line note saying so (a one-node fit is never used silently across nodes); else NULL. */
const char *am_unmeasured_tier_note(const machine *m, const am_time *t);

/* s with s * s = P, or 0 when P is not a square. */
uint64_t am_square_side(uint64_t P);

/* What the command line asks of the grid: --grid RxC (rows, cols nonzero) or auto, and the
 * group size of grouped algorithms (0: the ranks of one node). */
typedef struct {
    uint64_t rows, cols;
    int is_auto;
    uint64_t group_size;
    uint64_t ranks_per_node; /* of the run (0: the machine's gpus_per_node) */
} am_grid_request;

/* The algorithm's grid rule (algo.h): AM_GRID_LINE 1 x P; AM_GRID_2D rows x cols when given,
 * else the square grid when P is a square and !is_auto, else (is_auto) the grid of least
 * predicted time; AM_GRID_GROUPS u x P/u with u = group_size, or the ranks of one node (at
 * most P). Sets c->rows and c->cols. Returns 1 when the grid was chosen by --grid auto, 0
 * otherwise, -1 when there is no grid (P not a square, no --grid; u does not divide P). */
int am_choose_grid(am_config *c, const machine *m, const am_grid_request *req);

#endif
