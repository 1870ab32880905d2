/* linear_avx512.c: the matmul kernels for AVX-512 (F, BW, VL, DQ, VBMI, BF16).
 *
 * Weights are read once, in their stored format, and widened in registers:
 *   BF16  32 words are already bf16;
 *   FP8   64 bytes become 64 bf16 words with two 128-entry byte lookups (VPERMT2B: the high
 *         and low byte of the bf16 pattern of each e4m3 magnitude) and two byte interleaves;
 *         every e4m3 value, subnormals included, is a normal bf16;
 *   FP4   32 bytes become 64 bf16 words: the nibbles are split into two word vectors and
 *         looked up in a 16-entry table (VPERMW).
 * So every format becomes bf16 words without loss, in a fixed order per group of 64 inputs
 * (natural for BF16; interleaved for FP8 and FP4). The activations are repacked once per
 * matmul into that same order, and the dot products then run either
 *   - in bf16 with VDPBF16PS, when the activations are bf16-exact (dsv4_bf16_exact: always
 *     the case for FP8-rounded inputs): both factors are exact, products are exact in fp32,
 *     sums are fp32;
 *   - or in fp32 with FMA: a bf16 word widens to fp32 by a shift (even words) or a mask (odd
 *     words), so the exact numerics stay exact in fp32.
 * Block scales are powers of two. In the row-dot kernels they multiply each group's partial
 * sum (one FMA per 64 inputs); in the panel kernels they are folded into the converted
 * weights (a bf16 exponent add, or an fp32 multiply), which is exact in range.
 *
 * Two shapes of work:
 *   row-dot (n < PANEL_MIN tokens: decode): one weight row at a time, converted once and
 *     dotted with up to 4 tokens; the weights stream from memory exactly once, with software
 *     prefetch a few KB ahead so that page boundaries do not stall the stream.
 *   panel (prefill): PANEL_ROWS rows are converted into a small L2-resident panel, the
 *     tokens are packed k-major ([k][token]) so one vector holds 16 tokens, and a register
 *     tile of 6 rows x 64 tokens accumulates with the weight broadcast from the panel.
 * In both, an output element is one fixed-order sum over its row, whatever the thread split. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <pthread.h>

#include "base/base.h"
#include "kernels/linear.h"
#include "numeric/numeric.h"

enum {
    PANEL_MIN = 12,     /* tokens from which the panel kernels win over row-dot */
    PANEL_ROWS = 24,    /* rows converted at a time (4 tiles of 6) */
    TILE_M = 6,         /* rows per register tile */
    TILE_T = 4,         /* 16-token vectors per register tile */
    ROW_TOKENS = 4,     /* tokens per pass of the row-dot kernels */
    PREFETCH = 4096,    /* bytes ahead of the weight stream */
    X_BLOCK = 512 << 10 /* bytes of packed activations per token block (L2) */
};

/* ---- tables and input orders --------------------------------------------------------------- */

static uint8_t fp8_hi[128] __attribute__((aligned(64))); /* bf16 high byte of each e4m3 magnitude */
static uint8_t fp8_lo[128] __attribute__((aligned(64)));
static uint16_t fp4_bf16[32] __attribute__((aligned(64))); /* e2m1 code -> bf16, twice */
/* The input (0..63) each converted word occupies, per format, and each fp32 position. */
static uint8_t word_input[4][64], f32_input[4][64];

