/* sweep.h - one point of a sweep of `attnsim model` or `attnsim run`: the configuration the
 * options describe for an algorithm, P, N, head dim, causal flag and storage type, with the
 * grid chosen by the one grid rule of the model (am_choose_grid). */
#ifndef ATTNSIM_SWEEP_H
#define ATTNSIM_SWEEP_H

#include "cli.h"
#include "predict.h"

/* Fills c; returns what am_choose_grid returns (1: grid chosen automatically; -1: none). With
 * auto_if_no_square, a P that is not a square and has no --grid gets the auto grid (`model`);
 * without it there is no grid (`run` refuses that case). ranks_per_node: the run's placement
 * (0: the machine's), the default group size of grouped algorithms. */
int sweep_config(const attn_opts *o, const machine *m, int algo, uint64_t P, uint64_t N,
                 uint64_t head_dim, int causal, int dtype, int auto_if_no_square,
                 uint64_t ranks_per_node, am_config *c);

#endif
