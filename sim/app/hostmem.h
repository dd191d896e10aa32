/* hostmem.h - the host memory a process of attnsim may use: the smaller of a share of the
 * machine's physical memory (the share its node's ranks leave it) and what its address-space
 * limit (RLIMIT_AS, `ulimit -v`) leaves above the address space it already has. Commands compare
 * a run's needs with it before any work (docs/executor.md, "Memory"). */
#ifndef ATTNSIM_HOSTMEM_H
#define ATTNSIM_HOSTMEM_H

#include <stddef.h>

typedef struct {
    double phys;     /* physical memory of the machine, bytes */
    double as_limit; /* RLIMIT_AS soft limit (0: unlimited) */
    double as_free;  /* what the limit leaves above the current address space (0 when none) */
} hostmem;

/* Physical memory and the address-space limit of this process, now. */
void hostmem_query(hostmem *h);

/* 0 when `need` bytes fit this process (at most `share` of physical memory for `ranks` such
 * processes on the machine needing `node_need` together, and 90% of what the address-space
 * limit leaves); else -1 with "more than ..." (why, which limit) in buf. */
int hostmem_fits(const hostmem *h, double need, double node_need, int ranks, double share,
                 char *buf, size_t n);

/* Bytes as "1.5 GiB" or "340.0 MiB". */
const char *hostmem_format(double bytes, char *buf, size_t n);

#endif
