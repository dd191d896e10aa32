/* sweep.h - the points of a sweep: one iterator over the dimensions a command sweeps (lists of
 * values from the options, the set bits of a choice mask, or a range of indices), outermost
 * first, instead of a nest of loops per command; and the configuration `attnsim model` and
 * `attnsim run` build for a point, with the grid chosen by the one grid rule of the model
 * (am_choose_grid). */
#ifndef ATTNSIM_SWEEP_H
#define ATTNSIM_SWEEP_H

#include "cli.h"
#include "predict.h"

#define SWEEP_MAX_DIMS 8

typedef struct {
    int n;                          /* dimensions, outermost first */
    size_t len[SWEEP_MAX_DIMS];     /* values of each */
    uint64_t *vals[SWEEP_MAX_DIMS]; /* of each (owned) */
    size_t at[SWEEP_MAX_DIMS];      /* the current point's position on each */
    uint64_t v[SWEEP_MAX_DIMS];     /* the current point's values */
    int changed;                    /* the outermost dimension that moved to reach the point */
    int started;
} sweep_iter;

/* Adds a dimension (inner to those added before) and returns its index: the values of a list;
 * the indices of the set bits of `mask` below `bits`; the indices 0 .. n-1. */
int sweep_list(sweep_iter *s, const cli_u64_list *list);
int sweep_mask(sweep_iter *s, unsigned mask, int bits);
int sweep_range(sweep_iter *s, size_t n);
/* Points of the sweep (the product of the dimensions' lengths). */
size_t sweep_total(const sweep_iter *s);
/* Moves to the next point (the first on the first call): 1, or 0 (and frees) at the end. */
int sweep_next(sweep_iter *s);
/* Frees a sweep left before its end. */
void sweep_free(sweep_iter *s);

/* Fills c; returns what am_choose_grid returns (1: grid chosen automatically; -1: none). With
 * auto_if_no_square, a P that is not a square and has no --grid gets the auto grid (`model`);
 * without it there is no grid (`run` refuses that case). ranks_per_node: the run's placement
 * (0: the machine's), the default group size of grouped algorithms. */
int sweep_config(const attn_opts *o, const machine *m, int algo, uint64_t P, uint64_t N,
                 uint64_t head_dim, int causal, int dtype, int auto_if_no_square,
                 uint64_t ranks_per_node, am_config *c);

#endif
