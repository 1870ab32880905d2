/* linear_neon.c: the matmul kernels for AArch64 Advanced SIMD (NEON), with the BF16 matrix
 * multiply-accumulate instruction (BFMMLA) where the CPU has it.
 *
 * Two sets: `neon` runs on every AArch64 CPU; `neon-bf16` on those with FEAT_BF16, which
 * linear_arm.c checks at run time (HWCAP2_BF16). The file is compiled for the base
 * architecture; only the functions that use BFMMLA are compiled for armv8.2-a+bf16 (a target
 * pragma around them), so nothing else can pick up a newer instruction.
 *
 * Weights are read once, in their stored format, 32 inputs (a group) at a time, and widened in
 * registers, exactly:
 *   FP8  an e4m3 byte becomes an fp16 bit pattern by a sign-extending shift (SSHLL #7) and a
 *        bit clear: its 4 exponent and 3 mantissa bits land in the fp16 fields, subnormals
 *        included, and the pattern means the e4m3 value x 2^-8 (the exponent biases differ by
 *        8), which the scale puts back. FCVTL widens fp16 to fp32 exactly. The NaN codes (0x7f,
 *        0xff) would read as 480 x 2^-8: a byte compare finds them and they are patched in.
 *   FP4  the nibbles, split and zipped into input order, index two 16-entry byte tables (TBL):
 *        the high and the low byte of each e2m1 value's bf16 pattern.
 *   BF16 as stored; to fp32 by a 16-bit shift.
 * Two kinds of arithmetic, chosen per product as the x86 sets do:
 *   fp32 (both sets; the only one of `neon`): each weight times its scale, the very values the
 *     portable kernel dequantises, dotted with the portable kernel's eight partial sums (input
 *     i goes to sum i mod 8; the sums are two 4-lane vectors) advanced by a multiply and an
 *     add, as C11 evaluates the portable kernel's s += w * x (no fused multiply-add), and
 *     combined in the portable order. So this way computes what the portable kernel computes,
 *     bit for bit, as the AVX2 set does on x86.
 *   bf16 (`neon-bf16`, when the activations are bf16-exact, as FP8-rounded ones always are):
 *     BFMMLA multiplies a 2x4 block of weights (two rows, four inputs) by a 4x2 block of
 *     activations (four inputs, two tokens) into a 2x2 tile of fp32 sums. So rows go in pairs
 *     and tokens in pairs, the activations packed to match (per token pair: four inputs of the
 *     first token, the same four of the second, ...). The weights are unscaled: each output
 *     sums one scale block's products in a BFMMLA chain, then adds chain x scale to its total
 *     with an FMA.
 *
 * Summation order. Every output element is one fixed chain of operations determined by its
 * row and the set alone: not by the thread split, not by which rows or tokens share its
 * register tile, and not by the number of tokens n. Both shapes of work run the same chain:
 *   row tiles (n < PANEL_MIN, decode): a few rows are converted in registers, group by group,
 *     and used at once for one or two tokens (pairs); the weights stream from memory once.
 *   panels (prefill): PANEL_ROWS rows are converted once into a small panel (L2), and register
 *     tiles over all the tokens read them from there.
 * So a token's outputs are bit-identical whether it is decoded alone or prefilled in a batch.
 *
 * BFMMLA ignores the FPCR: it flushes subnormal inputs and results to zero and rounds its
 * additions to odd (a faithful rounding, within one ulp). The weights it sees are normal
 * (e4m3 x 2^-8 >= 2^-17, e2m1 >= 0.5; BF16 weights as stored) and bf16-exact activations have
 * no subnormals, so only products below 2^-126 are lost, as with VDPBF16PS on x86.
 *
 * Rows whose FP8 scale times 256 overflows (2^120 and up) go the portable way, whole. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <pthread.h>

#include "base/base.h"
#include "kernels/linear.h"
#include "numeric/numeric.h"

enum {
    GROUP = 32,       /* inputs converted at a time */
    TILE_ROWS = 4,    /* fp32 register tile: rows ... */
    TILE_TOKENS = 2,  /* ... x tokens */
    TILE_PAIRS = 4,   /* bf16 register tile: row pairs ... */
    TILE_TPAIRS = 2,  /* ... x token pairs */
    PANEL_MIN = 8,    /* tokens from which the weights are converted into panels */
    PANEL_ROWS = 16,  /* rows per panel (a multiple of TILE_ROWS and 2 * TILE_PAIRS) */
};

#define INLINE static inline __attribute__((always_inline))

/* ---- tables -------------------------------------------------------------------------------- */

/* The bf16 pattern of each e2m1 code: high and low byte. */
static uint8_t fp4_hi[16] __attribute__((aligned(16))), fp4_lo[16] __attribute__((aligned(16)));

