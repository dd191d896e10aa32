/* algo_hybrid.h - Ulysses inside groups of u consecutive ranks x Ring across the P/u groups
 * (algorithms.md section 7): its phase ids (docs/model.md, "Hybrid"). */
#ifndef ATTNSIM_ALGO_HYBRID_H
#define ATTNSIM_ALGO_HYBRID_H

#include "algo.h"

enum {
    PH_HYB_QKV_ALL_TO_ALL = AM_PHASE_ID(ALGO_HYBRID, 0), /* in the group: tokens -> heads */
    PH_HYB_RING_KV_STEPS,      /* across the groups: K|V shift of my heads, overlapped */
    PH_HYB_O_ALL_TO_ALL,       /* in the group: O back to the token owners */
    PH_HYB_DO_ALL_TO_ALL,      /* bwd, in the group: dO to the head owners */
    PH_HYB_RING_KV_GRAD_STEPS, /* bwd, across the groups: K|V|dK|dV shift, overlapped */
    PH_HYB_RING_GRAD_RETURN,   /* bwd, across the groups: the accumulators go home */
    PH_HYB_DQKV_ALL_TO_ALL     /* bwd, in the group: dQ|dK|dV back to the token owners */
};

#endif
