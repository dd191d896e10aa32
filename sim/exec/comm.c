/* comm.c - counted point-to-point communication and rings (see comm.h). */
#include "comm.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm_dev.h"
#include "fail.h"
#include "kn_common.h"

/* World rank of every member of `sub`. */
static int *world_ranks(MPI_Comm sub, MPI_Comm world)
{
    MPI_Group gs, gw;
    int n;
    MPICALL(MPI_Comm_size(sub, &n));
    MPICALL(MPI_Comm_group(sub, &gs));
    MPICALL(MPI_Comm_group(world, &gw));
    int *in = kn_xmalloc((size_t)n * sizeof(int), "ranks"),
        *out = kn_xmalloc((size_t)n * sizeof(int), "ranks");
    for (int i = 0; i < n; i++) in[i] = i;
    MPICALL(MPI_Group_translate_ranks(gs, n, in, gw, out));
    MPICALL(MPI_Group_free(&gs));
    MPICALL(MPI_Group_free(&gw));
    free(in);
    return out;
}

static void *host_alloc(size_t bytes, const char *what)
{
    return kn_xmalloc(bytes + 1, what);
}

void comm_init(comm_ctx *c, const am_config *cfg, MPI_Comm world, comm_mode mode, void *stream,
               void *(*alloc)(size_t, const char *), void (*release)(void *))
{
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->stream = stream;
    c->alloc = alloc ? alloc : host_alloc;
    c->release = release ? release : free;
    c->world = world;
    MPICALL(MPI_Comm_rank(world, &c->rank));
    MPICALL(MPI_Comm_size(world, &c->P));
    c->F = am_phases(cfg, c->phases);
    c->cur = -1;
    c->recording = 1;
    uint64_t R = cfg->rows;
    int row = (int)grid_row((uint64_t)c->rank, R), col = (int)grid_col((uint64_t)c->rank, R);
    MPICALL(MPI_Comm_split(world, row, col, &c->row));
    MPICALL(MPI_Comm_split(world, col, row, &c->col));
    MPICALL(MPI_Comm_set_errhandler(c->row, MPI_ERRORS_RETURN));
    MPICALL(MPI_Comm_set_errhandler(c->col, MPI_ERRORS_RETURN));
    c->row_world = world_ranks(c->row, world);
    c->col_world = world_ranks(c->col, world);
    c->peer_bytes = kn_xcalloc((size_t)c->P, sizeof(uint64_t), "peer counters");
    c->peer_msgs = kn_xcalloc((size_t)c->P, sizeof(uint64_t), "peer counters");
    if (mode != COMM_HOST) comm_dev_init(c, (uint64_t)R);
}

void comm_free(comm_ctx *c)
{
    comm_steps_free(c->steps);
    if (c->mode != COMM_HOST) comm_dev_free(c);
    free(c->row_world), free(c->col_world), free(c->peer_bytes), free(c->peer_msgs);
    MPICALL(MPI_Comm_free(&c->row));
    MPICALL(MPI_Comm_free(&c->col));
}

void comm_clock_arm(comm_ctx *c)
{
    c->clock_armed = 1;
    c->origin = MPI_Wtime();
}

void comm_phase_begin(comm_ctx *c, am_phase_id id)
{
    c->cur = -1;
    if (!c->recording) return;
    for (int f = 0; f < c->F; f++)
        if (c->phases[f]->id == id) c->cur = f;
    if (c->cur < 0) {
        const am_phase_desc *ph = am_phase_by_id(id);
        attn_fail("comm_phase_begin", __FILE__, __LINE__,
                  "phase '%s' (id %d) is not in the model's phase list of this algorithm and "
                  "pass",
                  ph ? ph->name : "?", id);
    }
    if (c->mode != COMM_HOST) comm_dev_sync(c); /* work queued before is not the phase's */
    if (c->clock_armed) {
        MPICALL(MPI_Barrier(c->world));
        c->clock_armed = 0;
        c->origin = MPI_Wtime();
    }
    c->t0 = MPI_Wtime();
    c->st[c->cur].start_s = c->t0 - c->origin;
    c->steps[c->cur].n = 0;
}

void comm_phase_end(comm_ctx *c)
{
    if (c->cur >= 0) {
        if (c->mode != COMM_HOST) comm_dev_sync(c); /* the phase ends when its work does */
        double now = MPI_Wtime();
        c->st[c->cur].time_s += now - c->t0;
        c->st[c->cur].end_s = now - c->origin;
    }
    c->cur = -1;
}

/* ---- steps of overlapped phases ----------------------------------------------------------- */

static double *grow(double *old, int n, int cap)
{
    double *p = kn_xmalloc((size_t)cap * sizeof(double), "step records");
    if (n) memcpy(p, old, (size_t)n * sizeof(double));
    free(old);
    return p;
}

void comm_step_begin(comm_ctx *c)
{
    c->step_b = MPI_Wtime();
}