static void build_tables(void) {
    for (int c = 0; c < 16; c++) {
        float v = dsv4_e2m1_to_f32((uint8_t)c);
        uint32_t u;
        memcpy(&u, &v, 4); /* exact in bf16: e2m1 has one mantissa bit */
        fp4_hi[c] = (uint8_t)(u >> 24);
        fp4_lo[c] = (uint8_t)(u >> 16);
    }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
void dsv4_kernels_neon_init(void);
void dsv4_kernels_neon_init(void) {
    dsv4_numeric_init();
    pthread_once(&tables_once, build_tables);
}

/* ---- geometry ------------------------------------------------------------------------------ */

static inline int kpad_of(const dsv4_linear *L) { return (L->cols + GROUP - 1) / GROUP * GROUP; }
static inline int groups_of(const dsv4_linear *L) { return (L->cols + GROUP - 1) / GROUP; }

/* Bytes of a group of 32 inputs, by format. */
INLINE int group_bytes(dsv4_wfmt fmt) {
    return fmt == DSV4_W_F32 ? 128 : fmt == DSV4_W_BF16 ? 64 : fmt == DSV4_W_FP8 ? 32 : 16;
}

static inline const uint8_t *row_bytes(const dsv4_linear *L, int r) {
    return (const uint8_t *)L->w + (size_t)r * ((size_t)L->cols * (size_t)group_bytes(L->fmt) / GROUP);
}

/* Can these kernels take the matrix? A scale block must hold whole groups. */
static bool layout_ok(const dsv4_linear *L) {
    if (L->fmt == DSV4_W_FP8) return L->bc % GROUP == 0;
    if (L->fmt == DSV4_W_FP4) return L->cols % GROUP == 0;
    return true;
}

/* Group g of a row: a pointer into the row, or, for a partial last group, a zero-padded
 * copy in tmp (zero bytes are +0 in every format). */
INLINE const uint8_t *group_at(const dsv4_linear *L, const uint8_t *row, int g, uint8_t *tmp, dsv4_wfmt fmt) {
    int gb = group_bytes(fmt);
    if (GROUP * (g + 1) <= L->cols) return row + (size_t)g * gb;
    memset(tmp, 0, (size_t)gb);
    memcpy(tmp, row + (size_t)g * gb, (size_t)(L->cols - GROUP * g) * gb / GROUP);
    return tmp;
}

/* ---- scales -------------------------------------------------------------------------------- */

typedef struct rscale {
    const uint8_t *e8; /* the row's scales (FP8: its block row), e8m0 ... */
    const float *f32;  /* ... or F32; both NULL: the format has none */
    int gpb;           /* groups per scale */
    float mul;         /* 256 for FP8 (its weights are read as value x 2^-8), else 1 */
} rscale;

static inline rscale rscale_of(const dsv4_linear *L, int r) {
    rscale s = {NULL, NULL, 1, 1.0f};
    size_t off;
    if (L->fmt == DSV4_W_FP4) {
        off = (size_t)r * (size_t)L->sc;
    } else if (L->fmt == DSV4_W_FP8) {
        off = (size_t)((L->r0 + r) / L->br) * (size_t)L->sc;
        s.gpb = L->bc / GROUP;
        s.mul = 256.0f;
    } else {
        return s;
    }
    if (L->scale_f32) s.f32 = L->scale_f32 + off;
    else s.e8 = L->scale_e8m0 + off;
    return s;
}

/* The factor of group g's converted weights (scale x mul; 1 without scales). */
static inline float group_scale(const rscale *s, int g) {
    int b = g / s->gpb;
    if (s->f32) return s->f32[b] * s->mul;
    return s->e8 ? dsv4_e8m0_to_f32(s->e8[b]) * s->mul : 1.0f;
}

/* Does row r go the SIMD way? Not when an FP8 scale x 256 overflows (see the top). */
static bool row_fast(const dsv4_linear *L, int r) {
    if (L->fmt != DSV4_W_FP8) return true;
    rscale s = rscale_of(L, r);
    for (int g = 0; g < groups_of(L); g += s.gpb)
        if (isinf(group_scale(&s, g))) return false;
    return true;
}

static void portable_rows(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy,
                          float *scratch) {
    dsv4_gemm_x raw = {gx->x, gx->n, false, NULL};
    dsv4_kernels_portable.gemm[L->fmt](L, r0, r1, &raw, y, ldy, scratch);
}

/* ---- weight conversion ----------------------------------------------------------------------- */

/* Eight e4m3 codes as fp16 patterns of value x 2^-8: the sign-extending shift puts the sign
 * in bits 15 and 14, the clear removes it from 14. */
INLINE float16x8_t fp8_half_lo(int8x16_t b) {
    return vreinterpretq_f16_u16(vbicq_u16(vreinterpretq_u16_s16(vshll_n_s8(vget_low_s8(b), 7)), vdupq_n_u16(0x4000)));
}
INLINE float16x8_t fp8_half_hi(int8x16_t b) {
    return vreinterpretq_f16_u16(vbicq_u16(vreinterpretq_u16_s16(vshll_high_n_s8(b, 7)), vdupq_n_u16(0x4000)));
}

/* All-ones in the bytes that are e4m3 NaN codes. */
INLINE uint8x16_t fp8_nan(uint8x16_t b) { return vceqq_u8(vorrq_u8(b, vdupq_n_u8(0x80)), vdupq_n_u8(0xff)); }

/* 32 FP8 inputs as fp32, times s (the block scale x 256). */
INLINE void fp8_f32(const uint8_t *p, float32x4_t s, float32x4_t f[8]) {
    for (int h = 0; h < 2; h++) {
        uint8x16_t b = vld1q_u8(p + 16 * h);
        float16x8_t lo = fp8_half_lo(vreinterpretq_s8_u8(b)), hi = fp8_half_hi(vreinterpretq_s8_u8(b));
        f[4 * h + 0] = vmulq_f32(vcvt_f32_f16(vget_low_f16(lo)), s);
        f[4 * h + 1] = vmulq_f32(vcvt_high_f32_f16(lo), s);
        f[4 * h + 2] = vmulq_f32(vcvt_f32_f16(vget_low_f16(hi)), s);
        f[4 * h + 3] = vmulq_f32(vcvt_high_f32_f16(hi), s);
        uint8x16_t nan = fp8_nan(b);
        if (__builtin_expect(vmaxvq_u8(nan) != 0, 0)) {
            int16x8_t m16[2] = {vmovl_s8(vget_low_s8(vreinterpretq_s8_u8(nan))), vmovl_high_s8(vreinterpretq_s8_u8(nan))};
            for (int q = 0; q < 4; q++) {
                int32x4_t m = q & 1 ? vmovl_high_s16(m16[q / 2]) : vmovl_s16(vget_low_s16(m16[q / 2]));
                f[4 * h + q] = vbslq_f32(vreinterpretq_u32_s32(m), vdupq_n_f32(NAN), f[4 * h + q]);
            }
        }
    }
}

/* 32 FP8 inputs as bf16 words of value x 2^-8 (the high halves of the fp32 values). */
INLINE void fp8_words(const uint8_t *p, uint16x8_t w[4]) {
    for (int h = 0; h < 2; h++) {
        uint8x16_t b = vld1q_u8(p + 16 * h);
        float16x8_t lo = fp8_half_lo(vreinterpretq_s8_u8(b)), hi = fp8_half_hi(vreinterpretq_s8_u8(b));
        w[2 * h] = vuzp2q_u16(vreinterpretq_u16_f32(vcvt_f32_f16(vget_low_f16(lo))),
                              vreinterpretq_u16_f32(vcvt_high_f32_f16(lo)));
        w[2 * h + 1] = vuzp2q_u16(vreinterpretq_u16_f32(vcvt_f32_f16(vget_low_f16(hi))),
                                  vreinterpretq_u16_f32(vcvt_high_f32_f16(hi)));
        uint8x16_t nan = fp8_nan(b);
        if (__builtin_expect(vmaxvq_u8(nan) != 0, 0)) {
            w[2 * h] = vbslq_u16(vreinterpretq_u16_s16(vmovl_s8(vget_low_s8(vreinterpretq_s8_u8(nan)))),
                                 vdupq_n_u16(0x7fc0), w[2 * h]);
            w[2 * h + 1] = vbslq_u16(vreinterpretq_u16_s16(vmovl_high_s8(vreinterpretq_s8_u8(nan))),
                                     vdupq_n_u16(0x7fc0), w[2 * h + 1]);
        }
    }
}

/* 32 FP4 inputs (16 bytes, low nibble first) as bf16 words. */
INLINE void fp4_words(const uint8_t *p, uint8x16_t t_hi, uint8x16_t t_lo, uint16x8_t w[4]) {
    uint8x16_t b = vld1q_u8(p), lo = vandq_u8(b, vdupq_n_u8(15)), hi = vshrq_n_u8(b, 4);
    uint8x16_t codes[2] = {vzip1q_u8(lo, hi), vzip2q_u8(lo, hi)}; /* inputs 0..15, 16..31 */
    for (int i = 0; i < 2; i++) {
        uint8x16_t h = vqtbl1q_u8(t_hi, codes[i]), l = vqtbl1q_u8(t_lo, codes[i]);
        w[2 * i] = vreinterpretq_u16_u8(vzip1q_u8(l, h));
        w[2 * i + 1] = vreinterpretq_u16_u8(vzip2q_u8(l, h));
    }
}

/* bf16 words to fp32: the low four and the high four. */
INLINE float32x4_t words_lo(uint16x8_t w) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(w), 16)); }
INLINE float32x4_t words_hi(uint16x8_t w) { return vreinterpretq_f32_u32(vshll_high_n_u16(w, 16)); }