static void build_tables(void) {
    for (int m = 0; m < 128; m++) {
        float v = dsv4_e4m3_to_f32((uint8_t)m);
        uint32_t u;
        memcpy(&u, &v, 4);
        uint16_t h = v != v ? 0x7fc0 : (uint16_t)(u >> 16); /* exact: e4m3 has 3 mantissa bits */
        fp8_hi[m] = (uint8_t)(h >> 8);
        fp8_lo[m] = (uint8_t)h;
    }
    for (int c = 0; c < 32; c++) {
        float v = dsv4_e2m1_to_f32((uint8_t)(c & 15));
        uint32_t u;
        memcpy(&u, &v, 4);
        fp4_bf16[c] = (uint16_t)(u >> 16);
    }
    for (int j = 0; j < 64; j++) {
        int L = (j & 31) / 8, i = j & 7;
        word_input[DSV4_W_F32][j] = (uint8_t)j;
        word_input[DSV4_W_BF16][j] = (uint8_t)j;
        word_input[DSV4_W_FP8][j] = (uint8_t)(16 * L + i + (j >= 32 ? 8 : 0));
        word_input[DSV4_W_FP4][j] = (uint8_t)(j < 32 ? 2 * j : 2 * (j - 32) + 1);
    }
    /* fp32 position q: vector v = q/16 of (E0, O0, E1, O1), lane i: word (v/2)*32 + 2i + (v&1) */
    for (int f = 0; f < 4; f++)
        for (int q = 0; q < 64; q++) {
            int v = q / 16, i = q % 16, w = (v / 2) * 32 + 2 * i + (v & 1);
            f32_input[f][q] = f == DSV4_W_F32 ? (uint8_t)q : word_input[f][w];
        }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
void dsv4_kernels_avx512_init(void);
void dsv4_kernels_avx512_init(void) { pthread_once(&tables_once, build_tables); }

/* ---- weight conversion: one group of 64 inputs to two vectors of 32 bf16 words ------------- */

typedef struct wsrc {
    const dsv4_linear *L;
    int cols, groups;  /* groups of 64 inputs (the last may be partial) */
    __m512i t_hi0, t_hi1, t_lo0, t_lo1, t_fp4;
} wsrc;

static inline wsrc wsrc_of(const dsv4_linear *L) {
    wsrc s;
    s.L = L;
    s.cols = L->cols;
    s.groups = (L->cols + 63) / 64;
    s.t_hi0 = _mm512_load_si512(fp8_hi);
    s.t_hi1 = _mm512_load_si512(fp8_hi + 64);
    s.t_lo0 = _mm512_load_si512(fp8_lo);
    s.t_lo1 = _mm512_load_si512(fp8_lo + 64);
    s.t_fp4 = _mm512_load_si512(fp4_bf16);
    return s;
}

/* Valid inputs of group g (64 except maybe the last). */
static inline int group_len(const wsrc *s, int g) { return DSV4_MIN(64, s->cols - 64 * g); }

static inline __mmask64 first_bits64(int n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }
static inline __mmask32 first_bits32(int n) { return n >= 32 ? ~(__mmask32)0 : n <= 0 ? 0 : (((__mmask32)1 << n) - 1); }
static inline __mmask16 first_bits16(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* Row `row` of the stored matrix (FP4: bytes of the packed row). */
static inline const uint8_t *row_bytes(const dsv4_linear *L, int r) {
    static const int bytes_x2[4] = {8, 4, 2, 1}; /* twice the bytes per input, by format */
    size_t stride = (size_t)L->cols * bytes_x2[L->fmt] / 2;
    return (const uint8_t *)L->w + (size_t)r * stride;
}

static inline void unpack_bf16(const wsrc *s, const uint8_t *row, int g, __m512i *w0, __m512i *w1) {
    int n = group_len(s, g);
    const uint16_t *p = (const uint16_t *)row + 64 * g;
    if (n == 64) {
        *w0 = _mm512_loadu_si512(p);
        *w1 = _mm512_loadu_si512(p + 32);
    } else {
        *w0 = _mm512_maskz_loadu_epi16(first_bits32(n), p);
        *w1 = _mm512_maskz_loadu_epi16(first_bits32(n - 32), p + 32);
    }
}

static inline void unpack_fp8(const wsrc *s, const uint8_t *row, int g, __m512i *w0, __m512i *w1) {
    int n = group_len(s, g);
    __m512i b = n == 64 ? _mm512_loadu_si512(row + 64 * g) : _mm512_maskz_loadu_epi8(first_bits64(n), row + 64 * g);
    __m512i hi = _mm512_permutex2var_epi8(s->t_hi0, b, s->t_hi1);
    __m512i lo = _mm512_permutex2var_epi8(s->t_lo0, b, s->t_lo1);
    hi = _mm512_ternarylogic_epi32(hi, b, _mm512_set1_epi8((char)0x80), 0xf8); /* hi | (b & 0x80) */
    *w0 = _mm512_unpacklo_epi8(lo, hi);
    *w1 = _mm512_unpackhi_epi8(lo, hi);
}

static inline void unpack_fp4(const wsrc *s, const uint8_t *row, int g, __m512i *w0, __m512i *w1) {
    int n = group_len(s, g);
    const uint8_t *p = row + 32 * g;
    __m256i b = n == 64 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi8((__mmask32)first_bits32(n / 2), p);
    __m512i w = _mm512_cvtepu8_epi16(b);
    __m512i lo = _mm512_and_si512(w, _mm512_set1_epi16(15));
    __m512i hi = _mm512_srli_epi16(w, 4);
    *w0 = _mm512_permutexvar_epi16(lo, s->t_fp4);
    *w1 = _mm512_permutexvar_epi16(hi, s->t_fp4);
}

static inline void unpack(const wsrc *s, const uint8_t *row, int g, __m512i *w0, __m512i *w1) {
    switch (s->L->fmt) {
    case DSV4_W_FP8: unpack_fp8(s, row, g, w0, w1); break;
    case DSV4_W_FP4: unpack_fp4(s, row, g, w0, w1); break;
    default: unpack_bf16(s, row, g, w0, w1); break;
    }
}

/* bf16 words -> fp32: even words (shift) and odd words (mask). */
static inline __m512 even_f32(__m512i w) { return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)); }
static inline __m512 odd_f32(__m512i w) { return _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u))); }

