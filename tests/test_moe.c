/* test_moe.c: the router, the experts and the MoE block (src/model/moe.c) against the spec
 * (v4-model.md 2.5, 2.6) recomputed in double precision.
 *
 * Router: s_e = sqrt(softplus(logit_e)) with torch's threshold (x > 20: softplus(x) = x);
 * score-routed layers pick the top-k of s + bias (the bias steers selection only), hash layers
 * take tid2eid[token]; weights = chosen s / their sum * route_scale.
 * Expert: g = w1 x, p = w3 x, h = silu(min(g, L)) * clamp(p, -L, L), times the routing weight
 * BEFORE w2, whose input is FP8-quantised in the default numerics (so the order is visible).
 * Block: routed experts plus the shared expert. Loading: a tid2eid row that names an expert
 * twice is refused (the tiny reference model, copied and patched). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "numeric/numeric.h"

static uint64_t rng = 0xbb67ae8584caa73bull;
static double uniform(void) { /* in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 2.0 * (double)(rng >> 11) / 9007199254740992.0 - 1.0;
}

static double sqrt_softplus(double x) { return sqrt(x > 20 ? x : log1p(exp(x))); }

/* the reference router: top-k by selection sort (ties to the lower index) */
static void ref_route(int E, int K, double scale, const float *logits, const float *bias, const int32_t *hash_row,
                      int *idx, double *w) {
    double s[64], sb[64];
    char used[64] = {0};
    for (int e = 0; e < E; e++) s[e] = sqrt_softplus(logits[e]), sb[e] = s[e] + (bias ? bias[e] : 0);
    for (int k = 0; k < K; k++) {
        if (hash_row) {
            idx[k] = hash_row[k];
            continue;
        }
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!used[e] && (best < 0 || sb[e] > sb[best])) best = e;
        used[best] = 1;
        idx[k] = best;
    }
    double sum = 0;
    for (int k = 0; k < K; k++) sum += s[idx[k]];
    for (int k = 0; k < K; k++) w[k] = s[idx[k]] / sum * scale;
}

static void cfg_init(struct dsv4_config *c, int E, int K) {
    memset(c, 0, sizeof *c);
    c->n_routed_experts = E;
    c->n_activated_experts = K;
    c->route_scale = 1.5f;
    c->score_func = DSV4_SCORE_SQRTSOFTPLUS;
    c->swiglu_limit = 10.0f;
}

static void test_route(void) {
    struct dsv4_config c;
    cfg_init(&c, 8, 3);
    dsv4_moe_w w = {0};
    int idx[3];
    float wt[3];

    /* by hand: all logits 0 -> every s = sqrt(ln 2); bias (0,0,0,0,0,1,2,3) picks 7, 6, 5; the
     * weights ignore the bias: each 1.5 / 3 = 0.5 (with the bias they would be 3.83/.., not equal) */
    float zero[8] = {0}, bias[8] = {0, 0, 0, 0, 0, 1, 2, 3};
    w.bias = bias;
    dsv4_moe_route(&c, &w, zero, 0, idx, wt);
    CHECK(idx[0] == 7 && idx[1] == 6 && idx[2] == 5, "biased selection %d %d %d, expected 7 6 5", idx[0], idx[1],
          idx[2]);
    for (int k = 0; k < 3; k++) CHECK_NEAR(wt[k], 0.5, 1e-6, "weights without the bias");

    /* by hand: logits (0, 0, 100, ...): softplus(100) = 100 by the threshold (log1p(exp(100))
     * overflows in fp32) -> s = 10; s_0 = s_1 = sqrt(ln 2); no bias -> 2, 0, 1;
     * weights 1.5 * (10, .83255, .83255) / 11.6651 */
    float big[8] = {0, 0, 100, -5, -5, -5, -5, -5};
    w.bias = NULL;
    dsv4_moe_route(&c, &w, big, 0, idx, wt);
    double s0 = sqrt(log(2.0)), tot = 10 + 2 * s0;
    CHECK(idx[0] == 2 && idx[1] == 0 && idx[2] == 1, "threshold case selection %d %d %d", idx[0], idx[1], idx[2]);
    CHECK_NEAR(wt[0], 1.5 * 10 / tot, 1e-5, "threshold case weight 0");
    CHECK_NEAR(wt[1], 1.5 * s0 / tot, 1e-5, "threshold case weight 1");

    /* hash routing: tid2eid[token] in table order, weights from the gate's scores, no bias */
    int32_t table[3 * 3] = {0, 1, 2, 3, 4, 5, 6, 1, 3};
    dsv4_moe_w hw = {.hash = true, .tid2eid = table};
    float lg[8];
    for (int e = 0; e < 8; e++) lg[e] = (float)(2 * uniform());
    dsv4_moe_route(&c, &hw, lg, 2, idx, wt);
    int ridx[3];
    double rw[3];
    ref_route(8, 3, 1.5, lg, NULL, table + 6, ridx, rw);
    CHECK(idx[0] == 6 && idx[1] == 1 && idx[2] == 3, "hash routing of token 2: %d %d %d, expected 6 1 3", idx[0],
          idx[1], idx[2]);
    for (int k = 0; k < 3; k++) CHECK_NEAR(wt[k], rw[k], 1e-6, "hash routing weight");

    /* random: score-routed with a bias large enough to change the choice */
    cfg_init(&c, 16, 6);
    for (int trial = 0; trial < 200; trial++) {
        float l[16], b[16];
        for (int e = 0; e < 16; e++) l[e] = (float)(4 * uniform()), b[e] = (float)(0.5 * uniform());
        if (trial % 10 == 0) l[trial % 16] = 30; /* above the threshold */
        dsv4_moe_w rwt = {.bias = b};
        int gi[6], wi[6];
        float gw[6];
        double ww[6];
        dsv4_moe_route(&c, &rwt, l, 0, gi, gw);
        ref_route(16, 6, 1.5, l, b, NULL, wi, ww);
        double sum = 0;
        for (int k = 0; k < 6; k++) {
            CHECK(gi[k] == wi[k], "trial %d rank %d: expert %d, expected %d", trial, k, gi[k], wi[k]);
            CHECK(fabs(gw[k] - ww[k]) < 1e-5, "trial %d rank %d: weight %.9g, expected %.9g", trial, k, gw[k], ww[k]);
            sum += gw[k];
        }
        CHECK_NEAR(sum, 1.5, 1e-5, "weights sum to route_scale");
    }
}

