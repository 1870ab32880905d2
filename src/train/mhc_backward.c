/* mhc_backward.c: gradients of hc_pre, hc_post, hc_head and the Sinkhorn projection.
 *
 * hc_pre, per token, from the streams x (hc*d values):
 *   m = r (fn x),  r = (mean(x^2) + eps)^-1/2             the mixes, `mixes` in the forward
 *   pre = sigmoid(m[0:hc] s0 + b) + eps,  post = 2 sigmoid(m[hc:2hc] s1 + b),
 *   comb = Sinkhorn(m[2hc:] s2 + b),  a = sum_j pre_j x_j.
 * Backward: dpre_j = <da, x_j> and dx_j += pre_j da; the Sinkhorn iterations are unrolled
 * backward (not differentiated implicitly): the forward is recomputed for the token with every
 * intermediate matrix kept (20 iterations of a 4x4 matrix is nothing), then each normalisation
 * Y = X / (sum + eps) is walked back as dX = (dY - sum(dY . Y)) / (sum + eps) along the same
 * axis, and the first row softmax as dC = S (dS - sum(dS . S)). With dm the gradient of the
 * mixes, m = r (fn x) gives
 *   dfn += (r dm) x^T,    dx += fn^T (r dm) - (r <r dm, m> / (hc d)) x,
 * the first two as matrix products over all tokens.
 *
 * hc_post, Y_k = post_k v + sum_j comb[j][k] R_j, is bilinear: dv = sum_k post_k dY_k,
 * dpost_k = <dY_k, v>, dcomb[j][k] = <dY_k, R_j>, dR_j += sum_k comb[j][k] dY_k.
 *
 * Sums over tokens of the small parameters (base, scale) are taken in double, in token order,
 * after the parallel per-token work, so results do not depend on the thread count. */
#include <math.h>

#include "base/base.h"
#include "kernels/ops.h"
#include "train/train.h"

/* Limits checked when a training model is made (dsv4_tmodel_*): hc_mult <= 8, at most
 * 64 Sinkhorn iterations. */
enum { MAX_HC = DSV4_TRAIN_MAX_HC, MAX_STEPS = 2 * DSV4_TRAIN_MAX_SINKHORN };

void dsv4_hc_split_sinkhorn_backward(const float *mixes, const float *scale, const float *base, int hc, int iters,
                                     float eps, const float *dpre, const float *dpost, const float *dcomb,
                                     float *dmixes, double *dscale, double *dbase) {
    int hh = hc * hc, n_steps = 2 * iters - 1;
    for (int j = 0; j < hc; j++) { /* pre: sigmoid + eps */
        float s = dsv4_sigmoid(mixes[j] * scale[0] + base[j]);
        double dz = dpre ? (double)dpre[j] * s * (1.0f - s) : 0.0;
        dmixes[j] = (float)(dz * scale[0]);
        dscale[0] += dz * mixes[j];
        dbase[j] += dz;
    }
    for (int j = 0; j < hc; j++) { /* post: 2 sigmoid */
        float s = dsv4_sigmoid(mixes[hc + j] * scale[1] + base[hc + j]);
        double dz = dpost ? 2.0 * dpost[j] * s * (1.0f - s) : 0.0;
        dmixes[hc + j] = (float)(dz * scale[1]);
        dscale[1] += dz * mixes[hc + j];
        dbase[hc + j] += dz;
    }
    if (!dcomb || n_steps > MAX_STEPS) {
        for (int i = 0; i < hh; i++) dmixes[2 * hc + i] = 0.0f;
        return;
    }
    /* forward again, keeping S (the row softmax) and P[k], the matrix after step k
     * (P[0] = S + eps; odd steps are column normalisations, even steps > 0 row ones) */
    float S[MAX_HC * MAX_HC], P[(MAX_STEPS + 1) * MAX_HC * MAX_HC];
    const float *mc = mixes + 2 * hc, *bc = base + 2 * hc;
    for (int j = 0; j < hc; j++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int k = 0; k < hc; k++) mx = fmaxf(mx, mc[j * hc + k] * scale[2] + bc[j * hc + k]);
        for (int k = 0; k < hc; k++) {
            S[j * hc + k] = expf(mc[j * hc + k] * scale[2] + bc[j * hc + k] - mx);
            sum += S[j * hc + k];
        }
        for (int k = 0; k < hc; k++) {
            S[j * hc + k] = S[j * hc + k] / sum;
            P[j * hc + k] = S[j * hc + k] + eps;
        }
    }
    for (int st = 1; st <= n_steps; st++) {
        const float *x = P + (size_t)(st - 1) * hh;
        float *y = P + (size_t)st * hh;
        bool col = st % 2 == 1;
        for (int a = 0; a < hc; a++) {
            float sum = 0.0f;
            for (int b = 0; b < hc; b++) sum += col ? x[b * hc + a] : x[a * hc + b];
            for (int b = 0; b < hc; b++) {
                int i = col ? b * hc + a : a * hc + b;
                y[i] = x[i] / (sum + eps);
            }
        }
    }
    /* and back */
    float g[MAX_HC * MAX_HC];
    for (int i = 0; i < hh; i++) g[i] = dcomb[i];
    for (int st = n_steps; st >= 1; st--) {
        const float *x = P + (size_t)(st - 1) * hh, *y = P + (size_t)st * hh;
        bool col = st % 2 == 1;
        for (int a = 0; a < hc; a++) {
            float sum = 0.0f, gy = 0.0f;
            for (int b = 0; b < hc; b++) {
                int i = col ? b * hc + a : a * hc + b;
                sum += x[i];
                gy += g[i] * y[i];
            }
            for (int b = 0; b < hc; b++) {
                int i = col ? b * hc + a : a * hc + b;
                g[i] = (g[i] - gy) / (sum + eps);
            }
        }
    }
    for (int j = 0; j < hc; j++) { /* the row softmax (the + eps passes the gradient as is) */
        double gs = 0.0;
        for (int k = 0; k < hc; k++) gs += (double)g[j * hc + k] * S[j * hc + k];
        for (int k = 0; k < hc; k++) {
            int i = j * hc + k;
            double dz = S[i] * (g[i] - gs);
            dmixes[2 * hc + i] = (float)(dz * scale[2]);
            dscale[2] += dz * mc[i];
            dbase[2 * hc + i] += dz;
        }
    }
}

