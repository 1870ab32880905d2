/* linear_avx2.c: the matmul kernels for AVX2 + FMA (x86-64 CPUs without AVX-512).
 *
 * These kernels compute exactly what the portable ones compute, bit for bit: each weight row
 * is dequantised to fp32 (the same products value x scale), and each dot product keeps eight
 * partial sums, element i going to sum i mod 8 in order, with a separate multiply and add,
 * combined at the end in the portable kernel's order. An 8-lane vector is that set of partial
 * sums, so the only change is that eight of them advance at once.
 *
 * Shape of the work: rows are dequantised a block at a time into scratch (BLOCK_ROWS rows,
 * a few tens of KB), then every token is dotted with the block, four rows per pass so that
 * each activation load serves four rows. Weights are thus read from memory once; the
 * activations are re-read from the caches once per row block.
 *
 * Dequantisation: BF16 widens by a shift; e4m3 goes through the library's 256-entry table
 * with a gather (exact by construction, and rare outside the attention projections); e2m1
 * through an 8-entry VPERMPS table of magnitudes with the sign put back. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "base/base.h"
#include "kernels/linear.h"
#include "numeric/numeric.h"

enum { BLOCK_ROWS = 8 };

void dsv4_kernels_avx2_init(void);
void dsv4_kernels_avx2_init(void) { dsv4_numeric_init(); }

static inline __m256i first_lanes(int n) { /* all-ones in lanes < n */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Row r of L dequantised to fp32 into out[0..cols). */
static void dequant_row(const dsv4_linear *L, int r, float *out) {
    int cols = L->cols;
    switch (L->fmt) {
    case DSV4_W_F32: memcpy(out, (const float *)L->w + (size_t)r * cols, (size_t)cols * sizeof(float)); break;
    case DSV4_W_BF16: {
        const uint16_t *w = (const uint16_t *)L->w + (size_t)r * cols;
        int c = 0;
        for (; c + 8 <= cols; c += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + c)));
            _mm256_storeu_ps(out + c, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; c < cols; c++) out[c] = dsv4_bf16_to_f32(w[c]);
        break;
    }
    case DSV4_W_FP8: {
        const uint8_t *w = (const uint8_t *)L->w + (size_t)r * cols;
        for (int c0 = 0; c0 < cols; c0 += L->bc) {
            int c1 = DSV4_MIN(cols, c0 + L->bc), c = c0;
            __m256 s = _mm256_set1_ps(dsv4_linear_scale(L, r, c0));
            for (; c + 8 <= c1; c += 8) {
                __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w + c)));
                __m256 v = _mm256_i32gather_ps(dsv4_e4m3_table, idx, 4);
                _mm256_storeu_ps(out + c, _mm256_mul_ps(v, s));
            }
            for (; c < c1; c++) out[c] = dsv4_e4m3_to_f32(w[c]) * dsv4_linear_scale(L, r, c0);
        }
        break;
    }
    case DSV4_W_FP4: {
        const uint8_t *w = (const uint8_t *)L->w + (size_t)r * (cols / 2);
        const __m256 mag = _mm256_loadu_ps(dsv4_e2m1_values); /* codes 0..7 */
        for (int c0 = 0; c0 < cols; c0 += 32) {
            __m256 s = _mm256_set1_ps(dsv4_linear_scale(L, r, c0));
            for (int c = c0; c < c0 + 32; c += 8) {
                /* 4 bytes = 8 codes, low nibble first */
                uint32_t b;
                memcpy(&b, w + c / 2, 4);
                __m256i codes = _mm256_and_si256(
                    _mm256_srlv_epi32(_mm256_set1_epi32((int)b), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                    _mm256_set1_epi32(15));
                __m256 v = _mm256_permutevar8x32_ps(mag, codes); /* |value| by the low 3 bits */
                __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(codes, 3), 31);
                v = _mm256_or_ps(v, _mm256_castsi256_ps(sign));
                _mm256_storeu_ps(out + c, _mm256_mul_ps(v, s));
            }
        }
        break;
    }
    }
}

