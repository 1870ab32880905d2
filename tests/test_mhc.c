/* test_mhc.c: mHC (src/model/mhc.c) against the spec recomputed in double precision.
 *
 * The reference below is written from v4-model.md 2.3 and mhc-engram-muon.md 2.3:
 *   rho = 1/sqrt(mean(x^2) + norm_eps) over the 4d values of the token (stream 0 first);
 *   mu = (fn . x) * rho;
 *   pre_j = sigmoid(mu_j s0 + b_j) + eps, post_j = 2 sigmoid(mu_{4+j} s1 + b_{4+j}),
 *   C_jk = mu_{8+4j+k} s2 + b_{8+4j+k};
 *   Sinkhorn: row softmax + eps, column normalise, (iters - 1) x (row normalise, column
 *   normalise), each normalisation dividing by (sum + eps);
 *   a = sum_j pre_j X_j;  hc_post: Y_k = post_k v + sum_j C_jk R_j (column k of C feeds
 *   stream k);  hc_head: pre only, no Sinkhorn.
 * A large eps (0.1) is used in some cases so that where eps enters is visible. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "model/mhc.h"

enum { HC = 4, MIX = (2 + HC) * HC };

static uint64_t rng = 0x853c49e6748fea9bull;
static double uniform(void) { /* in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 2.0 * (double)(rng >> 11) / 9007199254740992.0 - 1.0;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void ref_split(const double *mu, const float *scale, const float *base, int iters, double eps, double *pre,
                      double *post, double C[HC][HC]) {
    for (int j = 0; j < HC; j++) pre[j] = sigmoid(mu[j] * scale[0] + base[j]) + eps;
    for (int j = 0; j < HC; j++) post[j] = 2 * sigmoid(mu[HC + j] * scale[1] + base[HC + j]);
    for (int j = 0; j < HC; j++)
        for (int k = 0; k < HC; k++) C[j][k] = mu[2 * HC + HC * j + k] * scale[2] + base[2 * HC + HC * j + k];
    for (int j = 0; j < HC; j++) { /* softmax over the row, then + eps */
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < HC; k++) mx = fmax(mx, C[j][k]);
        for (int k = 0; k < HC; k++) sum += exp(C[j][k] - mx);
        for (int k = 0; k < HC; k++) C[j][k] = exp(C[j][k] - mx) / sum + eps;
    }
    for (int it = 0; it < iters; it++) {
        if (it > 0)
            for (int j = 0; j < HC; j++) { /* row */
                double s = 0;
                for (int k = 0; k < HC; k++) s += C[j][k];
                for (int k = 0; k < HC; k++) C[j][k] /= s + eps;
            }
        for (int k = 0; k < HC; k++) { /* column */
            double s = 0;
            for (int j = 0; j < HC; j++) s += C[j][k];
            for (int j = 0; j < HC; j++) C[j][k] /= s + eps;
        }
    }
}

static void check_split(const float *mixes, const float *scale, const float *base, int iters, float eps,
                        const char *what) {
    float pre[HC], post[HC], comb[HC * HC];
    dsv4_hc_split_sinkhorn(mixes, scale, base, HC, iters, eps, pre, post, comb);
    double mu[MIX], rpre[HC], rpost[HC], C[HC][HC];
    for (int i = 0; i < MIX; i++) mu[i] = mixes[i];
    ref_split(mu, scale, base, iters, eps, rpre, rpost, C);
    for (int j = 0; j < HC; j++) {
        CHECK(fabs(pre[j] - rpre[j]) < 1e-6, "%s: pre[%d] %.9g vs %.9g", what, j, pre[j], rpre[j]);
        CHECK(fabs(post[j] - rpost[j]) < 1e-6, "%s: post[%d] %.9g vs %.9g", what, j, post[j], rpost[j]);
        for (int k = 0; k < HC; k++)
            CHECK(fabs(comb[j * HC + k] - C[j][k]) < 2e-6, "%s: comb[%d][%d] %.9g vs %.9g", what, j, k,
                  comb[j * HC + k], C[j][k]);
    }
}

