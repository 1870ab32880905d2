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
/* Free the matmul scratch of the calling thread and of its OpenMP team. A thread that runs
 * forward passes and ends before the process (the server's engine thread) calls it last, or the
 * scratch of its threads would outlive them; it is rebuilt if needed. */
void dsv4_matmul_release_scratch(void);

/* The official linear(): in default numerics, inputs of FP8/FP4 weights with act_quant set
 * are rounded to FP8 blocks of act_block first (into scratch xq[n*cols]); then dsv4_matmul. */
void dsv4_linear_forward(const dsv4_linear *L, const float *x, int n, float *y, dsv4_numerics mode,
                         float *xq);
/* Two products of the same input as one parallel step (one fork/join, one rounding of x when
 * both round it the same way): ya = A(x), yb = B(x). Results equal two dsv4_linear_forward
 * calls. */
void dsv4_linear_forward2(const dsv4_linear *A, const dsv4_linear *B, const float *x, int n, float *ya, float *yb,
                          dsv4_numerics mode, float *xq);

/* Several products run as one parallel step (the experts of a MoE block): all jobs' output
 * rows are shared out over the threads together, so small matrices keep every core busy and
 * the step pays for one fork/join instead of one per product. Each job is y = x W^T. */
typedef struct dsv4_matmul_job {
    const dsv4_linear *L;
    const float *x; /* [n, cols] */
    int n;
    float *y;       /* [n, ldy] */
    int ldy;
} dsv4_matmul_job;
void dsv4_matmul_jobs(const dsv4_matmul_job *jobs, int n_jobs);

/* Floating-point operations issued by dsv4_matmul* since the process started (2 per
 * multiply-add; for benchmarks). */
uint64_t dsv4_matmul_flops(void);

/* True when every value is zero or a normal number that bf16 holds exactly (the low 16 bits
 * of its fp32 pattern are zero): then a bf16 dot-product instruction computes with it
 * exactly. FP8-rounded activations always qualify. */
bool dsv4_bf16_exact(const float *x, size_t n);

/* ---- kernels (portable C and SIMD variants, chosen at run time) -------------------------
 * A matmul runs in two steps. First the kernel set may repack the activations once for the
 * whole product (x_bytes / x_pack: its own layout, e.g. the input order its weight unpacking
 * produces, bf16 pairs, or token-major for prefill); `bf16` tells it that x is bf16-exact
 * (dsv4_bf16_exact), so it may use bf16 arithmetic without any loss. Then gemm computes output
 * rows [r_begin, r_end) for all n tokens:
 *   y[t*ldy + r] = dot(W row r, x[t*cols ..]) for r in [r_begin, r_end), t < n.
 * `scratch` holds 64*cols + 1024 floats, private to the calling thread. The dispatcher gives
 * each thread its own row ranges, so a kernel never needs locks, and since every output
 * element is one kernel's sum in a fixed order, results never depend on the thread count. */
typedef struct dsv4_gemm_x {
    const float *x;  /* the caller's activations [n, cols] */
    int n;
    bool bf16;       /* x is bf16-exact */
    const void *p;   /* the set's packed copy (x_pack), or NULL */
} dsv4_gemm_x;

typedef void (*dsv4_gemm_fn)(const dsv4_linear *L, int r_begin, int r_end, const dsv4_gemm_x *x, float *y,
                             int ldy, float *scratch);
typedef struct dsv4_kernel_set {
    const char *name;
    bool wants_bf16;  /* the set uses the bf16 flag (the dispatcher skips the check otherwise) */
    /* Bytes of packed activations for L and n tokens (0 or NULL: gemm reads x as given), and
     * packing tokens [t0, t1) of them into buf (64-byte aligned; the dispatcher may split the
     * tokens over threads). */
    size_t (*x_bytes)(const dsv4_linear *L, int n, bool bf16);
    void (*x_pack)(const dsv4_linear *L, const float *x, int n, bool bf16, int t0, int t1, void *buf);
    dsv4_gemm_fn gemm[4]; /* by dsv4_wfmt */
    float (*dot_f32)(const float *a, const float *b, int n);
    void (*axpy_f32)(float a, const float *x, float *y, int n); /* y += a x */
    /* A register-blocked multiply-add loop of `iters` rounds on this thread; returns the
     * floating-point operations done (the peak rate measurement of `dsv4 bench`). */
    double (*fma_loop)(long iters);
} dsv4_kernel_set;

extern const dsv4_kernel_set dsv4_kernels_portable;
const dsv4_kernel_set *dsv4_kernels(void);            /* the active set */
const dsv4_kernel_set *dsv4_kernels_best(void);       /* best for this CPU */
void dsv4_kernels_use(const dsv4_kernel_set *k);      /* override (tests, benchmarks) */
/* Every set this build has that runs on this CPU (portable first); returns the count. */
int dsv4_kernels_available(const dsv4_kernel_set **out, int max);

#endif
