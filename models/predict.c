/* predict.c - a whole prediction (see predict.h). */
#include "predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_common.h"

static void take_max(am_count *mx, const am_count *x)
{
    if (x->bytes_sent > mx->bytes_sent) mx->bytes_sent = x->bytes_sent;
    if (x->bytes_recv > mx->bytes_recv) mx->bytes_recv = x->bytes_recv;
    if (x->msgs_sent > mx->msgs_sent) mx->msgs_sent = x->msgs_sent;
    if (x->msgs_recv > mx->msgs_recv) mx->msgs_recv = x->msgs_recv;
}

void am_predict(const am_config *c, const machine *m, int keep_per_rank, am_prediction *p)
{
    memset(p, 0, sizeof *p);
    p->cfg = *c;
    p->F = am_phases(c, p->phases);
    int F = p->F;
    if (keep_per_rank)
        p->per_rank =
            kn_xcalloc(c->P * (size_t)(F ? F : 1), sizeof(am_count), "per-rank predictions");
    am_count row[AM_MAX_PHASES];
    for (uint64_t x = 0; x < c->P; x++) {
        am_rank_counts(c, x, row);
        uint64_t sent = 0;
        for (int f = 0; f < F; f++) {
            take_max(&p->max[f], &row[f]);
            sent += row[f].bytes_sent;
            p->total_recv_sum += row[f].bytes_recv;
        }
        p->total_sent_sum += sent;
        if (sent > p->total_sent_max) p->total_sent_max = sent;
        if (p->per_rank) memcpy(&p->per_rank[x * (size_t)F], row, (size_t)F * sizeof(am_count));
    }
    am_predict_time(c, m, &p->time);
}

void am_prediction_free(am_prediction *p)
{
    free(p->per_rank);
    p->per_rank = NULL;
}

uint64_t am_best_grid_rows(const am_config *c, const machine *m)
{
    uint64_t best_r = 1;
    double best = -1.0;
    for (uint64_t r = 1; r <= c->P; r++) {
        if (c->P % r) continue;
        am_config g = *c;
        g.rows = r;
        g.cols = c->P / r;
        am_time t;
        am_predict_time(&g, m, &t);
        if (best < 0 || t.total_s < best) best = t.total_s, best_r = r;
    }
    return best_r;
}

uint64_t am_square_side(uint64_t P)
{
    uint64_t r = (uint64_t)sqrt((double)P);
    while (r * r > P) r--;
    while ((r + 1) * (r + 1) <= P) r++;
    return r * r == P ? r : 0;
}

int am_choose_grid(am_config *c, const machine *m, const am_grid_request *req)
{
    c->rows = 1, c->cols = c->P;
    switch (am_algo_desc_of(c->algo)->grid) {
    case AM_GRID_LINE:
        return 0;
    case AM_GRID_GROUPS: {
        uint64_t u = req->group_size;
        if (!u) u = req->ranks_per_node ? req->ranks_per_node : m->gpus_per_node;
        if (!req->group_size && u > c->P) u = c->P;
        c->rows = u, c->cols = c->P / u;
        return u <= c->P && c->P % u == 0 ? 0 : -1;
    }
    case AM_GRID_2D:
        break;
    }
    if (req->rows) {
        c->rows = req->rows, c->cols = req->cols;
        return 0;
    }
    uint64_t s = am_square_side(c->P);
    if (!req->is_auto && s) {
        c->rows = c->cols = s;
        return 0;
    }
    if (!req->is_auto) return -1;
    c->rows = am_best_grid_rows(c, m);
    c->cols = c->P / c->rows;
    return 1;
}

const char *am_unmeasured_tier_note(const machine *m, const am_time *t)
{
    static char note[400];
    if (!m->calibrated || !t->inter_node_phases || m->measured[TIER_INTER]) return NULL;
    snprintf(note, sizeof note,
             "inter-node times use %s's inter-node tier, which attnsim "
             "calibrate did not measure (kept from the base machine)",
             m->name);
    return note;
}
