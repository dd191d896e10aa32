/* kn_mem.c - counted HBM <-> SRAM transfers (see kn_mem.h). */
#include "kn_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kn_tensor_alloc(kn_tensor *t, kn_dtype dtype, size_t elems, const char *what)
{
    t->dtype = dtype;
    t->elems = elems;
    t->data = kn_xcalloc(elems, kn_dtype_bytes(dtype), what);
}

void kn_tensor_free(kn_tensor *t)
{
    free(t->data);
    t->data = NULL;
    t->elems = 0;
}

float kn_tensor_get(const kn_tensor *t, size_t i)
{
    switch (t->dtype) {
    case KN_F32:
        return ((const float *)t->data)[i];
    case KN_F16:
        return kn_f16_to_f32(((const uint16_t *)t->data)[i]);
    case KN_BF16:
        return kn_bf16_to_f32(((const uint16_t *)t->data)[i]);
    }
    return 0.0f;
}

void kn_tensor_set(kn_tensor *t, size_t i, float v)
{
    switch (t->dtype) {
    case KN_F32:
        ((float *)t->data)[i] = v;
        break;
    case KN_F16:
        ((uint16_t *)t->data)[i] = kn_f32_to_f16(v);
        break;
    case KN_BF16:
        ((uint16_t *)t->data)[i] = kn_f32_to_bf16(v);
        break;
    }
}

static void check_range(const kn_tensor *t, size_t at, size_t n, const char *op)
{
    if (at > t->elems || n > t->elems - at) {
        char why[160];
        snprintf(why, sizeof why, "elements [%zu, %zu) outside a tensor of %zu", at, at + n,
                 t->elems);
        kn_fatal(op, why);
    }
}

/* The type switch sits outside the loops so each copy loop is a plain vectorisable loop. */
static void convert_in(const kn_tensor *t, size_t at, size_t n, float *dst)
{
    switch (t->dtype) {
    case KN_F32:
        memcpy(dst, (const float *)t->data + at, n * sizeof(float));
        break;
    case KN_F16: {
        const uint16_t *src = (const uint16_t *)t->data + at;
        for (size_t i = 0; i < n; i++) dst[i] = kn_f16_to_f32(src[i]);
        break;
    }
    case KN_BF16: {
        const uint16_t *src = (const uint16_t *)t->data + at;
        for (size_t i = 0; i < n; i++) dst[i] = kn_bf16_to_f32(src[i]);
        break;
    }
    }
}

static void convert_out(kn_tensor *t, size_t at, size_t n, const float *src)
{
    switch (t->dtype) {
    case KN_F32:
        memcpy((float *)t->data + at, src, n * sizeof(float));
        break;
    case KN_F16: {
        uint16_t *dst = (uint16_t *)t->data + at;
        for (size_t i = 0; i < n; i++) dst[i] = kn_f32_to_f16(src[i]);
        break;
    }
    case KN_BF16: {
        uint16_t *dst = (uint16_t *)t->data + at;
        for (size_t i = 0; i < n; i++) dst[i] = kn_f32_to_bf16(src[i]);
        break;
    }
    }
}

void kn_hbm_read(kn_counters *c, const kn_tensor *t, size_t at, size_t n, float *sram)
{
    check_range(t, at, n, "kn_hbm_read");
    convert_in(t, at, n, sram);
    c->bytes_read += (uint64_t)n * kn_dtype_bytes(t->dtype);
}

void kn_hbm_write(kn_counters *c, kn_tensor *t, size_t at, size_t n, const float *sram)
{
    check_range(t, at, n, "kn_hbm_write");
    convert_out(t, at, n, sram);
    c->bytes_written += (uint64_t)n * kn_dtype_bytes(t->dtype);
}

void kn_hbm_read_tile(kn_counters *c, const kn_tensor *t, size_t at, size_t rows, size_t cols,
                      size_t ld, float *sram)
{
    for (size_t r = 0; r < rows; r++) kn_hbm_read(c, t, at + r * ld, cols, sram + r * cols);
}

void kn_hbm_write_tile(kn_counters *c, kn_tensor *t, size_t at, size_t rows, size_t cols, size_t ld,
                       const float *sram)
{
    for (size_t r = 0; r < rows; r++) kn_hbm_write(c, t, at + r * ld, cols, sram + r * cols);
}

void kn_sram_init(kn_sram *s, size_t capacity_elems)
{
    s->base = kn_xmalloc(capacity_elems * sizeof(float), "SRAM arena");
    s->capacity = capacity_elems;
    s->used = 0;
}

float *kn_sram_take(kn_sram *s, size_t elems, const char *what)
{
    if (elems > s->capacity - s->used) {
        char why[200];
        snprintf(why, sizeof why, "%s needs %zu elements but only %zu of the %zu are free", what,
                 elems, s->capacity - s->used, s->capacity);
        kn_fatal("kn_sram_take", why);
    }
    float *p = s->base + s->used;
    s->used += elems;
    return p;
}

void kn_sram_reset(kn_sram *s)
{
    s->used = 0;
}

void kn_sram_free(kn_sram *s)
{
    free(s->base);
    s->base = NULL;
    s->capacity = s->used = 0;
}
