/* sweep.c - configurations of sweep points (see sweep.h). */
#include "sweep.h"

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
