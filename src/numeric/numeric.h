/* numeric.h: the number formats of the DeepSeek-V4 release and its quantisation points.
 *
 * Formats: bf16 (weights, norms), FP8 e4m3fn (weights, activations, KV), e8m0 (power-of-two
 * block scales), FP4 e2m1 (routed experts, indexer q/k). All conversions round to nearest,
 * ties to even, as the official kernels do. The "fake quant" helpers quantise and dequantise
 * in one go: the value that comes back is exactly what the official code computes with. */
#ifndef DSV4_NUMERIC_H
#define DSV4_NUMERIC_H

#include <stdint.h>
#include <string.h>

/* ---- bf16 ---- */
static inline float dsv4_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t dsv4_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float dsv4_bf16_round(float f) { return dsv4_bf16_to_f32(dsv4_f32_to_bf16(f)); }

/* ---- e8m0 scales: 2^(b-127), 0xff = NaN ---- */
extern float dsv4_e8m0_table[256];
static inline float dsv4_e8m0_to_f32(uint8_t b) { return dsv4_e8m0_table[b]; }
/* The e8m0 byte of an exact power of two (as produced by dsv4_pow2_ceil). */
uint8_t dsv4_f32_to_e8m0(float pow2);

/* ---- FP8 e4m3fn: bias 7, max 448, no inf, 0x7f/0xff NaN ---- */
extern float dsv4_e4m3_table[256];
static inline float dsv4_e4m3_to_f32(uint8_t b) { return dsv4_e4m3_table[b]; }
float dsv4_e4m3_round(float x);  /* nearest e4m3 value (RNE), saturating at +-448 */
uint8_t dsv4_f32_to_e4m3(float x); /* code of dsv4_e4m3_round(x) */

/* ---- FP4 e2m1: codes 0..7 = {0, .5, 1, 1.5, 2, 3, 4, 6}, 8..15 negatives ---- */
extern const float dsv4_e2m1_values[16];
static inline float dsv4_e2m1_to_f32(uint8_t code) { return dsv4_e2m1_values[code & 15]; }
uint8_t dsv4_f32_to_e2m1(float x); /* RNE, saturating at +-6 */
static inline float dsv4_e2m1_round(float x) { return dsv4_e2m1_values[dsv4_f32_to_e2m1(x)]; }

/* 2^ceil(log2(v)) read off the fp32 bit pattern, as the official kernels' fast_round_scale. */
float dsv4_pow2_ceil(float v);

/* ---- block quantisation (the official act_quant / fp4_act_quant) ----
 * The FP8 scale of a block: amax floored at 1e-4, s = pow2_ceil(amax * fp32(1/448)).
 * The FP4 scale of a block: amax floored at 6*2^-126, s = pow2_ceil(amax * fp32(1/6)). */
float dsv4_fp8_block_scale(const float *x, int n);
float dsv4_fp4_block_scale(const float *x, int n);

/* In place: x <- e4m3(clamp(x/s)) * s per block of `block` values (n % block == 0). */
void dsv4_fp8_fake_quant(float *x, int n, int block);
/* In place: x <- e2m1(clamp(x/s)) * s per block of `block` values. */
void dsv4_fp4_fake_quant(float *x, int n, int block);

/* Quantise to codes: q[n] e4m3 bytes, s[n/block] e8m0 bytes (the compact KV layout). */
void dsv4_fp8_quant_codes(const float *x, int n, int block, uint8_t *q, uint8_t *s);
/* Quantise to packed e2m1 (two per byte, low nibble first) + e8m0 scales per block. */
void dsv4_fp4_quant_codes(const float *x, int n, int block, uint8_t *q, uint8_t *s);

/* V4.1's compressed-KV FP4: one e4m3 scale per block (not a power of two),
 * s = e4m3(max(amax, 6*2^-9) / 6), values e2m1(clamp(x / s, +-6)) * s. */
float dsv4_fp4_e4m3_block_scale(const float *x, int n);
void dsv4_fp4_e4m3s_fake_quant(float *x, int n, int block);
/* Codes: packed e2m1 (low nibble first) + one e4m3 scale byte per block. */
void dsv4_fp4_e4m3s_quant_codes(const float *x, int n, int block, uint8_t *q, uint8_t *s);

void dsv4_numeric_init(void); /* fills the tables; called once by the library */

#endif
