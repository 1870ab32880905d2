/* mhc.c: hc_pre / hc_post / hc_head and the Sinkhorn-Knopp projection.
 *
 * Follows the official kernel's operation order exactly (hc_split_sinkhorn): softmax over each
 * row plus eps, a column normalisation, then (iters - 1) rounds of row then column
 * normalisation, each dividing by (sum + eps). All in fp32. */
#include <math.h>

#include "base/base.h"
#include "kernels/ops.h"
#include "model/mhc.h"

void dsv4_hc_split_sinkhorn(const float *mixes, const float *scale, const float *base, int hc, int iters,
                            float eps, float *pre, float *post, float *comb) {
    for (int j = 0; j < hc; j++) pre[j] = dsv4_sigmoid(mixes[j] * scale[0] + base[j]) + eps;
    for (int j = 0; j < hc; j++) post[j] = 2.0f * dsv4_sigmoid(mixes[hc + j] * scale[1] + base[hc + j]);
    float *c = comb;
    for (int j = 0; j < hc; j++)
        for (int k = 0; k < hc; k++) c[j * hc + k] = mixes[2 * hc + j * hc + k] * scale[2] + base[2 * hc + j * hc + k];
    /* row softmax + eps */
    for (int j = 0; j < hc; j++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int k = 0; k < hc; k++) mx = fmaxf(mx, c[j * hc + k]);
        for (int k = 0; k < hc; k++) {
            c[j * hc + k] = expf(c[j * hc + k] - mx);
            sum += c[j * hc + k];
        }
        for (int k = 0; k < hc; k++) c[j * hc + k] = c[j * hc + k] / sum + eps;
    }
    for (int it = 0; it < iters; it++) {
        if (it > 0) { /* row normalisation */
            for (int j = 0; j < hc; j++) {
                float sum = 0.0f;
                for (int k = 0; k < hc; k++) sum += c[j * hc + k];
                for (int k = 0; k < hc; k++) c[j * hc + k] /= sum + eps;
            }
        }
        for (int k = 0; k < hc; k++) { /* column normalisation */
            float sum = 0.0f;
            for (int j = 0; j < hc; j++) sum += c[j * hc + k];
            for (int j = 0; j < hc; j++) c[j * hc + k] /= sum + eps;
        }
    }
}

/* mixes[t, :] = (fn . x_t) * rsqrt(mean(x_t^2) + eps): the linear first, then the scale,
 * as the official code orders it. */
static void hc_mixes(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, float *mixes) {
    int mix = w->fn_lin.rows;
    dsv4_matmul(&w->fn_lin, X, n, mixes);
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * hc * d;
        double ss = 0.0;
        for (int i = 0; i < hc * d; i++) ss += (double)x[i] * (double)x[i];
        float r = (float)(1.0 / sqrt(ss / (hc * d) + (double)norm_eps));
        for (int j = 0; j < mix; j++) mixes[(size_t)t * mix + j] *= r;
    }
}

void dsv4_hc_pre(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, int iters,
                 float hc_eps, float *a, float *post, float *comb, float *mixes) {
    int mix = (2 + hc) * hc;
    hc_mixes(w, X, n, hc, d, norm_eps, mixes);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        float pre[16];
        dsv4_hc_split_sinkhorn(mixes + (size_t)t * mix, w->scale, w->base, hc, iters, hc_eps, pre,
                               post + (size_t)t * hc, comb + (size_t)t * hc * hc);
        const float *x = X + (size_t)t * hc * d;
        float *y = a + (size_t)t * d;
        for (int i = 0; i < d; i++) {
            float s = 0.0f;
            for (int j = 0; j < hc; j++) s += pre[j] * x[(size_t)j * d + i];
            y[i] = s;
        }
    }
}

void dsv4_hc_post(const float *v, const float *R, const float *post, const float *comb, int n, int hc, int d,
                  float *Y) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *vt = v + (size_t)t * d, *r = R + (size_t)t * hc * d;
        const float *p = post + (size_t)t * hc, *c = comb + (size_t)t * hc * hc;
        float *y = Y + (size_t)t * hc * d;
        for (int k = 0; k < hc; k++) {
            for (int i = 0; i < d; i++) {
                float s = p[k] * vt[i];
                for (int j = 0; j < hc; j++) s += c[j * hc + k] * r[(size_t)j * d + i];
                y[(size_t)k * d + i] = s;
            }
        }
    }
}

void dsv4_hc_head(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, float hc_eps,
                  float *y, float *mixes) {
    hc_mixes(w, X, n, hc, d, norm_eps, mixes);
    for (int t = 0; t < n; t++) {
        float pre[16];
        for (int j = 0; j < hc; j++) pre[j] = dsv4_sigmoid(mixes[(size_t)t * hc + j] * w->scale[0] + w->base[j]) + hc_eps;
        const float *x = X + (size_t)t * hc * d;
        float *o = y + (size_t)t * d;
        for (int i = 0; i < d; i++) {
            float s = 0.0f;
            for (int j = 0; j < hc; j++) s += pre[j] * x[(size_t)j * d + i];
            o[i] = s;
        }
    }
}

void dsv4_hc_coeffs(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, int iters, float hc_eps,
                    float *pre, float *post, float *comb, float *mixes) {
    int mix = (2 + hc) * hc;
    hc_mixes(w, X, n, hc, d, norm_eps, mixes);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++)
        dsv4_hc_split_sinkhorn(mixes + (size_t)t * mix, w->scale, w->base, hc, iters, hc_eps, pre + (size_t)t * hc,
                               post + (size_t)t * hc, comb + (size_t)t * hc * hc);
}

void dsv4_hc_collapse(const float *X, const float *pre, int n, int hc, int d, float *a) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * hc * d, *p = pre + (size_t)t * hc;
        float *y = a + (size_t)t * d;
        for (int i = 0; i < d; i++) {
            float s = 0.0f;
            for (int j = 0; j < hc; j++) s += p[j] * x[(size_t)j * d + i];
            y[i] = s;
        }
    }
}
