/* patterns.c - the communication patterns of the configured runs, measured as the algorithms
 * run them (the comm layer's rings, pairwise exchanges and all-to-alls, every group of a
 * communicator busy at once); pattern_fits.c fits them into the machine file's pattern lines
 * (calibrate.h; docs/calibration.md, "Patterns"). */
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "fail.h"

/* ---- which patterns ---------------------------------------------------------------------- */

/* Adds (pattern, comm, grid) or raises its largest message. A return hop is one step of a ring
 * shift on the same communicator, and is measured as one. */
static int add_pattern(pattern_meas *pm, int n, int max, const am_config *c,
                       const am_phase_desc *ph, uint64_t bytes)
{
    am_pattern pat = ph->pattern == PAT_RETURN_HOP ? PAT_RING_SHIFT : ph->pattern;
    am_comm comm = pat == PAT_PAIRWISE ? AM_COMM_WORLD : ph->comm;
    uint64_t g = pat == PAT_PAIRWISE ? 2 : am_comm_group(c, comm, 0).size;
    if (g < 2 || bytes == 0) return n;
    if (pat == PAT_PAIRWISE) { /* a permutation that keeps every rank's data moves nothing */
        uint64_t movers = 0;
        for (uint64_t x = 0; x < c->P; x++) movers += ph->peer(c, x) != x;
        if (!movers) return n;
    }
    for (int i = 0; i < n; i++)
        if (pm[i].pattern == pat && pm[i].comm == comm && pm[i].cfg.rows == c->rows &&
            (pat != PAT_PAIRWISE || pm[i].ph->peer == ph->peer)) {
            if (bytes > pm[i].max_bytes) pm[i].max_bytes = bytes;
            return n;
        }
    if (n == max) return n;
    pattern_meas *p = &pm[n];
    memset(p, 0, sizeof *p);
    p->pattern = pat, p->comm = comm, p->ph = ph, p->cfg = *c, p->max_bytes = bytes, p->g = g;
    snprintf(p->name, sizeof p->name, "%s on %s (%llux%llu grid, g = %llu)", am_pattern_names[pat],
             pat == PAT_PAIRWISE ? ph->name : am_comm_names[comm], (unsigned long long)c->rows,
             (unsigned long long)c->cols, (unsigned long long)g);
    return n + 1;
}

int patterns_of(const am_config *cfgs, int ncfg, pattern_meas *out, int max)
{
    int n = 0;
    for (int i = 0; i < ncfg; i++) {
        const am_phase_desc *ph[AM_MAX_PHASES];
        int F = am_phases(&cfgs[i], ph);
        for (int f = 0; f < F; f++) {
            if (ph[f]->pattern == PAT_NONE) continue;
            uint64_t m = am_phase_max_message(&cfgs[i], f);
            if (ph[f]->step_bytes) { /* two payloads travel together in one step */
                uint64_t sb = ph[f]->step_bytes(&cfgs[i]);
                m = sb > m ? sb : m;
            }
            n = add_pattern(out, n, max, &cfgs[i], ph[f], m);
        }
    }
    return n;
}

/* ---- measuring --------------------------------------------------------------------------- */

typedef struct {
    const exec_dev *dev;
    size_t chunk;
} sum_ctx;

static void sum_f32(void *own, const void *in, int j, void *ctx)
{
    (void)j;
    const sum_ctx *c = ctx;
    c->dev->add_f32(own, in, c->chunk / sizeof(float));
}

/* The rank this one receives from in a pairwise exchange (the rank whose partner it is). */
static int pairwise_source(const pattern_meas *pm, int me)
{
    for (uint64_t y = 0; y < pm->cfg.P; y++)
        if (pm->ph->peer(&pm->cfg, y) == (uint64_t)me && y != (uint64_t)me) return (int)y;
    return MPI_PROC_NULL;
}

