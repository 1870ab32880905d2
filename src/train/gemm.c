/* gemm.c: the matrix products of training, on OpenBLAS, independent of the thread count.
 *
 * A linear layer y = x W^T (W an F32 master view [rows, cols]) needs three products:
 *   forward   y  = x W^T    ([n, cols] x [cols, rows])
 *   backward  dx += dy W    ([n, rows] x [rows, cols]): input gradients
 *             dW += dy^T x  ([rows, n] x [n, cols]):    weight gradients
 * All three are sgemm calls. OpenBLAS is kept single-threaded (openblas_set_num_threads(1))
 * and the parallelism is ours: each product is cut into a fixed grid of output tiles
 * (TILE x TILE, fixed by the shapes only), every tile is one sgemm call owned by one OpenMP
 * thread, with the whole reduction dimension inside the call. An output element is therefore
 * computed by the same sgemm call on the same operands whatever the number of threads, and
 * training gives bit-identical results on 1, 2 or 16 threads. (OpenBLAS may sum a dot product
 * differently for different matrix shapes, e.g. through its small-matrix kernels; fixing the
 * tiles fixes the shapes.)
 *
 * Inside the data-parallel trainer each sequence runs on one thread (nested regions get a team
 * of one), so the tiles then only bound the shapes; `dsv4 grad` and single-sequence callers
 * get the tiles spread over the threads. Weights in other formats (a loaded FP8 model that
 * was not converted) fall back to dsv4_matmul for the forward; the backward needs F32 views. */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#include "base/base.h"
#include "train/train.h"

enum { TILE = 256 };

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single_threaded(void) { openblas_set_num_threads(1); }

void dsv4_train_blas_init(void) { pthread_once(&blas_once, blas_single_threaded); }

/* Parallel over the tiles of an [M, N] output when the product is big enough to pay for a
 * parallel region; `body(i0, i1, j0, j1)` computes one tile. */
#define FOR_TILES(M, N, work, body)                                                                             \
    do {                                                                                                        \
        int tm_ = ((M) + TILE - 1) / TILE, tn_ = ((N) + TILE - 1) / TILE;                                     \
        _Pragma("omp parallel for schedule(dynamic, 1) if (tm_ * tn_ > 1 && (work) > 262144.0)")            \
        for (int k_ = 0; k_ < tm_ * tn_; k_++) {                                                                \
            int i0 = (k_ / tn_) * TILE, j0 = (k_ % tn_) * TILE;                                                 \
            int i1 = DSV4_MIN((M), i0 + TILE), j1 = DSV4_MIN((N), j0 + TILE);                                   \
            body;                                                                                               \
        }                                                                                                       \
    } while (0)

void dsv4_train_matmul_ld(const dsv4_linear *L, const float *x, int n, float *y, int ldy) {
    if (n <= 0 || L->rows <= 0) return;
    if (L->fmt != DSV4_W_F32) {
        dsv4_matmul_ld(L, x, n, y, ldy);
        return;
    }
    dsv4_train_blas_init();
    const float *W = (const float *)L->w;
    int rows = L->rows, cols = L->cols;
    double work = (double)n * rows * cols;
    /* y[i0:i1, j0:j1] = x[i0:i1, :] W[j0:j1, :]^T */
    FOR_TILES(n, rows, work,
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0, j1 - j0, cols, 1.0f, x + (size_t)i0 * cols,
                          cols, W + (size_t)j0 * cols, cols, 0.0f, y + (size_t)i0 * ldy + j0, ldy));
}

void dsv4_train_matmul(const dsv4_linear *L, const float *x, int n, float *y) {
    dsv4_train_matmul_ld(L, x, n, y, L->rows);
}

void dsv4_matmul_backward_ld(const dsv4_linear *L, const float *x, int ldx, int n, const float *dy, int ldy,
                             float *dx, int lddx, const dsv4_linear *dL) {
    if (n <= 0 || L->rows <= 0) return;
    dsv4_train_blas_init();
    const float *W = (const float *)L->w;
    int rows = L->rows, cols = L->cols;
    double work = (double)n * rows * cols;
    if (dx) /* dx[i0:i1, j0:j1] += dy[i0:i1, :] W[:, j0:j1] */
        FOR_TILES(n, cols, work,
                  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, j1 - j0, rows, 1.0f,
                              dy + (size_t)i0 * ldy, ldy, W + j0, cols, 1.0f, dx + (size_t)i0 * lddx + j0, lddx));
    if (dL) { /* dW[i0:i1, j0:j1] += dy[:, i0:i1]^T x[:, j0:j1] */
        float *dW = dsv4_lin_data(dL);
        FOR_TILES(rows, cols, work,
                  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1 - i0, j1 - j0, n, 1.0f, dy + i0, ldy,
                              x + j0, ldx, 1.0f, dW + (size_t)i0 * cols + j0, cols));
    }
}

void dsv4_matmul_backward(const dsv4_linear *L, const float *x, int n, const float *dy, float *dx,
                          const dsv4_linear *dL) {
    dsv4_matmul_backward_ld(L, x, L->cols, n, dy, L->rows, dx, L->cols, dL);
}

void dsv4_sgemm_tiled(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    dsv4_train_blas_init();
    double work = (double)M * N * K;
    FOR_TILES(M, N, work,
              cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, i1 - i0,
                          j1 - j0, K, alpha, ta ? A + i0 : A + (size_t)i0 * lda, lda,
                          tb ? B + (size_t)j0 * ldb : B + j0, ldb, beta, C + (size_t)i0 * ldc + j0, ldc));
}