/* One group as fp32 times the group's factor s: f[j] holds inputs 4j..4j+3. */
INLINE void group_f32(dsv4_wfmt fmt, const uint8_t *p, float s, float32x4_t f[8]) {
    uint16x8_t w[4];
    switch (fmt) {
    case DSV4_W_F32:
        for (int j = 0; j < 8; j++) f[j] = vld1q_f32((const float *)p + 4 * j);
        return;
    case DSV4_W_BF16:
        for (int i = 0; i < 4; i++) {
            w[i] = vld1q_u16((const uint16_t *)p + 8 * i);
            f[2 * i] = words_lo(w[i]);
            f[2 * i + 1] = words_hi(w[i]);
        }
        return;
    case DSV4_W_FP8:
        fp8_f32(p, vdupq_n_f32(s), f);
        return;
    case DSV4_W_FP4: {
        float32x4_t sv = vdupq_n_f32(s);
        fp4_words(p, vld1q_u8(fp4_hi), vld1q_u8(fp4_lo), w);
        for (int i = 0; i < 4; i++) {
            f[2 * i] = vmulq_f32(words_lo(w[i]), sv);
            f[2 * i + 1] = vmulq_f32(words_hi(w[i]), sv);
        }
        return;
    }
    }
}

/* One group as unscaled bf16 words (FP8: x 2^-8): w[i] holds inputs 8i..8i+7. */
INLINE void group_words(dsv4_wfmt fmt, const uint8_t *p, uint16x8_t w[4]) {
    if (fmt == DSV4_W_FP8) fp8_words(p, w);
    else if (fmt == DSV4_W_FP4) fp4_words(p, vld1q_u8(fp4_hi), vld1q_u8(fp4_lo), w);
    else
        for (int i = 0; i < 4; i++) w[i] = vld1q_u16((const uint16_t *)p + 8 * i);
}

