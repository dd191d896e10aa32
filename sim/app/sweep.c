/* sweep.c - sweep points and their configurations (see sweep.h). */
#include "sweep.h"

#include <stdlib.h>
#include <string.h>

#include "kn_common.h"

static int add_dim(sweep_iter *s, size_t n)
{
    if (s->n == SWEEP_MAX_DIMS) kn_fatal("sweep", "more dimensions than SWEEP_MAX_DIMS");
    s->len[s->n] = n;
    s->vals[s->n] = kn_xmalloc((n ? n : 1) * sizeof(uint64_t), "sweep values");
    return s->n++;
}

int sweep_list(sweep_iter *s, const cli_u64_list *list)
{
    int d = add_dim(s, list->n);
    memcpy(s->vals[d], list->v, list->n * sizeof(uint64_t));
    return d;
}

int sweep_mask(sweep_iter *s, unsigned mask, int bits)
{
    size_t n = 0;
    for (int b = 0; b < bits; b++) n += (mask >> b) & 1;
    int d = add_dim(s, n);
    n = 0;
    for (int b = 0; b < bits; b++)
        if ((mask >> b) & 1) s->vals[d][n++] = (uint64_t)b;
    return d;
}

int sweep_range(sweep_iter *s, size_t n)
{
    int d = add_dim(s, n);
    for (size_t i = 0; i < n; i++) s->vals[d][i] = i;
    return d;
}

size_t sweep_total(const sweep_iter *s)
{
    size_t t = 1;
    for (int d = 0; d < s->n; d++) t *= s->len[d];
    return t;
}

void sweep_free(sweep_iter *s)
{
    for (int d = 0; d < s->n; d++) free(s->vals[d]);
    memset(s, 0, sizeof *s);
}

int sweep_next(sweep_iter *s)
{
    if (sweep_total(s) == 0) {
        sweep_free(s);
        return 0;
    }
    if (!s->started) {
        s->started = 1, s->changed = 0;
        for (int d = 0; d < s->n; d++) s->at[d] = 0, s->v[d] = s->vals[d][0];
        return 1;
    }
    for (int d = s->n - 1; d >= 0; d--) { /* an odometer: the innermost dimension turns first */
        if (++s->at[d] < s->len[d]) {
            s->v[d] = s->vals[d][s->at[d]];
            s->changed = d;
            return 1;
        }
        s->at[d] = 0, s->v[d] = s->vals[d][0];
    }
    sweep_free(s);
    return 0;
}

int sweep_config(const attn_opts *o, const machine *m, int algo, uint64_t P, uint64_t N,
                 uint64_t head_dim, int causal, int dtype, int auto_if_no_square,
                 uint64_t ranks_per_node, am_config *c)
{
    am_config x = {(am_algo)algo,
                   (part_layout)o->layout,
                   (am_pass)o->pass,
                   P,
                   1,
                   P,
                   N,
                   o->batch,
                   o->heads,
                   o->kv_heads ? o->kv_heads : o->heads,
                   head_dim,
                   causal,
                   dtype};
    *c = x;
    int is_auto = o->grid.is_auto || (auto_if_no_square && !o->grid.rows && !am_square_side(P));
    am_grid_request req = {o->grid.is_auto ? 0 : o->grid.rows, o->grid.cols, is_auto,
                           o->ulysses_size, ranks_per_node};
    return am_choose_grid(c, m, &req);
}
