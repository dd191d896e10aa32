/* h5rec.h - a run as attnsim writes it: a tree of groups and datasets with attributes, built in
 * memory by the commands and written to the file in one piece when its batch is published
 * (h5out.h). Nothing here touches a file; the tree is encoded by h5enc.h.
 *
 * Names are the HDF5 names of schema attnsim/1 (docs/hdf5-schema.md). Values are copied, so a
 * caller may reuse its buffers at once. Every call is checked: a duplicate name, an unknown
 * element type or an allocation failure takes the one error path (fail.h).
 */
#ifndef ATTNSIM_H5REC_H
#define ATTNSIM_H5REC_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Element types of attributes and datasets (little-endian on file). */
typedef enum { H5V_I32, H5V_I64, H5V_U64, H5V_F64, H5V_STR } h5v_type;

/* The element type a caller names for h5_write (a struct, so that an HDF5 type id does not
 * pass for one): building a record calls no HDF5 function, so it never waits for the
 * library, which the publisher thread may be using. */
typedef struct {
    h5v_type t;
} h5type;
#define H5_I32 ((h5type){H5V_I32})
#define H5_I64 ((h5type){H5V_I64})
#define H5_U64 ((h5type){H5V_U64})
#define H5_F64 ((h5type){H5V_F64})

#define H5REC_MAX_RANK 4

typedef struct h5attr {
    const char *name;
    size_t name_len;
    h5v_type type;
    int rank;         /* 0: scalar, 1: a list of n */
    uint64_t n;       /* elements */
    const void *data; /* n values; H5V_STR: const char *[n] (UTF-8, NUL-terminated) */
    struct h5attr *next;
} h5attr;

typedef struct h5node {
    const char *name; /* link name in the parent ("" for a run's root) */
    size_t name_len;
    int is_dataset;
    h5attr *attrs, *last_attr;
    uint32_t nattrs;
    struct h5node *kids, *last_kid, *next; /* a group's members, in creation order */
    uint32_t nkids;
    /* a dataset's type, shape and values (H5V_STR: const char *[]) */
    h5v_type type;
    int rank;
    uint64_t dims[H5REC_MAX_RANK];
    const void *data;
    struct h5rec *rec; /* the record that owns this node's memory */
    /* set by the encoder (h5enc.c) */
    uint64_t addr;     /* object header address */
    uint64_t raw_addr; /* contiguous dataset: address of the values */
    uint32_t hdr_size; /* bytes of the object header */
    uint32_t msg_size; /* bytes of its messages */
    uint32_t pad;      /* bytes of a null message at their end (0: none) */
    uint32_t str0;     /* index of the node's first string in the encoder's heap ids */
} h5node;

typedef struct h5rec h5rec;

/* A new, empty run record; its root is a group. */
h5rec *h5rec_new(void);
h5node *h5rec_root(h5rec *r);
/* An attribute is kept in its object's header (compact storage) up to this many bytes: a
 * header message's size field is 16 bits. */
#define H5REC_INLINE_MAX 65535
/* 1 when every attribute of the record fits in its object's header (host_names of more than
 * ~4000 ranks does not): only such records are encoded by h5enc.h. */
int h5rec_inline(const h5rec *r);

/* Its strings: heap bytes (16 + length rounded up to 8 each) and count. */
void h5rec_strings(const h5rec *r, uint64_t *bytes, uint64_t *count);

/* Bytes of memory the record holds (values and bookkeeping). */
size_t h5rec_bytes(const h5rec *r);
void h5rec_free(h5rec *r);

/* Elements of a dataset or attribute. */
uint64_t h5v_count(int rank, const uint64_t *dims);
size_t h5v_size(h5v_type t); /* bytes of one element in memory (H5V_STR: a pointer) */

/* The member at `path` ("a/b/c") below `loc`, or NULL. */
h5node *h5rec_find(h5node *loc, const char *path);

/* Attributes (on a run, a group or a dataset). */
void h5_attr_str(h5node *loc, const char *name, const char *value);
void h5_attr_strs(h5node *loc, const char *name, const char *const *values, size_t n);
/* The same, keeping the caller's strings instead of copies: they must stay unchanged until the
 * writer that takes the record is closed (h5out_close); for per-invocation constants. */
void h5_attr_str_kept(h5node *loc, const char *name, const char *value);
void h5_attr_strs_kept(h5node *loc, const char *name, const char *const *values, size_t n);
void h5_attr_i64(h5node *loc, const char *name, int64_t v);
void h5_attr_f64(h5node *loc, const char *name, double v);
/* A dataset at `path` (intermediate groups created) of `rank` dims (0 = scalar) of `type`
 * (H5_I32, H5_I64, H5_U64, H5_F64: native int32_t, int64_t, uint64_t, double), with a `units`
 * attribute unless units is NULL. */
void h5_write(h5node *loc, const char *path, h5type type, int rank, const hsize_t *dims,
              const void *data, const char *units);
/* A 1-D dataset of n strings. */
void h5_write_strs(h5node *loc, const char *path, const char *const *values, size_t n);
/* 1 when `loc` has the attribute `name`. */
int h5_attr_exists(const h5node *loc, const char *name);
/* The group or dataset at `path` below `loc`; a missing one is a failure (fail.h). */
h5node *h5_member(h5node *loc, const char *path);

/* Writes the attributes of `node` onto an open HDF5 object (the root of a new file). */
void h5rec_write_attrs(hid_t loc, const h5node *node);
/* Writes the tree `node` with the HDF5 library as the member `name` of the group `parent` (for
 * runs the encoder cannot represent, h5enc_fits). */
void h5rec_write_tree(hid_t parent, const char *name, const h5node *node);

#endif
