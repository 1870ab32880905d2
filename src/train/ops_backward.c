/* ops_backward.c: gradients of the small per-vector operations (kernels/ops.h) and the loss.
 *
 * RMSNorm, y_i = w_i x_i r with r = (mean(x^2) + eps)^-1/2, has the Jacobian
 *   dx = r (w.dy) - (r^3 / n) <w.dy, x> x,     dw = dy . x r,
 * r being recomputed exactly as the forward computes it (the mean of squares in double).
 * A RoPE rotation is orthogonal, so its backward is the opposite rotation. The Hadamard
 * rotation (scaled by n^-1/2) is symmetric and orthonormal: it is its own backward. */
#include <math.h>

#include "base/base.h"
#include "train/train.h"

void dsv4_rmsnorm_backward(const float *x, const float *w, int n, float eps, const float *dy, float *dx, float *dw) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    if (dw)
        for (int i = 0; i < n; i++) dw[i] += dy[i] * (x[i] * r);
    if (!dx) return;
    double dot = 0.0; /* <w.dy, x> */
    for (int i = 0; i < n; i++) dot += (double)(w ? w[i] * dy[i] : dy[i]) * (double)x[i];
    float k = (float)((double)r * r * r * dot / n);
    for (int i = 0; i < n; i++) dx[i] += r * (w ? w[i] * dy[i] : dy[i]) - k * x[i];
}

void dsv4_rope_apply_backward(const dsv4_rope *r, float *d, int pos, bool inverse) {
    dsv4_rope_apply(r, d, pos, !inverse);
}

double dsv4_cross_entropy(const float *logits, int V, int target, float scale, float *dlogits) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = fmaxf(mx, logits[j]);
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += exp((double)logits[j] - mx);
    double lse = mx + log(sum);
    if (dlogits) {
        for (int j = 0; j < V; j++) dlogits[j] += scale * (float)exp((double)logits[j] - lse);
        dlogits[target] -= scale;
    }
    return lse - logits[target];
}
