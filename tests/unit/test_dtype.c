/* test_dtype.c - f16 and bf16 conversions: exhaustive round trips, rounding to nearest even at
 * ties, overflow to infinity, subnormals, NaN; against the compiler's _Float16 where it has
 * one. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kn_common.h"
#include "test_util.h"

static uint32_t bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

static float from_bits(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

int main(void)
{
    /* every f16 value survives f16 -> f32 -> f16; NaNs stay NaN */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kn_f16_to_f32((uint16_t)h);
        int is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (is_nan)
            CHECK(isnan(f) && isnan(kn_f16_to_f32(kn_f32_to_f16(f))), "f16 NaN %04x", h);
        else
            CHECK(kn_f32_to_f16(f) == h, "f16 round trip %04x -> %g -> %04x", h, f,
                  kn_f32_to_f16(f));
    }
    /* every bf16 value survives bf16 -> f32 -> bf16 */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kn_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            CHECK(isnan(kn_bf16_to_f32(kn_f32_to_bf16(f))), "bf16 NaN %04x", h);
        else
            CHECK(kn_f32_to_bf16(f) == h, "bf16 round trip %04x", h);
    }
    /* known values */
    CHECK(kn_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(kn_f32_to_f16(-2.0f) == 0xc000, "-2.0");
    CHECK(kn_f32_to_f16(65504.0f) == 0x7bff, "max half");
    CHECK(kn_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down");
    CHECK(kn_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to inf");
    CHECK(kn_f32_to_f16(INFINITY) == 0x7c00 && kn_f32_to_f16(-INFINITY) == 0xfc00, "inf");
    CHECK(kn_f32_to_f16(0x1p-24f) == 0x0001, "smallest subnormal");
    CHECK(kn_f32_to_f16(0x1p-25f) == 0x0000, "half the smallest subnormal ties to even 0");
    CHECK(kn_f32_to_f16(0x1.8p-24f) == 0x0002, "1.5 ulp subnormal ties to even 2");
    CHECK(kn_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie below rounds to even");
    CHECK(kn_f32_to_f16(1.0f + 0x3p-11f) == 0x3c02, "tie above rounds to even");
    CHECK(kn_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even (down)");
    CHECK(kn_f32_to_bf16(1.0f + 0x3p-8f) == 0x3f82, "bf16 tie to even (up)");
    CHECK(kn_f32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80, "bf16 overflow to inf");
    CHECK(isnan(kn_bf16_to_f32(kn_f32_to_bf16(NAN))), "bf16 NaN");
#if defined(__FLT16_MAX__)
    /* an independent reference: the compiler's own conversion, over a sweep of f32 patterns */
    for (uint64_t x = 0; x < 0x100000000ull; x += 0x1003u) {
        float f = from_bits((uint32_t)x);
        if (isnan(f)) continue;
        _Float16 r = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &r, 2);
        CHECK(kn_f32_to_f16(f) == rb, "f32 %08x -> f16 %04x, compiler %04x", (uint32_t)x,
              kn_f32_to_f16(f), rb);
    }
#endif
    (void)bits;
    return test_finish("test_dtype");
}
