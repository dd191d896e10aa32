/* comm_dev.c - the device transports of the comm layer (see comm_dev.h).
 *
 * COMM_STAGED: a send copies the device buffer into a pinned host buffer (after the work
 * queued on the compute stream) and hands that to MPI; a receive lands in a pinned buffer and
 * is copied to the device buffer once MPI completes it. The pinned buffers come from a pool
 * kept for the life of the process (pinning is slow; a sweep reuses them).
 * COMM_DEV_NCCL: operations are collected and started as one NCCL group (ncclSend / ncclRecv on
 * the communicator matching the MPI communicator) on a communication stream that first waits
 * for the compute stream; waiting synchronises the communication stream. The NCCL
 * communicators are created once per process (world) and per grid shape (rows, columns),
 * bootstrapped by broadcasting ncclGetUniqueId over the MPI communicator.
 */
#include "comm_dev.h"

#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "kn_common.h"

#ifdef ATTNSIM_HAVE_CUDA
#include <cuda_runtime.h>
#ifdef ATTNSIM_HAVE_NCCL
#include <nccl.h>
#define NCCLCALL(call)                                                                             \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess) attn_fail(#call, __FILE__, __LINE__, "%s", ncclGetErrorString(r_)); \
    } while (0)
#endif

/* ---- pinned staging pool ----------------------------------------------------------------- */
#define POOL_MAX 64
static struct {
    void *p;
    size_t cap;
    int busy;
} pool[POOL_MAX];

static void *pool_get(size_t bytes)
{
    int free_slot = -1;
    for (int i = 0; i < POOL_MAX; i++) {
        if (pool[i].busy) continue;
        if (pool[i].p && pool[i].cap >= bytes) {
            pool[i].busy = 1;
            return pool[i].p;
        }
        if (free_slot < 0 || (pool[i].p && !pool[free_slot].p)) free_slot = i;
    }
    if (free_slot < 0)
        attn_fail("pool_get", __FILE__, __LINE__,
                  "more than %d staged transfers "
                  "in flight",
                  POOL_MAX);
    if (pool[free_slot].p) CUDACALL(cudaFreeHost(pool[free_slot].p));
    size_t cap = bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes;
    CUDACALL(cudaMallocHost(&pool[free_slot].p, cap));
    pool[free_slot].cap = cap;
    pool[free_slot].busy = 1;
    return pool[free_slot].p;
}

static void pool_put(void *p)
{
    for (int i = 0; i < POOL_MAX; i++)
        if (pool[i].p == p) pool[i].busy = 0;
}

/* ---- NCCL communicators ------------------------------------------------------------------- */
typedef struct {
    void *comm_stream; /* cudaStream_t */
    void *ready;       /* cudaEvent_t: the compute stream's work so far */
    void *mark[2];     /* cudaEvent_t: a step's compute begins, ends (comm_dev_mark) */
#ifdef ATTNSIM_HAVE_NCCL
    ncclComm_t world, row, col;
#endif
} dev_state;

#ifdef ATTNSIM_HAVE_NCCL
static ncclComm_t nccl_for(MPI_Comm on)
{
    int n, me;
    MPICALL(MPI_Comm_size(on, &n));
    MPICALL(MPI_Comm_rank(on, &me));
    ncclUniqueId id;
    if (me == 0) NCCLCALL(ncclGetUniqueId(&id));
    MPICALL(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, on));
    ncclComm_t comm;
    NCCLCALL(ncclCommInitRank(&comm, n, id, me));
    /* NCCL connects peers at their first transfer: one exchange with every member now, so that
     * no measured phase pays for it */
    if (n > 1) {
        const size_t chunk = (size_t)1 << 20;
        char *buf;
        cudaStream_t s;
        CUDACALL(cudaMalloc((void **)&buf, 2 * (size_t)n * chunk));
        CUDACALL(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        NCCLCALL(ncclGroupStart());
        for (int p = 0; p < n; p++) {
            if (p == me) continue;
            NCCLCALL(ncclSend(buf + (size_t)p * chunk, chunk, ncclUint8, p, comm, s));
            NCCLCALL(ncclRecv(buf + (size_t)(n + p) * chunk, chunk, ncclUint8, p, comm, s));
        }
        NCCLCALL(ncclGroupEnd());
        CUDACALL(cudaStreamSynchronize(s));
        CUDACALL(cudaStreamDestroy(s));
        CUDACALL(cudaFree(buf));
    }
    return comm;
}

