/* h5append.c - runs appended to an attnsim/1 file in place (see h5append.h). The layouts
 * follow the HDF5 file format specification (version 3.0): superblock version 2 and 3,
 * version-2 object headers and their continuation chunks, the symbol table message, version-1
 * B-trees of group nodes, symbol table nodes and entries, the local heap, and the dataspace
 * (version 2), fill value (version 3) and data layout (version 3, contiguous) messages.
 * ~700 lines in one file on purpose: the one commit protocol and the structures it writes,
 * read together. */
#include "h5append.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fail.h"
#include "kn_common.h"

/* entries of a symbol table node: 2 x the group leaf K (4 from superblock version 2 on);
 * children of a group B-tree node: 2 x the group B-tree K (16) */
#define UNDEF       UINT64_MAX
#define LEAF_CAP    8
#define NODE_CAP    32
#define ENTRY_SIZE  40
#define SNOD_SIZE   (8 + LEAF_CAP * ENTRY_SIZE)
#define NODE_SIZE   (24 + NODE_CAP * 8 + (NODE_CAP + 1) * 8)
#define HEAP_HEADER 32
#define HEAP_NOFREE 1 /* the local heap's "no free block", as the library writes it */
#define MAX_DEPTH   16

enum {
    M_NIL = 0x00,
    M_DSPACE = 0x01,
    M_LINFO = 0x02,
    M_DTYPE = 0x03,
    M_FILL_OLD = 0x04,
    M_FILL = 0x05,
    M_LINK = 0x06,
    M_LAYOUT = 0x08,
    M_PLINE = 0x0b,
    M_CONT = 0x10,
    M_STAB = 0x11
};

struct h5ap {
    unsigned char *dtype_ok; /* a /summary datatype message found equal to the row's */
    size_t dtype_ok_len;
};

/* The room after the names' block and the rows' block, recorded in a null message of the
 * /summary header (readers skip null messages; a header the library rewrites may drop it,
 * and then the next batch makes new blocks): the magic, then the names' block and its size,
 * the rows' block and its size. Valid only while the blocks are the ones in use. */
static const char room_magic[16] = "attnsim room v1";
#define ROOM_SIZE 48
typedef struct {
    uint64_t heap_data, heap_cap, rows_at, rows_cap;
} room_rec;

h5ap *h5ap_new(void)
{
    return kn_xcalloc(1, sizeof(h5ap), "appender");
}

void h5ap_free(h5ap *a)
{
    if (!a) return;
    free(a->dtype_ok);
    free(a);
}

/* ---- bytes ----------------------------------------------------------------------------------- */

static uint64_t getn(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static unsigned char *putn(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + n;
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static void read_at(int fd, void *buf, size_t n, uint64_t at, const char *path)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(at + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            attn_fail("pread", __FILE__, __LINE__, "%s: %zu bytes at %llu: %s", path, n,
                      (unsigned long long)at, r < 0 ? strerror(errno) : "past the end");
        done += (size_t)r;
    }
}

static void write_at(int fd, const void *buf, size_t n, uint64_t at, const char *path)
{
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(fd, (const char *)buf + done, n - done, (off_t)(at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            attn_fail("pwrite", __FILE__, __LINE__, "%s: %zu bytes at %llu: %s", path, n,
                      (unsigned long long)at, strerror(errno));
        done += (size_t)w;
    }
}

/* A second descriptor of the file for the runs' bytes, which bypass the page cache where the
 * file system allows it (O_DIRECT; -1 where it does not, or with ATTNSIM_H5_BUFFERED set): a
 * batch is written once and not read back by this writer, and its copy into the cache costs as
 * much CPU as the disk takes to write it. */
static int direct_fd(const char *path)
{
    if (getenv("ATTNSIM_H5_BUFFERED")) return -1;
    return open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

/* Writes a page-aligned block through the direct descriptor; 0 where the file system refuses
 * (EINVAL: the caller writes it through the cache instead). */
static int write_direct(int dfd, const void *buf, size_t n, uint64_t at, const char *path)
{
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(dfd, (const char *)buf + done, n - done, (off_t)(at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EINVAL && done == 0) return 0;
        if (w < 0 || (w % H5ENC_PAGE && done + (size_t)w < n))
            attn_fail("pwrite", __FILE__, __LINE__, "%s: %zu bytes at %llu (O_DIRECT): %s", path, n,
                      (unsigned long long)at, w < 0 ? strerror(errno) : "a short write");
        done += (size_t)w;
    }
    return 1;
}

/* ---- the region written past the end ----------------------------------------------------------
 */

typedef struct {
    uint64_t base; /* file address of p[0] */
    unsigned char *p;
    size_t len, cap;
} region;

/* n bytes (zeroed) at the region's end, 8-aligned; *addr their file address */
static unsigned char *reg_alloc(region *r, size_t n, uint64_t *addr)
{
    size_t at = pad8(r->len), end = at + n;
    if (end > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < end) cap *= 2;
        r->p = realloc(r->p, cap);
        if (!r->p) attn_fail("realloc", __FILE__, __LINE__, "%zu bytes of HDF5 metadata", cap);
        memset(r->p + r->cap, 0, cap - r->cap);
        r->cap = cap;
    }
    r->len = end;
    *addr = r->base + at;
    return r->p + at;
}

/* ---- object headers (version 2) ------------------------------------------------------------- */

typedef struct {
    int type, flags;
    uint16_t crt;
    size_t size;
    const unsigned char *data;
} msg;

typedef struct {
    int flags;               /* the header's flags (bits 2-5 kept) */
    unsigned char extra[20]; /* times and attribute phase change values, as read */
    size_t nextra;
    msg *m;
    size_t n, cap;
    unsigned char **bufs; /* the chunks read (messages point into them) */
    size_t nbufs;
} ohdr;

static void ohdr_free(ohdr *h)
{
    for (size_t i = 0; i < h->nbufs; i++) free(h->bufs[i]);
    free(h->bufs);
    free(h->m);
    memset(h, 0, sizeof *h);
}

static void ohdr_push(ohdr *h, msg m)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 16;
        h->m = realloc(h->m, h->cap * sizeof *h->m);
        if (!h->m) attn_fail("realloc", __FILE__, __LINE__, "header messages");
    }
    h->m[h->n++] = m;
}

