/* numeric.c: conversions between fp32 and the release's formats.
 *
 * Decoding goes through 256-entry tables (exact by construction from the format definition).
 * Encoding rounds to nearest with ties to even by scaling into an integer grid and using
 * rintf, which obeys the default IEEE rounding mode: exact because the grid steps are powers
 * of two, so the only rounding is the one we want. */
#include <math.h>
#include <pthread.h>

#include "base/base.h"
#include "numeric/numeric.h"

float dsv4_e8m0_table[256];
float dsv4_e4m3_table[256];
const float dsv4_e2m1_values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

static void build_tables(void) {
    for (int b = 0; b < 256; b++) {
        dsv4_e8m0_table[b] = b == 255 ? NAN : ldexpf(1.0f, b - 127);
        int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float v;
        if (e == 15 && m == 7) v = NAN;
        else if (e == 0) v = ldexpf((float)m / 8.0f, -6);
        else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
        dsv4_e4m3_table[b] = s ? -v : v;
    }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
void dsv4_numeric_init(void) { pthread_once(&tables_once, build_tables); }

__attribute__((constructor)) static void numeric_ctor(void) { dsv4_numeric_init(); }

uint8_t dsv4_f32_to_e8m0(float pow2) {
    uint32_t u;
    memcpy(&u, &pow2, 4);
    int e = (int)((u >> 23) & 0xff);
    if (e == 0) return 0; /* 2^-127 is the smallest e8m0; subnormal inputs map there */
    return (uint8_t)e;
}

float dsv4_pow2_ceil(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    int e = (int)((u >> 23) & 0xff) - 127 + ((u & 0x7fffffu) != 0);
    /* the kernels build 2^e from bits, (e + 127) << 23; keep that (e >= -126 in practice) */
    uint32_t r = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &r, 4);
    return f;
}

float dsv4_e4m3_round(float x) {
    if (x != x) return x;
    float a = fabsf(x);
    if (a >= 448.0f) return copysignf(448.0f, x);
    float step;
    if (a < 0.015625f) { /* below 2^-6: the subnormal grid, step 2^-9 */
        step = 0x1p-9f;
    } else {
        int e;
        frexpf(a, &e);         /* a = f * 2^e with f in [0.5, 1) */
        step = ldexpf(1.0f, e - 4); /* 3 mantissa bits below the leading one at 2^(e-1) */
    }
    float q = rintf(a / step) * step;
    if (q > 448.0f) q = 448.0f;
    return copysignf(q, x);
}

uint8_t dsv4_f32_to_e4m3(float x) {
    float q = dsv4_e4m3_round(x);
    uint8_t sign = signbit(q) ? 0x80 : 0;
    float a = fabsf(q);
    if (a == 0.0f) return sign;
    if (a < 0.015625f) return (uint8_t)(sign | (uint8_t)lrintf(a / 0x1p-9f));
    int e;
    float f = frexpf(a, &e); /* a = f*2^e, f in [0.5,1): exponent field e-1+7 */
    int m = (int)lrintf((f * 2.0f - 1.0f) * 8.0f);
    return (uint8_t)(sign | ((e + 6) << 3) | m);
}

uint8_t dsv4_f32_to_e2m1(float x) {
    uint8_t sign = signbit(x) ? 8 : 0;
    float a = fabsf(x);
    if (!(a == a)) return 7 | sign;
    uint8_t c;
    if (a >= 6.0f) c = 7;
    else if (a < 2.0f) {       /* grid of 0.5 over [0, 2): codes 0..4 */
        c = (uint8_t)lrintf(a * 2.0f);
    } else if (a < 4.0f) {     /* grid of 1 over [2, 4): codes 4..6 */
        c = (uint8_t)(2 + lrintf(a));
    } else {                   /* grid of 2 over [4, 6]: codes 6..7 */
        c = (uint8_t)(4 + lrintf(a / 2.0f));
    }
    return (uint8_t)(c | sign);
}

