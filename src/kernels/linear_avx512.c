/* linear_avx512.c: the matmul kernels for AVX-512 (F, BW, VL, DQ, VBMI, BF16).
 *
 * Weights are read once, in their stored format, and widened in registers to bf16 words,
 * exactly (every e4m3 and e2m1 value is a bf16 number), a group of inputs at a time:
 *   BF16  64 inputs: two vectors of 32 words, as stored;
 *   FP8   64 inputs: two 128-entry byte lookups (VPERMT2B: the high and the low byte of the
 *         bf16 pattern of each e4m3 magnitude), the sign ORed back, two byte interleaves;
 *   FP4   128 inputs (64 bytes): the bytes, read as 16-bit words, are themselves the indices
 *         of a 16-entry word lookup (VPERMW reads only the low bits of each index), shifted by
 *         0, 4, 8 and 12 bits for the four nibbles of each word. Four lookups and three
 *         shifts, no unpacking: word j of lookup k holds input 4j+k.
 * The words come out in a fixed order per group (word_input[] below), and the activations are
 * repacked once per matmul into the same order, so the dot products need no shuffles. They
 * run either
 *   - in bf16 with VDPBF16PS, when the activations are bf16-exact (dsv4_bf16_exact: always
 *     the case for FP8-rounded inputs): both factors are exact, each product is exact in
 *     fp32, the sums are fp32;
 *   - or in fp32 with FMA: a bf16 word widens to fp32 by a shift (even words) or a mask (odd
 *     words), so the exact numerics stay exact in fp32.
 * Block scales are powers of two. In the row-dot kernels they multiply each group's partial
 * sums (one FMA per group; every dot-product lane holds inputs of a single scale block); in
 * the panel kernels they are folded into the converted weights (a bf16 exponent add, or an
 * fp32 multiply), which is exact in range.
 *
 * Two shapes of work:
 *   row-dot (n < PANEL_MIN tokens: decode): one weight row at a time, converted once and
 *     dotted with up to 4 tokens; the weights stream from memory exactly once.
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
    PREFETCH = 1024,    /* bytes ahead of the FP8 / FP4 weight stream (row-dot) */
    X_BLOCK = 512 << 10, /* bytes of packed activations per token block (L2) */
    X_ALL = 12 << 20     /* ... or all of them, when they fit in this much (L3) */
};

/* ---- tables and input orders --------------------------------------------------------------- */

static uint8_t fp8_hi[128] __attribute__((aligned(64))); /* bf16 high byte of each e4m3 magnitude */
static uint8_t fp8_lo[128] __attribute__((aligned(64)));
static uint16_t fp4_bf16[32] __attribute__((aligned(64))); /* e2m1 code -> bf16, twice */
/* Per format, the input (within its group) that each converted word holds, and the input
 * each fp32 position holds (the widened words: per word vector, its even words then its odd). */
static uint8_t word_input[4][128], f32_input[4][128];

/* Inputs per group: 128 for FP4 (64 bytes), else 64. */
static inline int group_inputs(dsv4_wfmt f) { return f == DSV4_W_FP4 ? 128 : 64; }

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
    for (int p = 0; p < 128; p++) {
        int L = (p & 31) / 8, i = p & 7;
        word_input[DSV4_W_F32][p] = (uint8_t)p;
        word_input[DSV4_W_BF16][p] = (uint8_t)p;
        word_input[DSV4_W_FP8][p] = (uint8_t)((16 * L + i + (p >= 32 ? 8 : 0)) & 63);
        word_input[DSV4_W_FP4][p] = (uint8_t)(4 * (p % 32) + p / 32);
    }
    for (int f = 0; f < 4; f++)
        for (int q = 0; q < 128; q++) {
            int v = q / 16, i = q % 16, w = (v / 2) * 32 + 2 * i + (v & 1);
            f32_input[f][q] = f == DSV4_W_F32 ? (uint8_t)q : word_input[f][w];
        }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
void dsv4_kernels_avx512_init(void);
void dsv4_kernels_avx512_init(void) { pthread_once(&tables_once, build_tables); }

/* ---- weight conversion: one group to vectors of 32 bf16 words ------------------------------- */

typedef struct wsrc {
    const dsv4_linear *L;
    int cols, gi, nw, groups; /* inputs per group, word vectors per group, groups per row */
    __m512i t_hi0, t_hi1, t_lo0, t_lo1, t_fp4;
} wsrc;

