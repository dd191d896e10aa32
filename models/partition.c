/* partition.c - data layouts (see partition.h). */
#include "partition.h"

uint64_t part_block_count(uint64_t n, uint64_t k, uint64_t i)
{
    return n / k + (i < n % k);
}

uint64_t part_block_start(uint64_t n, uint64_t k, uint64_t i)
{
    uint64_t r = n % k;
    return i * (n / k) + (i < r ? i : r);
}

uint64_t ring_shard_len(part_layout layout, uint64_t n, uint64_t p, uint64_t i)
{
    switch (layout) {
    case LAYOUT_CONTIGUOUS:
        return part_block_count(n, p, i);
    case LAYOUT_STRIPED:
        return part_cyclic_count(n, p, i);
    case LAYOUT_ZIGZAG:
        return part_block_count(n, 2 * p, i) + part_block_count(n, 2 * p, 2 * p - 1 - i);
    }
    return 0;
}

uint64_t ring_shard_token(part_layout layout, uint64_t n, uint64_t p, uint64_t i, uint64_t j)
{
    switch (layout) {
    case LAYOUT_CONTIGUOUS:
        return part_block_start(n, p, i) + j;
    case LAYOUT_STRIPED:
        return i + j * p;
    case LAYOUT_ZIGZAG: {
        uint64_t first = part_block_count(n, 2 * p, i);
        if (j < first) return part_block_start(n, 2 * p, i) + j;
        return part_block_start(n, 2 * p, 2 * p - 1 - i) + (j - first);
    }
    }
    return 0;
}

uint64_t ring_shard_max(part_layout layout, uint64_t n, uint64_t p)
{
    if (layout != LAYOUT_ZIGZAG) return (n + p - 1) / p;
    uint64_t q = n / (2 * p), r = n % (2 * p);
    return 2 * q + (r > p ? 2 : r > 0 ? 1 : 0);
}

double attn_tile_pairs(int causal, double nq, double nk, int diagonal)
{
    if (!causal) return nq * nk;
    return diagonal ? nq * (nq + 1) / 2 : nq * nk / 2 + nq / 2;
}

double ring_step_pairs(part_layout layout, int causal, uint64_t n_tokens, uint64_t p, uint64_t s)
{
    double n = (double)((n_tokens + p - 1) / p);
    if (!causal) return n * n;
    switch (layout) {
    case LAYOUT_CONTIGUOUS:
        return s == 0 ? n * (n + 1) / 2 : n * n; /* some rank: full block */
    case LAYOUT_STRIPED:
        return n * (n + 1) / 2;
    case LAYOUT_ZIGZAG: {
        double h = (double)((n_tokens + 2 * p - 1) / (2 * p));
        return s == 0 ? 2 * h * h + h : 2 * h * h;
    }
    }
    return n * n;
}
