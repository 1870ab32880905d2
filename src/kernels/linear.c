/* linear.c: the portable matmul for every weight format, and the dispatcher.
 *
 * The portable kernel is the definition the SIMD kernels are tested against: dequantise one
 * weight row to fp32 (exact), then dot it with each token's activations using eight partial
 * sums combined in a fixed order. The dispatcher splits the output rows over threads. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "kernels/linear.h"
#include "numeric/numeric.h"

const char *dsv4_wfmt_name(dsv4_wfmt f) {
    switch (f) {
    case DSV4_W_F32: return "F32";
    case DSV4_W_BF16: return "BF16";
    case DSV4_W_FP8: return "FP8";
    case DSV4_W_FP4: return "FP4";
    }
    return "?";
}

size_t dsv4_linear_bytes(const dsv4_linear *L) {
    size_t n = (size_t)L->rows * (size_t)L->cols;
    switch (L->fmt) {
    case DSV4_W_F32: return 4 * n;
    case DSV4_W_BF16: return 2 * n;
    case DSV4_W_FP8: {
        size_t sr = (size_t)(L->rows + L->br - 1) / (size_t)L->br;
        return n + sr * (size_t)L->sc * (L->scale_f32 ? 4 : 1);
    }
    case DSV4_W_FP4: return n / 2 + (size_t)L->rows * (size_t)L->sc * (L->scale_f32 ? 4 : 1);
    }
    return 0;
}

dsv4_linear dsv4_linear_rows(const dsv4_linear *L, int r, int n) {
    dsv4_linear v = *L;
    v.rows = n;
    v.r0 = L->r0 + r;
    switch (L->fmt) {
    case DSV4_W_F32: v.w = (const float *)L->w + (size_t)r * (size_t)L->cols; break;
    case DSV4_W_BF16: v.w = (const uint16_t *)L->w + (size_t)r * (size_t)L->cols; break;
    case DSV4_W_FP8: v.w = (const uint8_t *)L->w + (size_t)r * (size_t)L->cols; break;
    case DSV4_W_FP4:
        v.w = (const uint8_t *)L->w + (size_t)r * (size_t)(L->cols / 2);
        /* FP4 scales are per row: move them with the rows, keep r0 for FP8 only */
        if (L->scale_e8m0) v.scale_e8m0 = L->scale_e8m0 + (size_t)r * (size_t)L->sc;
        if (L->scale_f32) v.scale_f32 = L->scale_f32 + (size_t)r * (size_t)L->sc;
        v.r0 = 0;
        break;
    }
    return v;
}

float dsv4_linear_scale(const dsv4_linear *L, int r, int c) {
    size_t idx;
    if (L->fmt == DSV4_W_FP4) idx = (size_t)r * (size_t)L->sc + (size_t)(c / 32);
    else idx = (size_t)((L->r0 + r) / L->br) * (size_t)L->sc + (size_t)(c / L->bc);
    return L->scale_f32 ? L->scale_f32[idx] : dsv4_e8m0_to_f32(L->scale_e8m0[idx]);
}

void dsv4_linear_dequant_row(const dsv4_linear *L, int r, float *out) {
    int cols = L->cols;
    switch (L->fmt) {
    case DSV4_W_F32: memcpy(out, (const float *)L->w + (size_t)r * cols, (size_t)cols * 4); break;
    case DSV4_W_BF16: {
        const uint16_t *w = (const uint16_t *)L->w + (size_t)r * cols;
        for (int c = 0; c < cols; c++) out[c] = dsv4_bf16_to_f32(w[c]);
        break;
    }
    case DSV4_W_FP8: {
        const uint8_t *w = (const uint8_t *)L->w + (size_t)r * cols;
        for (int c0 = 0; c0 < cols; c0 += L->bc) {
            float s = dsv4_linear_scale(L, r, c0);
            int c1 = DSV4_MIN(cols, c0 + L->bc);
            for (int c = c0; c < c1; c++) out[c] = dsv4_e4m3_to_f32(w[c]) * s;
        }
        break;
    }
    case DSV4_W_FP4: {
        const uint8_t *w = (const uint8_t *)L->w + (size_t)r * (cols / 2);
        for (int c0 = 0; c0 < cols; c0 += 32) {
            float s = dsv4_linear_scale(L, r, c0);
            for (int c = c0; c < c0 + 32; c += 2) {
                uint8_t b = w[c / 2];
                out[c] = dsv4_e2m1_to_f32(b & 15) * s;
                out[c + 1] = dsv4_e2m1_to_f32(b >> 4) * s;
            }
        }
        break;
    }
    }
}

