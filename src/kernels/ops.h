/* ops.h: the small per-vector operations of the forward pass.
 *
 * Plain functions over fp32 arrays, each written once and shared by inference and training:
 * RMSNorm, rotary embedding (partial, interleaved pairs, optional YaRN), the Walsh-Hadamard
 * rotation of the indexer, and a few activation helpers. */
#ifndef DSV4_OPS_H
#define DSV4_OPS_H

#include <stdbool.h>

/* y = w * x / sqrt(mean(x^2) + eps); w may be NULL (unweighted). The weight multiplies in
 * fp32 before any rounding, as the official RMSNorm does. y may alias x. */
void dsv4_rmsnorm(const float *x, const float *w, int n, float eps, float *y);

/* Rotary embedding over `rd` dims (rd/2 interleaved pairs), frequencies as the official
 * precompute_freqs_cis: base^(-2i/rd), with YaRN's ramp when original_seq_len > 0. */
typedef struct dsv4_rope {
    int rd;
    float freqs[128]; /* rd/2 entries, rd <= 256 */
} dsv4_rope;

void dsv4_rope_init(dsv4_rope *r, int rd, float base, int original_seq_len, float factor,
                    float beta_fast, float beta_slow);
/* Rotate x[0..rd) by position pos; inverse = rotate by -pos (the complex conjugate). */
void dsv4_rope_apply(const dsv4_rope *r, float *x, int pos, bool inverse);
/* cos/sin of each pair at position pos (rd/2 each), for training and fused kernels. */
void dsv4_rope_cossin(const dsv4_rope *r, int pos, float *cos_out, float *sin_out);

/* In-place Walsh-Hadamard transform (Sylvester order, butterflies of stride 1, 2, 4, ...)
 * scaled by n^-1/2; n must be a power of two. Orthonormal and self-inverse. */
void dsv4_hadamard(float *x, int n);

#include <math.h>
static inline float dsv4_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float dsv4_silu(float x) { return x / (1.0f + expf(-x)); }
/* torch.nn.functional.softplus with beta 1, threshold 20 */
static inline float dsv4_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

#endif
