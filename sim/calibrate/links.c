/* links.c - message times per link tier and their fits (calibrate.h). */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calibrate.h"
#include "fail.h"

void polite_barrier(void)
{
    MPI_Request r;
    MPICALL(MPI_Ibarrier(MPI_COMM_WORLD, &r));
    int done = 0;
    while (!done) {
        MPICALL(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
        if (!done) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

/* One exchange of this rank, timed: a ring shift sends to `to` and receives from `from` at once;
 * a ping-pong goes there and back (the first of the pair pings), halved. */
static double exchange(const cal_env *e, int to, int from, link_mode mode, char *buf, char *rbuf,
                       uint64_t bytes)
{
    int pingpong = mode == LINK_PINGPONG;
    double t0 = MPI_Wtime();
    if (e->cuda) { /* GPU buffers through the comm layer's transport */
        comm_ctx *c = (comm_ctx *)&e->comm;
        if (!pingpong) {
            comm_sendrecv(c, c->world, to, buf, bytes, from, rbuf, bytes);
        } else {
            for (int half = 0; half < 2; half++) {
                comm_reqs q = {.n = 0};
                if ((e->rank < to) == (half == 0))
                    comm_isend(c, &q, c->world, to, buf, bytes);
                else
                    comm_irecv(c, &q, c->world, to, rbuf, bytes);
                comm_waitall(c, &q);
            }
        }
    } else if (!pingpong) {
        MPICALL(MPI_Sendrecv(buf, (int)bytes, MPI_BYTE, to, 1, rbuf, (int)bytes, MPI_BYTE, from, 1,
                             MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    } else if (e->rank < to) {
        MPICALL(MPI_Send(buf, (int)bytes, MPI_BYTE, to, 2, MPI_COMM_WORLD));
        MPICALL(MPI_Recv(rbuf, (int)bytes, MPI_BYTE, to, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    } else {
        MPICALL(MPI_Recv(rbuf, (int)bytes, MPI_BYTE, to, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        MPICALL(MPI_Send(buf, (int)bytes, MPI_BYTE, to, 2, MPI_COMM_WORLD));
    }
    return (MPI_Wtime() - t0) / (pingpong ? 2.0 : 1.0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* `reps` exchanges, each timed on every rank (ranks without a peer wait, not spinning); per
 * exchange the slowest rank's time. Returns their median and sets *fastest: one descheduled
 * exchange moves neither. A shift's exchanges start together on the ranks that take part
 * (`act`), as a ring step's do: otherwise the ranks that share a link drift apart, and each
 * finds it idle part of the time. */
static double link_sample(const cal_env *e, MPI_Comm act, int to, int from, link_mode mode,
                          char *buf, char *rbuf, uint64_t bytes, int reps, double *fastest)
{
    double *t = kn_xcalloc((size_t)reps, sizeof *t, "link times");
    polite_barrier();
    if (to >= 0) {
        exchange(e, to, from, mode, buf, rbuf, bytes); /* warm-up */
        for (int i = 0; i < reps; i++) {
            if (mode != LINK_PINGPONG) MPICALL(MPI_Barrier(act));
            t[i] = exchange(e, to, from, mode, buf, rbuf, bytes);
        }
    }
    polite_barrier();
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, t, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    *fastest = t[0];
    free(t);
    return med;
}

/* Peers of this rank for a tier: intra, the next rank of its node (ring over the node's
 * ranks); inter, the same local rank on the next node (LINK_SHIFT_NIC: local rank 0 only);
 * ping-pong, rank 0 and its first peer of the tier. -1 when it sits out. */
static void tier_peers(const cal_env *e, int tier, link_mode mode, int *to, int *from)
{
    *to = *from = -1;
    int me = e->rank, node = e->node_of[me], local = e->local_of[me];
    if (mode == LINK_PINGPONG) {
        int peer = -1;
        for (int r = 1; r < e->P && peer < 0; r++)
            if ((tier == TIER_INTRA) == (e->node_of[r] == e->node_of[0])) peer = r;
        if (peer < 0 || (me != 0 && me != peer)) return;
        *to = *from = me == 0 ? peer : 0;
        return;
    }
    if (tier == TIER_INTRA) {
        int c = e->per_node[node];
        if (c < 2) return;
        int want_to = (local + 1) % c, want_from = (local + c - 1) % c;
        for (int r = 0; r < e->P; r++)
            if (e->node_of[r] == node) {
                if (e->local_of[r] == want_to) *to = r;
                if (e->local_of[r] == want_from) *from = r;
            }
    } else {
        if (e->nodes < 2 || (mode == LINK_SHIFT_NIC && local != 0)) return;
        int next = (node + 1) % e->nodes, prev = (node + e->nodes - 1) % e->nodes;
        int a = -1, b = -1;
        for (int r = 0; r < e->P; r++) {
            if (e->node_of[r] == next && e->local_of[r] == local) a = r;
            if (e->node_of[r] == prev && e->local_of[r] == local) b = r;
        }
        if (a >= 0 && b >= 0) *to = a, *from = b;
    }
}

/* Exchanges per sample: enough for about 15 ms with the barrier that starts each (one probe,
 * slowest rank), 3 ... 400. */
static int reps_for(const cal_env *e, MPI_Comm act, int to, int from, link_mode mode, char *buf,
                    char *rbuf, uint64_t bytes)
{
    double t = 0.0; /* barrier and exchange */
    polite_barrier();
    if (to >= 0) {
        double t0 = MPI_Wtime();
        if (mode != LINK_PINGPONG) MPICALL(MPI_Barrier(act));
        exchange(e, to, from, mode, buf, rbuf, bytes);
        t = MPI_Wtime() - t0;
    }
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    double n = 0.015 / fmax(t, 1e-7);
    return n < 3 ? 3 : n > 400 ? 400 : (int)n;
}

/* Fits the series through the quietest sample of each size (the smallest median: on shared
 * cores another program's burst slows whole samples, which the fit then skips). A slope <= 0
 * (time not growing with size) is no bandwidth: the tier counts as unmeasured. */
static void fit_quietest(series *s)
{
    size_t m = 0;
    double *x = kn_xmalloc(s->n * sizeof(double) + 1, "fit points"),
           *t = kn_xmalloc(s->n * sizeof(double) + 1, "fit points");
    for (size_t i = 0; i < s->n; i++) {
        if (m > 0 && x[m - 1] == s->bytes[i]) {
            t[m - 1] = fmin(t[m - 1], s->time[i]);
            continue;
        }
        x[m] = s->bytes[i], t[m] = s->time[i], m++;
    }
    s->ok = fit_link(x, t, m, &s->fit) == 0 && s->fit.small.beta > 0;
    /* the link's rate where it dominates: the best of the three largest sizes (one stalled
     * transfer - a TCP retransmission timeout is 200 ms - then moves nothing) */
    s->largest_rate = 0.0;
    for (size_t i = m > 3 ? m - 3 : 0; i < m; i++)
        s->largest_rate = fmax(s->largest_rate, x[i] / t[i]);
    free(x), free(t);
}

series measure_link(const cal_env *e, int tier, link_mode mode, uint64_t max_bytes)
{
    series s;
    memset(&s, 0, sizeof s);
    int to, from;
    tier_peers(e, tier, mode, &to, &from);
    int active = to >= 0;
    MPICALL(MPI_Allreduce(MPI_IN_PLACE, &active, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (!active) return s;
    size_t sizes = 0;
    for (uint64_t b = 8; b <= max_bytes; b *= 2) sizes++;
    s.bytes = kn_xmalloc(LINK_SAMPLES * sizes * sizeof(double), "link samples");
    s.time = kn_xmalloc(LINK_SAMPLES * sizes * sizeof(double), "link samples");
    s.fastest = kn_xmalloc(LINK_SAMPLES * sizes * sizeof(double), "link samples");
    MPI_Comm act; /* the ranks that exchange */
    MPICALL(MPI_Comm_split(MPI_COMM_WORLD, to >= 0 ? 1 : MPI_UNDEFINED, e->rank, &act));
    char *buf = e->dev->alloc(max_bytes, "link buffer"),
         *rbuf = e->dev->alloc(max_bytes, "link buffer");
    e->dev->zero(buf, max_bytes);
    for (uint64_t b = 8; b <= max_bytes; b *= 2) {
        int reps = reps_for(e, act, to, from, mode, buf, rbuf, b);
        double quietest = 0.0;
        for (int k = 0; k < LINK_SAMPLES; k++) {
            s.bytes[s.n] = (double)b;
            s.time[s.n] = link_sample(e, act, to, from, mode, buf, rbuf, b, reps, &s.fastest[s.n]);
            quietest = k == 0 || s.time[s.n] < quietest ? s.time[s.n] : quietest;
            s.n++;
        }
        if (quietest > LINK_LONGEST_S) break; /* well inside the bandwidth regime: enough */
    }
    e->dev->release(buf), e->dev->release(rbuf);
    e->dev->sync();
    if (act != MPI_COMM_NULL) MPICALL(MPI_Comm_free(&act));
    fit_quietest(&s);
    return s;
}

void cal_tier_peers(const cal_env *e, int tier, int *to, int *from)
{
    tier_peers(e, tier, LINK_SHIFT, to, from);
}

void series_free(series *s)
{
    free(s->bytes), free(s->time), free(s->fastest);
    s->bytes = s->time = s->fastest = NULL;
}

void write_series(h5node *g, const char *path, const series *s)
{
    if (!s->ok) return;
    hsize_t n = s->n;
    char p[160];
    double *fit = kn_xmalloc(s->n * sizeof(double), "fit"),
           *res = kn_xmalloc(s->n * sizeof(double), "fit");
    for (size_t i = 0; i < s->n; i++) {
        fit[i] = link_fit_eval(&s->fit, s->bytes[i]);
        res[i] = (fit[i] - s->time[i]) / s->time[i];
    }
    snprintf(p, sizeof p, "%s/bytes", path);
    h5_write(g, p, H5_F64, 1, &n, s->bytes, "bytes");
    snprintf(p, sizeof p, "%s/time_s", path);
    h5_write(g, p, H5_F64, 1, &n, s->time, "s");
    snprintf(p, sizeof p, "%s/fastest_s", path);
    h5_write(g, p, H5_F64, 1, &n, s->fastest, "s");
    snprintf(p, sizeof p, "%s/fit_s", path);
    h5_write(g, p, H5_F64, 1, &n, fit, "s");
    snprintf(p, sizeof p, "%s/residual_rel", path);
    h5_write(g, p, H5_F64, 1, &n, res, "1");
    h5node *grp = h5_member(g, path);
    const lin_fit *small = &s->fit.small, *large = &s->fit.large;
    h5_attr_f64(grp, "alpha_s", small->alpha);
    h5_attr_f64(grp, "bandwidth_bytes_per_s", 1.0 / small->beta);
    h5_attr_f64(grp, "r2", small->r2);
    h5_attr_f64(grp, "rel_rms", small->rel_rms);
    h5_attr_i64(grp, "outliers",
                (int64_t)(small->outliers + (s->fit.two_regimes ? large->outliers : 0)));
    h5_attr_i64(grp, "two_regimes", s->fit.two_regimes);
    h5_attr_f64(grp, "largest_bytes", s->bytes[s->n - 1]); /* the largest size measured */
    h5_attr_f64(grp, "largest_bytes_per_s", s->largest_rate);
    if (s->fit.two_regimes) {
        h5_attr_f64(grp, "break_bytes", s->fit.break_x);
        h5_attr_f64(grp, "large_alpha_s", large->alpha);
        h5_attr_f64(grp, "large_bandwidth_bytes_per_s", 1.0 / large->beta);
        h5_attr_f64(grp, "large_r2", large->r2);
    }
    free(fit), free(res);
}

void print_series_header(void)
{
    printf("# %-18s %9s %10s %14s %7s %11s %8s %s\n", "link", "from_B", "alpha_us",
           "bandwidth_GBps", "r2", "rel_rms_pct", "outliers", "fit");
}

/* One row of the links table: a regime of a fit from its first message size. */
static void print_regime(const char *what, double from, const lin_fit *a, size_t outliers)
{
    printf("  %-18s %9.0f %10.3f %14.3f %7.4f %11.1f %8zu %s\n", what, from, a->alpha * 1e6,
           1e-9 / a->beta, a->r2, 100 * a->rel_rms, outliers, fit_is_poor(a) ? "POOR" : "ok");
}

void print_series(const char *what, const series *s)
{
    if (!s->n) {
        printf("# %s: not measured (no such pair of ranks)\n", what);
        return;
    }
    if (!s->ok) {
        printf("# %s: %zu points, no fit\n", what, s->n);
        return;
    }
    print_regime(what, s->bytes[0], &s->fit.small, s->fit.small.outliers);
    if (s->fit.two_regimes)
        print_regime(what, s->fit.break_x, &s->fit.large, s->fit.large.outliers);
}

void print_series_note(const char *what, const series *s)
{
    if (s->ok && s->fit.two_regimes)
        printf("# %s: two regimes (one line over all sizes: rel RMS %.1f %%)\n", what,
               100 * s->fit.single.rel_rms);
}
