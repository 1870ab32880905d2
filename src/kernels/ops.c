/* ops.c: RMSNorm, RoPE/YaRN and the Hadamard rotation. */
#include <math.h>

#include "kernels/ops.h"

void dsv4_rmsnorm(const float *x, const float *w, int n, float eps, float *y) {
    /* The mean of squares in double: the sum of thousands of squares loses bits in fp32, and
     * this is the one reduction whose result scales everything that follows. */
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    if (w)
        for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
    else
        for (int i = 0; i < n; i++) y[i] = x[i] * r;
}

void dsv4_rope_init(dsv4_rope *r, int rd, float base, int original_seq_len, float factor,
                    float beta_fast, float beta_slow) {
    r->rd = rd;
    int half = rd / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)rd; /* fp32 arange(0, rd, 2) / rd */
        r->freqs[i] = 1.0f / (float)pow((double)base, (double)e);
    }
    if (original_seq_len > 0) {
        /* YaRN: keep the fast (high-frequency) dims, divide the slow ones by `factor`, and
         * blend linearly between the correction dims of beta_fast and beta_slow rotations. */
        double lo = floor(rd * log(original_seq_len / (beta_fast * 2 * M_PI)) / (2 * log(base)));
        double hi = ceil(rd * log(original_seq_len / (beta_slow * 2 * M_PI)) / (2 * log(base)));
        if (lo < 0) lo = 0;
        if (hi > rd - 1) hi = rd - 1;
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = fminf(fmaxf(ramp, 0.0f), 1.0f);
            float smooth = 1.0f - ramp;
            r->freqs[i] = r->freqs[i] / factor * (1.0f - smooth) + r->freqs[i] * smooth;
        }
    }
}

void dsv4_rope_cossin(const dsv4_rope *r, int pos, float *c, float *s) {
    for (int i = 0; i < r->rd / 2; i++) {
        float ang = (float)pos * r->freqs[i]; /* fp32 outer(t, freqs) */
        c[i] = (float)cos((double)ang);
        s[i] = (float)sin((double)ang);
    }
}

void dsv4_rope_apply(const dsv4_rope *r, float *x, int pos, bool inverse) {
    float c[128], s[128];
    dsv4_rope_cossin(r, pos, c, s);
    for (int i = 0; i < r->rd / 2; i++) {
        float a = x[2 * i], b = x[2 * i + 1];
        float si = inverse ? -s[i] : s[i];
        x[2 * i] = a * c[i] - b * si;
        x[2 * i + 1] = a * si + b * c[i];
    }
}

void dsv4_hadamard(float *x, int n) {
    for (int h = 1; h < n; h *= 2) {
        for (int i = 0; i < n; i += 2 * h) {
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
    }
    float sc = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) x[i] *= sc;
}
