/* test_ops.c: RMSNorm, RoPE / YaRN and the Hadamard rotation (src/kernels/ops) against the
 * spec (v4-model.md 2.8, 2.9) recomputed here in double precision.
 *
 * RoPE is checked pair by pair as the complex rotation the spec defines: dims (2i, 2i+1) are
 * x_{2i} + i x_{2i+1}, multiplied by e^{i t f_i}; the inverse multiplies by the conjugate. The
 * YaRN frequencies are checked twice: against the spec's formula evaluated in double here, and
 * against the 32 values the spec prints (4 significant digits). The Hadamard transform is
 * compared with the explicit Sylvester matrix H[i][j] = (-1)^popcount(i & j) / sqrt(n). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "kernels/ops.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static double uniform(void) { /* in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 2.0 * (double)(rng >> 11) / 9007199254740992.0 - 1.0;
}

static void test_rmsnorm(void) {
    /* by hand: x = (3, 4), mean(x^2) = 12.5, rms = 3.5355339; w = (1, 2) */
    float x[2] = {3, 4}, w[2] = {1, 2}, y[2];
    dsv4_rmsnorm(x, w, 2, 0.0f, y);
    CHECK_NEAR(y[0], 3 / sqrt(12.5), 1e-6, "rmsnorm (3,4) [0]");
    CHECK_NEAR(y[1], 2 * 4 / sqrt(12.5), 1e-6, "rmsnorm (3,4) [1] with weight 2");
    dsv4_rmsnorm(x, NULL, 2, 0.0f, y);
    CHECK_NEAR(y[1], 4 / sqrt(12.5), 1e-6, "rmsnorm without weight");
    /* eps inside the square root: x = (0.001, 0), eps = 1e-6: rms = sqrt(5e-7 + 1e-6) */
    float t[2] = {0.001f, 0.0f};
    dsv4_rmsnorm(t, NULL, 2, 1e-6f, y);
    CHECK_NEAR(y[0], 0.001 / sqrt(0.5e-6 + 1e-6), 1e-6, "rmsnorm eps inside the root");

    /* random, n = 1000, against double; in place (y aliases x) */
    enum { N = 1000 };
    static float v[N], wt[N], out[N];
    double ss = 0;
    for (int i = 0; i < N; i++) {
        v[i] = (float)(uniform() * 3);
        wt[i] = (float)(1 + 0.5 * uniform());
        ss += (double)v[i] * v[i];
    }
    double r = 1 / sqrt(ss / N + 1e-6);
    float ref[N];
    for (int i = 0; i < N; i++) ref[i] = (float)(wt[i] * v[i] * r);
    dsv4_rmsnorm(v, wt, N, 1e-6f, out);
    double err = 0;
    for (int i = 0; i < N; i++) err = fmax(err, fabs(out[i] - ref[i]) / (fabs(ref[i]) + 1e-3));
    CHECK(err < 1e-6, "rmsnorm n=1000 relative error %.3g", err);
    dsv4_rmsnorm(v, wt, N, 1e-6f, v);
    CHECK(!memcmp(v, out, sizeof out), "rmsnorm in place equals out of place");
}

/* The spec's YaRN frequencies in double (2.8): f_i = base^(-2i/rd); corr(n) =
 * rd ln(L0 / (2 pi n)) / (2 ln base); low = max(floor(corr(beta_fast)), 0), high =
 * min(ceil(corr(beta_slow)), rd-1); ramp clamp((i-low)/(high-low), 0, 1); f' = f(1-ramp) + f/factor ramp. */
static double yarn_freq(int i, int rd, double base, double L0, double factor, double bfast, double bslow) {
    double f = pow(base, -2.0 * i / rd);
    if (L0 <= 0) return f;
    double lo = fmax(floor(rd * log(L0 / (2 * M_PI * bfast)) / (2 * log(base))), 0);
    double hi = fmin(ceil(rd * log(L0 / (2 * M_PI * bslow)) / (2 * log(base))), rd - 1);
    double ramp = fmin(fmax((i - lo) / (hi - lo), 0), 1);
    return f * (1 - ramp) + f / factor * ramp;
}

