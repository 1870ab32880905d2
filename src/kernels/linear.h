/* linear.h: y = x W^T for every weight format of the release.
 *
 * A dsv4_linear is a view of one weight matrix [rows = out, cols = in] as stored in the
 * checkpoint: F32, BF16, FP8 e4m3 with block scales (128x128 in V4, 32x32 in V4.1), or FP4
 * e2m1 (two codes per byte along the input axis, one e8m0 scale per 32 inputs). Weights are
 * read in place from the memory map and converted on the fly; nothing is dequantised ahead.
 *
 * Activations are fp32. In the default numerics the caller (dsv4_linear_forward) first rounds
 * them to FP8 blocks of 128 as the official act_quant does; because block scales are powers of
 * two the quantised products equal the official block-scaled GEMM up to summation order.
 *
 * Determinism: every output element is computed by one thread with a fixed summation order,
 * so results do not depend on the number of threads. */
#ifndef DSV4_LINEAR_H
#define DSV4_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "dsv4.h"

typedef enum { DSV4_W_F32, DSV4_W_BF16, DSV4_W_FP8, DSV4_W_FP4 } dsv4_wfmt;

typedef struct dsv4_linear {
    dsv4_wfmt fmt;
    int rows, cols;             /* out, in */
    const void *w;              /* row-major; FP4: [rows, cols/2] bytes */
    const uint8_t *scale_e8m0;  /* FP8: [sr, sc] block scales; FP4: [rows, cols/32] */
    const float *scale_f32;     /* the same, stored as F32 (older checkpoints) */
    int br, bc;                 /* FP8 block shape; FP4: 1 x 32 */
    int sc;                     /* scale columns (row stride of the scale matrix) */
    int r0;                     /* row offset of this view inside the stored matrix (scales) */
    bool act_quant;             /* default numerics: FP8-quantise the input (blocks of act_block) */
    int act_block;              /* 128 in V4, 32 in V4.1 (0 reads as 128) */
    const char *name;
} dsv4_linear;

const char *dsv4_wfmt_name(dsv4_wfmt f);
size_t dsv4_linear_bytes(const dsv4_linear *L); /* weight + scale bytes */

/* A view of rows [r, r+n) of L. */
dsv4_linear dsv4_linear_rows(const dsv4_linear *L, int r, int n);

/* The scale of weight element (r, c) of the stored matrix. */
float dsv4_linear_scale(const dsv4_linear *L, int r, int c);

/* Row r dequantised to fp32 (exact: every format times a power of two fits in fp32). */
void dsv4_linear_dequant_row(const dsv4_linear *L, int r, float *out);

/* y[n, rows] = x[n, cols] W^T; x is used as given (no activation quantisation). */
void dsv4_matmul(const dsv4_linear *L, const float *x, int n, float *y);
/* The same with output rows ldy floats apart (writing into a slice of a wider matrix). */
void dsv4_matmul_ld(const dsv4_linear *L, const float *x, int n, float *y, int ldy);

/* The official linear(): in default numerics, inputs of FP8/FP4 weights with act_quant set
 * are rounded to FP8 blocks of act_block first (into scratch xq[n*cols]); then dsv4_matmul. */
void dsv4_linear_forward(const dsv4_linear *L, const float *x, int n, float *y, dsv4_numerics mode,
                         float *xq);

/* ---- kernels (portable C and SIMD variants, chosen at run time) -------------------------
 * A kernel computes the output columns [r_begin, r_end) for n tokens:
 *   y[t*ldy + r] = dot(W row r, x[t*cols ..]) for r in [r_begin, r_end), t < n.
 * `scratch` has room for 64*cols floats (per thread). The dispatcher gives each thread its
 * own row range, so a kernel never needs locks and never changes the summation order with
 * the thread count. */
typedef void (*dsv4_gemm_fn)(const dsv4_linear *L, int r_begin, int r_end, const float *x, int n,
                             float *y, int ldy, float *scratch);
typedef struct dsv4_kernel_set {
    const char *name;
    dsv4_gemm_fn gemm[4]; /* by dsv4_wfmt */
    float (*dot_f32)(const float *a, const float *b, int n);
} dsv4_kernel_set;

extern const dsv4_kernel_set dsv4_kernels_portable;
const dsv4_kernel_set *dsv4_kernels(void);            /* the active set */
const dsv4_kernel_set *dsv4_kernels_best(void);       /* best for this CPU */
void dsv4_kernels_use(const dsv4_kernel_set *k);      /* override (tests, benchmarks) */

#endif
