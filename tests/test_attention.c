/* test_attention.c: attention with the per-head sink (dsv4_attend) and a whole sliding-window
 * attention layer (dsv4_attention_forward, ratio 0), against the spec (v4-model.md 2.4)
 * recomputed in double precision.
 *
 * The sink is one more logit in each head's softmax, with a zero value vector and without the
 * softmax scale: o_h = sum_j e^{s_j - M} k_j / (sum_j e^{s_j - M} + e^{sink_h - M}).
 * The layer reference follows the spec step by step: q = wq_b(q_norm(wq_a u)), per-head RMS
 * normalisation, RoPE on the last rope dims at the query position; one shared key = value row
 * per token, kv_norm(wkv u) with RoPE at its own position; the window of the last W positions;
 * the output de-rotated at the query position (the conjugate rotation); wo_a per group of
 * heads, then wo_b. It is run as one prefill step, token by token and in uneven chunks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/state.h"
#include "model/forward.h"

static uint64_t rng = 0x6a09e667f3bcc909ull;
static double uniform(void) { /* in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 2.0 * (double)(rng >> 11) / 9007199254740992.0 - 1.0;
}

/* softmax over K scores plus the sink logit, value of the sink zero, all in double */
static void ref_attend(const float *q, const float *keys, int K, int H, int D, double scale, const float *sink,
                       double *o) {
    for (int h = 0; h < H; h++) {
        double s[64], mx = sink[h], den = 0;
        for (int j = 0; j < K; j++) {
            double d = 0;
            for (int i = 0; i < D; i++) d += (double)q[h * D + i] * keys[j * D + i];
            s[j] = d * scale;
            mx = fmax(mx, s[j]);
        }
        for (int j = 0; j < K; j++) den += exp(s[j] - mx);
        den += exp(sink[h] - mx);
        for (int i = 0; i < D; i++) {
            double acc = 0;
            for (int j = 0; j < K; j++) acc += exp(s[j] - mx) * keys[j * D + i];
            o[h * D + i] = acc / den;
        }
    }
}

static void test_attend(void) {
    /* by hand: one key k = 8 (D = 1) with score 0 (q = 0). sink 0: o = 8 / (1 + 1) = 4.
     * sink ln 3 with scale 0.5: the sink is not scaled, so o = 8 / (1 + 3) = 2 (a scaled sink
     * would give 8 / (1 + sqrt 3) = 2.93). */
    float q = 0, k = 8, o;
    float sink0 = 0, sink3 = logf(3);
    dsv4_attend(&q, &k, 1, 1, 1, 1.0f, &sink0, &o);
    CHECK_NEAR(o, 4.0, 1e-6, "one key, sink 0");
    dsv4_attend(&q, &k, 1, 1, 1, 0.5f, &sink3, &o);
    CHECK_NEAR(o, 2.0, 1e-6, "one key, sink ln 3, unscaled");
    /* two keys, D = 2: q = (2, 0), keys (1, 0) and (0, 1), scale 1 -> scores 2, 0;
     * sink 1: o = (e^2 (1,0) + e^0 (0,1)) / (e^2 + 1 + e) */
    float q2[2] = {2, 0}, k2[4] = {1, 0, 0, 1}, o2[2], sink1 = 1;
    dsv4_attend(q2, k2, 2, 1, 2, 1.0f, &sink1, o2);
    double den = exp(2) + 1 + exp(1);
    CHECK_NEAR(o2[0], exp(2) / den, 1e-6, "two keys [0]");
    CHECK_NEAR(o2[1], 1 / den, 1e-6, "two keys [1]");
    /* no keys: only the sink, whose value is zero */
    float o3[4] = {1, 1, 1, 1}, q3[4] = {1, 2, 3, 4}, sinks[1] = {0.5f};
    dsv4_attend(q3, NULL, 0, 1, 4, 0.5f, sinks, o3);
    CHECK(o3[0] == 0 && o3[3] == 0, "no keys: zero output");

    /* random: several heads, large scores (stability: the max includes the sink) */
    enum { H = 3, D = 16, K = 40 };
    float qq[H * D], kk[K * D], sk[H] = {0.3f, -2.0f, 40.0f}, oo[H * D];
    double want[H * D];
    for (int amp = 1; amp <= 30; amp *= 5) {
        for (int i = 0; i < H * D; i++) qq[i] = (float)(amp * uniform());
        for (int i = 0; i < K * D; i++) kk[i] = (float)uniform();
        for (int kc = 1; kc <= K; kc += 13) {
            dsv4_attend(qq, kk, kc, H, D, 0.25f, sk, oo);
            ref_attend(qq, kk, kc, H, D, 0.25, sk, want);
            double err = 0;
            for (int i = 0; i < H * D; i++) err = fmax(err, fabs(oo[i] - want[i]));
            CHECK(err < 1e-5, "attend K=%d amplitude %d: max error %.3g vs the softmax with the sink", kc, amp, err);
        }
    }
}