/* ---- scales ---------------------------------------------------------------------------------- */

/* Per row, the scale of each group as a vector: lanes 0-7 hold the scale of the group's first
 * 32 inputs, lanes 8-15 of the last 32 (in every word order above, the lanes of a dot-product
 * or fp32 vector cover inputs of one half only). */
typedef struct rscale {
    int kind;               /* 0 none (BF16), 1 one scale per group (FP8, bc % 64 == 0), 2 two */
    const uint8_t *e8;      /* this row's scale bytes (kind 2), or the block row (kind 1) */
    const float *f32;
    int per;                /* kind 1: groups per scale column */
} rscale;

/* Can the SIMD kernels take this matrix? (FP8 blocks must be 32 wide or a multiple of 64.) */
static bool layout_ok(const dsv4_linear *L) {
    if (L->fmt == DSV4_W_FP8) return L->bc == 32 || L->bc % 64 == 0;
    return true;
}

static inline rscale rscale_of(const dsv4_linear *L, int r) {
    rscale s = {0, NULL, NULL, 1};
    if (L->fmt == DSV4_W_FP4 || (L->fmt == DSV4_W_FP8 && L->bc == 32)) {
        size_t off = L->fmt == DSV4_W_FP4 ? (size_t)r * L->sc : (size_t)((L->r0 + r) / L->br) * L->sc;
        s.kind = 2;
        if (L->scale_f32) s.f32 = L->scale_f32 + off;
        else s.e8 = L->scale_e8m0 + off;
    } else if (L->fmt == DSV4_W_FP8) {
        size_t off = (size_t)((L->r0 + r) / L->br) * L->sc;
        s.kind = 1;
        s.per = L->bc / 64;
        if (L->scale_f32) s.f32 = L->scale_f32 + off;
        else s.e8 = L->scale_e8m0 + off;
    }
    return s;
}

/* e8m0 bytes 1..254 become floats by a shift; rows holding 0 (2^-127) or 255 (NaN) go the
 * portable way, which reads the table. */
static inline bool rscale_fast(const dsv4_linear *L, const rscale *s) {
    if (s->kind != 2 || !s->e8) return true;
    int n = (L->cols + 31) / 32;
    for (int i = 0; i < n; i += 64) {
        __m512i b = _mm512_maskz_loadu_epi8(first_bits64(n - i), s->e8 + i);
        __mmask64 valid = first_bits64(n - i);
        __mmask64 bad = _mm512_mask_cmpeq_epi8_mask(valid, b, _mm512_setzero_si512()) |
                        _mm512_mask_cmpeq_epi8_mask(valid, b, _mm512_set1_epi8((char)0xff));
        if (bad) return false;
    }
    return true;
}

/* Scales of groups 8q..8q+7 as 16 floats (kind 2): lane j = scale of 32-input block 16q + j. */
static inline __m512 scales16(const dsv4_linear *L, const rscale *s, int q) {
    int n = (L->cols + 31) / 32 - 16 * q;
    __mmask16 m = first_bits16(n);
    if (s->f32) return _mm512_maskz_loadu_ps(m, s->f32 + 16 * q);
    __m128i b = _mm_maskz_loadu_epi8(m, s->e8 + 16 * q);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(b), 23));
}

