/* test_numeric.c: the number formats (src/numeric) against their definitions.
 *
 * Nothing here is derived from the code under test. Decoding is checked against the format
 * definitions written out in the test (sign, exponent field, mantissa field, bias); rounding
 * is checked against a brute-force search over every representable value with the
 * round-to-nearest-even tie rule, and against hand-worked cases (ties, saturation,
 * subnormals). The block fake-quant cases are worked by hand from the recipe of the spec
 * (v4-model.md 2.9): amax floored, s = 2^ceil(log2(amax * fp32(1/448))) (or 1/6 for FP4),
 * q = round(clamp(x/s)) * s; the fp32 products amax * fp32(1/448) quoted in the comments
 * were computed with numpy float32 arithmetic. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "numeric/numeric.h"

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A small deterministic generator (xorshift), so failures reproduce. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* ---- e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; E=15,M=7 is NaN, no infinity ---- */

static double e4m3_definition(int code) {
    int sign = code >> 7, E = (code >> 3) & 15, M = code & 7;
    if (E == 15 && M == 7) return NAN;
    /* subnormal: 0.M * 2^(1-7) = M/8 * 2^-6; normal: 1.M * 2^(E-7) */
    double mag = E == 0 ? (M / 8.0) * pow(2.0, -6) : (1.0 + M / 8.0) * pow(2.0, E - 7);
    return sign ? -mag : mag;
}

/* Round |x| to the nearest finite e4m3 value by trying them all; on a tie the even code
 * (mantissa LSB 0) wins. Values beyond 448 saturate (the kernels clamp first). */
static double e4m3_nearest(double x) {
    double a = fabs(x), best = 0.0, bestd = INFINITY;
    int bestc = 0;
    if (a >= 448.0) return copysign(448.0, x);
    for (int c = 0; c <= 0x7e; c++) {
        double v = e4m3_definition(c), d = fabs(a - v);
        if (d < bestd || (d == bestd && (c & 1) == 0 && (bestc & 1))) {
            best = v;
            bestd = d;
            bestc = c;
        }
    }
    return copysign(best, x);
}

static void test_e4m3_decode(void) {
    int nan_codes = 0;
    for (int c = 0; c < 256; c++) {
        double want = e4m3_definition(c);
        float got = dsv4_e4m3_to_f32((uint8_t)c);
        if (isnan(want)) {
            nan_codes++;
            CHECK(isnan(got), "e4m3 code 0x%02x should be NaN, got %g", c, got);
        } else {
            CHECK((double)got == want, "e4m3 code 0x%02x: got %.9g, definition %.9g", c, got, want);
            CHECK(!!signbit(got) == (c >> 7), "e4m3 code 0x%02x: sign", c);
        }
    }
    CHECK(nan_codes == 2, "e4m3fn has exactly two NaN codes (0x7f, 0xff), counted %d", nan_codes);
    /* landmarks of the format, by hand */
    CHECK(dsv4_e4m3_to_f32(0x7e) == 448.0f, "0x7e is the largest finite value 448");
    CHECK(dsv4_e4m3_to_f32(0x38) == 1.0f, "0x38 = 1.0 (E=7, M=0)");
    CHECK(dsv4_e4m3_to_f32(0x3c) == 1.5f, "0x3c = 1.5");
    CHECK(dsv4_e4m3_to_f32(0xb8) == -1.0f, "0xb8 = -1.0");
    CHECK(dsv4_e4m3_to_f32(0x08) == 0x1p-6f, "0x08 = 2^-6, the smallest normal");
    CHECK(dsv4_e4m3_to_f32(0x07) == 7 * 0x1p-9f, "0x07 = 7 * 2^-9, the largest subnormal");
    CHECK(dsv4_e4m3_to_f32(0x01) == 0x1p-9f, "0x01 = 2^-9, the smallest subnormal");
    CHECK(dsv4_e4m3_to_f32(0x80) == 0.0f && signbit(dsv4_e4m3_to_f32(0x80)), "0x80 = -0");
}

static void e4m3_round_case(float x, float want) {
    float got = dsv4_e4m3_round(x);
    CHECK(got == want && !!signbit(got) == !!signbit(want), "e4m3_round(%.9g) = %.9g, expected %.9g", x, got, want);
}