float dsv4_fp8_block_scale(const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    amax = fmaxf(amax, 1e-4f);
    return dsv4_pow2_ceil(amax * (1.0f / 448.0f));
}

float dsv4_fp4_block_scale(const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    amax = fmaxf(amax, 6.0f * 0x1p-126f);
    return dsv4_pow2_ceil(amax * (1.0f / 6.0f));
}

void dsv4_fp8_fake_quant(float *x, int n, int block) {
    for (int b = 0; b < n; b += block) {
        int e = DSV4_MIN(n, b + block); /* a short last block keeps its own scale */
        float s = dsv4_fp8_block_scale(x + b, e - b);
        for (int i = b; i < e; i++) {
            float v = fminf(fmaxf(x[i] / s, -448.0f), 448.0f);
            x[i] = dsv4_e4m3_round(v) * s;
        }
    }
}

void dsv4_fp4_fake_quant(float *x, int n, int block) {
    for (int b = 0; b < n; b += block) {
        int e = DSV4_MIN(n, b + block);
        float s = dsv4_fp4_block_scale(x + b, e - b);
        for (int i = b; i < e; i++) {
            float v = fminf(fmaxf(x[i] / s, -6.0f), 6.0f);
            x[i] = dsv4_e2m1_round(v) * s;
        }
    }
}

void dsv4_fp8_quant_codes(const float *x, int n, int block, uint8_t *q, uint8_t *s) {
    for (int b = 0; b < n; b += block) {
        float sc = dsv4_fp8_block_scale(x + b, block);
        s[b / block] = dsv4_f32_to_e8m0(sc);
        for (int i = b; i < b + block; i++) q[i] = dsv4_f32_to_e4m3(fminf(fmaxf(x[i] / sc, -448.0f), 448.0f));
    }
}

void dsv4_fp4_quant_codes(const float *x, int n, int block, uint8_t *q, uint8_t *s) {
    for (int b = 0; b < n; b += block) {
        float sc = dsv4_fp4_block_scale(x + b, block);
        s[b / block] = dsv4_f32_to_e8m0(sc);
        for (int i = b; i < b + block; i += 2) {
            uint8_t lo = dsv4_f32_to_e2m1(fminf(fmaxf(x[i] / sc, -6.0f), 6.0f));
            uint8_t hi = dsv4_f32_to_e2m1(fminf(fmaxf(x[i + 1] / sc, -6.0f), 6.0f));
            q[i / 2] = (uint8_t)(lo | (hi << 4));
        }
    }
}

float dsv4_fp4_e4m3_block_scale(const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    amax = fmaxf(amax, 6.0f * 0x1p-9f); /* keeps an all-zero block's scale nonzero */
    return dsv4_e4m3_round(amax / 6.0f);
}

void dsv4_fp4_e4m3s_fake_quant(float *x, int n, int block) {
    for (int b = 0; b < n; b += block) {
        int e = DSV4_MIN(n, b + block);
        float s = dsv4_fp4_e4m3_block_scale(x + b, e - b);
        for (int i = b; i < e; i++) x[i] = dsv4_e2m1_round(fminf(fmaxf(x[i] / s, -6.0f), 6.0f)) * s;
    }
}

void dsv4_fp4_e4m3s_quant_codes(const float *x, int n, int block, uint8_t *q, uint8_t *s) {
    for (int b = 0; b < n; b += block) {
        float sc = dsv4_fp4_e4m3_block_scale(x + b, block);
        s[b / block] = dsv4_f32_to_e4m3(sc);
        for (int i = b; i < b + block; i += 2) {
            uint8_t lo = dsv4_f32_to_e2m1(fminf(fmaxf(x[i] / sc, -6.0f), 6.0f));
            uint8_t hi = dsv4_f32_to_e2m1(fminf(fmaxf(x[i + 1] / sc, -6.0f), 6.0f));
            q[i / 2] = (uint8_t)(lo | (hi << 4));
        }
    }
}