void comm_step_compute(comm_ctx *c, comm_reqs *q)
{
    c->step_transfer = NAN;
    if (c->serial) { /* the probe: the transfers alone, then the compute */
        if (q) comm_waitall(c, q);
        if (c->mode != COMM_HOST) comm_dev_sync(c);
        if (q) c->step_transfer = MPI_Wtime() - c->step_b;
    }
    c->step_t0 = MPI_Wtime();
    if (c->mode != COMM_HOST) comm_dev_mark(c, 0);
}

void comm_step_computed(comm_ctx *c)
{
    if (c->mode != COMM_HOST)
        comm_dev_mark(c, 1);
    else
        c->step_t1 = MPI_Wtime();
}

void comm_step_end(comm_ctx *c)
{
    double compute;
    if (c->mode != COMM_HOST) {
        comm_dev_sync(c);
        compute = comm_dev_marked_s(c);
    } else {
        compute = c->step_t1 - c->step_t0;
    }
    /* the step from its beginning, less its compute and (probe) the transfers before it */
    double step = MPI_Wtime() - c->step_b;
    double exposed = fmax(step - compute - (isnan(c->step_transfer) ? 0.0 : c->step_transfer), 0.0);
    if (c->cur < 0) return;
    comm_steps *s = &c->steps[c->cur];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->compute_s = grow(s->compute_s, s->n, s->cap);
        s->exposed_s = grow(s->exposed_s, s->n, s->cap);
        s->transfer_s = grow(s->transfer_s, s->n, s->cap);
    }
    s->compute_s[s->n] = compute;
    s->exposed_s[s->n] = exposed;
    s->transfer_s[s->n] = c->serial && isnan(c->step_transfer) ? exposed : c->step_transfer;
    s->n++;
}

void comm_steps_save(const comm_ctx *c, comm_steps out[AM_MAX_PHASES])
{
    for (int f = 0; f < AM_MAX_PHASES; f++) {
        const comm_steps *s = &c->steps[f];
        comm_steps *o = &out[f];
        memset(o, 0, sizeof *o);
        if (!s->n) continue;
        o->n = o->cap = s->n;
        size_t b = (size_t)s->n * sizeof(double);
        o->compute_s = kn_xmalloc(b, "steps"), o->exposed_s = kn_xmalloc(b, "steps");
        o->transfer_s = kn_xmalloc(b, "steps");
        memcpy(o->compute_s, s->compute_s, b);
        memcpy(o->exposed_s, s->exposed_s, b);
        memcpy(o->transfer_s, s->transfer_s, b);
    }
}

void comm_steps_free(comm_steps s[AM_MAX_PHASES])
{
    for (int f = 0; f < AM_MAX_PHASES; f++) {
        free(s[f].compute_s), free(s[f].exposed_s), free(s[f].transfer_s);
        memset(&s[f], 0, sizeof s[f]);
    }
}

/* One message of any size: MPI_BYTE up to INT_MAX bytes, else a struct of 1 MiB blocks and the
 * rest, so a message stays one message whatever its size. */
static void byte_type(uint64_t bytes, MPI_Datatype *type, int *count, int *created)
{
    *created = 0;
    if (bytes <= INT_MAX) {
        *type = MPI_BYTE;
        *count = (int)bytes;
        return;
    }
    MPI_Datatype mib, parts[2];
    MPICALL(MPI_Type_contiguous(1 << 20, MPI_BYTE, &mib));
    int lens[2] = {(int)(bytes >> 20), (int)(bytes & ((1u << 20) - 1))};
    MPI_Aint disp[2] = {0, (MPI_Aint)((bytes >> 20) << 20)};
    parts[0] = mib;
    parts[1] = MPI_BYTE;
    MPICALL(MPI_Type_create_struct(2, lens, disp, parts, type));
    MPICALL(MPI_Type_commit(type));
    MPICALL(MPI_Type_free(&mib));
    *count = 1;
    *created = 1;
}

static comm_stats *stats(comm_ctx *c)
{
    return c->cur >= 0 ? &c->st[c->cur] : NULL;
}

void comm_isend(comm_ctx *c, comm_reqs *q, MPI_Comm on, int dest, const void *buf, uint64_t bytes)
{
    if (dest == MPI_PROC_NULL) return;
    if (q->n >= COMM_MAX_REQS || q->nops >= COMM_MAX_REQS)
        attn_fail("comm_isend", __FILE__, __LINE__, "too many pending requests");
    attn_kill_point("comm:send");
    if (c->mode == COMM_HOST)
        comm_mpi_isend(q, on, dest, buf, bytes);
    else
        comm_dev_post(c, q, on, dest, (void *)buf, bytes, 1);
    comm_stats *s = stats(c);
    if (s) {
        int w = on == c->row ? c->row_world[dest] : on == c->col ? c->col_world[dest] : dest;
        /* fault injection for the tests: this rank miscounts its first message by one byte */
        static int faulted;
        const char *f = getenv("ATTNSIM_FAULT_COUNT");
        if (f && atoi(f) == c->rank && !faulted) bytes++, faulted = 1;
        s->bytes_sent += bytes, s->msgs_sent++;
        c->peer_bytes[w] += bytes, c->peer_msgs[w]++;
        if (c->node_of && c->node_of[w] != c->node_of[c->rank])
            s->bytes_sent_inter += bytes, s->msgs_sent_inter++;
    }
}