/* The scale vector of group g (kind 1 and 2); S holds scales16 of the group's octet. */
static inline __m512 group_scale(const rscale *s, int g, __m512 S) {
    if (s->kind == 1) {
        int c = g / s->per;
        return _mm512_set1_ps(s->f32 ? s->f32[c] : dsv4_e8m0_to_f32(s->e8[c]));
    }
    static const int idx[8][16] __attribute__((aligned(64))) = {
        {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},         {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
        {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},         {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
        {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},         {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
        {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13}, {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
    };
    return _mm512_permutexvar_ps(_mm512_load_si512(idx[g & 7]), S);
}

/* ---- packing the activations ------------------------------------------------------------------ */

static inline int k64(const dsv4_linear *L) { return (L->cols + 63) & ~63; }
static inline int n16(int n) { return (n + 15) & ~15; }
static inline bool use_panel(const dsv4_linear *L, int n) { return n >= PANEL_MIN && L->rows >= TILE_M; }

static inline uint16_t bf16_bits(float v) { /* exact for bf16-exact v */
    uint32_t u;
    memcpy(&u, &v, 4);
    return (uint16_t)(u >> 16);
}

static size_t x_bytes(const dsv4_linear *L, int n, bool bf16) {
    if (!layout_ok(L)) return 0;
    size_t K = (size_t)k64(L);
    if (use_panel(L, n)) return K * (size_t)n16(n) * (bf16 ? 2 : 4);
    if (L->fmt == DSV4_W_F32) return 0; /* row-dot reads fp32 rows as given */
    return K * (size_t)n * (bf16 ? 2 : 4);
}

/* Input of packed position q (group-major) for format f; -1 past the end of the row. */
static inline int input_of(const uint8_t *map, int q, int cols) {
    int i = (q & ~63) + map[q & 63];
    return i < cols ? i : -1;
}

static void x_pack(const dsv4_linear *L, const float *x, int n, bool bf16, int t0, int t1, void *buf) {
    int K = k64(L), cols = L->cols, f = L->fmt;
    const uint8_t *wmap = word_input[f], *fmap = f32_input[f];
    if (use_panel(L, n)) {
        size_t ld = (size_t)n16(n);
        /* k-major: [K/2][tokens] bf16 pairs or [K][tokens] floats; pad tokens are zero */
        int te = t1 == n ? (int)ld : t1;
        if (bf16) {
            uint32_t *o = buf;
            for (int p = 0; p < K / 2; p++) {
                int i0 = input_of(wmap, 2 * p, cols), i1 = input_of(wmap, 2 * p + 1, cols);
                for (int t = t0; t < te; t++) {
                    const float *xt = x + (size_t)t * cols;
                    uint32_t lo = t < n && i0 >= 0 ? bf16_bits(xt[i0]) : 0, hi = t < n && i1 >= 0 ? bf16_bits(xt[i1]) : 0;
                    o[(size_t)p * ld + t] = lo | hi << 16;
                }
            }
        } else {
            float *o = buf;
            for (int q = 0; q < K; q++) {
                int i = input_of(fmap, q, cols);
                for (int t = t0; t < te; t++) o[(size_t)q * ld + t] = t < n && i >= 0 ? x[(size_t)t * cols + i] : 0.0f;
            }
        }
        return;
    }
    /* row-dot: token-major, in the word order (bf16) or the fp32 position order */
    for (int t = t0; t < t1; t++) {
        const float *xt = x + (size_t)t * cols;
        if (bf16) {
            uint16_t *o = (uint16_t *)buf + (size_t)t * K;
            for (int q = 0; q < K; q++) {
                int i = input_of(wmap, q, cols);
                o[q] = i >= 0 ? bf16_bits(xt[i]) : 0;
            }
        } else {
            float *o = (float *)buf + (size_t)t * K;
            for (int q = 0; q < K; q++) {
                int i = input_of(fmap, q, cols);
                o[q] = i >= 0 ? xt[i] : 0.0f;
            }
        }
    }
}

/* ---- row-dot kernels (decode) ------------------------------------------------------------------ */

static inline void prefetch_ahead(const uint8_t *p) { _mm_prefetch((const char *)p + PREFETCH, _MM_HINT_T0); }
/* One prefetch per 64-byte line of the weight stream, `step` bytes per group. */
static inline void prefetch_group(const uint8_t *row, int g, int step) {
    if (step == 32) {
        if ((g & 1) == 0) prefetch_ahead(row + (size_t)g * 32);
    } else {
        for (int b = 0; b < step; b += 64) prefetch_ahead(row + (size_t)g * step + b);
    }
}

/* Row r against T tokens of bf16-packed x (stride K words): VDPBF16PS. */
static inline __attribute__((always_inline)) void rowdot_bf16(const wsrc *s, int r, const uint16_t *x, int K, int T,
                                                               float *out) {
    const dsv4_linear *L = s->L;
    const uint8_t *row = row_bytes(L, r);
    rscale rs = rscale_of(L, r);
    __m512 acc[ROW_TOKENS], S = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    int step = L->fmt == DSV4_W_FP4 ? 32 : L->fmt == DSV4_W_FP8 ? 64 : 128; /* bytes per group */
    for (int g = 0; g < s->groups; g++) {
        prefetch_group(row, g, step);
        __m512i w0, w1;
        unpack(s, row, g, &w0, &w1);
        if (rs.kind == 0) {
            for (int t = 0; t < T; t++) {
                const uint16_t *xt = x + (size_t)t * K + 64 * g;
                acc[t] = _mm512_dpbf16_ps(acc[t], (__m512bh)w0, (__m512bh)_mm512_loadu_si512(xt));
                acc[t] = _mm512_dpbf16_ps(acc[t], (__m512bh)w1, (__m512bh)_mm512_loadu_si512(xt + 32));
            }
        } else {
            if (rs.kind == 2 && (g & 7) == 0) S = scales16(L, &rs, g / 8);
            __m512 sv = group_scale(&rs, g, S);
            for (int t = 0; t < T; t++) {
                const uint16_t *xt = x + (size_t)t * K + 64 * g;
                __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w0, (__m512bh)_mm512_loadu_si512(xt));
                d = _mm512_dpbf16_ps(d, (__m512bh)w1, (__m512bh)_mm512_loadu_si512(xt + 32));
                acc[t] = _mm512_fmadd_ps(d, sv, acc[t]);
            }
        }
    }
    for (int t = 0; t < T; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

/* Row r against T tokens of fp32-packed x (stride K floats): FMA. */
static inline __attribute__((always_inline)) void rowdot_f32(const wsrc *s, int r, const float *x, int K, int T,
                                                              float *out) {
    const dsv4_linear *L = s->L;
    const uint8_t *row = row_bytes(L, r);
    rscale rs = rscale_of(L, r);
    __m512 acc[ROW_TOKENS], S = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    int step = L->fmt == DSV4_W_FP4 ? 32 : L->fmt == DSV4_W_FP8 ? 64 : 128;
    for (int g = 0; g < s->groups; g++) {
        prefetch_group(row, g, step);
        __m512i w0, w1;
        unpack(s, row, g, &w0, &w1);
        __m512 e0 = even_f32(w0), o0 = odd_f32(w0), e1 = even_f32(w1), o1 = odd_f32(w1);
        if (rs.kind == 0) {
            for (int t = 0; t < T; t++) {
                const float *xt = x + (size_t)t * K + 64 * g;
                acc[t] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xt), acc[t]);
                acc[t] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xt + 16), acc[t]);
                acc[t] = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xt + 32), acc[t]);
                acc[t] = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xt + 48), acc[t]);
            }
        } else {
            if (rs.kind == 2 && (g & 7) == 0) S = scales16(L, &rs, g / 8);
            __m512 sv = group_scale(&rs, g, S);
            for (int t = 0; t < T; t++) {
                const float *xt = x + (size_t)t * K + 64 * g;
                __m512 d = _mm512_mul_ps(e0, _mm512_loadu_ps(xt));
                d = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xt + 16), d);
                d = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xt + 32), d);
                d = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xt + 48), d);
                acc[t] = _mm512_fmadd_ps(d, sv, acc[t]);
            }
        }
    }
    for (int t = 0; t < T; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

/* F32 weights: row r against T tokens of x as given (stride cols). */
static inline __attribute__((always_inline)) void rowdot_w32(const dsv4_linear *L, int r, const float *x, int T,
                                                              float *out) {
    int cols = L->cols;
    const float *w = (const float *)L->w + (size_t)r * cols;
    __m512 acc[ROW_TOKENS];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        if ((c & 63) == 0) prefetch_ahead((const uint8_t *)(w + c));
        __mmask16 m = first_bits16(cols - c);
        __m512 wv = _mm512_maskz_loadu_ps(m, w + c);
        for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + (size_t)t * cols + c), acc[t]);
    }
    for (int t = 0; t < T; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

static void portable_rows(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    dsv4_gemm_x raw = {gx->x, gx->n, false, NULL};
    dsv4_kernels_portable.gemm[L->fmt](L, r0, r1, &raw, y, ldy, scratch);
}

#define ROW_CASES(CALL) \
    switch (T) {        \
    case 1: CALL(1); break; \
    case 2: CALL(2); break; \
    case 3: CALL(3); break; \
    default: CALL(4); break; \
    }

static void gemm_rowdot(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    wsrc s = wsrc_of(L);
    int K = k64(L), n = gx->n;
    float out[ROW_TOKENS];
    for (int r = r0; r < r1; r++) {
        if (L->fmt == DSV4_W_FP4 || L->fmt == DSV4_W_FP8) {
            rscale rs = rscale_of(L, r);
            if (!rscale_fast(L, &rs)) {
                portable_rows(L, r, r + 1, gx, y, ldy, scratch);
                continue;
            }
        }
        for (int t0 = 0; t0 < n; t0 += ROW_TOKENS) {
            int T = DSV4_MIN(ROW_TOKENS, n - t0);
            if (L->fmt == DSV4_W_F32) {
#define CALL(TT) rowdot_w32(L, r, gx->x + (size_t)t0 * L->cols, TT, out)
                ROW_CASES(CALL)
#undef CALL
            } else if (gx->bf16) {
#define CALL(TT) rowdot_bf16(&s, r, (const uint16_t *)gx->p + (size_t)t0 * K, K, TT, out)
                ROW_CASES(CALL)
#undef CALL
            } else {
#define CALL(TT) rowdot_f32(&s, r, (const float *)gx->p + (size_t)t0 * K, K, TT, out)
                ROW_CASES(CALL)
#undef CALL
            }
            for (int t = 0; t < T; t++) y[(size_t)(t0 + t) * ldy + r] = out[t];
        }
    }
}

/* ---- panel kernels (prefill) ------------------------------------------------------------------- */

/* Can the rows [r, r+m) be converted to a bf16 panel with the scales folded in? Their e8m0
 * exponents must keep every scaled value a normal bf16 (e4m3 spans 2^-9..448, e2m1 0.5..6). */
static bool panel_bf16_ok(const dsv4_linear *L, int r, int m) {
    if (L->fmt == DSV4_W_BF16) return true;
    if (L->scale_f32) return false;
    for (int i = 0; i < m; i++) {
        rscale rs = rscale_of(L, r + i);
        int n = rs.kind == 2 ? (L->cols + 31) / 32 : (L->cols + L->bc - 1) / L->bc;
        for (int j = 0; j < n; j++)
            if (rs.e8[j] < 10 || rs.e8[j] > 246) return false;
    }
    return true;
}

/* Rows [r, r+m) as bf16 words (word order, scales folded) into panel[m][K]. */
static void panel_bf16(const wsrc *s, int r, int m, int K, uint16_t *panel) {
    const dsv4_linear *L = s->L;
    const __m512i nz = _mm512_set1_epi16(0x7fff), expo = _mm512_set1_epi16(0x7f80);
    for (int i = 0; i < m; i++) {
        const uint8_t *row = row_bytes(L, r + i);
        rscale rs = rscale_of(L, r + i);
        uint16_t *o = panel + (size_t)i * K;
        for (int g = 0; g < s->groups; g++) {
            __m512i w0, w1;
            unpack(s, row, g, &w0, &w1);
            if (rs.kind) {
                int ea, eb;
                if (rs.kind == 2) {
                    ea = rs.e8[2 * g];
                    eb = 64 * g + 32 < s->cols ? rs.e8[2 * g + 1] : 127;
                } else {
                    ea = eb = rs.e8[g / rs.per];
                }
                __m512i off = _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16((short)((ea - 127) << 7)),
                                                      _mm512_set1_epi16((short)((eb - 127) << 7)));
                /* add to the exponent of every nonzero, non-NaN word */
                __mmask32 k0 = _mm512_test_epi16_mask(w0, nz) & _mm512_cmpneq_epi16_mask(_mm512_and_si512(w0, expo), expo);
                __mmask32 k1 = _mm512_test_epi16_mask(w1, nz) & _mm512_cmpneq_epi16_mask(_mm512_and_si512(w1, expo), expo);
                w0 = _mm512_mask_add_epi16(w0, k0, w0, off);
                w1 = _mm512_mask_add_epi16(w1, k1, w1, off);
            }
            _mm512_storeu_si512(o + 64 * g, w0);
            _mm512_storeu_si512(o + 64 * g + 32, w1);
        }
    }
}