/* ---- a window-only layer ---- */

enum { DIM = 16, H = 4, D = 16, RD = 8, QR = 12, G = 2, OLR = 6, W = 4, NTOK = 9 };

typedef struct {
    struct dsv4_model m;
    dsv4_layer_w layer;
    dsv4_rope rope;
    float wq_a[QR * DIM], q_norm[QR], wq_b[H * D * QR], wkv[D * DIM], kv_norm[D];
    float wo_a[G * OLR * (H / G) * D], wo_b[DIM * G * OLR], sink[H];
} fake;

static dsv4_linear f32_linear(const float *w, int rows, int cols) {
    dsv4_linear L = {.fmt = DSV4_W_F32, .rows = rows, .cols = cols, .w = w, .name = "test"};
    return L;
}

static void fill(float *x, int n, double amp, double off) {
    for (int i = 0; i < n; i++) x[i] = (float)(off + amp * uniform());
}

static void fake_init(fake *f) {
    memset(f, 0, sizeof *f);
    fill(f->wq_a, QR * DIM, 0.5, 0), fill(f->q_norm, QR, 0.2, 1), fill(f->wq_b, H * D * QR, 0.5, 0);
    fill(f->wkv, D * DIM, 0.5, 0), fill(f->kv_norm, D, 0.2, 1);
    fill(f->wo_a, G * OLR * (H / G) * D, 0.3, 0), fill(f->wo_b, DIM * G * OLR, 0.3, 0), fill(f->sink, H, 1.0, 0);
    dsv4_rope_init(&f->rope, RD, 10000.0f, 0, 1.0f, 32.0f, 1.0f);
    struct dsv4_config *c = &f->m.cfg;
    c->n_layers = 1, c->dim = DIM, c->n_heads = H, c->head_dim = D, c->rope_head_dim = RD;
    c->q_lora_rank = QR, c->o_groups = G, c->o_lora_rank = OLR, c->window_size = W;
    c->norm_eps = 1e-6f, c->max_position_embeddings = 4096;
    f->m.numerics = DSV4_NUMERICS_EXACT;
    dsv4_attn_w *aw = &f->layer.attn;
    aw->ratio = 0;
    aw->sink = f->sink;
    aw->wq_a = f32_linear(f->wq_a, QR, DIM);
    aw->wq_b = f32_linear(f->wq_b, H * D, QR);
    aw->wkv = f32_linear(f->wkv, D, DIM);
    aw->wo_a = f32_linear(f->wo_a, G * OLR, (H / G) * D);
    aw->wo_b = f32_linear(f->wo_b, DIM, G * OLR);
    aw->q_norm = f->q_norm, aw->kv_norm = f->kv_norm;
    aw->rope = &f->rope;
    f->m.layers = &f->layer;
}

static void matvec(const float *Wm, int rows, int cols, const double *x, double *y) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)Wm[r * cols + c] * x[c];
        y[r] = s;
    }
}
static void rmsnorm_d(double *x, int n, const float *w) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1 / sqrt(ss / n + 1e-6);
    for (int i = 0; i < n; i++) x[i] = x[i] * r * (w ? w[i] : 1);
}
/* multiply the pairs of the last RD dims of x[D] by e^{i t f_i} (sign -1: the conjugate) */
static void rope_d(const dsv4_rope *r, double *x, int t, int sign) {
    for (int i = 0; i < RD / 2; i++) {
        double ang = sign * (double)((float)t * r->freqs[i]);
        double a = x[D - RD + 2 * i], b = x[D - RD + 2 * i + 1];
        x[D - RD + 2 * i] = a * cos(ang) - b * sin(ang);
        x[D - RD + 2 * i + 1] = a * sin(ang) + b * cos(ang);
    }
}

