/* h5enc.c - HDF5 objects encoded directly (see h5enc.h). The layouts follow the HDF5 file
 * format specification (version 3.0): object header version 2, link info, group info, link,
 * attribute (version 3), dataspace (version 2), datatype (version 1), fill value (version 3),
 * data layout (version 3) and object reference count messages, global heap collections
 * (version 1). Integers and floats are stored little-endian; vlen strings as the library
 * stores them (length, collection address, object index).
 * ~590 lines in one file on purpose: the encoders of one format specification, each message
 * beside the ones it refers to. */
#include "h5enc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fail.h"
#include "kn_common.h"

#define UNDEF_ADDR  UINT64_MAX
#define COLL_MIN    4096        /* smallest global heap collection readers accept */
#define COLL_MAX    (64 * 1024) /* collections are closed beyond this (readers load one whole) */
#define COMPACT_MAX 8192        /* datasets up to this many bytes live in their object header */
#define MSG_MAX     65535       /* a header message's size field is 16 bits */

enum {
    MSG_NIL = 0x00,
    MSG_DATASPACE = 0x01,
    MSG_LINFO = 0x02,
    MSG_DTYPE = 0x03,
    MSG_FILL = 0x05,
    MSG_LINK = 0x06,
    MSG_LAYOUT = 0x08,
    MSG_GINFO = 0x0a,
    MSG_ATTR = 0x0c,
    MSG_REFCOUNT = 0x16
};
#define MSG_FLAG_CONSTANT 0x01

/* ---- lookup3 ------------------------------------------------------------------------------- */

#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

/* a little-endian 32-bit word at p */
static uint32_t le32(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#endif
}

uint32_t h5enc_checksum(const void *data, size_t len)
{
    const unsigned char *k = data;
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len;
    while (len > 12) {
        a += le32(k);
        b += le32(k + 4);
        c += le32(k + 8);
        /* mix */
        a -= c, a ^= ROT(c, 4), c += b;
        b -= a, b ^= ROT(a, 6), a += c;
        c -= b, c ^= ROT(b, 8), b += a;
        a -= c, a ^= ROT(c, 16), c += b;
        b -= a, b ^= ROT(a, 19), a += c;
        c -= b, c ^= ROT(b, 4), b += a;
        len -= 12, k += 12;
    }
    if (len == 0) return c;
    uint32_t w[3] = {0, 0, 0};
    for (size_t i = 0; i < len; i++) w[i / 4] += (uint32_t)k[i] << (8 * (i % 4));
    a += w[0], b += w[1], c += w[2];
    /* final */
    c ^= b, c -= ROT(b, 14);
    a ^= c, a -= ROT(c, 11);
    b ^= a, b -= ROT(a, 25);
    c ^= b, c -= ROT(b, 16);
    a ^= c, a -= ROT(c, 4);
    b ^= a, b -= ROT(a, 14);
    c ^= b, c -= ROT(b, 24);
    return c;
}

/* ---- byte output ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t addr;
    uint32_t idx;
    uint32_t len;
} heap_id;

/* Strings met again by address in one encoding (h5enc_reset to h5enc_take): the invocation's
 * provenance (command line, machine description, versions), which every run's record refers
 * to without copying, is stored once and every run's attribute points to the same heap object
 * (readers resolve each reference on its own; the library never frees a vlen attribute's heap
 * object when the attribute goes). Direct-mapped by address; long strings only. */
#define SHARED_SLOTS 64
#define SHARED_MIN   32 /* bytes: shorter strings cost less than looking them up */
typedef struct {
    const char *s;
    heap_id id;
} shared_str;

struct h5enc {
    unsigned char *p; /* bytes since the last take, at file address `addr` */
    size_t len, cap;
    uint64_t addr;
    /* the global heap collection strings go to */
    int open;
    size_t coll_off, coll_cap, coll_used;
    uint32_t coll_obj;
    /* heap ids of the run being encoded, in traversal order */
    heap_id *ids;
    size_t nids, cap_ids;
    uint64_t expect; /* heap bytes of the runs still to come (h5enc_expect) */
    shared_str shared[SHARED_SLOTS];
    int linked; /* runs get link count 1 (named by the appender) instead of 0 */
    /* the runs' own headers side by side (h5enc_reserve_roots): next slot, end */
    size_t roots_at, roots_end;
};

