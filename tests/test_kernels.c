/* test_kernels.c: every SIMD kernel set against the portable definition.
 *
 * For each set this CPU runs, each weight format (F32, BF16, FP8 with 128x128 and 32x32
 * blocks, FP4; e8m0 and F32 scales), odd shapes, and n = 1..17 tokens, random weights and
 * two kinds of activations (FP8-rounded, as the default numerics feed them, which the sets
 * may take through bf16; and arbitrary fp32, as the exact numerics feed them) go through
 * dsv4_matmul with the set active. Every output must match the portable result within a
 * relative tolerance measured against the size of its terms, |d| <= TOL * sum |w x|: the
 * only freedom a kernel has is the order of its fp32 additions. Row views with an offset
 * into the FP8 scale grid, rows whose e8m0 scales are the extreme 0 and 255 codes, and the
 * independence of the results from the thread count are checked too.
 *
 * Some sets promise more, and are held to it bit for bit: the AVX2 set keeps the portable
 * kernel's order of operations, and so do the NEON sets on their fp32 way (every product the
 * exact numerics feed them: arbitrary fp32 activations, or F32 weights). The NEON sets also
 * give each output one fixed chain of operations whatever the number of tokens, so a token
 * decoded alone must get exactly the outputs it gets inside a prefill batch. FP8 weights with
 * NaN codes and scales at the edge of the fp32 range (where the NEON sets hand rows back to
 * the portable kernel) are part of the shapes. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/linear.h"
#include "numeric/numeric.h"

#define TOL 2e-6

static uint64_t rng_state = 0x1234567;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float unif(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

typedef struct mat {
    dsv4_linear L;
    void *w;
    void *s;
} mat;

/* A random matrix of the format; scale exponents around 2^-4 (e8m0 123 .. 131). `extreme`
 * sets the first scale to 2^-127, the last to NaN and, for FP8, one to 2^120 (whose product
 * with the largest codes overflows) and a few weights to the NaN codes. */
static mat make(dsv4_wfmt fmt, int rows, int cols, int block, bool f32_scales, bool extreme_scales) {
    mat m = {0};
    dsv4_linear *L = &m.L;
    L->fmt = fmt;
    L->rows = rows;
    L->cols = cols;
    L->name = "test";
    size_t n = (size_t)rows * cols;
    if (fmt == DSV4_W_F32) {
        float *w = malloc(n * 4);
        for (size_t i = 0; i < n; i++) w[i] = unif();
        m.w = w;
    } else if (fmt == DSV4_W_BF16) {
        uint16_t *w = malloc(n * 2);
        for (size_t i = 0; i < n; i++) w[i] = dsv4_f32_to_bf16(unif() * 3.0f);
        m.w = w;
    } else {
        size_t sr, sc, nb = fmt == DSV4_W_FP8 ? n : n / 2;
        uint8_t *w = malloc(nb);
        for (size_t i = 0; i < nb; i++) {
            uint8_t b = (uint8_t)rnd();
            if (fmt == DSV4_W_FP8 && (b & 0x7f) == 0x7f) b ^= 1; /* no NaN codes */
            w[i] = b;
        }
        if (fmt == DSV4_W_FP8) {
            L->br = L->bc = block;
            sr = (size_t)(rows + block - 1) / block;
            sc = (size_t)(cols + block - 1) / block;
        } else {
            L->br = 1;
            L->bc = 32;
            sr = (size_t)rows;
            sc = (size_t)cols / 32;
        }
        L->sc = (int)sc;
        uint8_t *e = malloc(sr * sc + 1);
        for (size_t i = 0; i < sr * sc; i++) e[i] = (uint8_t)(123 + rnd() % 9);
        if (extreme_scales && sr * sc >= 2) {
            e[0] = 0;   /* 2^-127 */
            e[sr * sc - 1] = 255; /* NaN */
        }
        if (extreme_scales && fmt == DSV4_W_FP8 && sr * sc >= 3) {
            e[sr * sc / 2] = 247; /* 2^120 */
            w[nb / 3] = 0x7f;     /* NaN codes, both signs */
            w[nb / 3 + cols + 1] = 0xff;
        }
        if (f32_scales) {
            float *f = malloc(sr * sc * 4 + 4);
            for (size_t i = 0; i < sr * sc; i++) f[i] = dsv4_e8m0_to_f32(e[i]);
            free(e);
            L->scale_f32 = f;
            m.s = f;
        } else {
            L->scale_e8m0 = e;
            m.s = e;
        }
        m.w = w;
    }
    L->w = m.w;
    return m;
}

