/* hostmem.c - host memory available to this process (see hostmem.h). */
#include "hostmem.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

void hostmem_query(hostmem *h)
{
    h->phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    h->as_limit = h->as_free = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
    h->as_limit = (double)rl.rlim_cur;
    double size = 0; /* the address space in use: the first field of /proc/self/statm, pages */
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f && fscanf(f, "%lu", &pages) == 1) size = (double)pages * (double)sysconf(_SC_PAGESIZE);
    if (f) fclose(f);
    h->as_free = h->as_limit > size ? h->as_limit - size : 0;
}

const char *hostmem_format(double bytes, char *buf, size_t n)
{
    if (bytes >= 1073741824.0)
        snprintf(buf, n, "%.1f GiB", bytes / 1073741824.0);
    else
        snprintf(buf, n, "%.1f MiB", bytes / 1048576.0);
    return buf;
}

int hostmem_fits(const hostmem *h, double need, double node_need, int ranks, double share,
                 char *buf, size_t n)
{
    char a[32], b[32], c[32];
    if (h->as_limit > 0 && need > 0.9 * h->as_free) {
        snprintf(buf, n,
                 "more than the %s its address-space limit (ulimit -v %s) leaves this process",
                 hostmem_format(0.9 * h->as_free, a, sizeof a),
                 hostmem_format(h->as_limit, b, sizeof b));
        return -1;
    }
    if (node_need > share * h->phys) {
        if (ranks > 1)
            snprintf(buf, n, "%s for the %d ranks of this node, more than %.0f%% of its %s",
                     hostmem_format(node_need, c, sizeof c), ranks, 100 * share,
                     hostmem_format(h->phys, a, sizeof a));
        else
            snprintf(buf, n, "more than %.0f%% of this machine's %s", 100 * share,
                     hostmem_format(h->phys, a, sizeof a));
        return -1;
    }
    return 0;
}
