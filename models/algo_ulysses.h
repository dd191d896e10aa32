/* algo_ulysses.h - DeepSpeed-Ulysses (algorithms.md section 6): its phase ids (docs/model.md,
 * "Ulysses"). */
#ifndef ATTNSIM_ALGO_ULYSSES_H
#define ATTNSIM_ALGO_ULYSSES_H

#include "algo.h"

enum {
    PH_ULY_QKV_ALL_TO_ALL = AM_PHASE_ID(ALGO_ULYSSES, 0), /* token split -> head split */
    PH_ULY_ATTENTION,                                     /* whole sequence, own heads */
    PH_ULY_O_ALL_TO_ALL,                                  /* O back to the token owners */
    PH_ULY_DO_ALL_TO_ALL,                                 /* bwd: dO to the head owners */
    PH_ULY_ATTENTION_BWD,                                 /* bwd: whole sequence, own heads */
    PH_ULY_DQKV_ALL_TO_ALL                                /* bwd: dQ|dK|dV back */
};

#endif