static void test_sinkhorn(void) {
    /* by hand, iters = 1, all logits equal, eps = 0.1: softmax 1/4 + 0.1 = 0.35 everywhere;
     * column sums 1.4, divided by 1.4 + 0.1 -> 0.35 / 1.5 = 0.233333 */
    float mixes[MIX] = {0}, base[MIX] = {0}, scale[3] = {1, 1, 1};
    float pre[HC], post[HC], comb[HC * HC];
    dsv4_hc_split_sinkhorn(mixes, scale, base, HC, 1, 0.1f, pre, post, comb);
    for (int i = 0; i < HC * HC; i++) CHECK_NEAR(comb[i], 0.35 / 1.5, 1e-7, "uniform comb, iters 1, eps 0.1");
    for (int j = 0; j < HC; j++) {
        CHECK_NEAR(pre[j], 0.5 + 0.1, 1e-7, "pre = sigmoid(0) + eps");
        CHECK_NEAR(post[j], 1.0, 1e-7, "post = 2 sigmoid(0)");
    }

    /* random logits: the three scales differ so that a swapped scale shows; iters 1, 2, 3, 20 */
    for (int trial = 0; trial < 20; trial++) {
        float sc[3] = {0.7f, 1.3f, 2.1f};
        for (int i = 0; i < MIX; i++) mixes[i] = (float)(2 * uniform()), base[i] = (float)uniform();
        static const int iters[] = {1, 2, 3, 20};
        for (int ii = 0; ii < 4; ii++) {
            check_split(mixes, sc, base, iters[ii], 1e-6f, "sinkhorn eps 1e-6");
            check_split(mixes, sc, base, iters[ii], 0.1f, "sinkhorn eps 0.1");
        }
        /* after the official 20 iterations the columns sum to 1 (the last step normalises
         * them) up to eps; the rows approximately */
        dsv4_hc_split_sinkhorn(mixes, sc, base, HC, 20, 1e-6f, pre, post, comb);
        for (int k = 0; k < HC; k++) {
            double cs = 0, rs = 0;
            for (int j = 0; j < HC; j++) cs += comb[j * HC + k], rs += comb[k * HC + j];
            CHECK(fabs(cs - 1) < 1e-5, "column %d sums to %.9g", k, cs);
            CHECK(fabs(rs - 1) < 1e-2, "row %d sums to %.9g", k, rs);
        }
    }
}

/* Streams X[n][HC][d] and a site's weights, fn_lin an F32 view of fn. */
static void make_site(dsv4_hc_w *w, float *fn, float *base, float *scale, int mix, int d) {
    for (int i = 0; i < mix * HC * d; i++) fn[i] = (float)(0.3 * uniform());
    for (int i = 0; i < mix; i++) base[i] = (float)(0.5 * uniform());
    memset(w, 0, sizeof *w);
    w->fn = fn;
    w->base = base;
    w->scale = scale;
    w->fn_lin.fmt = DSV4_W_F32;
    w->fn_lin.rows = mix;
    w->fn_lin.cols = HC * d;
    w->fn_lin.w = fn;
    w->fn_lin.name = "test.hc_fn";
}

/* mu of token x (4d values) as the spec defines it */
static void ref_mu(const float *fn, int mix, const float *x, int d, double norm_eps, double *mu) {
    double ss = 0;
    for (int i = 0; i < HC * d; i++) ss += (double)x[i] * x[i];
    double rho = 1 / sqrt(ss / (HC * d) + norm_eps);
    for (int m = 0; m < mix; m++) {
        double s = 0;
        for (int i = 0; i < HC * d; i++) s += (double)fn[(size_t)m * HC * d + i] * x[i];
        mu[m] = s * rho;
    }
}

static void test_hc_pre(void) {
    enum { D = 16, N = 3 };
    static float fn[MIX * HC * D], base[MIX], X[N * HC * D];
    float scale[3] = {0.8f, 1.2f, 1.7f};
    dsv4_hc_w w;
    make_site(&w, fn, base, scale, MIX, D);
    for (int i = 0; i < N * HC * D; i++) X[i] = (float)(2 * uniform());
    float a[N * D], post[N * HC], comb[N * HC * HC], mixes[N * MIX];
    float norm_eps = 1e-6f, hc_eps = 0.01f;
    dsv4_hc_pre(&w, X, N, HC, D, norm_eps, 20, hc_eps, a, post, comb, mixes);
    for (int t = 0; t < N; t++) {
        const float *x = X + t * HC * D;
        double mu[MIX], pre[HC], rpost[HC], C[HC][HC];
        ref_mu(fn, MIX, x, D, norm_eps, mu);
        ref_split(mu, scale, base, 20, hc_eps, pre, rpost, C);
        for (int i = 0; i < D; i++) {
            double s = 0;
            for (int j = 0; j < HC; j++) s += pre[j] * x[j * D + i];
            CHECK(fabs(a[t * D + i] - s) < 1e-5, "hc_pre token %d a[%d] = %.9g, expected %.9g", t, i, a[t * D + i], s);
        }
        for (int j = 0; j < HC; j++) {
            CHECK(fabs(post[t * HC + j] - rpost[j]) < 1e-5, "hc_pre token %d post[%d] %.9g vs %.9g", t, j,
                  post[t * HC + j], rpost[j]);
            for (int k = 0; k < HC; k++)
                CHECK(fabs(comb[(t * HC + j) * HC + k] - C[j][k]) < 1e-5, "hc_pre token %d comb[%d][%d] %.9g vs %.9g",
                      t, j, k, comb[(t * HC + j) * HC + k], C[j][k]);
        }
    }
}

