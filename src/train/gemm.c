/* gemm.c: the two matrix products of a linear layer's backward pass.
 *
 * The forward y = x W^T runs through dsv4_matmul (every weight format, parallel over output
 * columns). Its backward needs
 *   dx = dy W      ([n, rows] x [rows, cols]): input gradients, parallel over tokens;
 *   dW = dy^T x    ([rows, n] x [n, cols]):    weight gradients, parallel over weight rows.
 * Both are written as rank-1 row updates (axpy) over blocks of four output rows, so one load
 * of a W row (or an x row) feeds four accumulators and the inner loop vectorises (omp simd:
 * -O2 alone does not vectorise loops of unknown length). Each output
 * element is owned by one thread and summed in a fixed order: the results do not depend on
 * the thread count. Zero entries of dy are skipped, which is what makes the router's gradient
 * (non-zero only at the chosen experts) cheap. The weights are F32 views (master copies). */
#include <omp.h>

#include "base/base.h"
#include "train/train.h"

/* acc[0..3][c] += a[i] * w[c] for the rows i < nr of the block */
static inline void axpy4(float *const acc[4], const float a[4], int nr, const float *restrict w, int cols) {
    if (nr == 4) {
        float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
        float *restrict y0 = acc[0], *restrict y1 = acc[1], *restrict y2 = acc[2], *restrict y3 = acc[3];
#pragma omp simd
        for (int c = 0; c < cols; c++) {
            float wc = w[c];
            y0[c] += a0 * wc;
            y1[c] += a1 * wc;
            y2[c] += a2 * wc;
            y3[c] += a3 * wc;
        }
        return;
    }
    for (int i = 0; i < nr; i++) {
        float ai = a[i], *restrict y = acc[i];
#pragma omp simd
        for (int c = 0; c < cols; c++) y[c] += ai * w[c];
    }
}

/* dx[t] += sum_r dy[t][r] W[r] for blocks of four tokens */
static void backward_dx(const float *W, int rows, int cols, const float *dy, int ldy, int n, float *dx, int lddx) {
    int n_blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if ((size_t)n * rows * cols > 65536)
    for (int b = 0; b < n_blocks; b++) {
        int t0 = 4 * b, nr = DSV4_MIN(4, n - t0);
        float *acc[4];
        for (int i = 0; i < 4; i++) acc[i] = dx + (size_t)(t0 + DSV4_MIN(i, nr - 1)) * lddx;
        for (int r = 0; r < rows; r++) {
            float a[4] = {0, 0, 0, 0};
            bool any = false;
            for (int i = 0; i < nr; i++) {
                a[i] = dy[(size_t)(t0 + i) * ldy + r];
                any |= a[i] != 0.0f;
            }
            if (any) axpy4(acc, a, nr, W + (size_t)r * cols, cols);
        }
    }
}

/* dW[r] += sum_t dy[t][r] x[t] for blocks of four weight rows */
static void backward_dw(float *dW, int rows, int cols, const float *dy, int ldy, const float *x, int ldx, int n) {
    int n_blocks = (rows + 3) / 4;
#pragma omp parallel for schedule(static) if ((size_t)n * rows * cols > 65536)
    for (int b = 0; b < n_blocks; b++) {
        int r0 = 4 * b, nr = DSV4_MIN(4, rows - r0);
        float *acc[4];
        for (int i = 0; i < 4; i++) acc[i] = dW + (size_t)(r0 + DSV4_MIN(i, nr - 1)) * cols;
        for (int t = 0; t < n; t++) {
            float a[4] = {0, 0, 0, 0};
            bool any = false;
            for (int i = 0; i < nr; i++) {
                a[i] = dy[(size_t)t * ldy + r0 + i];
                any |= a[i] != 0.0f;
            }
            if (any) axpy4(acc, a, nr, x + (size_t)t * ldx, cols);
        }
    }
}

void dsv4_matmul_backward_ld(const dsv4_linear *L, const float *x, int ldx, int n, const float *dy, int ldy,
                             float *dx, int lddx, const dsv4_linear *dL) {
    if (n <= 0 || L->rows <= 0) return;
    if (dx) backward_dx((const float *)L->w, L->rows, L->cols, dy, ldy, n, dx, lddx);
    if (dL) backward_dw(dsv4_lin_data(dL), L->rows, L->cols, dy, ldy, x, ldx, n);
}

void dsv4_matmul_backward(const dsv4_linear *L, const float *x, int n, const float *dy, float *dx,
                          const dsv4_linear *dL) {
    dsv4_matmul_backward_ld(L, x, L->cols, n, dy, L->rows, dx, L->cols, dL);
}