static void test_e4m3_round(void) {
    /* hand-worked ties: RNE picks the value whose mantissa is even */
    e4m3_round_case(1.0625f, 1.0f);   /* midway 1 (M=0) and 1.125 (M=1) -> 1 */
    e4m3_round_case(1.1875f, 1.25f);  /* midway 1.125 (M=1) and 1.25 (M=2) -> 1.25 */
    e4m3_round_case(1.0626f, 1.125f); /* just above the tie -> up */
    e4m3_round_case(-1.0625f, -1.0f);
    e4m3_round_case(400.0f, 384.0f); /* midway 384 (M=4) and 416 (M=5) */
    e4m3_round_case(432.0f, 448.0f); /* midway 416 (M=5) and 448 (M=6) */
    e4m3_round_case(15.5f, 16.0f);   /* midway 15 (E=10,M=7) and 16 (E=11,M=0): exponent carry */
    /* saturation (the kernels clamp to +-448 before the cast; beyond it nothing but 448) */
    e4m3_round_case(448.0f, 448.0f);
    e4m3_round_case(460.0f, 448.0f);
    e4m3_round_case(464.0f, 448.0f); /* would be a tie toward 480, which does not exist */
    e4m3_round_case(1e9f, 448.0f);
    e4m3_round_case(-1e9f, -448.0f);
    /* subnormals: grid 2^-9 below 2^-6 */
    e4m3_round_case(0x1p-10f, 0.0f);            /* half the smallest subnormal: tie -> 0 */
    e4m3_round_case(0x1.0001p-10f, 0x1p-9f);    /* just above -> 2^-9 */
    e4m3_round_case(3 * 0x1p-10f, 2 * 0x1p-9f); /* tie between 1 and 2 units -> 2 */
    e4m3_round_case(5 * 0x1p-10f, 2 * 0x1p-9f); /* tie between 2 and 3 units -> 2 */
    e4m3_round_case(15 * 0x1p-10f, 0x1p-6f);    /* tie 7 units / 2^-6 -> 2^-6 (code 0x08) */
    e4m3_round_case(-0x1p-12f, -0.0f);          /* tiny negative keeps its sign */
    e4m3_round_case(0.0f, 0.0f);

    /* brute force: every representable value, every midpoint and its neighbours, and
     * log-uniform random values over the whole range, both signs */
    int bad = 0;
    for (int c = 0; c < 0x7e; c++) {
        double v0 = e4m3_definition(c), v1 = e4m3_definition(c + 1), mid = (v0 + v1) / 2;
        float xs[5] = {(float)v0, (float)mid, nextafterf((float)mid, 0.0f), nextafterf((float)mid, 1e9f), (float)v1};
        for (int i = 0; i < 5; i++)
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                float x = xs[i] * (float)sgn;
                if ((double)dsv4_e4m3_round(x) != e4m3_nearest(x) && bad++ < 10)
                    CHECK(0, "e4m3_round(%.9g) = %.9g, nearest-even is %.9g", x, dsv4_e4m3_round(x), e4m3_nearest(x));
            }
    }
    for (int i = 0; i < 20000; i++) {
        float x = (float)(pow(2.0, -12 + 21 * uniform()) * (uniform() < 0.5 ? -1 : 1));
        if ((double)dsv4_e4m3_round(x) != e4m3_nearest(x) && bad++ < 10)
            CHECK(0, "e4m3_round(%.9g) = %.9g, nearest-even is %.9g", x, dsv4_e4m3_round(x), e4m3_nearest(x));
    }
    CHECK(bad == 0, "%d e4m3 roundings disagree with the brute-force nearest-even", bad);
}