static void drop(mat *m) {
    free(m->w);
    free(m->s);
}

/* Activations: FP8-rounded blocks of 128 (bf16-exact) or arbitrary fp32. */
static float *acts(int n, int cols, bool fp8) {
    float *x = malloc((size_t)n * cols * sizeof(float) + 4);
    for (int t = 0; t < n; t++) {
        float *xt = x + (size_t)t * cols;
        for (int c = 0; c < cols; c++) xt[c] = unif() * (1.0f + (float)(rnd() % 4));
        if (fp8) {
            int full = cols / 128 * 128;
            if (full) dsv4_fp8_fake_quant(xt, full, 128);
            if (cols > full) dsv4_fp8_fake_quant(xt + full, cols - full, cols - full);
        }
    }
    return x;
}

/* sum over the row of |w x| (the scale of the rounding errors), from exact dequantisation */
static void magnitudes(const dsv4_linear *L, const float *x, int n, double *mag) {
    float *row = malloc((size_t)L->cols * sizeof(float));
    for (int r = 0; r < L->rows; r++) {
        dsv4_linear_dequant_row(L, r, row);
        for (int t = 0; t < n; t++) {
            double s = 0;
            for (int c = 0; c < L->cols; c++) s += fabs((double)row[c] * x[(size_t)t * L->cols + c]);
            mag[(size_t)t * L->rows + r] = s;
        }
    }
    free(row);
}

static int failures_reported;

/* Sets whose fp32 way is the portable kernel's order of operations (see the top). */
static bool keeps_portable_order(const dsv4_kernel_set *k) {
    return !strcmp(k->name, "avx2") || !strcmp(k->name, "neon") || !strcmp(k->name, "neon-bf16");
}

/* Does the set take this product the fp32 way? (The dispatcher offers bf16 arithmetic only
 * for quantised weights and bf16-exact activations, and only to sets that want it.) */
static bool fp32_way(const dsv4_kernel_set *k, const dsv4_linear *L, const float *x, int n) {
    return !k->wants_bf16 || L->fmt == DSV4_W_F32 || !dsv4_bf16_exact(x, (size_t)n * L->cols);
}