/* ---- fp32 arithmetic --------------------------------------------------------------------------- */

/* The portable kernel's final combination of its eight sums: ((s0+s4)+(s1+s5))+((s2+s6)+(s3+s7)). */
INLINE float combine8(float32x4_t a, float32x4_t b) {
    float32x4_t c = vaddq_f32(a, b), p = vpaddq_f32(c, c);
    return vgetq_lane_f32(p, 0) + vgetq_lane_f32(p, 1);
}

/* Eight inputs of one row and one token: four into sums 0..3 (a), four into sums 4..7 (b).
 * A rounded multiply, then a rounded add, as the portable kernel does (C11 does not fuse its
 * a * b + c): a fused multiply-add would round once and differ from it in the last bits. */
INLINE void madd8(float32x4_t *a, float32x4_t *b, float32x4_t w0, float32x4_t w1, const float *x) {
    *a = vaddq_f32(*a, vmulq_f32(w0, vld1q_f32(x)));
    *b = vaddq_f32(*b, vmulq_f32(w1, vld1q_f32(x + 4)));
}

/* Row tile: rows r[0..TILE_ROWS) converted group by group in registers, against T tokens of x
 * (stride K floats); out[i][t]. */
INLINE void tile_f32_rows(const dsv4_linear *L, const int *r, const float *x, size_t K, int T,
                          float out[TILE_ROWS][TILE_TOKENS], dsv4_wfmt fmt) {
    float32x4_t a[TILE_ROWS][TILE_TOKENS], b[TILE_ROWS][TILE_TOKENS];
    const uint8_t *row[TILE_ROWS];
    rscale rs[TILE_ROWS];
    uint8_t tmp[128] __attribute__((aligned(16)));
    for (int i = 0; i < TILE_ROWS; i++) {
        row[i] = row_bytes(L, r[i]);
        rs[i] = rscale_of(L, r[i]);
        for (int t = 0; t < T; t++) a[i][t] = b[i][t] = vdupq_n_f32(0.0f);
    }
    int groups = groups_of(L);
    for (int g = 0; g < groups; g++) {
        for (int i = 0; i < TILE_ROWS; i++) {
            float32x4_t f[8];
            group_f32(fmt, group_at(L, row[i], g, tmp, fmt), group_scale(&rs[i], g), f);
            for (int j = 0; j < 4; j++)
                for (int t = 0; t < T; t++) madd8(&a[i][t], &b[i][t], f[2 * j], f[2 * j + 1], x + t * K + GROUP * g + 8 * j);
        }
    }
    for (int i = 0; i < TILE_ROWS; i++)
        for (int t = 0; t < T; t++) out[i][t] = combine8(a[i][t], b[i][t]);
}

/* Panel tile: TILE_ROWS converted rows of a panel (stride K) against T tokens; the same
 * operations on every sum as tile_f32_rows. */
INLINE void tile_f32_panel(const float *w, const float *x, size_t K, int T, float out[TILE_ROWS][TILE_TOKENS]) {
    float32x4_t a[TILE_ROWS][TILE_TOKENS], b[TILE_ROWS][TILE_TOKENS];
    for (int i = 0; i < TILE_ROWS; i++)
        for (int t = 0; t < T; t++) a[i][t] = b[i][t] = vdupq_n_f32(0.0f);
    for (size_t k = 0; k < K; k += 8)
        for (int i = 0; i < TILE_ROWS; i++) {
            float32x4_t w0 = vld1q_f32(w + i * K + k), w1 = vld1q_f32(w + i * K + k + 4);
            for (int t = 0; t < T; t++) madd8(&a[i][t], &b[i][t], w0, w1, x + t * K + k);
        }
    for (int i = 0; i < TILE_ROWS; i++)
        for (int t = 0; t < T; t++) out[i][t] = combine8(a[i][t], b[i][t]);
}

/* Store a tile's outputs for rows r[i] < r_end (later ones repeat the last row) and tokens < n. */
static void store_f32(float out[TILE_ROWS][TILE_TOKENS], int r, int r_end, int t0, int T, int n, float *y, int ldy) {
    for (int i = 0; i < TILE_ROWS && r + i < r_end; i++)
        for (int t = 0; t < T && t0 + t < n; t++) y[(size_t)(t0 + t) * ldy + r + i] = out[i][t];
}