static void test_e4m3_codes(void) {
    /* every finite code encodes back to itself */
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) continue;
        uint8_t got = dsv4_f32_to_e4m3(dsv4_e4m3_to_f32((uint8_t)c));
        CHECK(got == c, "e4m3 code 0x%02x encodes back as 0x%02x", c, got);
    }
    /* hand-encoded: 384 = 1.5 * 2^8 -> E = 15, M = 4; -4 = -1.0 * 2^2 -> 0x80 | E 9 */
    CHECK(dsv4_f32_to_e4m3(400.0f) == 0x7c, "400 encodes as 0x7c (384), got 0x%02x", dsv4_f32_to_e4m3(400.0f));
    CHECK(dsv4_f32_to_e4m3(-4.0f) == 0xc8, "-4 encodes as 0xc8, got 0x%02x", dsv4_f32_to_e4m3(-4.0f));
    CHECK(dsv4_f32_to_e4m3(3 * 0x1p-10f) == 0x02, "3*2^-10 encodes as subnormal 0x02");
    CHECK(dsv4_f32_to_e4m3(1000.0f) == 0x7e, "1000 saturates to 0x7e");
    /* the code of a rounded value decodes to the rounded value */
    int bad = 0;
    for (int i = 0; i < 5000; i++) {
        float x = (float)(pow(2.0, -12 + 21 * uniform()) * (uniform() < 0.5 ? -1 : 1));
        if (dsv4_e4m3_to_f32(dsv4_f32_to_e4m3(x)) != dsv4_e4m3_round(x)) bad++;
    }
    CHECK(bad == 0, "%d random values: decode(encode(x)) != round(x)", bad);
}

/* ---- e2m1: 1 sign, 2 exponent (bias 1), 1 mantissa bit: 0, .5, 1, 1.5, 2, 3, 4, 6 ---- */

static double e2m1_definition(int code) {
    int sign = (code >> 3) & 1, E = (code >> 1) & 3, M = code & 1;
    double mag = E == 0 ? M * 0.5 : (1.0 + M / 2.0) * pow(2.0, E - 1);
    return sign ? -mag : mag;
}