static void test_hc_post(void) {
    enum { D = 8, N = 2 };
    /* by hand: v = 1, R_j = (j+1) * 10, post = (1, 0, 0, 0), comb[0][1] = 1 (row 0, column 1)
     * and zero elsewhere: stream 1 receives R_0 = 10, stream 0 only post_0 v = 1; the transpose
     * would instead put R_1 = 20 into stream 0. */
    float v[D], R[HC * D], post[HC] = {1, 0, 0, 0}, comb[HC * HC] = {0}, Y[HC * D];
    for (int i = 0; i < D; i++) v[i] = 1;
    for (int j = 0; j < HC; j++)
        for (int i = 0; i < D; i++) R[j * D + i] = 10.0f * (j + 1);
    comb[0 * HC + 1] = 1;
    dsv4_hc_post(v, R, post, comb, 1, HC, D, Y);
    CHECK(Y[0 * D] == 1.0f, "stream 0 = post_0 v = 1, got %g", Y[0]);
    CHECK(Y[1 * D] == 10.0f, "stream 1 = comb[0][1] R_0 = 10, got %g", Y[1 * D]);
    CHECK(Y[2 * D] == 0.0f && Y[3 * D] == 0.0f, "streams 2, 3 empty, got %g %g", Y[2 * D], Y[3 * D]);

    /* random, two tokens, non-symmetric comb */
    float vv[N * D], RR[N * HC * D], pp[N * HC], cc[N * HC * HC], YY[N * HC * D];
    for (int i = 0; i < N * D; i++) vv[i] = (float)uniform();
    for (int i = 0; i < N * HC * D; i++) RR[i] = (float)uniform();
    for (int i = 0; i < N * HC; i++) pp[i] = (float)(1 + uniform());
    for (int i = 0; i < N * HC * HC; i++) cc[i] = (float)(0.5 + 0.5 * uniform());
    dsv4_hc_post(vv, RR, pp, cc, N, HC, D, YY);
    double err = 0;
    for (int t = 0; t < N; t++)
        for (int k = 0; k < HC; k++)
            for (int i = 0; i < D; i++) {
                double s = (double)pp[t * HC + k] * vv[t * D + i];
                for (int j = 0; j < HC; j++) s += (double)cc[(t * HC + j) * HC + k] * RR[(t * HC + j) * D + i];
                err = fmax(err, fabs(YY[(t * HC + k) * D + i] - s));
            }
    CHECK(err < 1e-5, "hc_post vs Y_k = post_k v + sum_j C_jk R_j: max error %.3g", err);
}

static void test_hc_head(void) {
    enum { D = 16, N = 2 };
    static float fn[HC * HC * D], base[HC], X[N * HC * D];
    float scale[1] = {0.9f};
    dsv4_hc_w w;
    make_site(&w, fn, base, scale, HC, D);
    for (int i = 0; i < N * HC * D; i++) X[i] = (float)(2 * uniform());
    float y[N * D], mixes[N * HC];
    float norm_eps = 1e-6f, hc_eps = 0.05f;
    dsv4_hc_head(&w, X, N, HC, D, norm_eps, hc_eps, y, mixes);
    for (int t = 0; t < N; t++) {
        const float *x = X + t * HC * D;
        double mu[HC], pre[HC];
        ref_mu(fn, HC, x, D, norm_eps, mu);
        for (int j = 0; j < HC; j++) pre[j] = sigmoid(mu[j] * scale[0] + base[j]) + hc_eps;
        for (int i = 0; i < D; i++) {
            double s = 0;
            for (int j = 0; j < HC; j++) s += pre[j] * x[j * D + i];
            CHECK(fabs(y[t * D + i] - s) < 1e-5, "hc_head token %d y[%d] = %.9g, expected %.9g", t, i, y[t * D + i], s);
        }
    }
}

int main(void) {
    test_sinkhorn();
    test_hc_pre();
    test_hc_post();
    test_hc_head();
    return check_done("test_mhc");
}