/* the low `bytes` bytes of v, little-endian */
static unsigned char *put(unsigned char *p, uint64_t v, int bytes)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, (size_t)bytes);
#else
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
#endif
    return p + bytes;
}

/* n more bytes at the end; returns their position (zeroed when zero is set) */
static unsigned char *grow(h5enc *e, size_t n, int zero)
{
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 1 << 20;
        while (cap < e->len + n) cap *= 2;
        /* mapped pages: aligned, so a batch can be written with O_DIRECT (h5enc_take's
         * align), and grown by remapping them, not by copying into fresh pages */
        unsigned char *p = e->cap ? mremap(e->p, e->cap, cap, MREMAP_MAYMOVE)
                                  : mmap(NULL, cap, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            attn_fail(e->cap ? "mremap" : "mmap", __FILE__, __LINE__,
                      "%zu bytes for encoded runs: %s", cap, strerror(errno));
#ifdef MADV_POPULATE_WRITE /* the new pages at once, not a fault each (Linux 5.14; else faults) */
        if (e->cap) (void)madvise(p + e->cap, cap - e->cap, MADV_POPULATE_WRITE);
#endif
        e->p = p;
        e->cap = cap;
    }
    unsigned char *p = e->p + e->len;
    if (zero) memset(p, 0, n);
    e->len += n;
    return p;
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* ---- element types --------------------------------------------------------------------------- */

static size_t file_size(h5v_type t)
{
    return t == H5V_I32 ? 4 : t == H5V_STR ? 16 : 8;
}

static size_t dtype_size(h5v_type t)
{
    return t == H5V_F64 || t == H5V_STR ? 20 : 12;
}

static unsigned char *put_dtype(unsigned char *p, h5v_type t)
{
    switch (t) {
    case H5V_I32: /* fixed-point, version 1; signed; offset 0, precision 32 */
    case H5V_I64:
    case H5V_U64: {
        int bytes = t == H5V_I32 ? 4 : 8;
        p = put(p, 0x10, 1);
        p = put(p, t == H5V_U64 ? 0x00 : 0x08, 1);
        p = put(p, 0, 2);
        p = put(p, (uint64_t)bytes, 4);
        p = put(p, 0, 2);
        return put(p, (uint64_t)(8 * bytes), 2);
    }
    case H5V_F64: /* IEEE 754 binary64, little-endian: implied mantissa MSB, sign at bit 63 */
        p = put(p, 0x11, 1);
        p = put(p, 0x20, 1);
        p = put(p, 63, 1);
        p = put(p, 0, 1);
        p = put(p, 8, 4);
        p = put(p, 0, 2);  /* bit offset */
        p = put(p, 64, 2); /* precision */
        p = put(p, 52, 1); /* exponent location */
        p = put(p, 11, 1); /* exponent size */
        p = put(p, 0, 1);  /* mantissa location */
        p = put(p, 52, 1); /* mantissa size */
        return put(p, 1023, 4);
    case H5V_STR: /* variable-length string, NUL-terminated padding, UTF-8; base: uint8 */
        p = put(p, 0x19, 1);
        p = put(p, 0x01, 1);
        p = put(p, 0x01, 1);
        p = put(p, 0, 1);
        p = put(p, 16, 4);
        p = put(p, 0x10, 1);
        p = put(p, 0, 3);
        p = put(p, 1, 4);
        p = put(p, 0, 2);
        return put(p, 8, 2);
    }
    return p;
}

static size_t dspace_size(int rank)
{
    return 4 + 16 * (size_t)rank;
}

static unsigned char *put_dspace(unsigned char *p, int rank, const uint64_t *dims)
{
    p = put(p, 2, 1);
    p = put(p, (uint64_t)rank, 1);
    p = put(p, rank ? 1 : 0, 1); /* maximum dimensions present */
    p = put(p, rank ? 1 : 0, 1); /* scalar or simple */
    for (int i = 0; i < rank; i++) p = put(p, dims[i], 8);
    for (int i = 0; i < rank; i++) p = put(p, dims[i], 8);
    return p;
}

/* ---- strings: global heap collections -------------------------------------------------------- */

static void coll_close(h5enc *e)
{
    if (!e->open) return;
    unsigned char *h = e->p + e->coll_off;
    memcpy(h, "GCOL", 4);
    h[4] = 1;
    put(h + 8, e->coll_cap, 8);
    if (e->coll_cap - e->coll_used >= 16) /* the free space object: index 0, size with header */
        put(h + e->coll_used + 8, e->coll_cap - e->coll_used, 8);
    e->open = 0;
}

static void heap_add(h5enc *e, const char *s)
{
    if (e->nids == e->cap_ids) {
        e->cap_ids = e->cap_ids ? 2 * e->cap_ids : 256;
        e->ids = realloc(e->ids, e->cap_ids * sizeof *e->ids);
        if (!e->ids) attn_fail("realloc", __FILE__, __LINE__, "string table");
    }
    shared_str *slot = &e->shared[((uintptr_t)s >> 4) % SHARED_SLOTS];
    if (slot->s == s) { /* stored already in this encoding */
        e->ids[e->nids++] = slot->id;
        return;
    }
    size_t len = strlen(s), need = 16 + pad8(len);
    unsigned char *p = e->p + e->coll_off + e->coll_used;
    put(p, ++e->coll_obj, 2);
    put(p + 8, len, 8);
    memcpy(p + 16, s, len);
    e->coll_used += need;
    heap_id id = {e->addr + e->coll_off, e->coll_obj, (uint32_t)len};
    e->ids[e->nids++] = id;
    if (len >= SHARED_MIN) *slot = (shared_str){s, id};
}

/* Every string of the tree in the open collection; node->str0 = its first id (dataset values,
 * then attributes). */
static void add_strings(h5enc *e, h5node *n)
{
    n->str0 = (uint32_t)e->nids;
    if (n->is_dataset && n->type == H5V_STR) {
        const char *const *v = n->data;
        for (uint64_t i = 0, c = h5v_count(n->rank, n->dims); i < c; i++) heap_add(e, v[i]);
    }
    for (const h5attr *a = n->attrs; a; a = a->next)
        if (a->type == H5V_STR)
            for (uint64_t i = 0; i < a->n; i++) heap_add(e, ((const char *const *)a->data)[i]);
    for (h5node *k = n->kids; k; k = k->next) add_strings(e, k);
}

/* ---- object headers -------------------------------------------------------------------------- */

static size_t attr_data_size(const h5attr *a)
{
    return 9 + a->name_len + 1 + dtype_size(a->type) + dspace_size(a->rank) +
           (size_t)a->n * file_size(a->type);
}

static size_t data_bytes(const h5node *d)
{
    return (size_t)h5v_count(d->rank, d->dims) * file_size(d->type);
}

static int compact(const h5node *d)
{
    return data_bytes(d) <= COMPACT_MAX;
}

/* bytes of the messages of a node's header (4-byte message headers included) */
static size_t messages_size(const h5node *n, int is_run)
{
    size_t m = 0;
    if (is_run) m += 4 + 5; /* the refcount message of an object no link names yet */
    if (n->is_dataset) {
        m += 4 + dspace_size(n->rank);
        m += 4 + dtype_size(n->type);
        m += 4 + 2;
        m += compact(n) ? 4 + 4 + data_bytes(n) : 4 + 18;
    } else {
        m += 4 + 18;
        m += 4 + (n->nkids > 8 ? 6 : 2);
        for (const h5node *k = n->kids; k; k = k->next) m += 4 + 3 + k->name_len + 8;
    }
    for (const h5attr *a = n->attrs; a; a = a->next) m += 4 + attr_data_size(a);
    return m;
}

static int size_field(size_t m)
{
    return m < 256 ? 1 : m < 65536 ? 2 : 4;
}

int h5enc_fits(const h5node *n)
{
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    (void)n;
    return 0; /* values are copied as they are in memory: little-endian hosts only */
#else
    return h5rec_inline(n->rec);
#endif
}

static void assign_header(h5node *n, int is_run, uint64_t base, size_t *off)
{
    if (n->hdr_size) { /* sized before (h5enc_reserve_roots) */
        n->addr = base + *off;
        *off += pad8(n->hdr_size);
        return;
    }
    size_t m = messages_size(n, is_run), pad = 0, size;
    for (;;) { /* a run's header: a multiple of 8 bytes, with a null message if need be */
        size = 6 + (n->nattrs > 8 ? 4 : 0) + (size_t)size_field(m + pad) + m + pad + 4;
        if (!is_run || size % 8 == 0) break;
        pad += 8 - size % 8;
        if (pad < 4) pad += 8; /* a null message has a 4-byte header */
    }
    n->pad = (uint32_t)pad;
    n->msg_size = (uint32_t)(m + pad);
    n->hdr_size = (uint32_t)size;
    n->addr = base + *off;
    *off += pad8(n->hdr_size);
}

static void assign_members(h5node *n, uint64_t base, size_t *off)
{
    for (h5node *k = n->kids; k; k = k->next) {
        assign_header(k, 0, base, off);
        assign_members(k, base, off);
    }
}

static void assign_raw(h5node *n, uint64_t base, size_t *off)
{
    if (n->is_dataset && !compact(n)) {
        n->raw_addr = base + *off;
        *off += pad8(data_bytes(n));
    }
    for (h5node *k = n->kids; k; k = k->next) assign_raw(k, base, off);
}

/* values in file layout: numbers as they are (little-endian host), strings as heap ids */
static unsigned char *put_values(unsigned char *p, h5v_type t, uint64_t count, const void *data,
                                 const heap_id *ids)
{
    if (t != H5V_STR) {
        size_t bytes = (size_t)count * file_size(t);
        memcpy(p, data, bytes);
        return p + bytes;
    }
    (void)data;
    for (uint64_t i = 0; i < count; i++) {
        p = put(p, ids[i].len, 4);
        p = put(p, ids[i].addr, 8);
        p = put(p, ids[i].idx, 4);
    }
    return p;
}

static unsigned char *msg_head(unsigned char *p, int type, size_t size, int flags)
{
    p = put(p, (uint64_t)type, 1);
    p = put(p, size, 2);
    return put(p, (uint64_t)flags, 1);
}

static void encode_header(const h5enc *e, const h5node *n, int is_run, unsigned char *h)
{
    size_t m = n->msg_size;
    int sf = size_field(m);
    unsigned char *p = h;
    memcpy(p, "OHDR", 4);
    p += 4;
    p = put(p, 2, 1);
    p = put(p, (uint64_t)((sf == 1 ? 0 : sf == 2 ? 1 : 2) | (n->nattrs > 8 ? 0x10 : 0)), 1);
    if (n->nattrs > 8) { /* attributes stay in the header (compact) up to their number */
        p = put(p, n->nattrs, 2);
        p = put(p, 6, 2);
    }
    p = put(p, m, sf);
    const heap_id *ids = e->ids + n->str0;
    if (n->is_dataset) {
        uint64_t count = h5v_count(n->rank, n->dims);
        p = msg_head(p, MSG_DATASPACE, dspace_size(n->rank), 0);
        p = put_dspace(p, n->rank, n->dims);
        p = msg_head(p, MSG_DTYPE, dtype_size(n->type), MSG_FLAG_CONSTANT);
        p = put_dtype(p, n->type);
        /* fill value v3: allocation early (compact) or late (contiguous); fill written "if
         * set" (never set), at allocation for strings - as the library writes them */
        p = msg_head(p, MSG_FILL, 2, MSG_FLAG_CONSTANT);
        p = put(p, 3, 1);
        p = put(p, (uint64_t)((compact(n) ? 1 : 2) | (n->type == H5V_STR ? 0 : 2 << 2)), 1);
        if (compact(n)) {
            p = msg_head(p, MSG_LAYOUT, 4 + data_bytes(n), 0);
            p = put(p, 3, 1);
            p = put(p, 0, 1);
            p = put(p, data_bytes(n), 2);
            p = put_values(p, n->type, count, n->data, ids);
        } else {
            p = msg_head(p, MSG_LAYOUT, 18, 0);
            p = put(p, 3, 1);
            p = put(p, 1, 1);
            p = put(p, n->raw_addr, 8);
            p = put(p, data_bytes(n), 8);
        }
        if (n->type == H5V_STR) ids += count;
    } else {
        p = msg_head(p, MSG_LINFO, 18, 0);
        p = put(p, 0, 2);
        p = put(p, UNDEF_ADDR, 8); /* links in the header: no fractal heap, */
        p = put(p, UNDEF_ADDR, 8); /* no name index */
        p = msg_head(p, MSG_GINFO, n->nkids > 8 ? 6 : 2, MSG_FLAG_CONSTANT);
        p = put(p, 0, 1);
        if (n->nkids > 8) { /* links stay in the header up to their number */
            p = put(p, 1, 1);
            p = put(p, n->nkids, 2);
            p = put(p, 6, 2);
        } else {
            p = put(p, 0, 1);
        }
        for (const h5node *k = n->kids; k; k = k->next) {
            size_t len = k->name_len;
            p = msg_head(p, MSG_LINK, 3 + len + 8, 0);
            p = put(p, 1, 1); /* version 1, hard link, 1-byte name length, ASCII */
            p = put(p, 0, 1);
            p = put(p, len, 1);
            memcpy(p, k->name, len);
            p += len;
            p = put(p, k->addr, 8);
        }
    }
    for (const h5attr *a = n->attrs; a; a = a->next) {
        size_t name = a->name_len + 1;
        p = msg_head(p, MSG_ATTR, attr_data_size(a), 0);
        p = put(p, 3, 1);
        p = put(p, 0, 1);
        p = put(p, name, 2);
        p = put(p, dtype_size(a->type), 2);
        p = put(p, dspace_size(a->rank), 2);
        p = put(p, 0, 1); /* ASCII name */
        memcpy(p, a->name, name);
        p += name;
        p = put_dtype(p, a->type);
        uint64_t dims[1] = {a->n};
        p = put_dspace(p, a->rank, dims);
        p = put_values(p, a->type, a->n, a->data, ids);
        if (a->type == H5V_STR) ids += a->n;
    }
    if (is_run) { /* link count 0 until H5Olink names the run in /runs; last, so that its
                   * removal then leaves the other messages in place */
        p = msg_head(p, MSG_REFCOUNT, 5, 0);
        p = put(p, 0, 1);
        p = put(p, (uint64_t)e->linked, 4);
    }
    if (n->pad) { /* a null message to the end of the chunk */
        p = msg_head(p, MSG_NIL, n->pad - 4, 0);
        memset(p, 0, n->pad - 4);
        p += n->pad - 4;
    }
    put(p, h5enc_checksum(h, (size_t)(p - h)), 4);
    if ((size_t)(p + 4 - h) != n->hdr_size)
        attn_fail("h5enc", __FILE__, __LINE__, "header of '%s': %zu bytes encoded, %u planned",
                  n->name, (size_t)(p + 4 - h), n->hdr_size);
}

static void encode_tree(h5enc *e, const h5node *n, int is_run)
{
    encode_header(e, n, is_run, e->p + (n->addr - e->addr));
    if (n->is_dataset && !compact(n)) {
        const heap_id *ids = e->ids + n->str0;
        put_values(e->p + (n->raw_addr - e->addr), n->type, h5v_count(n->rank, n->dims), n->data,
                   ids);
    }
    for (const h5node *k = n->kids; k; k = k->next) encode_tree(e, k, 0);
}

void h5enc_reserve_roots(h5enc *e, h5node *const *runs, size_t n)
{
    size_t bytes = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!h5enc_fits(runs[i])) continue;
        assign_header(runs[i], 1, 0, &off);
    }
    bytes = off;
    coll_close(e); /* the region follows the bytes so far */
    e->roots_at = e->len;
    e->roots_end = e->len + bytes;
    grow(e, bytes, 1);
}