INLINE void rows_f32(const dsv4_linear *L, int r0, int r1, const float *x, size_t K, int n, float *y, int ldy,
                     dsv4_wfmt fmt) {
    for (int r = r0; r < r1; r += TILE_ROWS) {
        int rr[TILE_ROWS];
        for (int i = 0; i < TILE_ROWS; i++) rr[i] = DSV4_MIN(r + i, r1 - 1);
        for (int t0 = 0; t0 < n; t0 += TILE_TOKENS) {
            float out[TILE_ROWS][TILE_TOKENS];
            if (n - t0 >= 2) tile_f32_rows(L, rr, x + t0 * K, K, 2, out, fmt);
            else tile_f32_rows(L, rr, x + t0 * K, K, 1, out, fmt);
            store_f32(out, r, r1, t0, TILE_TOKENS, n, y, ldy);
        }
    }
}

/* Rows [r, r + PANEL_ROWS) (past r_end: the last row again) as fp32 into panel[PANEL_ROWS][K]. */
INLINE void fill_f32(const dsv4_linear *L, int r, int r_end, size_t K, float *panel, dsv4_wfmt fmt) {
    uint8_t tmp[128] __attribute__((aligned(16)));
    for (int i = 0; i < PANEL_ROWS; i++) {
        int ri = DSV4_MIN(r + i, r_end - 1);
        const uint8_t *row = row_bytes(L, ri);
        rscale rs = rscale_of(L, ri);
        for (int g = 0; g < groups_of(L); g++) {
            float32x4_t f[8];
            group_f32(fmt, group_at(L, row, g, tmp, fmt), group_scale(&rs, g), f);
            for (int j = 0; j < 8; j++) vst1q_f32(panel + i * K + GROUP * g + 4 * j, f[j]);
        }
    }
}

static void gemm_f32(const dsv4_linear *L, int r0, int r1, const float *x, int n, float *y, int ldy, float *scratch) {
    size_t K = (size_t)kpad_of(L);
    if (n < PANEL_MIN) {
        switch (L->fmt) {
        case DSV4_W_F32: rows_f32(L, r0, r1, x, K, n, y, ldy, DSV4_W_F32); break;
        case DSV4_W_BF16: rows_f32(L, r0, r1, x, K, n, y, ldy, DSV4_W_BF16); break;
        case DSV4_W_FP8: rows_f32(L, r0, r1, x, K, n, y, ldy, DSV4_W_FP8); break;
        case DSV4_W_FP4: rows_f32(L, r0, r1, x, K, n, y, ldy, DSV4_W_FP4); break;
        }
        return;
    }
    float *panel = scratch;
    for (int p = r0; p < r1; p += PANEL_ROWS) {
        switch (L->fmt) {
        case DSV4_W_F32: fill_f32(L, p, r1, K, panel, DSV4_W_F32); break;
        case DSV4_W_BF16: fill_f32(L, p, r1, K, panel, DSV4_W_BF16); break;
        case DSV4_W_FP8: fill_f32(L, p, r1, K, panel, DSV4_W_FP8); break;
        case DSV4_W_FP4: fill_f32(L, p, r1, K, panel, DSV4_W_FP4); break;
        }
        for (int i = 0; i < PANEL_ROWS && p + i < r1; i += TILE_ROWS)
            for (int t0 = 0; t0 < n; t0 += TILE_TOKENS) {
                float out[TILE_ROWS][TILE_TOKENS];
                if (n - t0 >= 2) tile_f32_panel(panel + i * K, x + t0 * K, K, 2, out);
                else tile_f32_panel(panel + i * K, x + t0 * K, K, 1, out);
                store_f32(out, p + i, r1, t0, TILE_TOKENS, n, y, ldy);
            }
    }
}

/* ---- bf16 arithmetic (BFMMLA) -------------------------------------------------------------------
 * A register holds a 2x4 block: four inputs of two rows (weights) or of two tokens (packed
 * activations). An accumulator holds the 2x2 outputs [row0 tok0, row0 tok1, row1 tok0,
 * row1 tok1]. A group of 32 inputs is 8 such k-steps. */

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+bf16")

INLINE float32x4_t mmla(float32x4_t acc, uint16x8_t w, uint16x8_t x) {
    return vbfmmlaq_f32(acc, vreinterpretq_bf16_u16(w), vreinterpretq_bf16_u16(x));
}

/* The scale factors of a row pair's outputs for group g: [s0, s0, s1, s1]. */
INLINE float32x4_t pair_scale(const rscale *s0, const rscale *s1, int g) {
    return vcombine_f32(vdup_n_f32(group_scale(s0, g)), vdup_n_f32(group_scale(s1, g)));
}

/* Does group g end a scale block (so the chains are scaled and added to the totals)? */
INLINE bool block_ends(const dsv4_linear *L, int gpb, int g) { return (g + 1) % gpb == 0 || g + 1 == groups_of(L); }

/* Row tile: pairs of rows r[2p], r[2p+1] converted group by group in registers, against Q token
 * pairs of packed x (stride xs words); out[p][q]. */