static void test_yarn(void) {
    /* v4-model.md 2.8: base 160000, factor 16, original 65536, beta 32 / 1 */
    static const double spec[32] = {1,        0.6877,   0.4729,   0.3252,   0.2236,   0.1538,   0.1057,   0.07271,
                                    0.05,     0.03438,  0.02364,  0.01626,  0.01118,  7.688e-3, 5.287e-3, 3.636e-3,
                                    2.266e-3, 1.397e-3, 8.497e-4, 5.081e-4, 2.970e-4, 1.682e-4, 9.087e-5, 4.544e-5,
                                    1.953e-5, 5.372e-6, 3.694e-6, 2.540e-6, 1.747e-6, 1.201e-6, 8.261e-7, 5.681e-7};
    dsv4_rope r;
    dsv4_rope_init(&r, 64, 160000.0f, 65536, 16.0f, 32.0f, 1.0f);
    for (int i = 0; i < 32; i++) {
        CHECK(fabs(r.freqs[i] - spec[i]) <= 5e-4 * spec[i], "YaRN f'_%d = %.6g, spec lists %.4g", i, r.freqs[i],
              spec[i]);
        double want = yarn_freq(i, 64, 160000, 65536, 16, 32, 1);
        CHECK(fabs(r.freqs[i] - want) <= 1e-6 * want, "YaRN f'_%d = %.9g, formula %.9g", i, r.freqs[i], want);
    }
    /* the ramp's ends: i <= 15 unchanged, i >= 25 divided by 16 exactly */
    CHECK_NEAR(r.freqs[15] / pow(160000, -30.0 / 64), 1.0, 1e-6, "f'_15 keeps the base frequency");
    CHECK_NEAR(r.freqs[25] * 16 / pow(160000, -50.0 / 64), 1.0, 1e-6, "f'_25 is the base frequency / 16");
    /* ratio-0 layers: base 10000, no YaRN */
    dsv4_rope p;
    dsv4_rope_init(&p, 64, 10000.0f, 0, 1.0f, 32.0f, 1.0f);
    for (int i = 0; i < 32; i++)
        CHECK(fabs(p.freqs[i] - pow(10000, -i / 32.0)) <= 1e-6 * pow(10000, -i / 32.0), "plain f_%d = %.9g", i,
              p.freqs[i]);
}

static void test_rope(void) {
    dsv4_rope r;
    dsv4_rope_init(&r, 64, 160000.0f, 65536, 16.0f, 32.0f, 1.0f);
    static const int positions[] = {0, 1, 7, 1000, 65535};
    for (int pi = 0; pi < 5; pi++) {
        int t = positions[pi];
        float x[64], y[64], back[64];
        for (int i = 0; i < 64; i++) x[i] = (float)uniform();
        memcpy(y, x, sizeof x);
        dsv4_rope_apply(&r, y, t, false);
        double err = 0, err_inv = 0, err_formula = 0;
        float z[64];
        memcpy(z, x, sizeof x);
        dsv4_rope_apply(&r, z, t, true);
        for (int i = 0; i < 32; i++) {
            /* The spec's angle is the fp32 product (float)t * f'_i. The frequencies were
             * checked against the formula above (to 1e-6); here the rotation is checked with
             * the table's own fp32 frequency, since at t = 65535 one ulp of f'_i already moves
             * the angle by ~3e-3 rad. */
            double ang = (double)((float)t * r.freqs[i]);
            double c = cos(ang), s = sin(ang), a = x[2 * i], b = x[2 * i + 1];
            /* (a + ib)(c + is) and (a + ib)(c - is) */
            err = fmax(err, fmax(fabs(y[2 * i] - (a * c - b * s)), fabs(y[2 * i + 1] - (a * s + b * c))));
            err_inv = fmax(err_inv, fmax(fabs(z[2 * i] - (a * c + b * s)), fabs(z[2 * i + 1] - (-a * s + b * c))));
            /* and, where fp32 angle rounding is small, with the frequency of the formula */
            double angf = t * yarn_freq(i, 64, 160000, 65536, 16, 32, 1);
            if (t <= 1000) err_formula = fmax(err_formula, fabs(y[2 * i] - (a * cos(angf) - b * sin(angf))));
        }
        CHECK(err_formula < 2e-4, "rope at t=%d: max error %.3g vs the formula's angle", t, err_formula);
        CHECK(err < 1e-5, "rope at t=%d: max error %.3g vs the complex rotation", t, err);
        CHECK(err_inv < 1e-5, "inverse rope at t=%d: max error %.3g vs the conjugate rotation", t, err_inv);
        memcpy(back, y, sizeof y);
        dsv4_rope_apply(&r, back, t, true);
        double rt = 0;
        for (int i = 0; i < 64; i++) rt = fmax(rt, fabs(back[i] - x[i]));
        CHECK(rt < 1e-5, "rope then inverse at t=%d returns the input (max error %.3g)", t, rt);
    }
    /* interleaved pairs, by hand: e_0 at t = 1 with f_0 = 1 becomes (cos 1, sin 1) in dims 0, 1
     * and leaves every other dim (in particular dim 32, the rotate-half partner) at zero */
    float e[64] = {1};
    dsv4_rope_apply(&r, e, 1, false);
    CHECK_NEAR(e[0], cos(1.0), 1e-6, "e_0 dim 0");
    CHECK_NEAR(e[1], sin(1.0), 1e-6, "e_0 dim 1 (interleaved partner)");
    for (int i = 2; i < 64; i++) CHECK(e[i] == 0.0f, "e_0 rotated leaks into dim %d (%g)", i, e[i]);
    /* the slowest pair (62, 63) at t = 1: angle f'_31 = 5.681e-7 */
    float g[64] = {0};
    g[62] = 1;
    dsv4_rope_apply(&r, g, 1, false);
    CHECK_NEAR(g[63], sin(5.68053e-7), 1e-10, "pair 31 rotates by f'_31");
    /* relative position: <rope(q, t1), rope(k, t2)> depends on t1 - t2 only */
    float q[64], k[64], q1[64], k1[64], q2[64], k2[64];
    for (int i = 0; i < 64; i++) q[i] = (float)uniform(), k[i] = (float)uniform();
    memcpy(q1, q, sizeof q), memcpy(k1, k, sizeof k), memcpy(q2, q, sizeof q), memcpy(k2, k, sizeof k);
    dsv4_rope_apply(&r, q1, 10, false), dsv4_rope_apply(&r, k1, 3, false);
    dsv4_rope_apply(&r, q2, 110, false), dsv4_rope_apply(&r, k2, 103, false);
    double d1 = 0, d2 = 0;
    for (int i = 0; i < 64; i++) d1 += (double)q1[i] * k1[i], d2 += (double)q2[i] * k2[i];
    CHECK_NEAR(d1, d2, 1e-4, "rope scores depend on the relative position");
}