/* Where one call's data lives. Received data lands where the executor puts it: a ring shift
 * into the step's buffer, reused from step to step; the collectives and the exchanges into
 * blocks the phase allocates from the device's pool (sim/exec/: the CUDA device's stream-ordered
 * pool, the CPU device's pool of released blocks), so those are allocated from the same pool
 * before each call here too, outside its time, with this rank's own block filled (as the
 * executor fills it before the phase). */
typedef struct {
    void **blocks, **recv;
    uint64_t *sizes;
} call_bufs;

static void call_prepare(cal_env *e, const pattern_meas *pm, const call_bufs *kept, call_bufs *c,
                         uint64_t bytes, int own)
{
    int g = (int)pm->g;
    *c = *kept;
    for (int j = 0; j < g; j++) c->sizes[j] = bytes;
    if (pm->pattern == PAT_RING_SHIFT) return;
    c->blocks = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    c->recv = kn_xmalloc((size_t)g * sizeof(void *), "blocks");
    for (int j = 0; j < g; j++) {
        c->blocks[j] = e->dev->alloc(bytes, "pattern block");
        c->recv[j] = e->dev->alloc(bytes, "pattern block");
        /* an all-gather's own block is filled, the others receive; the rest send every block */
        if (pm->pattern != PAT_ALLGATHER || j == own)
            e->dev->copy(c->blocks[j], kept->blocks[0], bytes);
    }
    e->dev->sync();
}

static void call_release(cal_env *e, const pattern_meas *pm, call_bufs *c)
{
    if (pm->pattern == PAT_RING_SHIFT) return;
    for (int j = 0; j < (int)pm->g; j++) e->dev->release(c->blocks[j]), e->dev->release(c->recv[j]);
    free(c->blocks), free(c->recv);
}

/* One call of the pattern with messages of `bytes` on comm layer cc. */
static void run_once(cal_env *e, comm_ctx *cc, const pattern_meas *pm, MPI_Comm on,
                     const call_bufs *b, uint64_t bytes)
{
    void **blocks = b->blocks, **recv = b->recv;
    uint64_t *sizes = b->sizes;
    switch (pm->pattern) {
    case PAT_RING_SHIFT: {
        int k, n;
        MPICALL(MPI_Comm_rank(on, &k));
        MPICALL(MPI_Comm_size(on, &n));
        comm_sendrecv(cc, on, (k + 1) % n, blocks[0], bytes, (k + n - 1) % n, recv[0], bytes);
        break;
    }
    case PAT_PAIRWISE: {
        uint64_t dest = pm->ph->peer(&pm->cfg, (uint64_t)e->rank);
        int to = dest == (uint64_t)e->rank ? MPI_PROC_NULL : (int)dest;
        comm_sendrecv(cc, cc->world, to, blocks[0], bytes, pairwise_source(pm, e->rank), recv[0],
                      bytes);
        break;
    }
    case PAT_ALLGATHER:
        comm_ring_allgather(cc, on, blocks, sizes);
        break;
    case PAT_REDUCE_SCATTER: {
        sum_ctx sc = {e->dev, bytes};
        comm_ring_reduce_scatter(cc, on, blocks, sizes, sum_f32, &sc);
        break;
    }
    default:
        comm_alltoall(cc, on, blocks, sizes, recv, sizes);
        break;
    }
}

