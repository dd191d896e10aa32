/* algo_a2d.h - Attention2D (algorithms.md section 5), without overlap (A2D-NO) and with it
 * (A2D-O): the phase ids of both (they share the transpose and the backward; docs/model.md,
 * "Attention2D"). */
#ifndef ATTNSIM_ALGO_A2D_H
#define ATTNSIM_ALGO_A2D_H

#include "algo.h"

enum {
    PH_A2D_KV_TRANSPOSE = AM_PHASE_ID(ALGO_A2D_NO, 0), /* K|V to the device of their class */
    PH_A2D_Q_ALLGATHER,                                /* A2D-NO: row all-gather of Q */
    PH_A2D_KV_ALLGATHER,                               /* A2D-NO: column all-gather of K|V */
    PH_A2D_ATTENTION,                                  /* A2D-NO: the local tile */
    PH_A2D_PARTIAL_REDUCE_SCATTER,                     /* A2D-NO: row merge of the partials */
    PH_A2D_KV_COLUMN_RING,                             /* A2D-O: column K|V ring, overlapped */
    PH_A2D_Q_ROW_RING,         /* A2D-O: Q shards and their partials around the row, overlapped */
    PH_A2D_Q_DO_ALLGATHER,     /* bwd: row all-gather of Q|dO|LSE|D */
    PH_A2D_KV_ALLGATHER_BWD,   /* bwd: column all-gather of K|V */
    PH_A2D_ATTENTION_BWD,      /* bwd: the local tile's backward */
    PH_A2D_DQ_REDUCE_SCATTER,  /* bwd: row sum of dQ (f32) */
    PH_A2D_DKV_REDUCE_SCATTER, /* bwd: column sum of dK|dV (f32) */
    PH_A2D_DKV_TRANSPOSE       /* bwd: dK|dV back to their owners */
};

#endif