static void test_e2m1(void) {
    for (int c = 0; c < 16; c++)
        CHECK((double)dsv4_e2m1_to_f32((uint8_t)c) == e2m1_definition(c), "e2m1 code %d: got %g, definition %g", c,
              dsv4_e2m1_to_f32((uint8_t)c), e2m1_definition(c));
    /* the ties the brief lists, by hand: the even mantissa wins */
    static const float tie_in[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    static const float tie_out[] = {0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f};
    for (int i = 0; i < 7; i++) {
        CHECK(dsv4_e2m1_round(tie_in[i]) == tie_out[i], "e2m1(%g) = %g, expected %g", tie_in[i],
              dsv4_e2m1_round(tie_in[i]), tie_out[i]);
        CHECK(dsv4_e2m1_round(-tie_in[i]) == -tie_out[i], "e2m1(%g) = %g, expected %g", -tie_in[i],
              dsv4_e2m1_round(-tie_in[i]), -tie_out[i]);
    }
    CHECK(dsv4_f32_to_e2m1(6.0f) == 7 && dsv4_f32_to_e2m1(100.0f) == 7, "e2m1 saturates at 6 (code 7)");
    CHECK(dsv4_f32_to_e2m1(-5.5f) == 15, "-5.5 -> -6 (code 15)");
    CHECK(dsv4_f32_to_e2m1(-1.5f) == 11, "-1.5 -> code 11");
    /* brute force over a fine grid: nearest value, ties to the even code */
    int bad = 0;
    for (int i = -800; i <= 800; i++) {
        float x = (float)i / 128.0f; /* hits every midpoint exactly */
        double a = fabs((double)x), best = 0, bestd = INFINITY;
        int bestc = 0;
        for (int c = 0; c < 8; c++) {
            double d = fabs(a - e2m1_definition(c));
            if (d < bestd || (d == bestd && (c & 1) == 0 && (bestc & 1))) {
                best = e2m1_definition(c);
                bestd = d;
                bestc = c;
            }
        }
        if (a > 6) best = 6;
        if ((double)fabsf(dsv4_e2m1_round(x)) != best && bad++ < 10)
            CHECK(0, "e2m1(%g) = %g, nearest-even %g", x, dsv4_e2m1_round(x), best);
    }
    CHECK(bad == 0, "%d e2m1 roundings disagree with the brute-force nearest-even", bad);
}

/* ---- e8m0: 2^(b - 127), 0xff NaN ---- */
static void test_e8m0(void) {
    for (int b = 0; b < 255; b++)
        CHECK((double)dsv4_e8m0_to_f32((uint8_t)b) == pow(2.0, b - 127), "e8m0 %d: got %g", b,
              dsv4_e8m0_to_f32((uint8_t)b));
    CHECK(isnan(dsv4_e8m0_to_f32(255)), "e8m0 0xff is NaN");
    for (int k = -126; k <= 127; k++)
        CHECK(dsv4_f32_to_e8m0(ldexpf(1.0f, k)) == k + 127, "e8m0 of 2^%d: got %d", k,
              dsv4_f32_to_e8m0(ldexpf(1.0f, k)));
}

/* ---- bf16: the top 16 bits of fp32, rounded to nearest even ---- */
static float bf16_reference(float x) {
    uint32_t u = f2u(x);
    /* the neighbours toward zero and away from it; past the largest finite bf16 the one away
     * is 2^128 (IEEE rounds as if the exponent were unbounded, then overflows to infinity) */
    float lo = u2f(u & 0xffff0000u), hi = u2f((u & 0xffff0000u) + 0x10000u);
    double dhi_val = isinf(hi) ? copysign(ldexp(1.0, 128), x) : (double)hi;
    double dlo = fabs((double)x - lo), dhi = fabs(dhi_val - x);
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (f2u(lo) & 0x10000u) ? hi : lo; /* tie: even last kept bit */
}

static void test_bf16(void) {
    CHECK(dsv4_bf16_round(1.0f + 0x1p-8f) == 1.0f, "1 + 2^-8 is a tie -> 1");
    CHECK(dsv4_bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f, "1 + 3*2^-8 is a tie -> 1 + 2^-6 (even)");
    CHECK(dsv4_bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f, "just above the tie rounds up");
    CHECK(dsv4_bf16_round(1.0f + 0x1p-7f + 0x1p-9f) == 1.0f + 0x1p-7f, "below the tie rounds down");
    CHECK(dsv4_bf16_round(-(1.0f + 0x1p-8f)) == -1.0f, "negative tie -> -1");
    CHECK(isinf(dsv4_bf16_round(3.4028235e38f)), "FLT_MAX rounds up to +inf");
    CHECK(dsv4_f32_to_bf16(1.0f) == 0x3f80, "bf16(1) = 0x3f80");
    CHECK(dsv4_f32_to_bf16(-2.0f) == 0xc000, "bf16(-2) = 0xc000");
    CHECK(isnan(dsv4_bf16_round(NAN)), "NaN stays NaN");
    CHECK(isinf(dsv4_bf16_round(INFINITY)) && dsv4_bf16_round(INFINITY) > 0, "inf stays inf");
    CHECK(dsv4_bf16_to_f32(0x4049) == 3.140625f, "0x4049 = 3.140625");
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint32_t u = (uint32_t)(uniform() * 4294967296.0);
        if ((u & 0x7f800000u) == 0x7f800000u) continue; /* inf / NaN checked above */
        float x = u2f(u);
        if (f2u(dsv4_bf16_round(x)) != f2u(bf16_reference(x)) && bad++ < 10)
            CHECK(0, "bf16(%a) = %a, expected %a", x, dsv4_bf16_round(x), bf16_reference(x));
    }
    /* every tie pattern explicitly: low 16 bits 0x8000 */
    for (int i = 0; i < 2000; i++) {
        uint32_t u = ((uint32_t)(uniform() * 0x7f00) << 16) | 0x8000u;
        float x = u2f(u);
        if (f2u(dsv4_bf16_round(x)) != f2u(bf16_reference(x)) && bad++ < 10)
            CHECK(0, "bf16 tie %a = %a, expected %a", x, dsv4_bf16_round(x), bf16_reference(x));
    }
    CHECK(bad == 0, "%d bf16 roundings disagree with the nearest-even reference", bad);
}