static float dot_f32_portable(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[i & 7] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void gemm_portable(const dsv4_linear *L, int r_begin, int r_end, const float *x, int n, float *y,
                          int ldy, float *scratch) {
    int cols = L->cols;
    for (int r = r_begin; r < r_end; r++) {
        dsv4_linear_dequant_row(L, r, scratch);
        for (int t = 0; t < n; t++) y[(size_t)t * ldy + r] = dot_f32_portable(scratch, x + (size_t)t * cols, cols);
    }
}

const dsv4_kernel_set dsv4_kernels_portable = {
    .name = "portable",
    .gemm = {gemm_portable, gemm_portable, gemm_portable, gemm_portable},
    .dot_f32 = dot_f32_portable,
};

/* ---- dispatch ------------------------------------------------------------------------------ */

static const dsv4_kernel_set *active;

/* Defined by the SIMD files when the build has them; weak so the portable build links alone. */
extern const dsv4_kernel_set *dsv4_kernels_x86_best(void) __attribute__((weak));

const dsv4_kernel_set *dsv4_kernels_best(void) {
    if (dsv4_kernels_x86_best) {
        const dsv4_kernel_set *k = dsv4_kernels_x86_best();
        if (k) return k;
    }
    return &dsv4_kernels_portable;
}

const dsv4_kernel_set *dsv4_kernels(void) {
    const dsv4_kernel_set *k = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (!k) {
        const char *env = getenv("DSV4_KERNELS");
        k = (env && !strcmp(env, "portable")) ? &dsv4_kernels_portable : dsv4_kernels_best();
        __atomic_store_n(&active, k, __ATOMIC_RELEASE);
    }
    return k;
}

void dsv4_kernels_use(const dsv4_kernel_set *k) { __atomic_store_n(&active, k, __ATOMIC_RELEASE); }

/* Per-thread scratch, grown on demand (the hot path reuses it). */
static _Thread_local float *tl_scratch;
static _Thread_local size_t tl_scratch_cap;

static float *thread_scratch(size_t floats) {
    if (floats > tl_scratch_cap) {
        free(tl_scratch);
        tl_scratch = dsv4_alloc_aligned(floats * sizeof(float), "matmul scratch");
        tl_scratch_cap = tl_scratch ? floats : 0;
    }
    return tl_scratch;
}

void dsv4_matmul(const dsv4_linear *L, const float *x, int n, float *y) { dsv4_matmul_ld(L, x, n, y, L->rows); }

void dsv4_matmul_ld(const dsv4_linear *L, const float *x, int n, float *y, int ldy) {
    if (n <= 0 || L->rows <= 0) return;
    const dsv4_kernel_set *k = dsv4_kernels();
    dsv4_gemm_fn fn = k->gemm[L->fmt];
    int rows = L->rows;
    /* Row chunks: enough to balance threads, large enough to amortise the dispatch. */
    int nth = omp_get_max_threads();
    int chunk = rows / (nth * 8);
    if (chunk < 4) chunk = 4;
    chunk = (chunk + 3) & ~3;
    int n_chunks = (rows + chunk - 1) / chunk;
    size_t scratch_floats = (size_t)64 * (size_t)L->cols + 64;
    if (n_chunks == 1 || (size_t)rows * (size_t)L->cols * (size_t)n < 32768) {
        float *s = thread_scratch(scratch_floats);
        fn(L, 0, rows, x, n, y, ldy, s);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int c = 0; c < n_chunks; c++) {
        float *s = thread_scratch(scratch_floats);
        int r0 = c * chunk, r1 = DSV4_MIN(rows, r0 + chunk);
        fn(L, r0, r1, x, n, y, ldy, s);
    }
}

void dsv4_linear_forward(const dsv4_linear *L, const float *x, int n, float *y, dsv4_numerics mode,
                         float *xq) {
    bool quant = mode == DSV4_NUMERICS_DEFAULT && L->act_quant && (L->fmt == DSV4_W_FP8 || L->fmt == DSV4_W_FP4);
    if (quant) {
        size_t cols = (size_t)L->cols;
        memcpy(xq, x, (size_t)n * cols * sizeof(float));
#pragma omp parallel for schedule(static) if (n > 4)
        for (int t = 0; t < n; t++) dsv4_fp8_fake_quant(xq + (size_t)t * cols, (int)cols, L->act_block ? L->act_block : 128);
        dsv4_matmul(L, xq, n, y);
    } else {
        dsv4_matmul(L, x, n, y);
    }
}