static unsigned char *ohdr_keep(ohdr *h, size_t n)
{
    h->bufs = realloc(h->bufs, (h->nbufs + 1) * sizeof *h->bufs);
    if (!h->bufs) attn_fail("realloc", __FILE__, __LINE__, "header chunks");
    return h->bufs[h->nbufs++] = kn_xmalloc(n ? n : 1, "header chunk");
}

/* The messages of one chunk; continuation chunks are read in turn. */
static int parse_chunk(int fd, const char *path, ohdr *h, const unsigned char *p, size_t len,
                       uint64_t fsize, char *why, size_t n, int depth)
{
    size_t head = 4 + ((h->flags & 0x04) ? 2 : 0);
    for (size_t pos = 0; pos + head <= len;) {
        msg m = {p[pos], p[pos + 3], 0, getn(p + pos + 1, 2), p + pos + head};
        if (h->flags & 0x04) m.crt = (uint16_t)getn(p + pos + 4, 2);
        if (pos + head + m.size > len) return snprintf(why, n, "a header message overruns"), -1;
        pos += head + m.size;
        if (m.flags & 0x02) return snprintf(why, n, "shared header messages"), 1;
        if (m.type == M_NIL && !(m.size == ROOM_SIZE && !memcmp(m.data, room_magic, 16))) continue;
        if (m.type != M_CONT) {
            ohdr_push(h, m);
            continue;
        }
        if (m.size < 16 || depth > 64) return snprintf(why, n, "a bad continuation"), -1;
        uint64_t at = getn(m.data, 8), clen = getn(m.data + 8, 8);
        if (clen < 8 || at > fsize || clen > fsize - at)
            return snprintf(why, n, "a continuation outside the file"), -1;
        unsigned char *c = ohdr_keep(h, clen);
        read_at(fd, c, clen, at, path);
        if (memcmp(c, "OCHK", 4) || h5enc_checksum(c, clen - 4) != getn(c + clen - 4, 4))
            return snprintf(why, n, "a continuation chunk fails its checksum"), -1;
        int rc = parse_chunk(fd, path, h, c + 4, clen - 8, fsize, why, n, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

/* Reads the object header at addr: 0, 1 (a form this does not rewrite), -1 (damaged). */
static int read_header(int fd, const char *path, uint64_t addr, uint64_t fsize, ohdr *h, char *why,
                       size_t n)
{
    memset(h, 0, sizeof *h);
    unsigned char pre[40];
    if (addr >= fsize || fsize - addr < 16)
        return snprintf(why, n, "a header outside the file"), -1;
    size_t want = fsize - addr < sizeof pre ? (size_t)(fsize - addr) : sizeof pre;
    read_at(fd, pre, want, addr, path);
    if (memcmp(pre, "OHDR", 4) != 0) return snprintf(why, n, "a version-1 object header"), 1;
    if (pre[4] != 2) return snprintf(why, n, "object header version %d", pre[4]), 1;
    int flags = pre[5];
    size_t off = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
    int sw = 1 << (flags & 3);
    uint64_t csize = getn(pre + off, sw);
    off += (size_t)sw;
    if (csize > fsize - addr || off + csize + 4 > fsize - addr)
        return snprintf(why, n, "a header larger than the file"), -1;
    size_t total = off + (size_t)csize + 4;
    unsigned char *b = ohdr_keep(h, total);
    read_at(fd, b, total, addr, path);
    if (h5enc_checksum(b, total - 4) != getn(b + total - 4, 4))
        return snprintf(why, n, "an object header fails its checksum"), -1;
    h->flags = flags & 0x3c;
    h->nextra = off - 6 - (size_t)sw;
    memcpy(h->extra, b + 6, h->nextra);
    return parse_chunk(fd, path, h, b + off, (size_t)csize, fsize, why, n, 0);
}

/* The header's messages in one chunk at the region's end; returns its address. */
static uint64_t write_header(region *r, const ohdr *h)
{
    size_t head = 4 + ((h->flags & 0x04) ? 2 : 0), m = 0;
    for (size_t i = 0; i < h->n; i++) m += head + h->m[i].size;
    int sw = m < 256 ? 1 : m < 65536 ? 2 : 4;
    size_t total = 6 + h->nextra + (size_t)sw + m + 4;
    uint64_t addr;
    unsigned char *b = reg_alloc(r, total, &addr), *p = b;
    memcpy(p, "OHDR", 4);
    p[4] = 2;
    p[5] = (unsigned char)(h->flags | (sw == 1 ? 0 : sw == 2 ? 1 : 2));
    p += 6;
    memcpy(p, h->extra, h->nextra);
    p = putn(p + h->nextra, m, sw);
    for (size_t i = 0; i < h->n; i++) {
        p[0] = (unsigned char)h->m[i].type;
        putn(p + 1, h->m[i].size, 2);
        p[3] = (unsigned char)h->m[i].flags;
        if (h->flags & 0x04) putn(p + 4, h->m[i].crt, 2);
        p += head;
        memcpy(p, h->m[i].data, h->m[i].size);
        p += h->m[i].size;
    }
    putn(p, h5enc_checksum(b, (size_t)(p - b)), 4);
    return addr;
}

static const msg *find_msg(const ohdr *h, int type)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->m[i].type == type) return &h->m[i];
    return NULL;
}

/* A hard link message's name (not terminated) and where its address lies in the data. */
static int link_parse(const msg *m, const unsigned char **name, size_t *nlen, size_t *addr_at)
{
    const unsigned char *p = m->data, *end = p + m->size;
    if (m->size < 3 || p[0] != 1) return -1;
    int f = p[1];
    p += 2;
    int type = 0;
    if (f & 0x08) type = *p++;
    if (f & 0x04) p += 8;
    if (f & 0x10) p++;
    int lw = 1 << (f & 3);
    if (p + lw > end) return -1;
    size_t len = getn(p, lw);
    p += lw;
    if (type != 0 || p + len + 8 != end) return -1;
    *name = p, *nlen = len, *addr_at = (size_t)(p + len - m->data);
    return 0;
}

/* The hard link `name` among a group header's messages: its message index and where the
 * target's address lies in the message's data; -1 when absent. */
static int find_link(const ohdr *h, const char *name, size_t *idx, size_t *addr_at)
{
    size_t want = strlen(name);
    for (size_t i = 0; i < h->n; i++) {
        const unsigned char *nm;
        size_t len, at;
        if (h->m[i].type == M_LINK && !link_parse(&h->m[i], &nm, &len, &at) && len == want &&
            !memcmp(nm, name, len))
            return *idx = i, *addr_at = at, 0;
    }
    return -1;
}

/* ---- the group in symbol-table form -----------------------------------------------------------
 */

typedef struct {
    uint64_t name_off, addr;
} entry;

typedef struct {
    uint64_t addr;
    int level, n;
    uint64_t keys[NODE_CAP + 1], kids[NODE_CAP];
} bnode;

typedef struct {
    uint64_t addr, key; /* a child and the heap offset of the largest name below it */
} kid;

typedef struct {
    uint64_t data, size; /* the names' block and its used bytes */
    unsigned char *add;  /* names added by this publication (written at data + size0) */
    size_t nadd, capadd;
    uint64_t size0;
} heap;

static int read_bnode(int fd, const char *path, uint64_t addr, uint64_t fsize, bnode *b)
{
    unsigned char raw[NODE_SIZE];
    if (addr >= fsize || fsize - addr < NODE_SIZE) return -1;
    read_at(fd, raw, sizeof raw, addr, path);
    if (memcmp(raw, "TREE", 4) || raw[4] != 0) return -1;
    b->addr = addr;
    b->level = raw[5];
    b->n = (int)getn(raw + 6, 2);
    if (b->n > NODE_CAP || b->level >= MAX_DEPTH) return -1;
    for (int i = 0; i <= b->n; i++) b->keys[i] = getn(raw + 24 + 16 * i, 8);
    for (int i = 0; i < b->n; i++) b->kids[i] = getn(raw + 32 + 16 * i, 8);
    return 0;
}

static int read_snod(int fd, const char *path, uint64_t addr, uint64_t fsize, entry *e, int *n)
{
    unsigned char raw[SNOD_SIZE];
    if (addr >= fsize || fsize - addr < SNOD_SIZE) return -1;
    read_at(fd, raw, sizeof raw, addr, path);
    if (memcmp(raw, "SNOD", 4) || raw[4] != 1) return -1;
    *n = (int)getn(raw + 6, 2);
    if (*n > LEAF_CAP) return -1;
    for (int i = 0; i < *n; i++) {
        e[i].name_off = getn(raw + 8 + ENTRY_SIZE * i, 8);
        e[i].addr = getn(raw + 16 + ENTRY_SIZE * i, 8);
    }
    return 0;
}

static kid write_snod(region *r, const entry *e, int n)
{
    uint64_t addr;
    unsigned char *p = reg_alloc(r, SNOD_SIZE, &addr);
    memcpy(p, "SNOD", 4);
    p[4] = 1;
    putn(p + 6, (uint64_t)n, 2);
    for (int i = 0; i < n; i++) {
        putn(p + 8 + ENTRY_SIZE * i, e[i].name_off, 8);
        putn(p + 16 + ENTRY_SIZE * i, e[i].addr, 8);
    }
    return (kid){addr, e[n - 1].name_off};
}

static kid write_bnode(region *r, int level, uint64_t key0, const kid *k, int n)
{
    uint64_t addr;
    unsigned char *p = reg_alloc(r, NODE_SIZE, &addr);
    memcpy(p, "TREE", 4);
    p[4] = 0;
    p[5] = (unsigned char)level;
    putn(p + 6, (uint64_t)n, 2);
    putn(p + 8, UNDEF, 8); /* siblings: readers do not follow them */
    putn(p + 16, UNDEF, 8);
    putn(p + 24, key0, 8);
    for (int i = 0; i < n; i++) {
        putn(p + 32 + 16 * i, k[i].addr, 8);
        putn(p + 40 + 16 * i, k[i].key, 8);
    }
    return (kid){addr, n ? k[n - 1].key : key0};
}

/* Appends entries e[0..k) (sorted, every name after the tree's last) to the tree whose root
 * is `root` (NULL: an empty tree); writes the nodes on its right edge anew. Returns the new
 * root's address. */
static uint64_t tree_append(region *r, int fd, const char *path, uint64_t fsize,
                            const uint64_t *root, const entry *e, size_t k)
{
    bnode sp[MAX_DEPTH];
    int depth = 0;
    if (root) {
        if (read_bnode(fd, path, *root, fsize, &sp[0]))
            attn_fail("append", __FILE__, __LINE__, "%s: /runs: a bad B-tree node", path);
        while (sp[depth].level > 0) {
            if (sp[depth].n == 0 || depth + 1 >= MAX_DEPTH ||
                read_bnode(fd, path, sp[depth].kids[sp[depth].n - 1], fsize, &sp[depth + 1]) ||
                sp[depth + 1].level != sp[depth].level - 1)
                attn_fail("append", __FILE__, __LINE__, "%s: /runs: a bad B-tree node", path);
            depth++;
        }
    } else {
        memset(&sp[0], 0, sizeof sp[0]); /* key 0: offset 0, the empty name */
    }
    /* the leaves: the last symbol node filled, then new ones */
    size_t cap = k / LEAF_CAP + 2;
    kid *up = kn_xmalloc(cap * sizeof *up, "B-tree children");
    size_t nup = 0, used = 0;
    int replaces = 0;
    bnode *leafp = &sp[depth];
    if (leafp->n > 0) {
        entry last[LEAF_CAP];
        int m;
        if (read_snod(fd, path, leafp->kids[leafp->n - 1], fsize, last, &m))
            attn_fail("append", __FILE__, __LINE__, "%s: /runs: a bad symbol node", path);
        if (m < LEAF_CAP) {
            while (m < LEAF_CAP && used < k) last[m++] = e[used++];
            up[nup++] = write_snod(r, last, m);
            replaces = 1;
        }
    }
    while (used < k) {
        int m = k - used < LEAF_CAP ? (int)(k - used) : LEAF_CAP;
        up[nup++] = write_snod(r, e + used, m);
        used += (size_t)m;
    }
    /* each level: the node on the edge with its last child replaced and the new ones after
     * it, split into nodes of NODE_CAP children */
    for (int l = depth; l >= 0; l--) {
        bnode *b = &sp[l];
        int keep = b->n - replaces;
        size_t total = (size_t)keep + nup;
        kid *all = kn_xmalloc(total * sizeof *all, "B-tree children");
        for (int i = 0; i < keep; i++) all[i] = (kid){b->kids[i], b->keys[i + 1]};
        memcpy(all + keep, up, nup * sizeof *up);
        free(up);
        up = kn_xmalloc((total / NODE_CAP + 2) * sizeof *up, "B-tree nodes");
        nup = 0;
        uint64_t key0 = b->keys[0];
        for (size_t at = 0; at < total || at == 0; at += NODE_CAP) {
            int m = total - at < NODE_CAP ? (int)(total - at) : NODE_CAP;
            up[nup] = write_bnode(r, b->level, key0, all + at, m);
            key0 = up[nup++].key;
            if (total == 0) break;
        }
        free(all);
        replaces = 1;
    }
    /* a taller tree while the root level split */
    int level = sp[0].level;
    uint64_t key0 = sp[0].keys[0];
    while (nup > 1) {
        level++;
        if (level >= MAX_DEPTH)
            attn_fail("append", __FILE__, __LINE__, "%s: /runs: too deep", path);
        size_t n2 = 0;
        kid *next = kn_xmalloc((nup / NODE_CAP + 2) * sizeof *next, "B-tree nodes");
        uint64_t k0 = key0;
        for (size_t at = 0; at < nup; at += NODE_CAP) {
            int m = nup - at < NODE_CAP ? (int)(nup - at) : NODE_CAP;
            next[n2] = write_bnode(r, level, k0, up + at, m);
            k0 = next[n2++].key;
        }
        free(up);
        up = next;
        nup = n2;
    }
    uint64_t addr = up[0].addr;
    free(up);
    return addr;
}

/* Every entry of the tree at root, in order (names as heap offsets). */
static void tree_walk(int fd, const char *path, uint64_t fsize, uint64_t addr, int level, entry **v,
                      size_t *n, size_t *cap)
{
    bnode b;
    if (read_bnode(fd, path, addr, fsize, &b) || b.level != level)
        attn_fail("append", __FILE__, __LINE__, "%s: /runs: a bad B-tree node", path);
    for (int i = 0; i < b.n; i++) {
        if (b.level > 0) {
            tree_walk(fd, path, fsize, b.kids[i], level - 1, v, n, cap);
            continue;
        }
        entry e[LEAF_CAP];
        int m;
        if (read_snod(fd, path, b.kids[i], fsize, e, &m))
            attn_fail("append", __FILE__, __LINE__, "%s: /runs: a bad symbol node", path);
        if (*n + (size_t)m > *cap) {
            *cap = 2 * (*n + (size_t)m) + 64;
            *v = realloc(*v, *cap * sizeof **v);
            if (!*v) attn_fail("realloc", __FILE__, __LINE__, "entries of /runs");
        }
        memcpy(*v + *n, e, (size_t)m * sizeof *e);
        *n += (size_t)m;
    }
}

/* ---- names ------------------------------------------------------------------------------------
 */

/* the offset in the heap of a name added now */
static uint64_t heap_add(heap *h, const char *name)
{
    size_t len = strlen(name), room = pad8(len + 1);
    if (h->nadd + room > h->capadd) {
        h->capadd = 2 * (h->nadd + room) + 4096;
        h->add = realloc(h->add, h->capadd);
        if (!h->add) attn_fail("realloc", __FILE__, __LINE__, "names");
    }
    memset(h->add + h->nadd, 0, room);
    memcpy(h->add + h->nadd, name, len);
    uint64_t off = h->size;
    h->nadd += room;
    h->size += room;
    return off;
}

static void read_name(int fd, const char *path, const heap *h, uint64_t off, char *out, size_t n)
{
    if (off >= h->size)
        attn_fail("append", __FILE__, __LINE__, "%s: /runs: a name outside its heap", path);
    size_t want = h->size - off < n - 1 ? (size_t)(h->size - off) : n - 1;
    read_at(fd, out, want, h->data + off, path);
    out[want] = '\0';
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* ---- the commit -------------------------------------------------------------------------------
 */

typedef struct {
    char *name;
    uint64_t addr;
} named;

static herr_t collect_link(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    if (info->type != H5L_TYPE_HARD) return 0;
    named **v = data;
    size_t n = 0;
    while ((*v)[n].name) n++;
    *v = realloc(*v, (n + 2) * sizeof **v);
    if (!*v) return -1;
    (*v)[n] = (named){strdup(name), info->u.address};
    (*v)[n + 1] = (named){NULL, 0};
    return (*v)[n].name ? 0 : -1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* The library's look at a file (read-only): the links of /runs (converting it), the rows of a
 * chunked /summary, and whether its row type is h5_summary_row's. */
static int library_look(const char *path, int want_links, named **links, int want_rows,
                        h5_summary_row **rows, uint64_t nrows, int *type_equal)
{
    int rc = -1;
    hid_t f = -1, g = -1, ds = -1, ft = -1, mt = -1;
    H5E_BEGIN_TRY
    {
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) goto done;
        if (want_links) {
            *links = calloc(1, sizeof **links);
            if (!*links || (g = H5Gopen2(f, "runs", H5P_DEFAULT)) < 0 ||
                H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_link, links) < 0)
                goto done;
        }
        if ((ds = H5Dopen2(f, "summary", H5P_DEFAULT)) < 0 || (ft = H5Dget_type(ds)) < 0) goto done;
        mt = h5_summary_type();
        *type_equal = H5Tequal(ft, mt) > 0;
        if (want_rows && *type_equal) {
            *rows = kn_xmalloc((nrows ? nrows : 1) * sizeof **rows, "summary rows");
            if (nrows && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, *rows) < 0) goto done;
        }
        rc = 0;
    done:
        if (mt >= 0) H5Tclose(mt);
        if (ft >= 0) H5Tclose(ft);
        if (ds >= 0) H5Dclose(ds);
        if (g >= 0) H5Gclose(g);
        if (f >= 0) H5Fclose(f);
    }
    H5E_END_TRY;
    return rc;
}

