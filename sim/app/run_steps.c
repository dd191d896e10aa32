/* run_steps.c - the steps of a run's overlapped phases (see run.h; docs/executor.md,
 * "Overlapped steps, measured"): each rank's sums over its steps into its report, and every
 * step of every rank gathered on rank 0 for the busiest-rank comparison and the record. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"
#include "run.h"

/* The probe's transfers alone of phase f, when the probe ran it with the same steps. */
static const double *probed_transfers(const comm_steps *chosen, const comm_steps *probe, int f)
{
    return probe && probe[f].n == chosen[f].n ? probe[f].transfer_s : NULL;
}

void run_steps_sums(const comm_steps *chosen, const comm_steps *probe, int F, rank_report *mine)
{
    for (int f = 0; f < F; f++) {
        const comm_steps *cs = &chosen[f];
        const double *alone = probed_transfers(chosen, probe, f);
        mine->nsteps[f] = cs->n;
        mine->ov[f][0] = mine->ov[f][1] = 0.0;
        mine->ov[f][2] = alone ? 0.0 : NAN;
        for (int k = 0; k < cs->n; k++) {
            mine->ov[f][0] += cs->compute_s[k], mine->ov[f][1] += cs->exposed_s[k];
            if (alone) mine->ov[f][2] += alone[k];
        }
    }
}

void run_steps_gather(const comm_steps *chosen, const comm_steps *probe, int F, int rank, int P,
                      step_tables *t)
{
    memset(t, 0, sizeof *t);
    for (int f = 0; f < F; f++) {
        int S = chosen[f].n;
        MPICALL(MPI_Allreduce(MPI_IN_PLACE, &S, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
        t->S[f] = S;
        if (!S) continue;
        const double *alone = probed_transfers(chosen, probe, f);
        double *row = kn_xmalloc(3 * (size_t)S * sizeof(double), "steps");
        for (int k = 0; k < S; k++) {
            int have = k < chosen[f].n;
            row[k] = have ? chosen[f].compute_s[k] : NAN;
            row[S + k] = have ? chosen[f].exposed_s[k] : NAN;
            row[2 * S + k] = have && alone ? alone[k] : NAN;
        }
        double *all_rows =
            rank == 0 ? kn_xmalloc(3 * (size_t)S * P * sizeof(double), "steps") : NULL;
        MPICALL(MPI_Gather(row, 3 * S, MPI_DOUBLE, all_rows, 3 * S, MPI_DOUBLE, 0, MPI_COMM_WORLD));
        if (rank == 0)
            for (int k = 0; k < 3; k++) {
                t->a[f][k] = kn_xmalloc((size_t)S * P * sizeof(double), "steps");
                for (int r = 0; r < P; r++)
                    memcpy(t->a[f][k] + (size_t)r * S, all_rows + (size_t)r * 3 * S + k * S,
                           (size_t)S * sizeof(double));
            }
        free(row), free(all_rows);
    }
}

void run_steps_free(step_tables *t)
{
    for (int f = 0; f < AM_MAX_PHASES; f++)
        for (int k = 0; k < 3; k++) free(t->a[f][k]), t->a[f][k] = NULL;
}