static inline wsrc wsrc_of(const dsv4_linear *L) {
    wsrc s;
    s.L = L;
    s.cols = L->cols;
    s.gi = group_inputs(L->fmt);
    s.nw = s.gi / 32;
    s.groups = (L->cols + s.gi - 1) / s.gi;
    s.t_hi0 = _mm512_load_si512(fp8_hi);
    s.t_hi1 = _mm512_load_si512(fp8_hi + 64);
    s.t_lo0 = _mm512_load_si512(fp8_lo);
    s.t_lo1 = _mm512_load_si512(fp8_lo + 64);
    s.t_fp4 = _mm512_load_si512(fp4_bf16);
    return s;
}

static inline __mmask64 first_bits64(int n) { return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1); }
static inline __mmask32 first_bits32(int n) { return n >= 32 ? ~(__mmask32)0 : n <= 0 ? 0 : (((__mmask32)1 << n) - 1); }
static inline __mmask16 first_bits16(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* Row r of the stored matrix. */
static inline const uint8_t *row_bytes(const dsv4_linear *L, int r) {
    static const int bytes_x2[4] = {8, 4, 2, 1}; /* twice the bytes per input, by format */
    return (const uint8_t *)L->w + (size_t)r * ((size_t)L->cols * bytes_x2[L->fmt] / 2);
}

static inline __attribute__((always_inline)) void unpack_fmt(const wsrc *s, const uint8_t *row, int g, __m512i *w,
                                                              dsv4_wfmt fmt) {
    int n = DSV4_MIN(s->gi, s->cols - s->gi * g); /* valid inputs of the group */
    switch (fmt) {
    case DSV4_W_FP4: {
        const uint8_t *p = row + 64 * g;
        __m512i b = n == 128 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(first_bits64(n / 2), p);
        w[0] = _mm512_permutexvar_epi16(b, s->t_fp4);
        w[1] = _mm512_permutexvar_epi16(_mm512_srli_epi16(b, 4), s->t_fp4);
        w[2] = _mm512_permutexvar_epi16(_mm512_srli_epi16(b, 8), s->t_fp4);
        w[3] = _mm512_permutexvar_epi16(_mm512_srli_epi16(b, 12), s->t_fp4);
        break;
    }
    case DSV4_W_FP8: {
        const uint8_t *p = row + 64 * g;
        __m512i b = n == 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(first_bits64(n), p);
        __m512i hi = _mm512_permutex2var_epi8(s->t_hi0, b, s->t_hi1);
        __m512i lo = _mm512_permutex2var_epi8(s->t_lo0, b, s->t_lo1);
        hi = _mm512_ternarylogic_epi32(hi, b, _mm512_set1_epi8((char)0x80), 0xf8); /* hi | (b & 0x80) */
        w[0] = _mm512_unpacklo_epi8(lo, hi);
        w[1] = _mm512_unpackhi_epi8(lo, hi);
        break;
    }
    default: {
        const uint16_t *p = (const uint16_t *)row + 64 * g;
        if (n == 64) {
            w[0] = _mm512_loadu_si512(p);
            w[1] = _mm512_loadu_si512(p + 32);
        } else {
            w[0] = _mm512_maskz_loadu_epi16(first_bits32(n), p);
            w[1] = _mm512_maskz_loadu_epi16(first_bits32(n - 32), p + 32);
        }
        break;
    }
    }
}

static inline void unpack(const wsrc *s, const uint8_t *row, int g, __m512i *w) { unpack_fmt(s, row, g, w, s->L->fmt); }

/* bf16 words -> fp32: even words (shift) and odd words (mask). */
static inline __m512 even_f32(__m512i w) { return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)); }
static inline __m512 odd_f32(__m512i w) { return _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u))); }

/* ---- scales ---------------------------------------------------------------------------------- */

/* In every word order above, a 32-bit lane of a converted vector (a dot-product lane, or an
 * even/odd fp32 lane) holds inputs of one scale block only: lanes 4b..4b+3 block b of an FP4
 * group (four blocks of 32), lanes 8b..8b+7 block b of an FP8 group with 32-wide blocks. */
typedef enum { SC_NONE, SC_ONE, SC_TWO, SC_FOUR } scale_kind;

typedef struct rscale {
    scale_kind kind;   /* ONE: FP8 blocks of 64k inputs; TWO: FP8 32-wide; FOUR: FP4 */
    const uint8_t *e8; /* this row's scales (the block row for FP8) */
    const float *f32;
    int per;           /* ONE: groups per scale */
} rscale;