static void free_named(named *v)
{
    for (size_t i = 0; v && v[i].name; i++) free(v[i].name);
    free(v);
}

int h5ap_summary_contiguous(int fd)
{
    char why[200];
    struct stat st;
    unsigned char sb[48];
    if (fstat(fd, &st) || pread(fd, sb, 48, 0) != 48 || sb[8] < 2 || sb[8] > 3) return -1;
    ohdr root, sum;
    uint64_t fsize = (uint64_t)st.st_size, at = UNDEF;
    if (read_header(fd, "", getn(sb + 36, 8), fsize, &root, why, sizeof why)) {
        ohdr_free(&root);
        return -1;
    }
    size_t i, addr_at;
    if (!find_link(&root, "summary", &i, &addr_at)) at = getn(root.m[i].data + addr_at, 8);
    ohdr_free(&root);
    if (at == UNDEF || read_header(fd, "", at, fsize, &sum, why, sizeof why)) {
        ohdr_free(&sum);
        return -1;
    }
    const msg *lay = find_msg(&sum, M_LAYOUT);
    int rc = lay && lay->size >= 2 && lay->data[0] == 3 ? lay->data[1] == 1 : -1;
    ohdr_free(&sum);
    return rc;
}

int h5ap_publish(h5ap *a, int fd, const char *path, h5enc *enc, h5node *const *runs, size_t n,
                 h5_summary_row *rows, size_t nrows, int final, char *why, size_t whylen)
{
    const size_t R = sizeof(h5_summary_row);
    if (!n && !nrows) return 0;
    unsigned char sb[48];
    struct stat st;
    SYSCHECK(fstat(fd, &st));
    uint64_t fsize = (uint64_t)st.st_size;
    read_at(fd, sb, sizeof sb, 0, path);
    if (sb[8] < 2 || sb[8] > 3)
        return snprintf(why, whylen, "superblock version %d (appended to by copy)", sb[8]), 1;
    if (h5enc_checksum(sb, 44) != getn(sb + 44, 4) || sb[9] != 8 || sb[10] != 8 ||
        getn(sb + 12, 8) != 0)
        return snprintf(why, whylen, "a superblock this does not write"), 1;
    if (getn(sb + 20, 8) != UNDEF) return snprintf(why, whylen, "a superblock extension"), 1;
    uint64_t eoa = getn(sb + 28, 8), root_addr = getn(sb + 36, 8);

    ohdr root = {0}, grp = {0}, sum = {0};
    named *links = NULL;
    h5_summary_row *old_rows = NULL;
    entry *all = NULL;
    heap hp = {0};
    region r = {0};
    int rc = 1, dfd = -1;
    if (read_header(fd, path, root_addr, fsize, &root, why, whylen)) goto out;
    const msg *linfo = find_msg(&root, M_LINFO);
    if (!linfo || linfo->size < 10 ||
        getn(linfo->data + 2 + ((linfo->data[1] & 1) ? 8 : 0), 8) != UNDEF) {
        snprintf(why, whylen, "a root group with dense links");
        goto out;
    }
    size_t runs_i, sum_i, runs_at, sum_at;
    if (find_link(&root, "runs", &runs_i, &runs_at) ||
        find_link(&root, "summary", &sum_i, &sum_at)) {
        snprintf(why, whylen, "no hard links /runs and /summary in the root group");
        goto out;
    }
    if (read_header(fd, path, getn(root.m[runs_i].data + runs_at, 8), fsize, &grp, why, whylen) ||
        read_header(fd, path, getn(root.m[sum_i].data + sum_at, 8), fsize, &sum, why, whylen))
        goto out;

    /* /summary: its row type, its rows */
    const msg *space = find_msg(&sum, M_DSPACE), *lay = find_msg(&sum, M_LAYOUT),
              *dtype = find_msg(&sum, M_DTYPE);
    if (!space || !lay || !dtype || space->size < 4 || space->data[1] != 1 || lay->size < 2 ||
        lay->data[0] != 3) {
        snprintf(why, whylen, "a /summary this does not write");
        goto out;
    }
    uint64_t nold = getn(space->data + (space->data[0] == 1 ? 8 : 4), 8);
    int contiguous = lay->data[1] == 1 && lay->size >= 18;
    const msg *stab = find_msg(&grp, M_STAB);
    int convert_runs = stab == NULL;
    int type_known = a->dtype_ok && a->dtype_ok_len == dtype->size &&
                     !memcmp(a->dtype_ok, dtype->data, dtype->size);
    if (convert_runs || !contiguous || !type_known) {
        int equal = 0;
        if (library_look(path, convert_runs, &links, !contiguous, &old_rows, nold, &equal)) {
            snprintf(why, whylen, "its /runs or /summary cannot be read by the library");
            goto out;
        }
        if (!equal) {
            snprintf(why, whylen, "a /summary of another row type");
            goto out;
        }
        free(a->dtype_ok);
        a->dtype_ok = kn_xmalloc(dtype->size, "datatype");
        memcpy(a->dtype_ok, dtype->data, dtype->size);
        a->dtype_ok_len = dtype->size;
    }

    /* everything is known: the runs' objects go at the end, the rest after them */
    uint64_t end = fsize > eoa ? fsize : eoa;
    dfd = direct_fd(path);
    uint64_t align = dfd >= 0 ? H5ENC_PAGE : 8;
    end = (end + align - 1) & ~(align - 1);
    h5enc_reset(enc, end);
    h5enc_set_linked(enc, 1);
    uint64_t strings = 0;
    for (size_t i = 0; i < n; i++) strings += h5enc_string_bytes(runs[i]);
    h5enc_expect(enc, strings);
    h5enc_reserve_roots(enc, runs, n);
    for (size_t i = 0; i < n; i++)
        if (h5enc_add(enc, runs[i]))
            attn_fail("append", __FILE__, __LINE__, "a run the encoder cannot write");
    size_t elen;
    uint64_t eat;
    const unsigned char *ebytes = h5enc_take(enc, dfd >= 0 ? H5ENC_PAGE : 1, &elen, &eat);
    uint64_t cursor = eat + elen;

    /* /runs: the names of the new runs, after the newest */
    uint64_t bt_root = 0, heap_hdr = 0;
    int64_t next = 0;
    int rebuild = convert_runs;
    char last[256] = "";
    if (!convert_runs) {
        if (stab->size < 16) goto bad_tree;
        bt_root = getn(stab->data, 8), heap_hdr = getn(stab->data + 8, 8);
        unsigned char hh[HEAP_HEADER];
        if (heap_hdr >= fsize || fsize - heap_hdr < HEAP_HEADER) goto bad_heap;
        read_at(fd, hh, sizeof hh, heap_hdr, path);
        if (memcmp(hh, "HEAP", 4) || hh[4] != 0) goto bad_heap;
        hp.size = hp.size0 = getn(hh + 8, 8);
        hp.data = getn(hh + 24, 8);
        if (hp.data >= fsize || hp.size > fsize - hp.data) goto bad_heap;
        /* the last name: the last entry of the last leaf */
        bnode b;
        uint64_t at = bt_root;
        for (int d = 0;; d++) {
            if (d >= MAX_DEPTH || read_bnode(fd, path, at, fsize, &b)) goto bad_tree;
            if (b.n == 0) break;
            if (b.level == 0) {
                entry e[LEAF_CAP];
                int m;
                if (read_snod(fd, path, b.kids[b.n - 1], fsize, e, &m)) goto bad_tree;
                if (m) read_name(fd, path, &hp, e[m - 1].name_off, last, sizeof last);
                break;
            }
            at = b.kids[b.n - 1];
        }
        if (last[0] == '\0')
            next = 0;
        else if (strlen(last) == 6 && all_digits(last))
            next = strtoll(last, NULL, 10) + 1;
        else
            rebuild = 1;
        if (next + (int64_t)n > 1000000) rebuild = 1; /* seven digits sort before six */
        if (rebuild) {                                /* every entry, read back, with its name */
            size_t cnt = 0, cap = 0;
            entry *ent = NULL;
            if (read_bnode(fd, path, bt_root, fsize, &b)) goto bad_tree;
            tree_walk(fd, path, fsize, bt_root, b.level, &ent, &cnt, &cap);
            links = kn_xcalloc(cnt + 1, sizeof *links, "links");
            char *names = kn_xmalloc(hp.size + 1, "names");
            read_at(fd, names, hp.size, hp.data, path);
            names[hp.size] = '\0';
            for (size_t i = 0; i < cnt; i++) {
                if (ent[i].name_off >= hp.size) {
                    free(names);
                    free(ent);
                    goto bad_tree;
                }
                links[i] = (named){strdup(names + ent[i].name_off), ent[i].addr};
                if (!links[i].name) attn_fail("strdup", __FILE__, __LINE__, "a name");
            }
            free(names);
            free(ent);
        }
    }
    size_t nall = n;
    if (rebuild) {
        size_t cnt = 0;
        next = 0;
        for (; links[cnt].name; cnt++)
            if (all_digits(links[cnt].name)) {
                long long v = strtoll(links[cnt].name, NULL, 10);
                if (v + 1 > next) next = v + 1;
            }
        links = realloc(links, (cnt + n + 1) * sizeof *links);
        if (!links) attn_fail("realloc", __FILE__, __LINE__, "links");
        for (size_t i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "%06lld", (long long)(next + (int64_t)i));
            links[cnt + i] = (named){strdup(name), runs[i]->addr};
            if (!links[cnt + i].name) attn_fail("strdup", __FILE__, __LINE__, "a name");
        }
        links[cnt + n] = (named){NULL, 0};
        qsort(links, cnt + n, sizeof *links, by_name);
        /* a new heap: the empty name at offset 0, then every name in order */
        hp = (heap){0};
        heap_add(&hp, "");
        nall = cnt + n;
        all = kn_xmalloc((nall + 1) * sizeof *all, "entries");
        for (size_t i = 0; i < nall; i++) {
            if (i && !strcmp(links[i].name, links[i - 1].name))
                attn_fail("append", __FILE__, __LINE__, "%s: /runs/%s twice", path, links[i].name);
            all[i] = (entry){heap_add(&hp, links[i].name), links[i].addr};
        }
    } else if (n) {
        all = kn_xmalloc(n * sizeof *all, "entries");
        for (size_t i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "%06lld", (long long)(next + (int64_t)i));
            all[i] = (entry){heap_add(&hp, name), runs[i]->addr};
        }
    }
    for (size_t i = 0; i < n; i++) rows[i].run = next + (int64_t)i;
    /* the names' block: the room left in this writer's own block, or a new block with room
     * (the old names copied) */
    uint64_t names_at = UNDEF; /* where the bytes of hp.add go */
    unsigned char *names_block = NULL;
    size_t names_len = 0;
    room_rec rm = {0, 0, 0, 0};
    const msg *mark = find_msg(&sum, M_NIL);
    if (mark) {
        rm.heap_data = getn(mark->data + 16, 8), rm.heap_cap = getn(mark->data + 24, 8);
        rm.rows_at = getn(mark->data + 32, 8), rm.rows_cap = getn(mark->data + 40, 8);
    }
    if (rebuild || (n && !(hp.data == rm.heap_data && hp.size <= rm.heap_cap))) {
        size_t room = pad8((size_t)hp.size + (size_t)hp.size / 2 + 4096);
        names_len = (size_t)hp.size;
        names_block = kn_xmalloc(names_len, "names");
        if (hp.size0) read_at(fd, names_block, (size_t)hp.size0, hp.data, path);
        memcpy(names_block + hp.size0, hp.add, hp.nadd);
        hp.data = rm.heap_data = cursor;
        rm.heap_cap = room;
        cursor += room;
    } else if (n) {
        names_at = hp.data + hp.size0;
    }
    /* /summary: the new rows after the old ones, in the room of this writer's block, or in a
     * new block with room (the old rows copied) */
    uint64_t rows_at = contiguous ? getn(lay->data + 2, 8) : UNDEF;
    uint64_t total_rows = nold + nrows, rows_slack = UNDEF;
    unsigned char *rows_block = NULL;
    if (contiguous && rows_at == rm.rows_at && total_rows * R <= rm.rows_cap) {
        rows_slack = rows_at + nold * R;
    } else if (total_rows) {
        size_t room = pad8((size_t)(total_rows * R + total_rows * R / 2 + 65536));
        rows_block = kn_xmalloc((size_t)(total_rows * R), "summary rows");
        if (contiguous && nold)
            read_at(fd, rows_block, (size_t)(nold * R), rows_at, path);
        else if (nold)
            memcpy(rows_block, old_rows, (size_t)(nold * R));
        memcpy(rows_block + nold * R, rows, nrows * R);
        rows_at = rm.rows_at = cursor;
        rm.rows_cap = room;
        cursor += room;
    }
    r.base = cursor;

    /* the B-tree's new nodes, the heap's header, the new headers of /runs, /summary, root */
    uint64_t new_heap = heap_hdr;
    if (rebuild)
        bt_root = tree_append(&r, fd, path, fsize, NULL, all, nall);
    else if (n)
        bt_root = tree_append(&r, fd, path, fsize, &bt_root, all, n);
    uint64_t runs_hdr = getn(root.m[runs_i].data + runs_at, 8);
    if (rebuild || n) {
        unsigned char *p = reg_alloc(&r, HEAP_HEADER, &new_heap);
        memcpy(p, "HEAP", 4);
        putn(p + 8, hp.size, 8);
        putn(p + 16, HEAP_NOFREE, 8);
        putn(p + 24, hp.data, 8);
        unsigned char stab_data[16];
        putn(stab_data, bt_root, 8);
        putn(stab_data + 8, new_heap, 8);
        ohdr g = {0};
        ohdr_push(&g, (msg){M_STAB, 0, 0, 16, stab_data});
        runs_hdr = write_header(&r, &g);
        free(g.m);
    }
    unsigned char space_data[12], fill_data[2], lay_data[18];
    ohdr s = {0};
    s.flags = sum.flags, s.nextra = sum.nextra;
    memcpy(s.extra, sum.extra, sum.nextra);
    space_data[0] = 2, space_data[1] = 1, space_data[2] = 0, space_data[3] = 1;
    putn(space_data + 4, total_rows, 8);
    fill_data[0] = 3, fill_data[1] = 0x0a; /* allocated late, written if set (never set) */
    lay_data[0] = 3, lay_data[1] = 1;
    putn(lay_data + 2, total_rows ? rows_at : UNDEF, 8);
    putn(lay_data + 10, total_rows * R, 8);
    ohdr_push(&s, (msg){M_DSPACE, 0, 0, sizeof space_data, space_data});
    ohdr_push(&s, (msg){M_DTYPE, dtype->flags, 0, dtype->size, dtype->data});
    ohdr_push(&s, (msg){M_FILL, 1, 0, sizeof fill_data, fill_data});
    ohdr_push(&s, (msg){M_LAYOUT, 0, 0, sizeof lay_data, lay_data});
    unsigned char mark_data[ROOM_SIZE];
    memcpy(mark_data, room_magic, 16);
    putn(mark_data + 16, hp.data == rm.heap_data ? rm.heap_data : 0, 8);
    putn(mark_data + 24, hp.data == rm.heap_data ? rm.heap_cap : 0, 8);
    putn(mark_data + 32, rows_at == rm.rows_at ? rm.rows_at : 0, 8);
    putn(mark_data + 40, rows_at == rm.rows_at ? rm.rows_cap : 0, 8);
    ohdr_push(&s, (msg){M_NIL, 0, 0, sizeof mark_data, mark_data});
    for (size_t i = 0; i < sum.n; i++) {
        int t = sum.m[i].type;
        if (t != M_DSPACE && t != M_DTYPE && t != M_FILL && t != M_FILL_OLD && t != M_LAYOUT &&
            t != M_PLINE && t != M_NIL)
            ohdr_push(&s, sum.m[i]);
    }
    uint64_t sum_hdr = write_header(&r, &s);
    free(s.m);
    unsigned char *runs_link = kn_xmalloc(root.m[runs_i].size, "link");
    unsigned char *sum_link = kn_xmalloc(root.m[sum_i].size, "link");
    memcpy(runs_link, root.m[runs_i].data, root.m[runs_i].size);
    memcpy(sum_link, root.m[sum_i].data, root.m[sum_i].size);
    putn(runs_link + runs_at, runs_hdr, 8);
    putn(sum_link + sum_at, sum_hdr, 8);
    root.m[runs_i].data = runs_link;
    root.m[sum_i].data = sum_link;
    uint64_t new_root = write_header(&r, &root);
    free(runs_link);
    free(sum_link);
    uint64_t zero;
    reg_alloc(&r, 0, &zero); /* the end 8-aligned */
    uint64_t new_eoa = r.base + r.len;

    /* written: nothing that the file's version refers to */
    if (dfd < 0 || !write_direct(dfd, ebytes, elen, eat, path)) {
        write_at(fd, ebytes, elen, eat, path);
        if (elen) /* their write-back starts while the rest is written */
            sync_file_range(fd, (off_t)eat, (off_t)elen, SYNC_FILE_RANGE_WRITE);
    }
    if (n) attn_kill_point("h5:ip_runs");
    if (names_block) write_at(fd, names_block, names_len, hp.data, path);
    if (names_at != UNDEF) write_at(fd, hp.add, hp.nadd, names_at, path);
    if (rows_block) write_at(fd, rows_block, (size_t)(total_rows * R), rows_at, path);
    if (rows_slack != UNDEF && nrows) write_at(fd, rows, nrows * R, rows_slack, path);
    free(names_block);
    free(rows_block);
    write_at(fd, r.p, r.len, r.base, path);
    attn_kill_point("h5:ip_written");
    if (fdatasync(fd) != 0)
        attn_fail("fdatasync", __FILE__, __LINE__, "%s: %s", path, strerror(errno));
    attn_kill_point("h5:ip_synced");
    /* the commit: one write of the superblock (the end of the data, the root group) */
    putn(sb + 28, new_eoa, 8);
    putn(sb + 36, new_root, 8);
    putn(sb + 44, h5enc_checksum(sb, 44), 4);
    write_at(fd, sb, sizeof sb, 0, path);
    attn_kill_point("h5:ip_committed");
    if (final && fdatasync(fd) != 0) /* else with the next batch's data */
        attn_fail("fdatasync", __FILE__, __LINE__, "%s: %s", path, strerror(errno));
    rc = 0;
    goto out;
bad_heap:
    snprintf(why, whylen, "/runs has a bad local heap");
    rc = -1;
    goto out;
bad_tree:
    snprintf(why, whylen, "/runs has a bad B-tree");
    rc = -1;
out:
    if (dfd >= 0) close(dfd);
    ohdr_free(&root);
    ohdr_free(&grp);
    ohdr_free(&sum);
    free_named(links);
    free(old_rows);
    free(all);
    free(hp.add);
    free(r.p);
    return rc;
}