/* ---- experts ---- */

enum { DIM = 32, INTER = 128, E = 4, K = 2 };

static dsv4_linear f32_linear(const float *w, int rows, int cols) {
    dsv4_linear L = {.fmt = DSV4_W_F32, .rows = rows, .cols = cols, .w = w, .name = "test"};
    return L;
}

static double silu(double x) { return x / (1 + exp(-x)); }

/* the spec's expert in double up to h; h already scaled by rw */
static void ref_expert_h(const float *w1, const float *w3, const float *x, double L, double rw, double *h) {
    for (int i = 0; i < INTER; i++) {
        double g = 0, p = 0;
        for (int j = 0; j < DIM; j++) g += (double)w1[i * DIM + j] * x[j], p += (double)w3[i * DIM + j] * x[j];
        g = fmin(g, L);
        p = fmin(fmax(p, -L), L);
        h[i] = rw * (silu(g) * p);
    }
}

static void test_expert(void) {
    static float w1[INTER * DIM], w3[INTER * DIM], w2[DIM * INTER], x[DIM];
    /* gates and ups spread over about +-30, so that every clamp is exercised */
    for (int i = 0; i < INTER * DIM; i++) w1[i] = (float)(2 * uniform()), w3[i] = (float)(2 * uniform());
    for (int i = 0; i < DIM * INTER; i++) w2[i] = (float)(0.1 * uniform());
    for (int i = 0; i < DIM; i++) x[i] = (float)(2 * uniform());
    struct dsv4_model m;
    memset(&m, 0, sizeof m);
    cfg_init(&m.cfg, E, K);
    m.cfg.dim = DIM, m.cfg.moe_inter_dim = INTER;
    m.numerics = DSV4_NUMERICS_EXACT;
    dsv4_expert_w e = {
        .w1 = f32_linear(w1, INTER, DIM), .w2 = f32_linear(w2, DIM, INTER), .w3 = f32_linear(w3, INTER, DIM)};
    static float xq[INTER], g[INTER], p[INTER], y[DIM];
    double h[INTER];
    /* count the clamp cases the data reaches */
    int g_hi = 0, g_lo = 0, p_hi = 0, p_lo = 0;
    for (int i = 0; i < INTER; i++) {
        double gg = 0, pp = 0;
        for (int j = 0; j < DIM; j++) gg += (double)w1[i * DIM + j] * x[j], pp += (double)w3[i * DIM + j] * x[j];
        g_hi += gg > 10, g_lo += gg<-10, p_hi += pp> 10, p_lo += pp < -10;
    }
    CHECK(g_hi && g_lo && p_hi && p_lo, "test data reaches every clamp (%d %d %d %d)", g_hi, g_lo, p_hi, p_lo);

    /* exact numerics, a routing weight of 0.37 and none (shared expert) */
    float rw = 0.37f;
    for (int routed = 0; routed < 2; routed++) {
        dsv4_expert_forward(&m, &e, x, 1, routed ? &rw : NULL, y, xq, g, p);
        ref_expert_h(w1, w3, x, 10, routed ? rw : 1, h);
        double err = 0;
        for (int d = 0; d < DIM; d++) {
            double s = 0;
            for (int i = 0; i < INTER; i++) s += (double)w2[d * INTER + i] * h[i];
            err = fmax(err, fabs(y[d] - s) / (1 + fabs(s)));
        }
        CHECK(err < 1e-5, "expert (%s): max error %.3g vs the clamped SwiGLU", routed ? "routed" : "shared", err);
    }

    /* default numerics with an FP8 w2 (weights e4m3 codes, one 128x128 block, scale 2^-4): its
     * input is FP8-quantised in blocks of 128, so scaling h by the routing weight before w2
     * (the spec) and scaling the output after it give different results */
    static uint8_t w2q[DIM * INTER];
    uint8_t w2s = 127 - 4;
    for (int i = 0; i < DIM * INTER; i++) w2q[i] = dsv4_f32_to_e4m3((float)(8 * uniform()));
    dsv4_expert_w e8 = e;
    e8.w2 = (dsv4_linear){.fmt = DSV4_W_FP8,
                          .rows = DIM,
                          .cols = INTER,
                          .w = w2q,
                          .scale_e8m0 = &w2s,
                          .br = 128,
                          .bc = 128,
                          .sc = 1,
                          .act_quant = true,
                          .name = "test.w2"};
    m.numerics = DSV4_NUMERICS_DEFAULT;
    dsv4_expert_forward(&m, &e8, x, 1, &rw, y, xq, g, p);
    ref_expert_h(w1, w3, x, 10, rw, h);
    float hq[INTER], hq1[INTER];
    for (int i = 0; i < INTER; i++) hq[i] = (float)h[i], hq1[i] = (float)(h[i] / rw);
    dsv4_fp8_fake_quant(hq, INTER, 128);  /* the spec: quantise (w_i h) */
    dsv4_fp8_fake_quant(hq1, INTER, 128); /* the wrong order: quantise h, scale after w2 */
    double err = 0, wrong = 0;
    for (int d = 0; d < DIM; d++) {
        double s = 0, s1 = 0;
        for (int i = 0; i < INTER; i++) {
            double wv = dsv4_e4m3_to_f32(w2q[d * INTER + i]) * 0x1p-4;
            s += wv * hq[i], s1 += wv * hq1[i];
        }
        err = fmax(err, fabs(y[d] - s));
        wrong = fmax(wrong, fabs(rw * s1 - s));
    }
    CHECK(err < 1e-5, "FP8 w2: max error %.3g vs w2(fp8(w_i h))", err);
    CHECK(wrong > 1e3 * 1e-5, "the test separates the two orders (difference %.3g)", wrong);
}