/* Rows [r, r+m) as fp32 (position order, scales multiplied in) into panel[m][K]. */
static void panel_f32(const wsrc *s, int r, int m, int K, float *panel) {
    const dsv4_linear *L = s->L;
    for (int i = 0; i < m; i++) {
        const uint8_t *row = row_bytes(L, r + i);
        rscale rs = rscale_of(L, r + i);
        float *o = panel + (size_t)i * K;
        __m512 S = _mm512_setzero_ps();
        for (int g = 0; g < s->groups; g++) {
            __m512i w0, w1;
            unpack(s, row, g, &w0, &w1);
            __m512 e0 = even_f32(w0), o0 = odd_f32(w0), e1 = even_f32(w1), o1 = odd_f32(w1);
            if (rs.kind) {
                if (rs.kind == 2 && (g & 7) == 0) S = scales16(L, &rs, g / 8);
                __m512 sv = group_scale(&rs, g, S);
                e0 = _mm512_mul_ps(e0, sv);
                o0 = _mm512_mul_ps(o0, sv);
                e1 = _mm512_mul_ps(e1, sv);
                o1 = _mm512_mul_ps(o1, sv);
            }
            _mm512_storeu_ps(o + 64 * g, e0);
            _mm512_storeu_ps(o + 64 * g + 16, o0);
            _mm512_storeu_ps(o + 64 * g + 32, e1);
            _mm512_storeu_ps(o + 64 * g + 48, o1);
        }
    }
}