static void test_hadamard(void) {
    /* by hand, n = 4: H4 (1,2,3,4) = (10, -2, -4, 0) / 2 */
    float h4[4] = {1, 2, 3, 4};
    dsv4_hadamard(h4, 4);
    CHECK(h4[0] == 5 && h4[1] == -1 && h4[2] == -2 && h4[3] == 0, "H4 (1,2,3,4) = (%g %g %g %g), expected (5 -1 -2 0)",
          h4[0], h4[1], h4[2], h4[3]);
    static const int sizes[] = {2, 8, 32, 128};
    for (int si = 0; si < 4; si++) {
        int n = sizes[si];
        float x[128], y[128];
        for (int i = 0; i < n; i++) x[i] = (float)uniform();
        memcpy(y, x, (size_t)n * sizeof(float));
        dsv4_hadamard(y, n);
        double err = 0, nx = 0, ny = 0;
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < n; j++) s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * x[j];
            err = fmax(err, fabs(y[i] - s / sqrt(n)));
            nx += (double)x[i] * x[i];
            ny += (double)y[i] * y[i];
        }
        CHECK(err < 1e-5, "hadamard n=%d vs the explicit Sylvester matrix: max error %.3g", n, err);
        CHECK_NEAR(nx, ny, 1e-4, "hadamard preserves the norm");
        dsv4_hadamard(y, n);
        double back = 0;
        for (int i = 0; i < n; i++) back = fmax(back, fabs(y[i] - x[i]));
        CHECK(back < 1e-5, "hadamard n=%d applied twice is the identity (max error %.3g)", n, back);
    }
}

static void test_activations(void) {
    CHECK_NEAR(dsv4_sigmoid(0.0f), 0.5, 1e-7, "sigmoid(0)");
    CHECK_NEAR(dsv4_sigmoid(2.0f), 1 / (1 + exp(-2.0)), 1e-7, "sigmoid(2)");
    CHECK_NEAR(dsv4_silu(-3.0f), -3 / (1 + exp(3.0)), 1e-7, "silu(-3)");
    CHECK_NEAR(dsv4_softplus(1.0f), log1p(exp(1.0)), 1e-6, "softplus(1)");
    CHECK_NEAR(dsv4_softplus(-30.0f), log1p(exp(-30.0)), 1e-18, "softplus(-30)");
    /* torch threshold 20: above it softplus(x) = x; the visible effect in fp32 is at large x,
     * where log1p(exp(x)) would overflow to infinity */
    CHECK(dsv4_softplus(100.0f) == 100.0f, "softplus(100) = 100 (threshold), got %g", dsv4_softplus(100.0f));
    CHECK(dsv4_softplus(20.5f) == 20.5f, "softplus(20.5) = 20.5");
}

int main(void) {
    test_rmsnorm();
    test_yarn();
    test_rope();
    test_hadamard();
    test_activations();
    return check_done("test_ops");
}