INLINE void tile_bf16_rows(const dsv4_linear *L, const int *r, const uint16_t *x, size_t xs, int Q,
                           float32x4_t out[TILE_PAIRS][TILE_TPAIRS], dsv4_wfmt fmt) {
    float32x4_t part[TILE_PAIRS][TILE_TPAIRS], acc[TILE_PAIRS][TILE_TPAIRS];
    const uint8_t *row[2 * TILE_PAIRS];
    rscale rs[2 * TILE_PAIRS];
    uint8_t tmp[128] __attribute__((aligned(16)));
    for (int i = 0; i < 2 * TILE_PAIRS; i++) {
        row[i] = row_bytes(L, r[i]);
        rs[i] = rscale_of(L, r[i]);
    }
    for (int p = 0; p < TILE_PAIRS; p++)
        for (int q = 0; q < Q; q++) part[p][q] = acc[p][q] = vdupq_n_f32(0.0f);
    const bool scaled = fmt != DSV4_W_BF16;
    int groups = groups_of(L);
    for (int g = 0; g < groups; g++) {
        bool flush = scaled && block_ends(L, rs[0].gpb, g);
        for (int p = 0; p < TILE_PAIRS; p++) {
            uint16x8_t u[4], v[4], w[8];
            group_words(fmt, group_at(L, row[2 * p], g, tmp, fmt), u);
            group_words(fmt, group_at(L, row[2 * p + 1], g, tmp, fmt), v);
            for (int i = 0; i < 4; i++) { /* two rows' inputs 8i..8i+3, then 8i+4..8i+7 */
                w[2 * i] = vreinterpretq_u16_u64(vzip1q_u64(vreinterpretq_u64_u16(u[i]), vreinterpretq_u64_u16(v[i])));
                w[2 * i + 1] = vreinterpretq_u16_u64(vzip2q_u64(vreinterpretq_u64_u16(u[i]), vreinterpretq_u64_u16(v[i])));
            }
            for (int q = 0; q < Q; q++) {
                const uint16_t *xq = x + q * xs + (size_t)64 * g;
                for (int s = 0; s < 8; s++) part[p][q] = mmla(part[p][q], w[s], vld1q_u16(xq + 8 * s));
            }
            if (flush) {
                float32x4_t sv = pair_scale(&rs[2 * p], &rs[2 * p + 1], g);
                for (int q = 0; q < Q; q++) {
                    acc[p][q] = vfmaq_f32(acc[p][q], part[p][q], sv);
                    part[p][q] = vdupq_n_f32(0.0f);
                }
            }
        }
    }
    for (int p = 0; p < TILE_PAIRS; p++)
        for (int q = 0; q < Q; q++) out[p][q] = scaled ? acc[p][q] : part[p][q];
}

/* Panel tile: TILE_PAIRS row pairs of a panel (pair stride ps words; scale vectors sv, stride
 * nb per pair) against Q token pairs; the same operations on every sum as tile_bf16_rows. */
INLINE void tile_bf16_panel(const dsv4_linear *L, const uint16_t *w, size_t ps, const float *sv, int nb, int gpb,
                            bool scaled, const uint16_t *x, size_t xs, int Q, float32x4_t out[TILE_PAIRS][TILE_TPAIRS]) {
    float32x4_t part[TILE_PAIRS][TILE_TPAIRS], acc[TILE_PAIRS][TILE_TPAIRS];
    for (int p = 0; p < TILE_PAIRS; p++)
        for (int q = 0; q < Q; q++) part[p][q] = acc[p][q] = vdupq_n_f32(0.0f);
    int groups = groups_of(L);
    for (int g = 0; g < groups; g++) {
        for (int s = 0; s < 8; s++) {
            size_t k = (size_t)64 * g + 8 * s;
            uint16x8_t xv[TILE_TPAIRS];
            for (int q = 0; q < Q; q++) xv[q] = vld1q_u16(x + q * xs + k);
            for (int p = 0; p < TILE_PAIRS; p++) {
                uint16x8_t wv = vld1q_u16(w + p * ps + k);
                for (int q = 0; q < Q; q++) part[p][q] = mmla(part[p][q], wv, xv[q]);
            }
        }
        if (scaled && block_ends(L, gpb, g))
            for (int p = 0; p < TILE_PAIRS; p++) {
                float32x4_t s = vld1q_f32(sv + ((size_t)p * nb + g / gpb) * 4);
                for (int q = 0; q < Q; q++) {
                    acc[p][q] = vfmaq_f32(acc[p][q], part[p][q], s);
                    part[p][q] = vdupq_n_f32(0.0f);
                }
            }
    }
    for (int p = 0; p < TILE_PAIRS; p++)
        for (int q = 0; q < Q; q++) out[p][q] = scaled ? acc[p][q] : part[p][q];
}

/* Store a tile's outputs: rows r + 2p + {0, 1} below r_end, tokens 2(q0 + q) + {0, 1} below n. */
static void store_bf16(float32x4_t out[TILE_PAIRS][TILE_TPAIRS], int r, int r_end, int q0, int Q, int n, float *y,
                       int ldy) {
    for (int p = 0; p < TILE_PAIRS; p++)
        for (int q = 0; q < Q; q++) {
            float v[4];
            vst1q_f32(v, out[p][q]);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int row = r + 2 * p + i, t = 2 * (q0 + q) + j;
                    if (row < r_end && t < n) y[(size_t)t * ldy + row] = v[2 * i + j];
                }
        }
}