/* ---- pow2_ceil ---- */
static void test_pow2_ceil(void) {
    /* {v, 2^ceil(log2 v)}; the fp32 products amax * fp32(1/448) of the block cases below included */
    static const float cases[][2] = {
        {1.0f, 1.0f},           {0.75f, 1.0f},          {1.0000001f, 2.0f}, {3.0f, 4.0f},
        {4.0f, 4.0f},           {0.015625f, 0.015625f}, {0.2232143f, 0.25f}, {2.2321429e-07f, 0x1p-22f},
        {0x1p-126f, 0x1p-126f}, {0x1.8p-126f, 0x1p-125f}, {1.1666667f, 2.0f}, {1.0022322f, 2.0f},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++)
        CHECK(dsv4_pow2_ceil(cases[i][0]) == cases[i][1], "pow2_ceil(%.9g) = %.9g, expected %.9g", cases[i][0],
              dsv4_pow2_ceil(cases[i][0]), cases[i][1]);
}

/* ---- block fake-quant and codes ---- */
static void test_fp8_blocks(void) {
    /* Block 64, two blocks. Block 0: amax 100, 100 * fp32(1/448) = 0.2232143 -> s = 0.25.
     *   100/s = 400: tie 384|416 -> 384 -> 96;  -1/s = -4 -> -1;  0.3/s = 1.2 -> 1.25 -> 0.3125;
     *   0.001/s = 0.004: subnormal grid 2^-9, 2.048 units -> 2 -> 2^-8 * 0.25;  7/s = 28 -> 7;
     *   99/s = 396 -> 384 -> 96.
     * Block 1: amax 1e-5 < 1e-4 floor; 1e-4 * fp32(1/448) = 2.2321429e-07 -> s = 2^-22;
     *   1e-5/s = 41.94304 -> grid of 4 in [32,64) -> 40 -> 40 * 2^-22. */
    float x[128] = {0};
    x[0] = 100.0f, x[1] = -1.0f, x[2] = 0.3f, x[3] = 0.001f, x[4] = 7.0f, x[5] = 99.0f;
    x[64] = 1e-5f, x[65] = -1e-5f;
    float y[128];
    memcpy(y, x, sizeof x);
    dsv4_fp8_fake_quant(y, 128, 64);
    static const float want0[6] = {96.0f, -1.0f, 0.3125f, 0x1p-8f * 0.25f, 7.0f, 96.0f};
    for (int i = 0; i < 6; i++)
        CHECK(y[i] == want0[i], "fp8 block 64 [%d]: %.9g -> %.9g, expected %.9g", i, x[i], y[i], want0[i]);
    CHECK(y[64] == 40 * 0x1p-22f && y[65] == -40 * 0x1p-22f, "fp8 floored block: %.9g, expected %.9g", y[64],
          40 * 0x1p-22f);
    for (int i = 6; i < 64; i++) CHECK(y[i] == 0.0f, "zeros stay zero [%d]", i);

    uint8_t q[128], s[2];
    dsv4_fp8_quant_codes(x, 128, 64, q, s);
    CHECK(s[0] == 125 && s[1] == 127 - 22, "fp8 scale bytes %d %d, expected 125 (0.25) and 105 (2^-22)", s[0], s[1]);
    CHECK(q[0] == 0x7c && q[1] == 0xc8, "fp8 codes 0x%02x 0x%02x, expected 0x7c (384) 0xc8 (-4)", q[0], q[1]);
    for (int i = 0; i < 128; i++) {
        float back = dsv4_e4m3_to_f32(q[i]) * dsv4_e8m0_to_f32(s[i / 64]);
        CHECK(back == y[i], "fp8 codes decode [%d]: %.9g vs fake-quant %.9g", i, back, y[i]);
    }

    /* Block 128: amax 7, 7 * fp32(1/448) rounds to exactly 2^-6 -> s = 2^-6 (no bump, the
     * mantissa is zero). 7/s = 448; 1/s = 64; 0.1/s = 6.4 -> grid .5 in [4,8) -> 6.5 -> 0.1015625;
     * -3.3/s = -211.2 -> grid 16 in [128,256) -> -208 -> -3.25. */
    float z[128] = {0};
    z[0] = 7.0f, z[1] = 1.0f, z[2] = 0.1f, z[3] = -3.3f;
    dsv4_fp8_fake_quant(z, 128, 128);
    static const float want1[4] = {7.0f, 1.0f, 0.1015625f, -3.25f};
    for (int i = 0; i < 4; i++) CHECK(z[i] == want1[i], "fp8 block 128 [%d]: %.9g, expected %.9g", i, z[i], want1[i]);

    /* a short last block (70 = 64 + 6) has its own scale: the tail's amax 0.5 gives
     * 0.5 * fp32(1/448) = 0.0011161 -> s = 2^-9; 0.0107 / s = 5.478 -> grid .5 -> 5.5 -> 0.0107421875.
     * With block 0's scale (1, amax 448) it would land on the subnormal grid: 5 * 2^-9. */
    float t2[70] = {0};
    t2[0] = 448.0f, t2[64] = 0.5f, t2[65] = 0.0107f;
    dsv4_fp8_fake_quant(t2, 70, 64);
    CHECK(t2[65] == 5.5f * 0x1p-9f, "short block keeps its own scale: %.9g, expected %.9g", t2[65], 5.5f * 0x1p-9f);
}