/* Can the SIMD kernels take this matrix? (FP8 blocks must be 32 wide or a multiple of 64.) */
static bool layout_ok(const dsv4_linear *L) {
    if (L->fmt == DSV4_W_FP8) return L->bc == 32 || L->bc % 64 == 0;
    return true;
}

static inline rscale rscale_of(const dsv4_linear *L, int r) {
    rscale s = {SC_NONE, NULL, NULL, 1};
    if (L->fmt != DSV4_W_FP4 && L->fmt != DSV4_W_FP8) return s;
    size_t off = L->fmt == DSV4_W_FP4 ? (size_t)r * L->sc : (size_t)((L->r0 + r) / L->br) * L->sc;
    s.kind = L->fmt == DSV4_W_FP4 ? SC_FOUR : L->bc == 32 ? SC_TWO : SC_ONE;
    s.per = L->bc / 64;
    if (L->scale_f32) s.f32 = L->scale_f32 + off;
    else s.e8 = L->scale_e8m0 + off;
    return s;
}

/* e8m0 bytes 1..254 become floats by a shift; rows holding 0 (2^-127) or 255 (NaN) go the
 * portable way, which reads the table. */
static inline bool rscale_fast(const dsv4_linear *L, const rscale *s) {
    if ((s->kind != SC_TWO && s->kind != SC_FOUR) || !s->e8) return true;
    int n = (L->cols + 31) / 32;
    for (int i = 0; i < n; i += 64) {
        __mmask64 valid = first_bits64(n - i);
        __m512i b = _mm512_maskz_loadu_epi8(valid, s->e8 + i);
        if (_mm512_mask_cmpeq_epi8_mask(valid, b, _mm512_setzero_si512()) |
            _mm512_mask_cmpeq_epi8_mask(valid, b, _mm512_set1_epi8((char)0xff)))
            return false;
    }
    return true;
}

/* Scales of the 32-input blocks 16q..16q+15 as floats (kinds TWO and FOUR). */
static inline __m512 scales16(const dsv4_linear *L, const rscale *s, int q) {
    __mmask16 m = first_bits16((L->cols + 31) / 32 - 16 * q);
    if (s->f32) return _mm512_maskz_loadu_ps(m, s->f32 + 16 * q);
    __m128i b = _mm_maskz_loadu_epi8(m, s->e8 + 16 * q);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(b), 23));
}

/* Groups per scales16 load. */
static inline int groups_per_s16(const rscale *s) { return s->kind == SC_FOUR ? 4 : 8; }

/* The scale vector of group g; S holds scales16 of its run of groups (TWO, FOUR), or ONE's
 * block index is g / per. */