/* r = rsqrt(mean(x^2) + eps) exactly as hc_mixes computes it */
static float hc_rms(const float *x, int N, float norm_eps) {
    double ss = 0.0;
    for (int i = 0; i < N; i++) ss += (double)x[i] * (double)x[i];
    return (float)(1.0 / sqrt(ss / N + (double)norm_eps));
}

/* The part shared by hc_pre and hc_head: given dmixes per token (in dm, [n, mix]), finish
 * the gradient through m = r (fn x) and reduce the per-token base/scale sums (tb, [n, mix+3]). */
static void mixes_backward(const dsv4_hc_w *w, const float *X, int n, int N, float norm_eps, const float *mixes,
                           float *dm, const double *tb, int mix, int n_scale, float *dX, const dsv4_hc_w *gw) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * N, *m = mixes + (size_t)t * mix;
        float *dmt = dm + (size_t)t * mix, *dx = dX + (size_t)t * N;
        float r = hc_rms(x, N, norm_eps);
        double dot = 0.0;
        for (int i = 0; i < mix; i++) {
            dmt[i] *= r;
            dot += (double)dmt[i] * m[i];
        }
        float k = (float)((double)r * dot / N);
        for (int i = 0; i < N; i++) dx[i] -= k * x[i];
    }
    dsv4_matmul_backward(&w->fn_lin, X, n, dm, dX, &gw->fn_lin);
    for (int i = 0; i < mix + n_scale; i++) {
        double s = 0.0;
        for (int t = 0; t < n; t++) s += tb[(size_t)t * (mix + 3) + i];
        if (i < mix) gw->base[i] += (float)s;
        else gw->scale[i - mix] += (float)s;
    }
}