uint64_t h5enc_string_bytes(const h5node *run)
{
    uint64_t bytes, count;
    h5rec_strings(run->rec, &bytes, &count);
    return bytes;
}

void h5enc_expect(h5enc *e, uint64_t bytes)
{
    e->expect = bytes;
}

void h5enc_set_linked(h5enc *e, int linked)
{
    e->linked = linked != 0;
}

h5enc *h5enc_new(uint64_t base)
{
    h5enc *e = kn_xcalloc(1, sizeof *e, "encoder");
    h5enc_reset(e, base);
    return e;
}

void h5enc_reset(h5enc *e, uint64_t base)
{
    if (base % 8)
        attn_fail("h5enc", __FILE__, __LINE__, "unaligned base address %llu",
                  (unsigned long long)base);
    e->addr = base;
    e->len = 0;
    e->open = 0;
    e->expect = 0;
    e->roots_at = e->roots_end = 0;
    memset(e->shared, 0, sizeof e->shared);
}

int h5enc_add(h5enc *e, h5node *run)
{
    if (!h5enc_fits(run)) return -1;
    /* strings: in the open collection, or a new one (64 KiB, or as large as the run needs) */
    uint64_t bytes, count;
    h5rec_strings(run->rec, &bytes, &count);
    if (e->open && (e->coll_used + bytes > e->coll_cap || e->coll_obj + count > 65535))
        coll_close(e);
    if (!e->open && count) {
        /* as large as the strings still expected need (at least what readers accept, at
         * most COLL_MAX unless one run needs more) */
        uint64_t want = (e->expect > bytes ? e->expect : bytes) + 16;
        e->coll_cap = bytes + 16 > COLL_MAX ? pad8(bytes + 16)
                      : want < COLL_MIN     ? COLL_MIN
                      : want > COLL_MAX     ? COLL_MAX
                                            : pad8((size_t)want);
        if (count > 65535)
            attn_fail("h5enc", __FILE__, __LINE__, "a run with %zu strings (at most 65535)", count);
        e->coll_off = e->len;
        grow(e, e->coll_cap, 1);
        e->coll_used = 16;
        e->coll_obj = 0;
        e->open = 1;
    }
    e->nids = 0;
    add_strings(e, run);
    e->expect = e->expect > bytes ? e->expect - bytes : 0;
    /* the run's header (in the reserved region, or first), its members' headers, then the
     * values of contiguous datasets */
    size_t off = e->len;
    uint64_t base = e->addr;
    size_t slot = e->roots_at;
    assign_header(run, 1, base, e->roots_at < e->roots_end ? &slot : &off);
    if (e->roots_at < e->roots_end) {
        if (slot > e->roots_end)
            attn_fail("h5enc", __FILE__, __LINE__, "a run header outside its reserved region");
        e->roots_at = slot;
    }
    assign_members(run, base, &off);
    assign_raw(run, base, &off);
    grow(e, off - e->len, 1);
    encode_tree(e, run, 1);
    return 0;
}

const unsigned char *h5enc_take(h5enc *e, size_t align, size_t *len, uint64_t *at)
{
    coll_close(e);
    if (align > 1 && e->len % align) grow(e, align - e->len % align, 1); /* zeros: free space */
    e->roots_at = e->roots_end = 0;
    *len = e->len;
    *at = e->addr;
    e->addr += e->len;
    e->len = 0;
    return e->p;
}

void h5enc_free(h5enc *e)
{
    if (!e) return;
    if (e->cap) munmap(e->p, e->cap);
    free(e->ids);
    free(e);
}