static void compare(const dsv4_kernel_set *k, const dsv4_linear *L, const float *x, int n, const char *what) {
    size_t ny = (size_t)n * L->rows;
    float *ref = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float)), *got1 = malloc(ny * sizeof(float));
    double *mag = malloc(ny * sizeof(double));
    dsv4_kernels_use(&dsv4_kernels_portable);
    dsv4_matmul(L, x, n, ref);
    dsv4_kernels_use(k);
    omp_set_num_threads(2);
    dsv4_matmul(L, x, n, got);
    omp_set_num_threads(1);
    dsv4_matmul(L, x, n, got1);
    omp_set_num_threads(2);
    magnitudes(L, x, n, mag);
    double worst = 0;
    size_t at = 0;
    bool nan_ok = true;
    for (size_t i = 0; i < ny; i++) {
        if (isnan(ref[i]) || isnan(got[i])) {
            nan_ok &= isnan(ref[i]) && isnan(got[i]);
            continue;
        }
        double d = fabs((double)got[i] - ref[i]) / (mag[i] + 1e-30);
        if (d > worst) {
            worst = d;
            at = i;
        }
    }
    bool same = memcmp(got, got1, ny * sizeof(float)) == 0;
    bool exact = true;
    for (size_t i = 0; i < ny; i++) exact &= got[i] == ref[i] || (isnan(got[i]) && isnan(ref[i]));
    if (keeps_portable_order(k) && fp32_way(k, L, x, n))
        CHECK(exact, "%s %s %s [%d x %d] n=%d: differs from the portable kernel", k->name, dsv4_wfmt_name(L->fmt), what,
              L->rows, L->cols, n);
    if ((worst > TOL || !nan_ok || !same) && failures_reported++ < 20)
        fprintf(stderr, "  %s %s %s [%d x %d] n=%d bc=%d: worst %.3g at row %zu token %zu (got %.9g ref %.9g)%s%s\n",
                k->name, dsv4_wfmt_name(L->fmt), what, L->rows, L->cols, n, L->bc, worst, at % L->rows, at / L->rows,
                got[at], ref[at], nan_ok ? "" : " NaN mismatch", same ? "" : " differs with 1 thread");
    CHECK(worst <= TOL, "%s %s %s [%d x %d] n=%d: relative error %.3g", k->name, dsv4_wfmt_name(L->fmt), what, L->rows,
          L->cols, n, worst);
    CHECK(nan_ok, "%s %s: NaN where the portable kernel has none (or the reverse)", k->name, dsv4_wfmt_name(L->fmt));
    CHECK(same, "%s %s [%d x %d] n=%d: results depend on the thread count", k->name, dsv4_wfmt_name(L->fmt), L->rows,
          L->cols, n);
    free(ref);
    free(got);
    free(got1);
    free(mag);
}

/* Each token of an n-token product alone (n = 1, the decode shape) must reproduce its outputs
 * in the batch bit for bit (the NEON sets: one chain per output, whatever the tile or panel). */
static void compare_alone(const dsv4_kernel_set *k, const dsv4_linear *L, const float *x, int n, const char *what) {
    size_t rows = (size_t)L->rows;
    float *all = malloc((size_t)n * rows * sizeof(float)), *one = malloc(rows * sizeof(float));
    dsv4_kernels_use(k);
    dsv4_matmul(L, x, n, all);
    bool same = true;
    for (int t = 0; t < n; t++) {
        dsv4_matmul(L, x + (size_t)t * L->cols, 1, one);
        for (size_t r = 0; r < rows; r++) {
            float a = all[(size_t)t * rows + r];
            same &= a == one[r] || (isnan(a) && isnan(one[r]));
        }
    }
    CHECK(same, "%s %s %s [%d x %d] n=%d: a token alone differs from the same token in the batch", k->name,
          dsv4_wfmt_name(L->fmt), what, L->rows, L->cols, n);
    free(all);
    free(one);
}