/* ---- the block: routed + shared ---- */

static void test_block(void) {
    enum { N = 3, I2 = 8, D2 = 8, E2 = 4, K2 = 2 };
    static float gate[E2 * D2], bias[E2], ew[E2 + 1][3][I2 * D2], u[N * D2];
    for (int i = 0; i < E2 * D2; i++) gate[i] = (float)uniform();
    for (int i = 0; i < E2; i++) bias[i] = (float)(0.3 * uniform());
    for (int e = 0; e <= E2; e++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < I2 * D2; i++) ew[e][k][i] = (float)(3 * uniform());
    for (int i = 0; i < N * D2; i++) u[i] = (float)uniform();
    dsv4_expert_w experts[E2];
    for (int e = 0; e < E2; e++)
        experts[e] = (dsv4_expert_w){
            .w1 = f32_linear(ew[e][0], I2, D2), .w2 = f32_linear(ew[e][1], D2, I2), .w3 = f32_linear(ew[e][2], I2, D2)};
    int32_t table[5 * K2] = {0, 1, 1, 2, 3, 0, 2, 3, 3, 1};
    int32_t ids[N] = {4, 1, 2};
    for (int hash = 0; hash < 2; hash++) {
        dsv4_moe_w w = {.gate = f32_linear(gate, E2, D2), .experts = experts, .hash = hash};
        if (hash)
            w.tid2eid = table;
        else
            w.bias = bias;
        w.shared = (dsv4_expert_w){.w1 = f32_linear(ew[E2][0], I2, D2),
                                   .w2 = f32_linear(ew[E2][1], D2, I2),
                                   .w3 = f32_linear(ew[E2][2], I2, D2)};
        struct dsv4_model m;
        memset(&m, 0, sizeof m);
        cfg_init(&m.cfg, E2, K2);
        m.cfg.dim = D2, m.cfg.moe_inter_dim = I2;
        m.numerics = DSV4_NUMERICS_EXACT;
        int pos[N] = {0, 1, 2}, seg_of[N] = {0};
        dsv4_fwd_batch b = {.n_rows = N, .pos = pos, .ids = ids, .seg_of = seg_of};
        dsv4_workspace ws = {0};
        float out[N * D2];
        CHECK(dsv4_moe_forward(&m, &w, &b, u, out, &ws) == DSV4_OK, "moe forward");
        dsv4_ws_free(&ws);
        for (int r = 0; r < N; r++) {
            float lg[E2];
            for (int e = 0; e < E2; e++) {
                double s = 0;
                for (int j = 0; j < D2; j++) s += (double)gate[e * D2 + j] * u[r * D2 + j];
                lg[e] = (float)s;
            }
            int idx[K2];
            double rw[K2];
            ref_route(E2, K2, 1.5, lg, hash ? NULL : bias, hash ? table + ids[r] * K2 : NULL, idx, rw);
            double y[D2] = {0};
            for (int k = 0; k <= K2; k++) { /* K2 routed experts, then the shared one */
                int e = k < K2 ? idx[k] : E2;
                double wk = k < K2 ? rw[k] : 1;
                for (int i = 0; i < I2; i++) {
                    double g = 0, p = 0;
                    for (int j = 0; j < D2; j++)
                        g += (double)ew[e][0][i * D2 + j] * u[r * D2 + j],
                            p += (double)ew[e][2][i * D2 + j] * u[r * D2 + j];
                    double h = wk * silu(fmin(g, 10)) * fmin(fmax(p, -10), 10);
                    for (int d = 0; d < D2; d++) y[d] += (double)ew[e][1][d * I2 + i] * h;
                }
            }
            double err = 0;
            for (int d = 0; d < D2; d++) err = fmax(err, fabs(out[r * D2 + d] - y[d]) / (1 + fabs(y[d])));
            CHECK(err < 1e-5, "%s block, row %d: max error %.3g vs routed + shared experts", hash ? "hash" : "scored",
                  r, err);
        }
    }
}

