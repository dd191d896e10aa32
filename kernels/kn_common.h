/* kn_common.h - element types, conversions and the fatal-error hook of the kernels layer.
 *
 * kernels/ knows nothing of MPI: errors inside a kernel (allocation failure, a broken invariant)
 * go through kn_fatal(), which calls a hook the program installs (sim/ installs one that names
 * the rank and aborts the MPI job). The default hook prints and exits with status 1.
 */
#ifndef ATTNSIM_KN_COMMON_H
#define ATTNSIM_KN_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { KN_F32 = 0, KN_F16 = 1, KN_BF16 = 2 } kn_dtype;
#define KN_NUM_DTYPES 3

/* Bytes of one element of the given storage type. */
size_t kn_dtype_bytes(kn_dtype t);
/* "f32", "f16", "bf16". */
const char *kn_dtype_name(kn_dtype t);
/* Parses a dtype name; returns 0 on success, -1 for an unknown name. */
int kn_dtype_parse(const char *name, kn_dtype *out);

/* IEEE binary16 and bfloat16 conversions, round to nearest even, inf/NaN/subnormals kept. */
float kn_f16_to_f32(uint16_t h);
uint16_t kn_f32_to_f16(float f);
float kn_bf16_to_f32(uint16_t h);
uint16_t kn_f32_to_bf16(float f);

/* Fatal error: `call` is what failed (e.g. "malloc"), `reason` says why. Never returns. */
typedef void (*kn_fatal_hook)(const char *call, const char *reason);
void kn_set_fatal_hook(kn_fatal_hook hook);
_Noreturn void kn_fatal(const char *call, const char *reason);

/* malloc that never returns NULL: failure goes through kn_fatal naming `what`. */
void *kn_xmalloc(size_t bytes, const char *what);
void *kn_xcalloc(size_t count, size_t size, const char *what);

static inline size_t kn_ceil_div(size_t a, size_t b)
{
    return (a + b - 1) / b;
}
static inline size_t kn_min(size_t a, size_t b)
{
    return a < b ? a : b;
}
static inline size_t kn_max(size_t a, size_t b)
{
    return a > b ? a : b;
}

#endif