/* Created once: the world communicator, and rows/columns per grid shape (R). */
#define NCCL_CACHE 8
static struct {
    int used;
    uint64_t R;
    ncclComm_t row, col;
} grid_cache[NCCL_CACHE];
static ncclComm_t world_comm;
static int world_made;
#endif

static cudaStream_t compute_stream(const comm_ctx *c)
{
    return (cudaStream_t)c->stream;
}

void comm_dev_init(comm_ctx *c, uint64_t R)
{
    dev_state *d = kn_xcalloc(1, sizeof *d, "transport");
    c->dev = d;
    for (int k = 0; k < 2; k++) {
        cudaEvent_t ev;
        CUDACALL(cudaEventCreate(&ev));
        d->mark[k] = ev;
    }
    if (c->mode != COMM_DEV_NCCL) return;
#ifdef ATTNSIM_HAVE_NCCL
    cudaStream_t s;
    cudaEvent_t ev;
    CUDACALL(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDACALL(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    d->comm_stream = s, d->ready = ev;
    if (!world_made) world_comm = nccl_for(c->world), world_made = 1;
    d->world = world_comm;
    int k = 0;
    while (k < NCCL_CACHE && grid_cache[k].used && grid_cache[k].R != R) k++;
    if (k == NCCL_CACHE)
        attn_fail("comm_dev_init", __FILE__, __LINE__, "more than %d grid shapes in one job",
                  NCCL_CACHE);
    if (!grid_cache[k].used) {
        grid_cache[k].row = nccl_for(c->row);
        grid_cache[k].col = nccl_for(c->col);
        grid_cache[k].R = R, grid_cache[k].used = 1;
    }
    d->row = grid_cache[k].row, d->col = grid_cache[k].col;
#else
    (void)R;
    attn_fail("comm_dev_init", __FILE__, __LINE__, "this build has no NCCL");
#endif
}

void comm_dev_free(comm_ctx *c)
{
    dev_state *d = c->dev;
    if (!d) return;
    if (d->comm_stream) CUDACALL(cudaStreamDestroy((cudaStream_t)d->comm_stream));
    if (d->ready) CUDACALL(cudaEventDestroy((cudaEvent_t)d->ready));
    for (int k = 0; k < 2; k++)
        if (d->mark[k]) CUDACALL(cudaEventDestroy((cudaEvent_t)d->mark[k]));
    free(d);
    c->dev = NULL;
}

void comm_dev_post(comm_ctx *c, comm_reqs *q, MPI_Comm on, int peer, void *buf, uint64_t bytes,
                   int send)
{
    comm_op *op = &q->op[q->nops++];
    memset(op, 0, sizeof *op);
    op->buf = buf, op->bytes = bytes, op->send = send, op->peer = peer, op->on = on;
    if (c->mode == COMM_DEV_NCCL) return; /* started as a group by comm_dev_start */
    op->host = pool_get(bytes);
    if (send) {
        CUDACALL(cudaMemcpyAsync(op->host, buf, bytes, cudaMemcpyDeviceToHost, compute_stream(c)));
        CUDACALL(cudaStreamSynchronize(compute_stream(c)));
        comm_mpi_isend(q, on, peer, op->host, bytes);
    } else {
        comm_mpi_irecv(q, on, peer, op->host, bytes);
    }
}

void comm_dev_start(comm_ctx *c, comm_reqs *q)
{
    if (c->mode != COMM_DEV_NCCL || q->started || q->nops == 0) return;
#ifdef ATTNSIM_HAVE_NCCL
    dev_state *d = c->dev;
    cudaStream_t cs = (cudaStream_t)d->comm_stream;
    CUDACALL(cudaEventRecord((cudaEvent_t)d->ready, compute_stream(c)));
    CUDACALL(cudaStreamWaitEvent(cs, (cudaEvent_t)d->ready, 0));
    NCCLCALL(ncclGroupStart());
    for (int i = 0; i < q->nops; i++) {
        comm_op *op = &q->op[i];
        ncclComm_t nc = op->on == c->row ? d->row : op->on == c->col ? d->col : d->world;
        if (op->send)
            NCCLCALL(ncclSend(op->buf, (size_t)op->bytes, ncclUint8, op->peer, nc, cs));
        else
            NCCLCALL(ncclRecv(op->buf, (size_t)op->bytes, ncclUint8, op->peer, nc, cs));
    }
    NCCLCALL(ncclGroupEnd());
    q->started = 1;
#endif
}

void comm_dev_finish(comm_ctx *c, comm_reqs *q)
{
    if (c->mode == COMM_DEV_NCCL) {
        dev_state *d = c->dev;
        if (q->started) CUDACALL(cudaStreamSynchronize((cudaStream_t)d->comm_stream));
    } else {
        for (int i = 0; i < q->nops; i++) {
            comm_op *op = &q->op[i];
            if (!op->send)
                CUDACALL(cudaMemcpyAsync(op->buf, op->host, op->bytes, cudaMemcpyHostToDevice,
                                         compute_stream(c)));
        }
        if (q->nops) CUDACALL(cudaStreamSynchronize(compute_stream(c))); /* pinned reuse */
        for (int i = 0; i < q->nops; i++) pool_put(q->op[i].host);
    }
    q->nops = 0;
    q->started = 0;
}

void comm_dev_sync(comm_ctx *c)
{
    CUDACALL(cudaStreamSynchronize(compute_stream(c)));
}

void comm_dev_mark(comm_ctx *c, int which)
{
    dev_state *d = c->dev;
    CUDACALL(cudaEventRecord((cudaEvent_t)d->mark[which], compute_stream(c)));
}

double comm_dev_marked_s(comm_ctx *c)
{
    dev_state *d = c->dev;
    float ms = 0.0f;
    CUDACALL(cudaEventElapsedTime(&ms, (cudaEvent_t)d->mark[0], (cudaEvent_t)d->mark[1]));
    return 1e-3 * (double)ms;
}

#else /* no CUDA in this build: the CLI refuses device transports before any is used */

static _Noreturn void no_cuda(const char *what)
{
    attn_fail(what, __FILE__, __LINE__, "this build has no CUDA");
}
void comm_dev_init(comm_ctx *c, uint64_t R)
{
    (void)c, (void)R;
    no_cuda("comm_dev_init");
}
void comm_dev_free(comm_ctx *c)
{
    (void)c;
}
void comm_dev_post(comm_ctx *c, comm_reqs *q, MPI_Comm on, int peer, void *buf, uint64_t bytes,
                   int send)
{
    (void)c, (void)q, (void)on, (void)peer, (void)buf, (void)bytes, (void)send;
    no_cuda("comm_dev_post");
}
void comm_dev_start(comm_ctx *c, comm_reqs *q)
{
    (void)c, (void)q;
}
void comm_dev_finish(comm_ctx *c, comm_reqs *q)
{
    (void)c, (void)q;
}
void comm_dev_sync(comm_ctx *c)
{
    (void)c;
}
void comm_dev_mark(comm_ctx *c, int which)
{
    (void)c, (void)which;
}
double comm_dev_marked_s(comm_ctx *c)
{
    (void)c;
    return 0.0;
}
#endif