void comm_irecv(comm_ctx *c, comm_reqs *q, MPI_Comm on, int src, void *buf, uint64_t bytes)
{
    if (src == MPI_PROC_NULL) return;
    if (q->n >= COMM_MAX_REQS || q->nops >= COMM_MAX_REQS)
        attn_fail("comm_irecv", __FILE__, __LINE__, "too many pending requests");
    if (c->mode == COMM_HOST)
        comm_mpi_irecv(q, on, src, buf, bytes);
    else
        comm_dev_post(c, q, on, src, buf, bytes, 0);
    comm_stats *s = stats(c);
    if (s) s->bytes_recv += bytes, s->msgs_recv++;
}

void comm_mpi_isend(comm_reqs *q, MPI_Comm on, int dest, const void *buf, uint64_t bytes)
{
    MPI_Datatype t;
    int count, created;
    byte_type(bytes, &t, &count, &created);
    MPICALL(MPI_Isend(buf, count, t, dest, 0, on, &q->r[q->n++]));
    if (created) MPICALL(MPI_Type_free(&t));
}

void comm_mpi_irecv(comm_reqs *q, MPI_Comm on, int src, void *buf, uint64_t bytes)
{
    MPI_Datatype t;
    int count, created;
    byte_type(bytes, &t, &count, &created);
    MPICALL(MPI_Irecv(buf, count, t, src, 0, on, &q->r[q->n++]));
    if (created) MPICALL(MPI_Type_free(&t));
}

void comm_start(comm_ctx *c, comm_reqs *q)
{
    if (c->mode != COMM_HOST) comm_dev_start(c, q);
}

void comm_waitall(comm_ctx *c, comm_reqs *q)
{
    if (c->mode != COMM_HOST) comm_dev_start(c, q);
    if (q->n) MPICALL(MPI_Waitall(q->n, q->r, MPI_STATUSES_IGNORE));
    q->n = 0;
    if (c->mode != COMM_HOST) comm_dev_finish(c, q);
}

void comm_sendrecv(comm_ctx *c, MPI_Comm on, int dest, const void *sbuf, uint64_t sbytes, int src,
                   void *rbuf, uint64_t rbytes)
{
    comm_reqs q = {.n = 0};
    comm_irecv(c, &q, on, src, rbuf, rbytes);
    comm_isend(c, &q, on, dest, sbuf, sbytes);
    comm_waitall(c, &q);
}

static int size_of(MPI_Comm on)
{
    int g;
    MPICALL(MPI_Comm_size(on, &g));
    return g;
}

static int rank_in(MPI_Comm on)
{
    int k;
    MPICALL(MPI_Comm_rank(on, &k));
    return k;
}

void comm_ring_allgather(comm_ctx *c, MPI_Comm on, void **blocks, const uint64_t *bytes)
{
    int g = size_of(on), k = rank_in(on);
    for (int s = 0; s + 1 < g; s++) {
        int out = ((k - s) % g + g) % g, in = ((k - s - 1) % g + g) % g;
        comm_sendrecv(c, on, (k + 1) % g, blocks[out], bytes[out], (k + g - 1) % g, blocks[in],
                      bytes[in]);
    }
}

void comm_ring_reduce_scatter(comm_ctx *c, MPI_Comm on, void **blocks, const uint64_t *bytes,
                              comm_reduce_fn reduce, void *ctx)
{
    int g = size_of(on), k = rank_in(on);
    uint64_t most = 0;
    for (int j = 0; j < g; j++) most = bytes[j] > most ? bytes[j] : most;
    void *scratch = c->alloc(most, "reduce-scatter buffer");
    for (int s = 0; s + 1 < g; s++) {
        int out = ((k - s - 1) % g + g) % g, in = ((k - s - 2) % g + g) % g;
        comm_sendrecv(c, on, (k + 1) % g, blocks[out], bytes[out], (k + g - 1) % g, scratch,
                      bytes[in]);
        reduce(blocks[in], scratch, in, ctx);
    }
    c->release(scratch);
}

void comm_alltoall(comm_ctx *c, MPI_Comm on, void **send, const uint64_t *sbytes, void **recv,
                   const uint64_t *rbytes)
{
    int g = size_of(on), me = rank_in(on);
    for (int k = 1; k < g; k++) {
        int dest = (me + k) % g, src = (me - k + g) % g;
        comm_sendrecv(c, on, dest, send[dest], sbytes[dest], src, recv[src], rbytes[src]);
    }
}