dsv4_status dsv4_hc_pre_backward(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, int iters,
                                 float hc_eps, const float *mixes, const float *da, const float *dpost,
                                 const float *dcomb, float *dX, const dsv4_hc_w *gw) {
    int mix = (2 + hc) * hc, N = hc * d;
    if (hc > MAX_HC || 2 * iters - 1 > MAX_STEPS)
        return dsv4_error(DSV4_EUNSUPPORTED, "mHC backward: hc_mult %d or %d Sinkhorn iterations over the limits (%d, %d)",
                          hc, iters, MAX_HC, MAX_STEPS / 2);
    float *dm = malloc((size_t)n * mix * sizeof(float) + 4);
    double *tb = calloc((size_t)n * (mix + 3) + 1, sizeof(double));
    if (!dm || !tb) {
        free(dm);
        free(tb);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the mHC backward (%d tokens)", n);
    }
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * N, *m = mixes + (size_t)t * mix, *dat = da + (size_t)t * d;
        float *dx = dX + (size_t)t * N;
        float dpre[MAX_HC];
        for (int j = 0; j < hc; j++) {
            float pre = dsv4_sigmoid(m[j] * w->scale[0] + w->base[j]) + hc_eps;
            double s = 0.0;
            for (int i = 0; i < d; i++) {
                s += (double)dat[i] * x[(size_t)j * d + i];
                dx[(size_t)j * d + i] += pre * dat[i];
            }
            dpre[j] = (float)s;
        }
        double *tbt = tb + (size_t)t * (mix + 3);
        dsv4_hc_split_sinkhorn_backward(m, w->scale, w->base, hc, iters, hc_eps, dpre, dpost + (size_t)t * hc,
                                        dcomb + (size_t)t * hc * hc, dm + (size_t)t * mix, tbt + mix, tbt);
    }
    mixes_backward(w, X, n, N, norm_eps, mixes, dm, tb, mix, 3, dX, gw);
    free(dm);
    free(tb);
    return DSV4_OK;
}

void dsv4_hc_post_backward(const float *v, const float *R, const float *post, const float *comb, int n, int hc, int d,
                           const float *dY, float *dv, float *dR, float *dpost, float *dcomb) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *vt = v + (size_t)t * d, *r = R + (size_t)t * hc * d, *dy = dY + (size_t)t * hc * d;
        const float *p = post + (size_t)t * hc, *c = comb + (size_t)t * hc * hc;
        float *dvt = dv + (size_t)t * d, *dr = dR + (size_t)t * hc * d;
        for (int k = 0; k < hc; k++) {
            const float *dyk = dy + (size_t)k * d;
            double s = 0.0;
            for (int i = 0; i < d; i++) {
                s += (double)dyk[i] * vt[i];
                dvt[i] += p[k] * dyk[i];
            }
            dpost[(size_t)t * hc + k] += (float)s;
            for (int j = 0; j < hc; j++) {
                const float *rj = r + (size_t)j * d;
                float *drj = dr + (size_t)j * d;
                float cjk = c[j * hc + k];
                double sc = 0.0;
                for (int i = 0; i < d; i++) {
                    sc += (double)dyk[i] * rj[i];
                    drj[i] += cjk * dyk[i];
                }
                dcomb[((size_t)t * hc + j) * hc + k] += (float)sc;
            }
        }
    }
}

dsv4_status dsv4_hc_head_backward(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps,
                                  float hc_eps, const float *mixes, const float *dy, float *dX, const dsv4_hc_w *gw) {
    int N = hc * d;
    float *dm = malloc((size_t)n * hc * sizeof(float) + 4);
    double *tb = calloc((size_t)n * (hc + 3) + 1, sizeof(double));
    if (!dm || !tb) {
        free(dm);
        free(tb);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the hc_head backward (%d tokens)", n);
    }
#pragma omp parallel for schedule(static) if (n > 1)
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * N, *m = mixes + (size_t)t * hc, *dyt = dy + (size_t)t * d;
        float *dx = dX + (size_t)t * N;
        double *tbt = tb + (size_t)t * (hc + 3);
        for (int j = 0; j < hc; j++) {
            float s = dsv4_sigmoid(m[j] * w->scale[0] + w->base[j]);
            float pre = s + hc_eps;
            double dpre = 0.0;
            for (int i = 0; i < d; i++) {
                dpre += (double)dyt[i] * x[(size_t)j * d + i];
                dx[(size_t)j * d + i] += pre * dyt[i];
            }
            double dz = dpre * s * (1.0f - s);
            dm[(size_t)t * hc + j] = (float)(dz * w->scale[0]);
            tbt[j] += dz;
            tbt[hc] += dz * m[j];
        }
    }
    mixes_backward(w, X, n, N, norm_eps, mixes, dm, tb, hc, 1, dX, gw);
    free(dm);
    free(tb);
    return DSV4_OK;
}
