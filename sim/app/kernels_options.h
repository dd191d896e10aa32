/* kernels_options.h - the options of `attnsim kernels` (kernels_options.c): the --kernel names
 * and the decode schemes they select; the parsing and checking itself is kernels_options()
 * (commands.h, which the fuzzers call). */
#ifndef ATTNSIM_KERNELS_OPTIONS_H
#define ATTNSIM_KERNELS_OPTIONS_H

/* --kernel names: the catalogue's distinct names in catalogue order, then the decode-only
 * kernels; NULL-terminated; bit i of attn_opts.kernels selects name i. Filled by
 * kernels_options(). */
extern const char *kernel_names[];

/* The decode schemes selected (bit kn_dec_scheme: fa2, flash-decoding, lean). */
unsigned kernels_decode_schemes(unsigned kernels);

#endif