static void test_fp4_blocks(void) {
    /* Block 0: amax 7, 7 * fp32(1/6) = 1.1666667 -> s = 2. x/s: 3.5 tie 3|4 -> 4 -> 8 (above
     * amax: RNE can round up); 0.5 -> 1; 0.25 tie -> 0; -1.45 -> -1.5 -> -3; 2.5 tie -> 2 -> 4;
     * 0.75 tie -> 1 -> 2.
     * Block 1: amax 3, 3 * fp32(1/6) = 0.5 exactly in fp32 -> s = 0.5. x/s: 6 -> 3; 2.2 -> 2 -> 1;
     * 0.25 tie -> 0; 1.75 tie -> 2 -> 1. */
    float x[64] = {0};
    x[0] = 7.0f, x[1] = 1.0f, x[2] = 0.5f, x[3] = -2.9f, x[4] = 5.0f, x[5] = 1.5f;
    x[32] = 3.0f, x[33] = 1.1f, x[34] = 0.125f, x[35] = 0.875f;
    float y[64];
    memcpy(y, x, sizeof x);
    dsv4_fp4_fake_quant(y, 64, 32);
    static const float want[] = {8.0f, 1.0f, 0.0f, -3.0f, 4.0f, 2.0f};
    static const float want1[] = {3.0f, 1.0f, 0.0f, 1.0f};
    for (int i = 0; i < 6; i++)
        CHECK(y[i] == want[i], "fp4 block 0 [%d]: %.9g -> %.9g, expected %.9g", i, x[i], y[i], want[i]);
    for (int i = 0; i < 4; i++)
        CHECK(y[32 + i] == want1[i], "fp4 block 1 [%d]: %.9g -> %.9g, expected %.9g", i, x[32 + i], y[32 + i],
              want1[i]);
    /* all-zero block: the floor 6*2^-126 gives s = 2^-126, zeros stay zero */
    float zero[32] = {0};
    dsv4_fp4_fake_quant(zero, 32, 32);
    for (int i = 0; i < 32; i++) CHECK(zero[i] == 0.0f, "fp4 zero block [%d]", i);

    uint8_t q[32], s[2];
    dsv4_fp4_quant_codes(x, 64, 32, q, s);
    CHECK(s[0] == 128 && s[1] == 126, "fp4 scale bytes %d %d, expected 128 (2) and 126 (0.5)", s[0], s[1]);
    /* low nibble first: (7 -> 4.0 = code 6, 1 -> 0.5 = code 1), (0.5 -> 0, -2.9 -> -1.5 = code 11) */
    CHECK(q[0] == 0x16 && q[1] == 0xb0, "fp4 packed bytes 0x%02x 0x%02x, expected 0x16 0xb0", q[0], q[1]);
    for (int i = 0; i < 64; i++) {
        uint8_t code = (i & 1) ? q[i / 2] >> 4 : q[i / 2] & 15;
        float back = dsv4_e2m1_to_f32(code) * dsv4_e8m0_to_f32(s[i / 32]);
        CHECK(back == y[i], "fp4 codes decode [%d]: %.9g vs fake-quant %.9g", i, back, y[i]);
    }
}

int main(void) {
    dsv4_numeric_init();
    test_e4m3_decode();
    test_e4m3_round();
    test_e4m3_codes();
    test_e2m1();
    test_e8m0();
    test_bf16();
    test_pow2_ceil();
    test_fp8_blocks();
    test_fp4_blocks();
    return check_done("test_numeric");
}
