/* h5enc.h - runs encoded as HDF5 objects by attnsim itself, for appending them to a file in
 * one write (h5out.c links them into /runs with the HDF5 library afterwards).
 *
 * Creating a run's ~15 datasets and ~40 attributes through the HDF5 API costs about half a
 * millisecond (each object and attribute is a metadata-cache transaction); a model sweep
 * computes a run in ~10 us. The encoder writes the same objects directly in the HDF5 file
 * format (version 2 object headers with Jenkins lookup3 checksums, as HDF5 1.8 and later
 * write them): one header per group and dataset with its attributes inline, small datasets in
 * compact storage, larger ones contiguous, strings in global heap collections. Readers (HDF5
 * 1.8+, h5py, h5dump) see ordinary objects.
 *
 * Limits (h5enc_fits): an attribute message must fit in 64 KiB (e.g. host_names of up to
 * ~4000 ranks); names up to 255 bytes. Runs outside them are written with the HDF5 library.
 */
#ifndef ATTNSIM_H5ENC_H
#define ATTNSIM_H5ENC_H

#include <stddef.h>
#include <stdint.h>

#include "h5rec.h"

/* 1 when the encoder can represent the tree (see the limits above). */
int h5enc_fits(const h5node *root);

/* An encoder of runs into HDF5 objects that will occupy file addresses base, base + 1, ... of
 * a file with 8-byte offsets and lengths (base a multiple of 8). */
typedef struct h5enc h5enc;
h5enc *h5enc_new(uint64_t base);
/* Starts again at `base`, keeping the memory. */
void h5enc_reset(h5enc *e, uint64_t base);
/* Appends the objects of one run group (link count 0: H5Olink gives it its name) and sets
 * every node's `addr`. Returns 0, or -1 (nothing appended) when !h5enc_fits(run). */
int h5enc_add(h5enc *e, h5node *run);
/* Runs added from now on get link count 1 (linked = 1: the caller names each in /runs
 * itself) or 0 (linked = 0, the default: H5Olink names them). */
void h5enc_set_linked(h5enc *e, int linked);
/* The bytes encoded since the previous call, to be written at file address *at; the next
 * bytes follow them. len is a multiple of 8. */
/* Reserves room for the group headers of runs[0..n) side by side (the next h5enc_add calls
 * put them there): linking rewrites those headers (their link count), and the library then
 * writes them back in few large writes instead of one each. */
void h5enc_reserve_roots(h5enc *e, h5node *const *runs, size_t n);
/* Heap bytes of a run's strings, and the total of the runs that will be added next (sizes the
 * heap collections: no more room than they need). */
uint64_t h5enc_string_bytes(const h5node *run);
void h5enc_expect(h5enc *e, uint64_t bytes);
/* The bytes encoded since the last reset or take, and their file address; with align > 1 they
 * are padded with zeros to a multiple of align (the buffer starts on a H5ENC_PAGE boundary). */
#define H5ENC_PAGE 4096
const unsigned char *h5enc_take(h5enc *e, size_t align, size_t *len, uint64_t *at);
void h5enc_free(h5enc *e);

/* The checksum of HDF5 metadata (Bob Jenkins' lookup3 hashlittle, initial value 0). */
uint32_t h5enc_checksum(const void *data, size_t len);

#endif
