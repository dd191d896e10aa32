/* kn_common.c - element types, conversions and the fatal-error hook (see kn_common.h). */
#include "kn_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t bytes;
} dtype_info[KN_NUM_DTYPES] = {{"f32", 4}, {"f16", 2}, {"bf16", 2}};

size_t kn_dtype_bytes(kn_dtype t)
{
    return dtype_info[t].bytes;
}
const char *kn_dtype_name(kn_dtype t)
{
    return dtype_info[t].name;
}

int kn_dtype_parse(const char *name, kn_dtype *out)
{
    for (int i = 0; i < KN_NUM_DTYPES; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (kn_dtype)i;
            return 0;
        }
    return -1;
}

static uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

float kn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: man * 2^-24 is exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t kn_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf stays inf; NaN stays a quiet NaN with its top payload bits */
        return sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u);
    if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity (65504 is the largest finite) */
        return sign | 0x7c00u;
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half, unit 2^-24; scaling is exact */
        float a = bits_f32(ax);
        return sign | (uint16_t)nearbyintf(a * 0x1p24f);
    }
    uint32_t h = (ax - 0x38000000u) >> 13; /* rebias exponent 127 -> 15, drop 13 mantissa bits */
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return sign | (uint16_t)h;
}

float kn_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t kn_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static void default_fatal(const char *call, const char *reason)
{
    fprintf(stderr, "attnsim: %s failed: %s\n", call, reason);
    exit(1);
}

static kn_fatal_hook fatal_hook = default_fatal;

void kn_set_fatal_hook(kn_fatal_hook hook)
{
    fatal_hook = hook ? hook : default_fatal;
}

_Noreturn void kn_fatal(const char *call, const char *reason)
{
    fatal_hook(call, reason);
    abort(); /* a hook must not return */
}

void *kn_xmalloc(size_t bytes, const char *what)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        char why[160];
        snprintf(why, sizeof why, "out of memory allocating %zu bytes for %s", bytes, what);
        kn_fatal("malloc", why);
    }
    return p;
}

void *kn_xcalloc(size_t count, size_t size, const char *what)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        char why[160];
        snprintf(why, sizeof why, "out of memory allocating %zu x %zu bytes for %s", count, size,
                 what);
        kn_fatal("calloc", why);
    }
    return p;
}
