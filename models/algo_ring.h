/* algo_ring.h - Ring Attention (algorithms.md section 4): its phase ids (docs/model.md, "Ring"). */
#ifndef ATTNSIM_ALGO_RING_H
#define ATTNSIM_ALGO_RING_H

#include "algo.h"

enum {
    PH_RING_KV_STEPS = AM_PHASE_ID(ALGO_RING, 0), /* fwd: K|V shift, overlapped with compute */
    PH_RING_KV_GRAD_STEPS,                        /* bwd: K|V|dK|dV shift, overlapped */
    PH_RING_GRAD_RETURN                           /* bwd: the accumulators go home */
};

#endif