/* The register tile: M rows (weights broadcast from w, row stride ws) x T vectors of 16
 * tokens (x packed k-major, stride ld), over k steps; out[m][t*16 + i]. */
static inline __attribute__((always_inline)) void tile_f32(const float *w, size_t ws, const float *x, size_t ld, int k_steps,
                                                            int M, int T, float *out) {
    __m512 acc[TILE_M][TILE_T];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[m][t] = _mm512_setzero_ps();
    for (int k = 0; k < k_steps; k++) {
        __m512 xv[TILE_T];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_ps(x + (size_t)k * ld + 16 * t);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            __m512 wv = _mm512_set1_ps(w[(size_t)m * ws + k]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[m][t] = _mm512_fmadd_ps(xv[t], wv, acc[m][t]);
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) _mm512_storeu_ps(out + m * 16 * TILE_T + 16 * t, acc[m][t]);
}

static inline __attribute__((always_inline)) void tile_bf16(const uint32_t *w, size_t ws, const uint32_t *x, size_t ld,
                                                             int k_steps, int M, int T, float *out) {
    __m512 acc[TILE_M][TILE_T];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[m][t] = _mm512_setzero_ps();
    for (int k = 0; k < k_steps; k++) {
        __m512i xv[TILE_T];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_si512(x + (size_t)k * ld + 16 * t);
#pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            __m512i wv = _mm512_set1_epi32((int)w[(size_t)m * ws + k]);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[m][t] = _mm512_dpbf16_ps(acc[m][t], (__m512bh)xv[t], (__m512bh)wv);
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) _mm512_storeu_ps(out + m * 16 * TILE_T + 16 * t, acc[m][t]);
}

/* Any M x T tile as a sequence of compiled shapes (M in 6, 4, 2, 1; T in 1..4). */
#define TILE_SHAPES(FN, W, WS, X, LD, KS, MT, T, OUT)                                                   \
    switch ((MT) * 8 + (T)) {                                                                           \
    case 6 * 8 + 4: FN(W, WS, X, LD, KS, 6, 4, OUT); break;                                             \
    case 6 * 8 + 3: FN(W, WS, X, LD, KS, 6, 3, OUT); break;                                             \
    case 6 * 8 + 2: FN(W, WS, X, LD, KS, 6, 2, OUT); break;                                             \
    case 6 * 8 + 1: FN(W, WS, X, LD, KS, 6, 1, OUT); break;                                             \
    case 4 * 8 + 4: FN(W, WS, X, LD, KS, 4, 4, OUT); break;                                             \
    case 4 * 8 + 3: FN(W, WS, X, LD, KS, 4, 3, OUT); break;                                             \
    case 4 * 8 + 2: FN(W, WS, X, LD, KS, 4, 2, OUT); break;                                             \
    case 4 * 8 + 1: FN(W, WS, X, LD, KS, 4, 1, OUT); break;                                             \
    case 2 * 8 + 4: FN(W, WS, X, LD, KS, 2, 4, OUT); break;                                             \
    case 2 * 8 + 3: FN(W, WS, X, LD, KS, 2, 3, OUT); break;                                             \
    case 2 * 8 + 2: FN(W, WS, X, LD, KS, 2, 2, OUT); break;                                             \
    case 2 * 8 + 1: FN(W, WS, X, LD, KS, 2, 1, OUT); break;                                             \
    case 1 * 8 + 4: FN(W, WS, X, LD, KS, 1, 4, OUT); break;                                             \
    case 1 * 8 + 3: FN(W, WS, X, LD, KS, 1, 3, OUT); break;                                             \
    case 1 * 8 + 2: FN(W, WS, X, LD, KS, 1, 2, OUT); break;                                             \
    default: FN(W, WS, X, LD, KS, 1, 1, OUT); break;                                                    \
    }

static void tile_f32_any(const float *w, size_t ws, const float *x, size_t ld, int ks, int M, int T, float *out) {
    for (int m = 0; m < M;) {
        int mt = M - m >= 6 ? 6 : M - m >= 4 ? 4 : M - m >= 2 ? 2 : 1;
        TILE_SHAPES(tile_f32, w + (size_t)m * ws, ws, x, ld, ks, mt, T, out + m * 16 * TILE_T)
        m += mt;
    }
}

static void tile_bf16_any(const uint32_t *w, size_t ws, const uint32_t *x, size_t ld, int ks, int M, int T, float *out) {
    for (int m = 0; m < M;) {
        int mt = M - m >= 6 ? 6 : M - m >= 4 ? 4 : M - m >= 2 ? 2 : 1;
        TILE_SHAPES(tile_bf16, w + (size_t)m * ws, ws, x, ld, ks, mt, T, out + m * 16 * TILE_T)
        m += mt;
    }
}

static void gemm_panel(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    wsrc s = wsrc_of(L);
    int K = k64(L), n = gx->n;
    size_t ld = (size_t)n16(n);
    bool bf16 = gx->bf16;
    /* F32 weights are their own panel; others are converted PANEL_ROWS rows at a time */
    bool direct = L->fmt == DSV4_W_F32 || (L->fmt == DSV4_W_BF16 && bf16 && L->cols % 2 == 0);
    float *out = scratch; /* TILE_M x 64 results */
    void *panel = scratch + TILE_M * 16 * TILE_T;
    /* scratch holds 64 cols + 1024 floats: as many panel rows as fit, whole tiles */
    size_t room = (size_t)64 * L->cols + 1024 - TILE_M * 16 * TILE_T;
    int prows = (int)DSV4_MIN((size_t)PANEL_ROWS, room / (size_t)K) / TILE_M * TILE_M;
    int per_token = bf16 ? 2 : 4;
    int tb = DSV4_MAX(16, (int)(X_BLOCK / ((size_t)K * per_token)) & ~15);
    for (int b0 = 0; b0 < n; b0 += tb) {
        int b1 = DSV4_MIN(n, b0 + tb);
        for (int p0 = r0; p0 < r1; p0 += prows) {
            int pm = DSV4_MIN(prows, r1 - p0);
            bool pbf = bf16;
            const void *pw;
            size_t ws;
            if (direct) {
                pw = row_bytes(L, p0);
                ws = L->fmt == DSV4_W_F32 ? (size_t)L->cols : (size_t)L->cols / 2;
            } else if (bf16 && panel_bf16_ok(L, p0, pm)) {
                panel_bf16(&s, p0, pm, K, panel);
                pw = panel;
                ws = (size_t)K / 2;
            } else {
                if (bf16) { /* scales out of bf16 range: fall back to the exact fp32 route */
                    portable_rows(L, p0, p0 + pm, &(dsv4_gemm_x){gx->x + (size_t)b0 * L->cols, b1 - b0, false, NULL},
                                  y + (size_t)b0 * ldy, ldy, scratch);
                    continue;
                }
                panel_f32(&s, p0, pm, K, panel);
                pw = panel;
                ws = (size_t)K;
            }
            /* direct rows end at cols (the packed x is zero beyond, the rows are not there) */
            int k_steps = direct ? (pbf ? L->cols / 2 : L->cols) : (pbf ? K / 2 : K);
            for (int m0 = 0; m0 < pm; m0 += TILE_M) {
                int M = DSV4_MIN(TILE_M, pm - m0);
                for (int t0 = b0; t0 < b1; t0 += 16 * TILE_T) {
                    int T = DSV4_MIN(TILE_T, (b1 - t0 + 15) / 16);
                    if (pbf) {
                        const uint32_t *w = (const uint32_t *)pw + (size_t)m0 * ws, *x = (const uint32_t *)gx->p + t0;
                        tile_bf16_any(w, ws, x, ld, k_steps, M, T, out);
                    } else {
                        const float *w = (const float *)pw + (size_t)m0 * ws, *x = (const float *)gx->p + t0;
                        tile_f32_any(w, ws, x, ld, k_steps, M, T, out);
                    }
                    for (int m = 0; m < M; m++)
                        for (int t = t0; t < DSV4_MIN(b1, t0 + 16 * T); t++)
                            y[(size_t)t * ldy + p0 + m0 + m] = out[m * 16 * TILE_T + (t - t0)];
                }
            }
        }
    }
}

static void gemm(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    if (!layout_ok(L)) portable_rows(L, r0, r1, gx, y, ldy, scratch);
    else if (use_panel(L, gx->n)) gemm_panel(L, r0, r1, gx, y, ldy, scratch);
    else gemm_rowdot(L, r0, r1, gx, y, ldy, scratch);
}

/* ---- the rest of the set ------------------------------------------------------------------------ */

static float dot_f32(const float *a, const float *b, int n) {
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = first_bits16(n - i);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* 24 independent accumulator chains hide the FMA latency on both pipes. */
static double fma_loop(long iters) {
    __m512 a[24], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 24
    for (int j = 0; j < 24; j++) a[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
        for (int j = 0; j < 24; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    }
    __m512 s = a[0];
#pragma GCC unroll 24
    for (int j = 1; j < 24; j++) s = _mm512_add_ps(s, a[j]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 2.0 * 16.0 * 24.0 * (double)iters;
}

const dsv4_kernel_set dsv4_kernels_avx512 = {
    .name = "avx512",
    .wants_bf16 = true,
    .x_bytes = x_bytes,
    .x_pack = x_pack,
    .gemm = {gemm, gemm, gemm, gemm},
    .dot_f32 = dot_f32,
    .fma_loop = fma_loop,
};
#endif