static void ref_layer(const fake *f, const float *u, int t, double *out) {
    double ut[DIM], ql[QR], q[H * D], kv[NTOK][D];
    for (int p = 0; p <= t; p++) {
        double up[DIM];
        for (int i = 0; i < DIM; i++) up[i] = u[p * DIM + i];
        matvec(f->wkv, D, DIM, up, kv[p]);
        rmsnorm_d(kv[p], D, f->kv_norm);
        rope_d(&f->rope, kv[p], p, 1);
    }
    for (int i = 0; i < DIM; i++) ut[i] = u[t * DIM + i];
    matvec(f->wq_a, QR, DIM, ut, ql);
    rmsnorm_d(ql, QR, f->q_norm);
    matvec(f->wq_b, H * D, QR, ql, q);
    for (int h = 0; h < H; h++) {
        rmsnorm_d(q + h * D, D, NULL);
        rope_d(&f->rope, q + h * D, t, 1);
    }
    int first = t - W + 1 < 0 ? 0 : t - W + 1, K = t - first + 1;
    float qf[H * D], keys[W * D];
    for (int i = 0; i < H * D; i++) qf[i] = (float)q[i];
    for (int j = 0; j < K; j++)
        for (int i = 0; i < D; i++) keys[j * D + i] = (float)kv[first + j][i];
    double o[H * D];
    ref_attend(qf, keys, K, H, D, 1 / sqrt((double)D), f->sink, o);
    for (int h = 0; h < H; h++) rope_d(&f->rope, o + h * D, t, -1);
    double z[G * OLR];
    for (int g = 0; g < G; g++)
        matvec(f->wo_a + g * OLR * (H / G) * D, OLR, (H / G) * D, o + g * (H / G) * D, z + g * OLR);
    matvec(f->wo_b, DIM, G * OLR, z, out);
}

/* run tokens [0, NTOK) through session s in chunks (cycled); out[NTOK, DIM] */
static void run(fake *f, dsv4_session *s, const float *u, const int *chunks, int n_chunks, float *out) {
    for (int p = 0, c = 0; p < NTOK; c++) {
        int n = chunks[c % n_chunks];
        if (n > NTOK - p) n = NTOK - p;
        int pos[NTOK], seg_of[NTOK] = {0};
        int32_t ids[NTOK] = {0};
        for (int i = 0; i < n; i++) pos[i] = p + i;
        dsv4_fwd_seg seg = {.s = s, .row0 = 0, .n = n, .pos0 = p};
        dsv4_fwd_batch b = {
            .n_rows = n, .n_segs = 1, .segs = &seg, .pos = pos, .ids = ids, .seg_of = seg_of, .state = 0};
        dsv4_workspace ws = {0};
        CHECK(dsv4_attention_forward(&f->m, &f->layer.attn, &b, u + p * DIM, out + p * DIM, &ws) == DSV4_OK,
              "attention step at %d", p);
        dsv4_ws_free(&ws);
        p += n;
    }
}

static void test_window_layer(void) {
    static fake f;
    fake_init(&f);
    float u[NTOK * DIM];
    fill(u, NTOK * DIM, 1.0, 0);
    double want[NTOK][DIM];
    for (int t = 0; t < NTOK; t++) ref_layer(&f, u, t, want[t]);
    static const int all[] = {NTOK}, one[] = {1}, uneven[] = {3, 5};
    const int *plans[3] = {all, one, uneven};
    static const int plan_len[3] = {1, 1, 2};
    static const char *plan_name[3] = {"prefill", "token by token", "chunks 3+5+1"};
    for (int pl = 0; pl < 3; pl++) {
        dsv4_session *s;
        CHECK(dsv4_session_new(&f.m, 64, &s) == DSV4_OK, "session");
        float out[NTOK * DIM];
        run(&f, s, u, plans[pl], plan_len[pl], out);
        for (int t = 0; t < NTOK; t++) {
            double err = 0;
            for (int i = 0; i < DIM; i++) err = fmax(err, fabs(out[t * DIM + i] - want[t][i]));
            CHECK(err < 1e-5, "%s: position %d: max error %.3g vs the spec's window attention", plan_name[pl], t, err);
        }
        dsv4_session_free(s);
    }
}

int main(void) {
    test_attend();
    test_window_layer();
    return check_done("test_attention");
}