INLINE void rows_bf16(const dsv4_linear *L, int r0, int r1, const uint16_t *x, size_t K, int n, float *y, int ldy,
                      dsv4_wfmt fmt) {
    int pairs = (n + 1) / 2;
    size_t xs = 2 * K; /* words per token pair */
    for (int r = r0; r < r1; r += 2 * TILE_PAIRS) {
        int rr[2 * TILE_PAIRS];
        for (int i = 0; i < 2 * TILE_PAIRS; i++) rr[i] = DSV4_MIN(r + i, r1 - 1);
        for (int q0 = 0; q0 < pairs; q0 += TILE_TPAIRS) {
            float32x4_t out[TILE_PAIRS][TILE_TPAIRS];
            if (pairs - q0 >= 2) tile_bf16_rows(L, rr, x + q0 * xs, xs, 2, out, fmt);
            else tile_bf16_rows(L, rr, x + q0 * xs, xs, 1, out, fmt);
            store_bf16(out, r, r1, q0, DSV4_MIN(TILE_TPAIRS, pairs - q0), n, y, ldy);
        }
    }
}

/* Rows [r, r + PANEL_ROWS) (past r_end: the last row again) as pair-interleaved bf16 words into
 * w[pair][K/4][8], and each pair's scale vectors of its blocks into sv[pair][nb][4]. */
INLINE void fill_bf16(const dsv4_linear *L, int r, int r_end, size_t K, uint16_t *w, float *sv, int nb, dsv4_wfmt fmt) {
    uint8_t tmp[128] __attribute__((aligned(16)));
    for (int p = 0; p < PANEL_ROWS / 2; p++) {
        int ra = DSV4_MIN(r + 2 * p, r_end - 1), rb = DSV4_MIN(r + 2 * p + 1, r_end - 1);
        const uint8_t *row_a = row_bytes(L, ra), *row_b = row_bytes(L, rb);
        rscale sa = rscale_of(L, ra), sb = rscale_of(L, rb);
        uint16_t *o = w + (size_t)p * 2 * K;
        for (int g = 0; g < groups_of(L); g++) {
            uint16x8_t u[4], v[4];
            group_words(fmt, group_at(L, row_a, g, tmp, fmt), u);
            group_words(fmt, group_at(L, row_b, g, tmp, fmt), v);
            for (int i = 0; i < 4; i++) {
                vst1q_u16(o + 64 * g + 16 * i,
                          vreinterpretq_u16_u64(vzip1q_u64(vreinterpretq_u64_u16(u[i]), vreinterpretq_u64_u16(v[i]))));
                vst1q_u16(o + 64 * g + 16 * i + 8,
                          vreinterpretq_u16_u64(vzip2q_u64(vreinterpretq_u64_u16(u[i]), vreinterpretq_u64_u16(v[i]))));
            }
            if (fmt != DSV4_W_BF16 && g % sa.gpb == 0) vst1q_f32(sv + ((size_t)p * nb + g / sa.gpb) * 4, pair_scale(&sa, &sb, g));
        }
    }
}

static void gemm_bf16(const dsv4_linear *L, int r0, int r1, const uint16_t *x, int n, float *y, int ldy, float *scratch) {
    size_t K = (size_t)kpad_of(L);
    if (n < PANEL_MIN) {
        switch (L->fmt) {
        case DSV4_W_BF16: rows_bf16(L, r0, r1, x, K, n, y, ldy, DSV4_W_BF16); break;
        case DSV4_W_FP8: rows_bf16(L, r0, r1, x, K, n, y, ldy, DSV4_W_FP8); break;
        default: rows_bf16(L, r0, r1, x, K, n, y, ldy, DSV4_W_FP4); break;
        }
        return;
    }
    rscale rs = rscale_of(L, 0);
    int gpb = rs.gpb, nb = (groups_of(L) + gpb - 1) / gpb, pairs = (n + 1) / 2;
    bool scaled = L->fmt != DSV4_W_BF16;
    uint16_t *panel = (uint16_t *)scratch;                   /* PANEL_ROWS x K words */
    float *sv = scratch + (size_t)PANEL_ROWS * K / 2;        /* PANEL_ROWS / 2 x nb x 4 floats */
    size_t ps = 2 * K, xs = 2 * K;
    for (int p = r0; p < r1; p += PANEL_ROWS) {
        switch (L->fmt) {
        case DSV4_W_BF16: fill_bf16(L, p, r1, K, panel, sv, nb, DSV4_W_BF16); break;
        case DSV4_W_FP8: fill_bf16(L, p, r1, K, panel, sv, nb, DSV4_W_FP8); break;
        default: fill_bf16(L, p, r1, K, panel, sv, nb, DSV4_W_FP4); break;
        }
        for (int i = 0; i < PANEL_ROWS / 2 && p + 2 * i < r1; i += TILE_PAIRS)
            for (int q0 = 0; q0 < pairs; q0 += TILE_TPAIRS) {
                float32x4_t out[TILE_PAIRS][TILE_TPAIRS];
                const uint16_t *w = panel + (size_t)i * ps;
                const float *s = sv + (size_t)i * nb * 4;
                if (pairs - q0 >= 2) tile_bf16_panel(L, w, ps, s, nb, gpb, scaled, x + q0 * xs, xs, 2, out);
                else tile_bf16_panel(L, w, ps, s, nb, gpb, scaled, x + q0 * xs, xs, 1, out);
                store_bf16(out, p + 2 * i, r1, q0, DSV4_MIN(TILE_TPAIRS, pairs - q0), n, y, ldy);
            }
    }
}