static inline __m512 one_scale(const rscale *s, int block) {
    return _mm512_set1_ps(s->f32 ? s->f32[block] : dsv4_e8m0_to_f32(s->e8[block]));
}
static inline __m512 group_scale(const rscale *s, int g, __m512 S) {
    static const int two[8][16] __attribute__((aligned(64))) = {
        {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},         {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
        {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},         {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
        {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},         {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
        {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13}, {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
    };
    static const int four[4][16] __attribute__((aligned(64))) = {
        {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
        {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
        {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
        {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15},
    };
    if (s->kind == SC_ONE) {
        int c = g / s->per;
        return _mm512_set1_ps(s->f32 ? s->f32[c] : dsv4_e8m0_to_f32(s->e8[c]));
    }
    if (s->kind == SC_FOUR) return _mm512_permutexvar_ps(_mm512_load_si512(four[g & 3]), S);
    return _mm512_permutexvar_ps(_mm512_load_si512(two[g & 7]), S);
}

/* ---- packing the activations ------------------------------------------------------------------ */

static inline int kpad(const dsv4_linear *L) {
    int gi = group_inputs(L->fmt);
    return (L->cols + gi - 1) / gi * gi;
}
static inline int n16(int n) { return (n + 15) & ~15; }
static inline bool use_panel(const dsv4_linear *L, int n) { return n >= PANEL_MIN && L->rows >= TILE_M; }

static inline uint16_t bf16_bits(float v) { /* exact for bf16-exact v */
    uint32_t u;
    memcpy(&u, &v, 4);
    return (uint16_t)(u >> 16);
}

static size_t x_bytes(const dsv4_linear *L, int n, bool bf16) {
    if (!layout_ok(L)) return 0;
    size_t K = (size_t)kpad(L);
    if (use_panel(L, n)) return K * (size_t)n16(n) * (bf16 ? 2 : 4);
    if (L->fmt == DSV4_W_F32) return 0; /* row-dot reads fp32 rows as given */
    return K * (size_t)n * (bf16 ? 2 : 4);
}

/* Input of packed position q (group-major) through a format's map; -1 past the row's end. */
static inline int input_of(const uint8_t *map, int gi, int q, int cols) {
    int i = q / gi * gi + map[q % gi];
    return i < cols ? i : -1;
}

static void x_pack(const dsv4_linear *L, const float *x, int n, bool bf16, int t0, int t1, void *buf) {
    int K = kpad(L), cols = L->cols, f = L->fmt, gi = group_inputs(L->fmt);
    const uint8_t *wmap = word_input[f], *fmap = f32_input[f];
    if (use_panel(L, n)) {
        size_t ld = (size_t)n16(n);
        /* k-major: [K/2][tokens] bf16 pairs or [K][tokens] floats; pad tokens are zero */
        int te = t1 == n ? (int)ld : t1;
        if (bf16) {
            uint32_t *o = buf;
            for (int p = 0; p < K / 2; p++) {
                int i0 = input_of(wmap, gi, 2 * p, cols), i1 = input_of(wmap, gi, 2 * p + 1, cols);
                for (int t = t0; t < te; t++) {
                    const float *xt = x + (size_t)t * cols;
                    uint32_t lo = t < n && i0 >= 0 ? bf16_bits(xt[i0]) : 0, hi = t < n && i1 >= 0 ? bf16_bits(xt[i1]) : 0;
                    o[(size_t)p * ld + t] = lo | hi << 16;
                }
            }
        } else {
            float *o = buf;
            for (int q = 0; q < K; q++) {
                int i = input_of(fmap, gi, q, cols);
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
                int i = input_of(wmap, gi, q, cols);
                o[q] = i >= 0 ? bf16_bits(xt[i]) : 0;
            }
        } else {
            float *o = (float *)buf + (size_t)t * K;
            for (int q = 0; q < K; q++) {
                int i = input_of(fmap, gi, q, cols);
                o[q] = i >= 0 ? xt[i] : 0.0f;
            }
        }
    }
}

/* ---- row-dot kernels (decode) ------------------------------------------------------------------ */

/* Software prefetch PREFETCH bytes ahead of the FP8 / FP4 weight stream. These loops spend
 * enough time converting that they keep few loads in flight, and when other cores load the
 * memory system the hardware prefetchers back off: measured on a busy machine, FP4 streamed
 * at 9.5 GB/s per core without and 15.5 with (on a quiet one about 10 % slower with). BF16
 * rows convert cheaply and stream as fast as a plain read without it. */
static inline __attribute__((always_inline)) void prefetch_group(const uint8_t *row, int g, dsv4_wfmt fmt) {
    if (fmt == DSV4_W_FP8 || fmt == DSV4_W_FP4) _mm_prefetch((const char *)row + (size_t)64 * g + PREFETCH, _MM_HINT_T0);
}


/* Row r against T tokens of bf16-packed x (stride K words): VDPBF16PS. */
static inline __attribute__((always_inline)) void rowdot_bf16(const wsrc *s, int r, const uint16_t *x, int K, int T,
                                                               float *out, dsv4_wfmt fmt) {
    const dsv4_linear *L = s->L;
    const uint8_t *row = row_bytes(L, r);
    rscale rs = rscale_of(L, r);
    __m512 acc[ROW_TOKENS], part[ROW_TOKENS], part2[ROW_TOKENS], S = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) acc[t] = part[t] = part2[t] = _mm512_setzero_ps();
    const int gi = group_inputs(fmt), nw = gi / 32, groups = s->groups;
    if (fmt == DSV4_W_FP4) rs.kind = SC_FOUR;
    if (fmt == DSV4_W_BF16) rs.kind = SC_NONE;
    const int s16 = rs.kind == SC_FOUR ? 4 : 8; /* groups per scales16 load */
    int left = rs.per, block = 0;               /* groups until the next scale, its index (ONE) */
    for (int g = 0; g < groups; g++) {
        __m512i w[4];
        prefetch_group(row, g, fmt);
        unpack_fmt(s, row, g, w, fmt);
        if (rs.kind == SC_NONE) {
            for (int t = 0; t < T; t++) {
                const uint16_t *xt = x + (size_t)t * K + gi * g;
                part[t] = _mm512_dpbf16_ps(part[t], (__m512bh)w[0], (__m512bh)_mm512_loadu_si512(xt));
                part2[t] = _mm512_dpbf16_ps(part2[t], (__m512bh)w[1], (__m512bh)_mm512_loadu_si512(xt + 32));
            }
            continue;
        }
        if (rs.kind == SC_ONE) { /* one scale for `per` groups: accumulate straight into part */
            for (int t = 0; t < T; t++) {
                const uint16_t *xt = x + (size_t)t * K + gi * g;
                part[t] = _mm512_dpbf16_ps(part[t], (__m512bh)w[0], (__m512bh)_mm512_loadu_si512(xt));
                part2[t] = _mm512_dpbf16_ps(part2[t], (__m512bh)w[1], (__m512bh)_mm512_loadu_si512(xt + 32));
            }
            if (--left == 0 || g + 1 == groups) {
                left = rs.per;
                __m512 sv = one_scale(&rs, block++);
                for (int t = 0; t < T; t++) {
                    acc[t] = _mm512_fmadd_ps(_mm512_add_ps(part[t], part2[t]), sv, acc[t]);
                    part[t] = part2[t] = _mm512_setzero_ps();
                }
            }
            continue;
        }
        if ((g & (s16 - 1)) == 0) S = scales16(L, &rs, g / s16);
        for (int t = 0; t < T; t++) {
            const uint16_t *xt = x + (size_t)t * K + gi * g;
            __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[0], (__m512bh)_mm512_loadu_si512(xt));
            __m512 d2 = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)w[1], (__m512bh)_mm512_loadu_si512(xt + 32));
            if (nw == 4) {
                d = _mm512_dpbf16_ps(d, (__m512bh)w[2], (__m512bh)_mm512_loadu_si512(xt + 64));
                d2 = _mm512_dpbf16_ps(d2, (__m512bh)w[3], (__m512bh)_mm512_loadu_si512(xt + 96));
            }
            acc[t] = _mm512_fmadd_ps(_mm512_add_ps(d, d2), group_scale(&rs, g, S), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t], _mm512_add_ps(part[t], part2[t])));
}

/* Row r against T tokens of fp32-packed x (stride K floats): FMA. */
static inline __attribute__((always_inline)) void rowdot_f32(const wsrc *s, int r, const float *x, int K, int T,
                                                              float *out, dsv4_wfmt fmt) {
    const dsv4_linear *L = s->L;
    const uint8_t *row = row_bytes(L, r);
    rscale rs = rscale_of(L, r);
    /* four partial sums per token (even/odd lanes of words 0 and 1 of a group): with two, each
     * group's two multiply-adds into one register wait on each other, and that latency chain
     * slows the BF16 head row by about 5 % against a plain read of the same bytes */
    __m512 acc[ROW_TOKENS], part[ROW_TOKENS], part2[ROW_TOKENS], part3[ROW_TOKENS], part4[ROW_TOKENS];
    __m512 S = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) acc[t] = part[t] = part2[t] = part3[t] = part4[t] = _mm512_setzero_ps();
    const int gi = group_inputs(fmt), nw = gi / 32, groups = s->groups;
    if (fmt == DSV4_W_FP4) rs.kind = SC_FOUR;
    if (fmt == DSV4_W_BF16) rs.kind = SC_NONE;
    const int s16 = rs.kind == SC_FOUR ? 4 : 8; /* groups per scales16 load */
    int left = rs.per, block = 0;               /* groups until the next scale, its index (ONE) */
    for (int g = 0; g < groups; g++) {
        __m512i w[4];
        prefetch_group(row, g, fmt);
        unpack_fmt(s, row, g, w, fmt);
        if (rs.kind == SC_NONE || rs.kind == SC_ONE) {
            /* no scale, or one for `per` groups: accumulate straight into the partial sums
             * (FP8 and BF16 groups are two words: nw == 2) */
            for (int t = 0; t < T; t++) {
                const float *xt = x + (size_t)t * K + gi * g;
                part[t] = _mm512_fmadd_ps(even_f32(w[0]), _mm512_loadu_ps(xt), part[t]);
                part2[t] = _mm512_fmadd_ps(odd_f32(w[0]), _mm512_loadu_ps(xt + 16), part2[t]);
                part3[t] = _mm512_fmadd_ps(even_f32(w[1]), _mm512_loadu_ps(xt + 32), part3[t]);
                part4[t] = _mm512_fmadd_ps(odd_f32(w[1]), _mm512_loadu_ps(xt + 48), part4[t]);
            }
            if (rs.kind == SC_ONE && (--left == 0 || g + 1 == groups)) {
                left = rs.per;
                __m512 sv = one_scale(&rs, block++);
                for (int t = 0; t < T; t++) {
                    __m512 sum = _mm512_add_ps(_mm512_add_ps(part[t], part3[t]), _mm512_add_ps(part2[t], part4[t]));
                    acc[t] = _mm512_fmadd_ps(sum, sv, acc[t]);
                    part[t] = part2[t] = part3[t] = part4[t] = _mm512_setzero_ps();
                }
            }
            continue;
        }
        if ((g & (s16 - 1)) == 0) S = scales16(L, &rs, g / s16);
        __m512 sv = group_scale(&rs, g, S);
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * K + gi * g;
            __m512 d = _mm512_mul_ps(even_f32(w[0]), _mm512_loadu_ps(xt));
            __m512 d2 = _mm512_mul_ps(odd_f32(w[0]), _mm512_loadu_ps(xt + 16));
            for (int k = 1; k < nw; k++) {
                d = _mm512_fmadd_ps(even_f32(w[k]), _mm512_loadu_ps(xt + 32 * k), d);
                d2 = _mm512_fmadd_ps(odd_f32(w[k]), _mm512_loadu_ps(xt + 32 * k + 16), d2);
            }
            acc[t] = _mm512_fmadd_ps(_mm512_add_ps(d, d2), sv, acc[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        __m512 sum = _mm512_add_ps(_mm512_add_ps(part[t], part3[t]), _mm512_add_ps(part2[t], part4[t]));
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t], sum));
    }
}

/* F32 weights: row r against T tokens of x as given (stride cols). */
static inline __attribute__((always_inline)) void rowdot_w32(const dsv4_linear *L, int r, const float *x, int T,
                                                              float *out) {
    int cols = L->cols;
    const float *w = (const float *)L->w + (size_t)r * cols;
    __m512 acc[ROW_TOKENS];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
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

#define ROW_CASES(CALL)          \
    switch (T) {                 \
    case 1: CALL(1); break;      \
    case 2: CALL(2); break;      \
    case 3: CALL(3); break;      \
    default: CALL(4); break;     \
    }

static void gemm_rowdot(const dsv4_linear *L, int r0, int r1, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    wsrc s = wsrc_of(L);
    int K = kpad(L), n = gx->n;
    float out[ROW_TOKENS];
    for (int r = r0; r < r1; r++) {
        rscale rs = rscale_of(L, r);
        if (!rscale_fast(L, &rs)) {
            portable_rows(L, r, r + 1, gx, y, ldy, scratch);
            continue;
        }
        for (int t0 = 0; t0 < n; t0 += ROW_TOKENS) {
            int T = DSV4_MIN(ROW_TOKENS, n - t0);
            if (L->fmt == DSV4_W_F32) {
#define CALL(TT) rowdot_w32(L, r, gx->x + (size_t)t0 * L->cols, TT, out)
                ROW_CASES(CALL)
#undef CALL
            } else if (gx->bf16) {
                const uint16_t *xp = (const uint16_t *)gx->p + (size_t)t0 * K;
#define CALL(TT)                                                                   \
    switch (L->fmt) {                                                              \
    case DSV4_W_FP4: rowdot_bf16(&s, r, xp, K, TT, out, DSV4_W_FP4); break;        \
    case DSV4_W_FP8: rowdot_bf16(&s, r, xp, K, TT, out, DSV4_W_FP8); break;        \
    default: rowdot_bf16(&s, r, xp, K, TT, out, DSV4_W_BF16); break;               \
    }
                ROW_CASES(CALL)
#undef CALL
            } else {
                const float *xp = (const float *)gx->p + (size_t)t0 * K;
#define CALL(TT)                                                                   \
    switch (L->fmt) {                                                              \
    case DSV4_W_FP4: rowdot_f32(&s, r, xp, K, TT, out, DSV4_W_FP4); break;         \
    case DSV4_W_FP8: rowdot_f32(&s, r, xp, K, TT, out, DSV4_W_FP8); break;         \
    default: rowdot_f32(&s, r, xp, K, TT, out, DSV4_W_BF16); break;                \
    }
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
        int n = rs.kind == SC_ONE ? (L->cols + L->bc - 1) / L->bc : (L->cols + 31) / 32;
        for (int j = 0; j < n; j++)
            if (rs.e8[j] < 10 || rs.e8[j] > 246) return false;
    }
    return true;
}

/* The exponent offsets (e - 127) << 7 of group g's words, per 16-bit lane. */
static inline __m512i group_offsets(const rscale *rs, int g, int cols) {
    int nb = (cols + 31) / 32; /* 32-input blocks in the row */
    if (rs->kind == SC_ONE) return _mm512_set1_epi16((short)((rs->e8[g / rs->per] - 127) * 128));
    int per = rs->kind == SC_FOUR ? 4 : 2; /* blocks per group */
    short o[4];
    for (int b = 0; b < per; b++) {
        int blk = per * g + b;
        o[b] = (short)(((blk < nb ? rs->e8[blk] : 127) - 127) * 128);
    }
    if (per == 2) return _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16(o[0]), _mm512_set1_epi16(o[1]));
    __m512i lo = _mm512_mask_blend_epi16((__mmask32)0x0000ff00u, _mm512_set1_epi16(o[0]), _mm512_set1_epi16(o[1]));
    __m512i hi = _mm512_mask_blend_epi16((__mmask32)0xff000000u, _mm512_set1_epi16(o[2]), _mm512_set1_epi16(o[3]));
    return _mm512_mask_blend_epi16((__mmask32)0xffff0000u, lo, hi);
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
            __m512i w[4];
            unpack(s, row, g, w);
            __m512i off = rs.kind != SC_NONE ? group_offsets(&rs, g, s->cols) : _mm512_setzero_si512();
            for (int k = 0; k < s->nw; k++) {
                if (rs.kind != SC_NONE) {
                    /* add to the exponent of every nonzero, non-NaN word */
                    __mmask32 keep = _mm512_test_epi16_mask(w[k], nz) &
                                     _mm512_cmpneq_epi16_mask(_mm512_and_si512(w[k], expo), expo);
                    w[k] = _mm512_mask_add_epi16(w[k], keep, w[k], off);
                }
                _mm512_storeu_si512(o + s->gi * g + 32 * k, w[k]);
            }
        }
    }
}

/* Can the rows [r, r+m) go through panel_f32 (every e8m0 scale decodable by a shift)? */
static bool panel_f32_ok(const dsv4_linear *L, int r, int m) {
    for (int i = 0; i < m; i++) {
        rscale rs = rscale_of(L, r + i);
        if (!rscale_fast(L, &rs)) return false;
    }
    return true;
}

/* Rows [r, r+m) as fp32 (position order, scales multiplied in) into panel[m][K]. */
static void panel_f32(const wsrc *s, int r, int m, int K, float *panel) {
    const dsv4_linear *L = s->L;
    for (int i = 0; i < m; i++) {
        const uint8_t *row = row_bytes(L, r + i);
        rscale rs = rscale_of(L, r + i);
        float *o = panel + (size_t)i * K;
        __m512 S = _mm512_setzero_ps(), sv = _mm512_set1_ps(1.0f);
        for (int g = 0; g < s->groups; g++) {
            __m512i w[4];
            unpack(s, row, g, w);
            if (rs.kind != SC_NONE) {
                if ((rs.kind == SC_TWO || rs.kind == SC_FOUR) && g % groups_per_s16(&rs) == 0)
                    S = scales16(L, &rs, g / groups_per_s16(&rs));
                sv = group_scale(&rs, g, S);
            }
            for (int k = 0; k < s->nw; k++) {
                _mm512_storeu_ps(o + s->gi * g + 32 * k, _mm512_mul_ps(even_f32(w[k]), sv));
                _mm512_storeu_ps(o + s->gi * g + 32 * k + 16, _mm512_mul_ps(odd_f32(w[k]), sv));
            }
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
#define TILE_SHAPES(FN, W, WS, X, LD, KS, MT, T, OUT)        \
    switch ((MT) * 8 + (T)) {                                \
    case 6 * 8 + 4: FN(W, WS, X, LD, KS, 6, 4, OUT); break;  \
    case 6 * 8 + 3: FN(W, WS, X, LD, KS, 6, 3, OUT); break;  \
    case 6 * 8 + 2: FN(W, WS, X, LD, KS, 6, 2, OUT); break;  \
    case 6 * 8 + 1: FN(W, WS, X, LD, KS, 6, 1, OUT); break;  \
    case 4 * 8 + 4: FN(W, WS, X, LD, KS, 4, 4, OUT); break;  \
    case 4 * 8 + 3: FN(W, WS, X, LD, KS, 4, 3, OUT); break;  \
    case 4 * 8 + 2: FN(W, WS, X, LD, KS, 4, 2, OUT); break;  \
    case 4 * 8 + 1: FN(W, WS, X, LD, KS, 4, 1, OUT); break;  \
    case 2 * 8 + 4: FN(W, WS, X, LD, KS, 2, 4, OUT); break;  \
    case 2 * 8 + 3: FN(W, WS, X, LD, KS, 2, 3, OUT); break;  \
    case 2 * 8 + 2: FN(W, WS, X, LD, KS, 2, 2, OUT); break;  \
    case 2 * 8 + 1: FN(W, WS, X, LD, KS, 2, 1, OUT); break;  \
    case 1 * 8 + 4: FN(W, WS, X, LD, KS, 1, 4, OUT); break;  \
    case 1 * 8 + 3: FN(W, WS, X, LD, KS, 1, 3, OUT); break;  \
    case 1 * 8 + 2: FN(W, WS, X, LD, KS, 1, 2, OUT); break;  \
    default: FN(W, WS, X, LD, KS, 1, 1, OUT); break;         \
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
    int K = kpad(L), n = gx->n;
    size_t ld = (size_t)n16(n);
    bool bf16 = gx->bf16;
    /* F32 weights, and BF16 ones with bf16 activations, are their own panel */
    bool direct = L->fmt == DSV4_W_F32 || (L->fmt == DSV4_W_BF16 && bf16 && L->cols % 2 == 0);
    float *out = scratch; /* TILE_M x 64 results */
    void *panel = scratch + TILE_M * 16 * TILE_T;
    /* scratch holds 64 cols + 1024 floats: as many panel rows as fit, whole tiles */
    size_t room = (size_t)64 * L->cols + 1024 - TILE_M * 16 * TILE_T;
    int prows = (int)DSV4_MIN((size_t)PANEL_ROWS, room / (size_t)K) / TILE_M * TILE_M;
    /* Token blocks: all tokens when their packed activations fit in the L3 budget (each panel
     * is converted once and the tiles read the activations from L3), else blocks that fit L2
     * (each weight panel is then converted once per block). */
    size_t x_all = (size_t)K * (size_t)n16(n) * (bf16 ? 2 : 4);
    int tb = x_all <= X_ALL ? n : DSV4_MAX(16, (int)(X_BLOCK / ((size_t)K * (bf16 ? 2 : 4))) & ~15);
    for (int b0 = 0; b0 < n; b0 += tb) {
        int b1 = DSV4_MIN(n, b0 + tb);
        for (int p0 = r0; p0 < r1; p0 += prows) {
            int pm = DSV4_MIN(prows, r1 - p0);
            const void *pw;
            size_t ws;
            if (direct) {
                pw = row_bytes(L, p0);
                ws = L->fmt == DSV4_W_F32 ? (size_t)L->cols : (size_t)L->cols / 2;
            } else if (bf16 && panel_bf16_ok(L, p0, pm)) {
                panel_bf16(&s, p0, pm, K, panel);
                pw = panel;
                ws = (size_t)K / 2;
            } else if (bf16 || !panel_f32_ok(L, p0, pm)) {
                /* scales beyond the bf16 range (x packed as bf16), or e8m0 codes 0 / 255 that
                 * the shift does not decode: the portable kernel, for these rows */
                dsv4_gemm_x part = {gx->x + (size_t)b0 * L->cols, b1 - b0, false, NULL};
                portable_rows(L, p0, p0 + pm, &part, y + (size_t)b0 * ldy, ldy, scratch);
                continue;
            } else {
                panel_f32(&s, p0, pm, K, panel);
                pw = panel;
                ws = (size_t)K;
            }
            /* direct rows end at cols (the packed x is zero beyond, the rows are not there) */
            int k_steps = direct ? (bf16 ? L->cols / 2 : L->cols) : (bf16 ? K / 2 : K);
            for (int m0 = 0; m0 < pm; m0 += TILE_M) {
                int M = DSV4_MIN(TILE_M, pm - m0);
                for (int t0 = b0; t0 < b1; t0 += 16 * TILE_T) {
                    int T = DSV4_MIN(TILE_T, (b1 - t0 + 15) / 16);
                    if (bf16)
                        tile_bf16_any((const uint32_t *)pw + (size_t)m0 * ws, ws, (const uint32_t *)gx->p + t0, ld, k_steps, M,
                                      T, out);
                    else
                        tile_f32_any((const float *)pw + (size_t)m0 * ws, ws, (const float *)gx->p + t0, ld, k_steps, M, T,
                                     out);
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
    __m512 acc = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
        acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc2);
    }
    for (; i < n; i += 16) {
        __mmask16 m = first_bits16(n - i);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc, acc2));
}

static void axpy_f32(float a, const float *x, float *y, int n) {
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = first_bits16(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
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
    .axpy_f32 = axpy_f32,
    .fma_loop = fma_loop,
};
#endif