/* ---- loading: a hash table that repeats an expert ---- */

static bool copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    bool ok = in && out;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out)) ok = false;
    return ok;
}

static void test_hash_table_duplicates(void) {
    static const char *files[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors"};
    const char *src = DSV4_SHARED "/refvectors/models/tiny_v4flash_fp8";
    char dir[] = "/tmp/dsv4_test_moe_XXXXXX", a[512], b[512];
    CHECK(mkdtemp(dir) != NULL, "temporary directory");
    bool copied = true;
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        copied = copied && copy_file(a, b);
    }
    CHECK(copied, "copying the tiny model from %s", src);
    dsv4_model *m = NULL;
    dsv4_status rc = dsv4_model_open(dir, NULL, &m);
    CHECK(rc == DSV4_OK, "the unmodified copy opens (%s)", dsv4_errmsg());
    if (m) dsv4_model_close(m);

    /* token 0 of layer 0: its second expert := its first */
    dsv4_st *st = NULL;
    const dsv4_tensor *t = NULL;
    if (dsv4_st_open_dir(dir, &st) == DSV4_OK) t = dsv4_st_find(st, "layers.0.ffn.gate.tid2eid");
    CHECK(t != NULL, "layers.0.ffn.gate.tid2eid in the tiny model");
    if (t) {
        size_t es = dsv4_dtype_size(t->dtype), off = t->offset;
        snprintf(b, sizeof b, "%s", dsv4_st_file_path(st, t->file));
        dsv4_st_close(st);
        st = NULL;
        FILE *f = fopen(b, "r+b");
        unsigned char first[8];
        bool ok = f && fseek(f, (long)off, SEEK_SET) == 0 && fread(first, 1, es, f) == es &&
                  fseek(f, (long)(off + es), SEEK_SET) == 0 && fwrite(first, 1, es, f) == es;
        if (f) ok = fclose(f) == 0 && ok;
        CHECK(ok, "patching %s", b);
        rc = dsv4_model_open(dir, NULL, &m);
        CHECK(rc == DSV4_EFORMAT && strstr(dsv4_errmsg(), "twice"), "a repeated expert is refused: %s (%s)",
              dsv4_status_name(rc), dsv4_errmsg());
        if (m) dsv4_model_close(m);
    }
    if (st) dsv4_st_close(st);
    for (int i = 0; i < 4; i++) {
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        unlink(b);
    }
    rmdir(dir);
}

int main(void) {
    dsv4_numeric_init();
    test_route();
    test_expert();
    test_block();
    test_hash_table_duplicates();
    return check_done("test_moe");
}
