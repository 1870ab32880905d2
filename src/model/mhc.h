/* mhc.h: manifold-constrained hyper-connections (mHC).
 *
 * The residual stream is hc (= 4) parallel streams. Before each sublayer, hc_pre computes from
 * the streams themselves (per token) a pre-weight per stream (to collapse them into the
 * sublayer input), a post-weight per stream (to spread the output back) and an hc x hc mixing
 * matrix projected toward the doubly-stochastic manifold by Sinkhorn-Knopp. hc_post writes
 * stream k = post_k * output + sum_j comb[j][k] * old stream j. hc_head collapses the streams
 * once at the end (and in the MTP block) with pre-weights only.
 *
 * V4.1's single-pass form splits hc_pre in two: a site computes its coefficients from the
 * streams entering it (dsv4_hc_coeffs) but collapses them with the pre-weights the previous
 * site computed (dsv4_hc_collapse); the first site uses stream 0, and the model's output is
 * the collapse with the last site's pre-weights (there is no hc_head). */
#ifndef DSV4_MHC_H
#define DSV4_MHC_H

#include "model/model.h"

/* The split of one token's mixes (mix = (2+hc)*hc values, already scaled by the rms factor):
 * pre = sigmoid(.)+eps, post = 2*sigmoid(.), comb = Sinkhorn(softmax rows + eps, then
 * alternate column/row normalisation, iters in total, ending with a column step). */
void dsv4_hc_split_sinkhorn(const float *mixes, const float *scale, const float *base, int hc, int iters,
                            float eps, float *pre, float *post, float *comb);

/* a[n, d] = sum_j pre_j X_j for n tokens of streams X[n, hc, d]; post[n, hc], comb[n, hc, hc].
 * `mixes` is scratch of n * (2+hc)*hc floats. */
void dsv4_hc_pre(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, int iters,
                 float hc_eps, float *a, float *post, float *comb, float *mixes);

/* pre[n, hc], post[n, hc], comb[n, hc, hc] of n tokens of streams X[n, hc, d]. */
void dsv4_hc_coeffs(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, int iters, float hc_eps,
                    float *pre, float *post, float *comb, float *mixes);
/* a[n, d] = sum_j pre[t, j] X[t, j]. */
void dsv4_hc_collapse(const float *X, const float *pre, int n, int hc, int d, float *a);

/* Y[n, hc, d] = post_k v + sum_j comb[j][k] R_j (Y must not alias R). */
void dsv4_hc_post(const float *v, const float *R, const float *post, const float *comb, int n, int hc, int d,
                  float *Y);

/* y[n, d] = sum_j (sigmoid(mix_j * scale + base_j) + eps) X_j; `mixes` scratch n*hc floats. */
void dsv4_hc_head(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, float hc_eps,
                  float *y, float *mixes);

#endif