void measure_pattern(cal_env *e, pattern_meas *pm)
{
    comm_ctx cc;
    comm_init(&cc, &pm->cfg, MPI_COMM_WORLD, e->comm.mode, e->comm.stream, e->dev->alloc,
              e->dev->release);
    cc.recording = 0;
    MPI_Comm on = pm->comm == AM_COMM_ROW || pm->comm == AM_COMM_ACROSS_GROUPS ? cc.row
                  : pm->comm == AM_COMM_COL || pm->comm == AM_COMM_GROUP       ? cc.col
                                                                               : cc.world;
    int g = (int)pm->g;
    pm->steps = pm->pattern == PAT_RING_SHIFT || pm->pattern == PAT_PAIRWISE ? 1 : g - 1;
    uint64_t top = 8, upto = pm->runs_largest ? 2 * pm->max_bytes : pm->max_bytes;
    while (top < upto && top < (1u << 30)) top *= 2;
    size_t sizes_n = 0;
    for (uint64_t b = 8; b <= top; b *= 2) sizes_n++;
    pm->bytes = kn_xmalloc(PATTERN_SAMPLES * sizes_n * sizeof(double), "pattern samples");
    pm->time = kn_xmalloc(PATTERN_SAMPLES * sizes_n * sizeof(double), "pattern samples");
    call_bufs kept = {kn_xmalloc((size_t)g * sizeof(void *), "blocks"),
                      kn_xmalloc((size_t)g * sizeof(void *), "blocks"),
                      kn_xmalloc((size_t)g * sizeof(uint64_t), "sizes")};
    for (int j = 0; j < g; j++) {
        kept.blocks[j] = e->dev->alloc(top, "pattern block");
        kept.recv[j] = e->dev->alloc(top, "pattern block");
        e->dev->zero(kept.blocks[j], top);
    }
    int own;
    MPICALL(MPI_Comm_rank(on, &own));
    call_bufs c;
    pm->n = 0;
    /* as the links (links.c), on a smaller budget (a run has several patterns): PATTERN_SAMPLES
     * samples per size, each the median over enough timed calls for ~10 ms of the slowest
     * rank's time per call; sizes by fours up to 64 KiB, then by twos up to twice the largest
     * message (so that a large-message regime has sizes enough for its own line); from 64 KiB
     * on they stop after the first whose call takes LINK_LONGEST_S */
    for (uint64_t b = 8; b <= top; b *= b < 65536 ? 4 : 2) {
        polite_barrier();
        call_prepare(e, pm, &kept, &c, b, own);
        run_once(e, &cc, pm, on, &c, b); /* warm-up */
        e->dev->sync();
        call_release(e, pm, &c);
        call_prepare(e, pm, &kept, &c, b, own);
        MPICALL(MPI_Barrier(MPI_COMM_WORLD));
        double probe = MPI_Wtime();
        run_once(e, &cc, pm, on, &c, b);
        e->dev->sync();
        probe = MPI_Wtime() - probe;
        call_release(e, pm, &c);
        MPICALL(MPI_Allreduce(MPI_IN_PLACE, &probe, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        double want = 0.01 / fmax(probe, 1e-7);
        int reps = want < 3 ? 3 : want > 400 ? 400 : (int)want;
        double *one = kn_xmalloc((size_t)reps * sizeof(double), "pattern times");
        for (int k = 0; k < PATTERN_SAMPLES; k++) {
            polite_barrier();
            for (int i = 0; i < reps; i++) {
                call_prepare(e, pm, &kept, &c, b, own);
                double t0 = MPI_Wtime();
                run_once(e, &cc, pm, on, &c, b);
                e->dev->sync();
                one[i] = MPI_Wtime() - t0;
                call_release(e, pm, &c);
            }
            MPICALL(MPI_Allreduce(MPI_IN_PLACE, one, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
            gsl_sort(one, 1, (size_t)reps);
            pm->bytes[pm->n] = (double)b;
            pm->time[pm->n] = gsl_stats_median_from_sorted_data(one, 1, (size_t)reps) / pm->steps;
            pm->n++;
        }
        free(one);
        if (probe > LINK_LONGEST_S && b >= 65536) break; /* well inside the bandwidth regime */
    }
    for (int j = 0; j < g; j++) e->dev->release(kept.blocks[j]), e->dev->release(kept.recv[j]);
    free(kept.blocks), free(kept.recv), free(kept.sizes);
    comm_free(&cc);
}

void pattern_meas_free(pattern_meas *pm)
{
    free(pm->bytes), free(pm->time);
    pm->bytes = pm->time = NULL;
    pm->n = 0;
}