#pragma GCC pop_options

/* ---- packing the activations --------------------------------------------------------------------
 * fp32: token-major rows of K floats, zero past cols (none needed when cols is a multiple of
 * the group). bf16: per token pair, K/4 blocks of [4 inputs of the first token, the same 4 of
 * the second]; the partner of an odd last token is zero. */

static size_t x_bytes(const dsv4_linear *L, int n, bool bf16) {
    if (!layout_ok(L)) return 0;
    size_t K = (size_t)kpad_of(L);
    if (bf16) return (size_t)((n + 1) / 2) * 2 * K * sizeof(uint16_t);
    return L->cols % GROUP ? (size_t)n * K * sizeof(float) : 0;
}

static void x_pack(const dsv4_linear *L, const float *x, int n, bool bf16, int t0, int t1, void *buf) {
    size_t K = (size_t)kpad_of(L), cols = (size_t)L->cols;
    if (!bf16) {
        for (int t = t0; t < t1; t++) {
            float *o = (float *)buf + (size_t)t * K;
            memcpy(o, x + (size_t)t * cols, cols * sizeof(float));
            memset(o + cols, 0, (K - cols) * sizeof(float));
        }
        return;
    }
    int te = t1 == n && n % 2 ? n + 1 : t1;
    for (int t = t0; t < te; t++) {
        uint16_t *o = (uint16_t *)buf + (size_t)(t / 2) * 2 * K + (size_t)(t % 2) * 4;
        for (size_t k = 0; k < K; k++) {
            uint32_t u = 0;
            if (t < n && k < cols) memcpy(&u, x + (size_t)t * cols + k, 4);
            o[k / 4 * 8 + k % 4] = (uint16_t)(u >> 16); /* exact: x is bf16-exact */
        }
    }
}

/* ---- the sets ---------------------------------------------------------------------------------- */

static void gemm(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    if (!layout_ok(L)) {
        portable_rows(L, r0, r1, gx, y, ldy, scratch);
        return;
    }
    if (gx->bf16) gemm_bf16(L, r0, r1, gx->p, gx->n, y, ldy, scratch);
    else gemm_f32(L, r0, r1, gx->p ? gx->p : gx->x, gx->n, y, ldy, scratch);
    for (int r = r0; r < r1; r++)
        if (!row_fast(L, r)) portable_rows(L, r, r + 1, gx, y, ldy, scratch);
}

static float dot_f32(const float *a, const float *b, int n) {
    float32x4_t s[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 4; j++) s[j] = vfmaq_f32(s[j], vld1q_f32(a + i + 4 * j), vld1q_f32(b + i + 4 * j));
    for (; i + 4 <= n; i += 4) s[0] = vfmaq_f32(s[0], vld1q_f32(a + i), vld1q_f32(b + i));
    float r = vaddvq_f32(vaddq_f32(vaddq_f32(s[0], s[2]), vaddq_f32(s[1], s[3])));
    for (; i < n; i++) r = fmaf(a[i], b[i], r);
    return r;
}

static void axpy_f32(float a, const float *x, float *y, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

/* 24 independent accumulator chains hide the FMA latency on up to four pipes. */
static double fma_loop(long iters) {
    float32x4_t acc[24], b = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
    for (int j = 0; j < 24; j++) acc[j] = vdupq_n_f32((float)j);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
        for (int j = 0; j < 24; j++) acc[j] = vfmaq_f32(c, acc[j], b);
    }
    float32x4_t s = acc[0];
    for (int j = 1; j < 24; j++) s = vaddq_f32(s, acc[j]);
    volatile float sink = vaddvq_f32(s);
    (void)sink;
    return 2.0 * 4.0 * 24.0 * (double)iters;
}

const dsv4_kernel_set dsv4_kernels_neon = {
    .name = "neon",
    .x_bytes = x_bytes,
    .x_pack = x_pack,
    .gemm = {gemm, gemm, gemm, gemm},
    .dot_f32 = dot_f32,
    .axpy_f32 = axpy_f32,
    .fma_loop = fma_loop,
};

/* The same functions: gemm takes the bf16 way when the dispatcher found x bf16-exact, which it
 * only checks for sets that want it. */
const dsv4_kernel_set dsv4_kernels_neon_bf16 = {
    .name = "neon-bf16",
    .wants_bf16 = true,
    .x_bytes = x_bytes,
    .x_pack = x_pack,
    .gemm = {gemm, gemm, gemm, gemm},
    .dot_f32 = dot_f32,
    .axpy_f32 = axpy_f32,
    .fma_loop = fma_loop,
};
#endif
