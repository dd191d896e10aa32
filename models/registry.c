/* registry.c - the algorithms of models/algorithms.def and what every caller asks of them
 * through their descriptors (see algo.h): names, validation, phase lists, per-rank counts,
 * largest messages, groups. */
#include "algo.h"

#include <stdio.h>
#include <string.h>

#define ATTNSIM_ALGORITHM(id, descriptor, executor) extern const am_algo_desc descriptor;
#include "algorithms.def"
#undef ATTNSIM_ALGORITHM

static const am_algo_desc *const registry[AM_NUM_ALGOS] = {
#define ATTNSIM_ALGORITHM(id, descriptor, executor) [ALGO_##id] = &descriptor,
#include "algorithms.def"
#undef ATTNSIM_ALGORITHM
};

const char *const am_layout_names[] = {"contiguous", "striped", "zigzag", NULL};
const char *const am_pass_names[] = {"fwd", "bwd", "train", NULL};
const char *const am_pattern_names[] = {"none",       "ring_shift", "allgather", "reduce_scatter",
                                        "return_hop", "pairwise",   "alltoall",  NULL};
const char *const am_comm_names[] = {"none",  "world",         "row", "column",
                                     "group", "across_groups", NULL};

const am_algo_desc *am_algo_desc_of(am_algo a)
{
    return registry[a];
}

const char *const *am_algo_names(void)
{
    static const char *names[AM_NUM_ALGOS + 1];
    for (int a = 0; a < AM_NUM_ALGOS; a++) names[a] = registry[a]->name;
    return names;
}

const char *am_algo_name(am_algo a)
{
    return registry[a]->name;
}

int am_validate(const am_config *c, char *err, size_t errlen)
{
    const am_algo_desc *d = registry[c->algo];
    if (c->P < 1) return snprintf(err, errlen, "P must be at least 1"), -1;
    if (c->N < c->P)
        return snprintf(err, errlen,
                        "N = %llu is smaller than P = %llu; accepted: N >= P (every "
                        "rank holds at least one token)",
                        (unsigned long long)c->N, (unsigned long long)c->P),
               -1;
    if (c->kv_heads < 1 || c->heads % c->kv_heads)
        return snprintf(err, errlen, "kv-heads %llu does not divide heads %llu",
                        (unsigned long long)c->kv_heads, (unsigned long long)c->heads),
               -1;
    uint64_t split = am_comm_group(c, d->head_split, 0).size;
    if (d->head_split == AM_COMM_WORLD && c->kv_heads < split)
        return snprintf(err, errlen,
                        "%s needs kv-heads >= P (it splits the K/V heads over the ranks): "
                        "kv-heads %llu, P %llu",
                        d->name, (unsigned long long)c->kv_heads, (unsigned long long)c->P),
               -1;
    if (d->head_split != AM_COMM_WORLD && c->kv_heads < split)
        return snprintf(err, errlen,
                        "%s needs kv-heads >= u (it splits the K/V heads over the u ranks of a "
                        "group): kv-heads %llu, u %llu",
                        d->name, (unsigned long long)c->kv_heads, (unsigned long long)split),
               -1;
    if (d->validate && d->validate(c, err, errlen)) return -1;
    if (d->grid != AM_GRID_LINE && c->rows * c->cols != c->P)
        return snprintf(err, errlen,
                        "grid %llux%llu has %llu devices, not P = %llu; accepted: "
                        "RxC with R C = P",
                        (unsigned long long)c->rows, (unsigned long long)c->cols,
                        (unsigned long long)(c->rows * c->cols), (unsigned long long)c->P),
               -1;
    return 0;
}

int am_phases(const am_config *c, const am_phase_desc **out)
{
    const am_algo_desc *d = registry[c->algo];
    int n = 0;
    if (c->pass != AM_BWD)
        for (int i = 0; i < d->n_fwd; i++) out[n++] = d->fwd[i];
    if (c->pass != AM_FWD)
        for (int i = 0; i < d->n_bwd; i++) out[n++] = d->bwd[i];
    return n;
}

int am_phase_index(const am_config *c, am_phase_id id)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    for (int f = 0; f < F; f++)
        if (ph[f]->id == id) return f;
    return -1;
}

const am_phase_desc *am_phase_by_id(am_phase_id id)
{
    for (int a = 0; a < AM_NUM_ALGOS; a++) {
        const am_algo_desc *d = registry[a];
        for (int i = 0; i < d->n_fwd; i++)
            if (d->fwd[i]->id == id) return d->fwd[i];
        for (int i = 0; i < d->n_bwd; i++)
            if (d->bwd[i]->id == id) return d->bwd[i];
    }
    return NULL;
}

void am_rank_counts(const am_config *c, uint64_t rank, am_count *out)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    int F = am_phases(c, ph);
    for (int f = 0; f < F; f++) {
        memset(&out[f], 0, sizeof out[f]);
        if (ph[f]->counts) ph[f]->counts(c, rank, &out[f]);
    }
}

uint64_t am_phase_max_message(const am_config *c, int f)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    am_phases(c, ph);
    return ph[f]->max_message ? ph[f]->max_message(c) : 0;
}

uint64_t am_phase_group_size(const am_config *c, int f)
{
    const am_phase_desc *ph[AM_MAX_PHASES];
    am_phases(c, ph);
    if (ph[f]->pattern == PAT_NONE) return 1;
    if (ph[f]->pattern == PAT_PAIRWISE) return c->P > 1 ? 2 : 1;
    return am_comm_group(c, ph[f]->comm, 0).size;
}