int main(void) {
    dsv4_numeric_init();
    const dsv4_kernel_set *sets[8];
    int n_sets = dsv4_kernels_available(sets, 8);
    printf("kernel sets:");
    for (int i = 0; i < n_sets; i++) printf(" %s", sets[i]->name);
    printf("\n");

    struct {
        dsv4_wfmt fmt;
        int rows, cols, block;
        bool f32_scales, extreme;
    } shapes[] = {
        {DSV4_W_F32, 7, 1, 0, 0, 0},     {DSV4_W_F32, 37, 100, 0, 0, 0},   {DSV4_W_F32, 13, 257, 0, 0, 0},
        {DSV4_W_BF16, 1, 13, 0, 0, 0},   {DSV4_W_BF16, 29, 64, 0, 0, 0},   {DSV4_W_BF16, 30, 301, 0, 0, 0},
        {DSV4_W_FP8, 5, 7, 128, 0, 0},   {DSV4_W_FP8, 33, 200, 128, 0, 0}, {DSV4_W_FP8, 140, 300, 128, 0, 1},
        {DSV4_W_FP8, 19, 256, 128, 1, 0}, {DSV4_W_FP8, 41, 160, 32, 0, 0}, {DSV4_W_FP8, 23, 96, 32, 1, 0},
        {DSV4_W_FP8, 45, 96, 32, 1, 1},
        {DSV4_W_FP4, 3, 32, 0, 0, 0},    {DSV4_W_FP4, 37, 96, 0, 0, 0},    {DSV4_W_FP4, 26, 288, 0, 0, 1},
        {DSV4_W_FP4, 31, 544, 0, 1, 0},
    };
    for (int si = 0; si < n_sets; si++) {
        const dsv4_kernel_set *k = sets[si];
        if (k == &dsv4_kernels_portable) continue;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            mat m = make(shapes[i].fmt, shapes[i].rows, shapes[i].cols, shapes[i].block, shapes[i].f32_scales,
                         shapes[i].extreme);
            for (int n = 1; n <= 17; n++) {
                for (int fp8 = 0; fp8 < 2; fp8++) {
                    float *x = acts(n, m.L.cols, fp8);
                    compare(k, &m.L, x, n, fp8 ? "fp8-rounded x" : "fp32 x");
                    /* batch invariance: a batch that takes the panels, and one that does not */
                    if (!strncmp(k->name, "neon", 4) && (n == 5 || n == 17))
                        compare_alone(k, &m.L, x, n, fp8 ? "fp8-rounded x" : "fp32 x");
                    free(x);
                }
            }
            /* a view starting inside the FP8 scale grid (as the attention's wo_a groups) */
            if (m.L.fmt != DSV4_W_F32 && m.L.rows > 9) {
                dsv4_linear v = dsv4_linear_rows(&m.L, 5, m.L.rows - 9);
                for (int n = 1; n <= 17; n += 8) {
                    float *x = acts(n, m.L.cols, n & 1);
                    compare(k, &v, x, n, "row view");
                    free(x);
                }
            }
            drop(&m);
        }
        /* a prefill-sized product: several token blocks and panels */
        mat big = make(DSV4_W_FP4, 100, 4096, 0, 0, 0);
        float *x = acts(80, 4096, true);
        compare(k, &big.L, x, 80, "large fp8-rounded x");
        if (!strncmp(k->name, "neon", 4)) compare_alone(k, &big.L, x, 80, "large fp8-rounded x");
        free(x);
        x = acts(70, 4096, false);
        compare(k, &big.L, x, 70, "large fp32 x");
        free(x);
        drop(&big);
        /* decode-sized products cut into many chunks over the threads */
        mat dec = make(DSV4_W_FP4, 512, 2048, 0, 0, 0);
        for (int n = 1; n <= 3; n++) {
            x = acts(n, 2048, n != 2);
            compare(k, &dec.L, x, n, "decode-sized");
            free(x);
        }
        drop(&dec);
        dec = make(DSV4_W_FP8, 600, 1024, 128, 0, 0);
        x = acts(1, 1024, true);
        compare(k, &dec.L, x, 1, "decode-sized");
        free(x);
        drop(&dec);

        /* the dot product */
        float a[301], b[301];
        for (int i = 0; i < 301; i++) {
            a[i] = unif();
            b[i] = unif();
        }
        for (int n = 0; n <= 301; n += 43) {
            double ref = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                ref += (double)a[i] * b[i];
                mag += fabs((double)a[i] * b[i]);
            }
            CHECK(fabs(k->dot_f32(a, b, n) - ref) <= TOL * mag + 1e-30, "%s dot_f32 n=%d", k->name, n);
        }
        /* y += a x */
        for (int n = 0; n <= 301; n += 43) {
            float y[301], yr[301];
            for (int i = 0; i < n; i++) y[i] = yr[i] = b[i];
            k->axpy_f32(0.37f, a, y, n);
            for (int i = 0; i < n; i++) yr[i] = fmaf(0.37f, a[i], yr[i]);
            bool ok = true;
            for (int i = 0; i < n; i++) ok &= fabsf(y[i] - yr[i]) <= 1e-6f * (fabsf(yr[i]) + fabsf(0.37f * a[i]));
            CHECK(ok, "%s axpy_f32 n=%d", k->name, n);
        }
        CHECK(k->fma_loop && k->fma_loop(10) > 0, "%s has an FMA loop", k->name);
    }
    CHECK(n_sets >= 1 && sets[0] == &dsv4_kernels_portable, "the portable set is always available");
    return check_done("test_kernels");
}