/* The portable kernel's final combination of the eight partial sums. */
static inline float combine8(__m256 s) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)); /* s_j + s_(j+4) */
    __m128 b = _mm_add_ps(a, _mm_shuffle_ps(a, a, _MM_SHUFFLE(2, 3, 0, 1)));       /* (a0+a1), (a2+a3) */
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehl_ps(b, b)));
}

/* Dot products of four dequantised rows (stride ws) with one token, in the portable order. */
static inline void dot4(const float *w, size_t ws, const float *x, int cols, int m, float *out) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int c = 0;
    for (; c + 8 <= cols; c += 8) {
        __m256 xv = _mm256_loadu_ps(x + c);
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(w + c), xv));
        if (m > 1) s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(w + ws + c), xv));
        if (m > 2) s2 = _mm256_add_ps(s2, _mm256_mul_ps(_mm256_loadu_ps(w + 2 * ws + c), xv));
        if (m > 3) s3 = _mm256_add_ps(s3, _mm256_mul_ps(_mm256_loadu_ps(w + 3 * ws + c), xv));
    }
    if (c < cols) { /* the tail: element i still goes to sum i mod 8 (zeros elsewhere) */
        __m256i k = first_lanes(cols - c);
        __m256 xv = _mm256_maskload_ps(x + c, k);
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_maskload_ps(w + c, k), xv));
        if (m > 1) s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_maskload_ps(w + ws + c, k), xv));
        if (m > 2) s2 = _mm256_add_ps(s2, _mm256_mul_ps(_mm256_maskload_ps(w + 2 * ws + c, k), xv));
        if (m > 3) s3 = _mm256_add_ps(s3, _mm256_mul_ps(_mm256_maskload_ps(w + 3 * ws + c, k), xv));
    }
    out[0] = combine8(s0);
    if (m > 1) out[1] = combine8(s1);
    if (m > 2) out[2] = combine8(s2);
    if (m > 3) out[3] = combine8(s3);
}

static void gemm(const dsv4_linear *L, int r_begin, int r_end, const dsv4_gemm_x *gx, float *y, int ldy, float *scratch) {
    int cols = L->cols, n = gx->n;
    size_t ws = ((size_t)cols + 15) & ~(size_t)15;
    for (int r0 = r_begin; r0 < r_end; r0 += BLOCK_ROWS) {
        int nr = DSV4_MIN(BLOCK_ROWS, r_end - r0);
        for (int i = 0; i < nr; i++) dequant_row(L, r0 + i, scratch + (size_t)i * ws);
        for (int t = 0; t < n; t++) {
            const float *xt = gx->x + (size_t)t * cols;
            for (int i = 0; i < nr; i += 4) {
                float out[4];
                int m = DSV4_MIN(4, nr - i);
                dot4(scratch + (size_t)i * ws, ws, xt, cols, m, out);
                for (int j = 0; j < m; j++) y[(size_t)t * ldy + r0 + i + j] = out[j];
            }
        }
    }
}

static float dot_f32(const float *a, const float *b, int n) {
    float out;
    dot4(a, 0, b, n, 1, &out);
    return out;
}

static void axpy_f32(float a, const float *x, float *y, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(av, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* 12 independent accumulator chains hide the FMA latency on two pipes. */
static double fma_loop(long iters) {
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], b, c);
    }
    __m256 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, a[j]);
    volatile float sink = combine8(s);
    (void)sink;
    return 2.0 * 8.0 * 12.0 * (double)iters;
}

const dsv4_kernel_set dsv4_kernels_avx2 = {
    .name = "avx2",
    .gemm = {gemm, gemm, gemm, gemm},
    .dot_f32 = dot_f32,
    .axpy_f32 = axpy_f32,
    .fma_loop = fma_loop,
};
#endif
