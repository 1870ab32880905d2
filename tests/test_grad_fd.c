/* test_grad_fd.c: every backward of src/train against finite differences.
 *
 * A tiny random model (dim 32, 4 layers: window-only with hash routing, CSA whose indexer
 * prunes, HCA, CSA, and an MTP block; T = 16 tokens, window 6) is built in memory. Each
 * backward is checked on its own: RMSNorm, the linear, cross-entropy, the Sinkhorn split,
 * hc_pre, hc_post, hc_head, compressor pooling with and without overlap (and its first, empty
 * window), the whole-sequence compressor with and without the Hadamard rotation, attention of
 * every layer type, MoE with hash and score routing under all three scoring functions (with a
 * SwiGLU limit low enough that the clamps fire), the indexer's KL loss. Then the whole model
 * for L, L_mtp, the indexer loss, and L over a loss mask plus the sequence-wise balance loss,
 * over its parameter tensors, and the tensors that must get
 * no gradient (gate.bias, the indexer for L, MTP for L, ...) are checked to be exactly zero.
 *
 * Each check takes a random scalar objective f = sum c.y of the outputs (c fixed, random; or
 * the loss), runs the analytic backward with dy = c and compares sampled entries of the
 * gradient with the fourth-order central difference
 *   (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h,
 * accumulated in double with h = 5 % of the tensor's RMS. The forward under test is fp32, so
 * a difference carries rounding noise of about |f| 1e-8 / h: the error of a tensor is the
 * relative L2 norm of the disagreement beyond three times that noise, required <= 1e-2.
 * Correct code lands well below; a wrong factor, sign, index or missing term lands at O(1)
 * (mutations of the backward code, each caught, were used to check this). An entry whose
 * difference moves with the step beyond its noise has a kink (a clamp, a ReLU) inside the
 * stencil: it is skipped and counted, and at most half may be. Selections (experts, indexer
 * rows) are frozen after the first forward, as dsv4 grad takes them. Every part-level check
 * also runs against a deliberately wrong gradient (its largest entry 20 % off), which must
 * fail: the checks can fail. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/mhc.h"
#include "train/train.h"

#define TOL 1e-2  /* relative L2 error of the sampled gradient entries */
#define STEP 0.05  /* finite-difference step, relative to the tensor's RMS */
static double fd_step = STEP; /* smaller for objectives full of kinks */

/* Under the sanitizers (slow) a quarter of the samples: there the point is memory safety. */
#ifdef DSV4_SANITIZE
enum { THIN = 4 };
#else
enum { THIN = 1 };
#endif
#define NOISE 3e-8 /* relative rounding noise of an fp32 objective (measured: ~1e-8) */

static const char *TINY_CONFIG =
    "{\"vocab_size\": 64, \"hidden_size\": 32, \"num_hidden_layers\": 4, \"num_nextn_predict_layers\": 1,"
    " \"num_attention_heads\": 2, \"head_dim\": 72, \"qk_rope_head_dim\": 8, \"q_lora_rank\": 16,"
    " \"o_groups\": 2, \"o_lora_rank\": 8, \"sliding_window\": 6, \"rope_theta\": 10000,"
    " \"compress_rope_theta\": 160000, \"compress_ratios\": [0, 4, 8, 4, 0],"
    " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 32,"
    "   \"beta_fast\": 32, \"beta_slow\": 1},"
    " \"index_n_heads\": 2, \"index_head_dim\": 32, \"index_topk\": 2,"
    " \"n_routed_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 12, \"num_hash_layers\": 1,"
    " \"routed_scaling_factor\": 1.5, \"swiglu_limit\": 10, \"scoring_func\": \"sqrtsoftplus\","
    " \"hc_mult\": 4, \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-6, \"rms_norm_eps\": 1e-6}";

enum { T = 16 };

/* ---- random numbers --------------------------------------------------------------------- */

static uint64_t rng = 0x243F6A8885A308D3ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }
static void fill(float *x, size_t n, float mean, float sd) {
    for (size_t i = 0; i < n; i++) x[i] = mean + sd * nrand();
}
static float *rand_vec(size_t n, float sd) {
    float *v = malloc((n + 1) * sizeof(float));
    fill(v, n, 0.0f, sd);
    return v;
}
static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- the finite-difference checker ------------------------------------------------------- */

typedef double (*objective)(void *ctx);

static double stencil(objective f, void *ctx, float *xi, float x0, double h) {
    double v[4], off[4] = {h, -h, 2 * h, -2 * h};
    for (int k = 0; k < 4; k++) {
        *xi = (float)(x0 + off[k]);
        v[k] = f(ctx);
    }
    *xi = x0;
    return (8.0 * (v[0] - v[1]) - (v[2] - v[3])) / (12.0 * h);
}

/* The error of g over `samples` entries of x (the largest |g| first, then alternately a
 * random non-zero entry and a uniform one; every entry when there are few): ||e|| / ||g|| with
 * e = max(0, |fd - g| - 3 noise) per entry. A difference carries the fp32 rounding noise of f
 * divided by the step, noise = 1.5 NOISE (1 + |f|) / h, so only a disagreement beyond it
 * counts, and a gradient that is zero where f moves gives an infinite error. An entry that
 * disagrees is looked at again with steps h/2 and h/4: if those differences spread beyond
 * their noise, a kink (a clamp) lies inside the stencil and the entry is skipped and counted;
 * if they agree, the disagreement stands. */
static double fd_error(objective f, void *ctx, float *x, const float *g, size_t n, int samples, int *skipped,
                       size_t *worst_at) {
    double num = 0.0, den = 0.0, worst = -1.0, xs = 0.0;
    size_t n_fin = 0, big = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            xs += (double)x[i] * x[i], n_fin++;
            if (fabsf(g[i]) > fabsf(g[big])) big = i;
        }
    xs = n_fin ? sqrt(xs / n_fin) : 0.0;
    double h = fd_step * (xs > 0.05 ? xs : 0.05), noise = 1.5 * NOISE * (1.0 + fabs(f(ctx))) / h;
    size_t *nz = malloc((n + 1) * sizeof(size_t)), n_nz = 0;
    for (size_t i = 0; i < n; i++)
        if (g[i] != 0.0f && isfinite(x[i])) nz[n_nz++] = i;
    int count = (size_t)samples >= n ? (int)n : samples;
    for (int s = 0; s < count; s++) {
        size_t i = (size_t)samples >= n ? (size_t)s
                   : s == 0                  ? big
                   : (s % 2 == 1 && n_nz)    ? nz[(size_t)(urand() * n_nz) % n_nz]
                                             : (size_t)(urand() * n) % n;
        if (!isfinite(x[i])) continue;
        double fd = stencil(f, ctx, x + i, x[i], h), d = fabs(fd - g[i]);
        if (d > 3 * noise && d > TOL * fabs(g[i])) {
            double fd2 = stencil(f, ctx, x + i, x[i], h / 2), fd4 = stencil(f, ctx, x + i, x[i], h / 4);
            double spread = fmax(fabs(fd - fd2), fmax(fabs(fd2 - fd4), fabs(fd - fd4)));
            if (spread > 12 * noise) {
                ++*skipped;
                continue;
            }
        }
        double e = fmax(0.0, d - 3 * noise);
        num += e * e;
        den += (double)g[i] * g[i];
        if (e > worst) {
            worst = e;
            *worst_at = i;
        }
    }
    free(nz);
    return num == 0.0 ? 0.0 : den > 0 ? sqrt(num / den) : INFINITY;
}

static int n_checks_run;

/* Check g against finite differences of f along x; with `control`, also that the check fails
 * for a gradient whose largest entry is 20 % off. */
static void check_grad_opt(const char *what, objective f, void *ctx, float *x, const float *g, size_t n, int samples,
                           bool control) {
    int skipped = 0;
    size_t at = 0;
    samples = samples / THIN > 1 ? samples / THIN : 1;
    double err = fd_error(f, ctx, x, g, n, samples, &skipped, &at);
    int count = (size_t)samples >= n ? (int)n : samples;
    n_checks_run++;
    CHECK(err <= TOL, "%s: gradient vs finite differences: relative error %.3g (worst entry %zu, g = %.6g)", what, err, at,
          g[at]);
    CHECK(2 * skipped <= count, "%s: %d of %d samples unstable (kinks)", what, skipped, count);
    if (!control) return;
    size_t big = n;
    double xs = 0.0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            xs = fmax(xs, fabsf(x[i]));
            if (big == n || fabsf(g[i]) > fabsf(g[big])) big = i;
        }
    if (big == n || g[big] == 0.0f) return; /* all zero: compared with zero differences above */
    double fd = stencil(f, ctx, x + big, x[big], fd_step * (xs > 0.05 ? xs : 0.05));
    double wrong = 1.2 * g[big], e = fabs(fd - wrong) / fabs(wrong);
    CHECK(e > TOL, "%s: a 20%% error in entry %zu went unnoticed (error %.3g)", what, big, e);
}

static void check_grad(const char *what, objective f, void *ctx, float *x, const float *g, size_t n, int samples) {
    check_grad_opt(what, f, ctx, x, g, n, samples, true);
}

/* ---- the tiny model ---------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Random weights with the reference tiny model's recipe. */
static void init_weights(dsv4_tmodel *tm) {
    for (int i = 0; i < tm->n_table; i++) {
        const dsv4_tparam *p = &tm->table[i];
        float *x = tm->params + p->off;
        const char *nm = p->name;
        if (strstr(nm, "norm")) fill(x, p->n, 1.0f, 0.1f);
        else if (ends_with(nm, "_fn")) fill(x, p->n, 0.0f, 1.0f / sqrtf((float)p->shape[1]));
        else if (ends_with(nm, "_base")) fill(x, p->n, 0.0f, 0.5f);
        else if (ends_with(nm, "_scale"))
            for (size_t j = 0; j < p->n; j++) x[j] = 0.5f + (float)urand();
        else if (ends_with(nm, "attn_sink")) fill(x, p->n, 0.0f, 1.0f);
        else if (ends_with(nm, ".ape")) fill(x, p->n, 0.0f, 0.5f);
        else if (ends_with(nm, "gate.bias")) fill(x, p->n, 0.0f, 0.1f);
        else if (!strcmp(nm, "embed.weight")) fill(x, p->n, 0.0f, 1.0f);
        else fill(x, p->n, 0.0f, 1.0f / sqrtf((float)p->shape[1]));
    }
}

static int32_t ids[T];

/* Check every parameter tensor whose name starts with `prefix` (and does not contain
 * `skip`), against f. */
static void check_params(dsv4_tmodel *tm, const char *prefix, const char *skip, objective f, void *ctx, int samples) {
    for (int i = 0; i < tm->n_table; i++) {
        const dsv4_tparam *p = &tm->table[i];
        if (strncmp(p->name, prefix, strlen(prefix)) || (skip && strstr(p->name, skip))) continue;
        check_grad(p->name, f, ctx, tm->params + p->off, tm->grads + p->off, p->n, samples);
    }
}

/* ---- single operations ------------------------------------------------------------------- */

typedef struct {
    float *x, *w, *c, *y;
    int n;
} norm_ctx;
static double norm_f(void *p) {
    norm_ctx *k = p;
    dsv4_rmsnorm(k->x, k->w, k->n, 1e-6f, k->y);
    return dot(k->c, k->y, (size_t)k->n);
}
static void test_rmsnorm(void) {
    int n = 24;
    norm_ctx k = {rand_vec(n, 1.0f), rand_vec(n, 1.0f), rand_vec(n, 1.0f), rand_vec(n, 1.0f), n};
    float *dx = calloc(n, sizeof(float)), *dw = calloc(n, sizeof(float));
    dsv4_rmsnorm_backward(k.x, k.w, n, 1e-6f, k.c, dx, dw);
    check_grad("rmsnorm x", norm_f, &k, k.x, dx, n, n);
    check_grad("rmsnorm w", norm_f, &k, k.w, dw, n, n);
    float *dx0 = calloc(n, sizeof(float));
    free(k.w);
    k.w = NULL; /* unweighted (the per-head query norm) */
    dsv4_rmsnorm_backward(k.x, NULL, n, 1e-6f, k.c, dx0, NULL);
    check_grad("rmsnorm x (no weight)", norm_f, &k, k.x, dx0, n, n);
    free(k.x), free(k.c), free(k.y), free(dx), free(dw), free(dx0);
}

typedef struct {
    dsv4_linear L;
    float *x, *c, *y;
    int n;
} lin_ctx;
static double lin_f(void *p) {
    lin_ctx *k = p;
    dsv4_matmul(&k->L, k->x, k->n, k->y);
    return dot(k->c, k->y, (size_t)k->n * k->L.rows);
}
static void test_matmul(void) {
    int rows = 7, cols = 13, n = 6;
    float *w = rand_vec((size_t)rows * cols, 0.3f), *gw = calloc((size_t)rows * cols, sizeof(float));
    lin_ctx k = {{.fmt = DSV4_W_F32, .rows = rows, .cols = cols, .w = w}, rand_vec((size_t)n * cols, 1.0f),
                 rand_vec((size_t)n * rows, 1.0f), rand_vec((size_t)n * rows, 1.0f), n};
    dsv4_linear gL = k.L;
    gL.w = gw;
    float *dx = calloc((size_t)n * cols, sizeof(float));
    dsv4_matmul_backward(&k.L, k.x, n, k.c, dx, &gL);
    check_grad("matmul x", lin_f, &k, k.x, dx, (size_t)n * cols, 40);
    check_grad("matmul W", lin_f, &k, w, gw, (size_t)rows * cols, 40);
    free(w), free(gw), free(k.x), free(k.c), free(k.y), free(dx);
}

typedef struct {
    float *logits;
    int V, target;
} ce_ctx;
static double ce_f(void *p) {
    ce_ctx *k = p;
    return dsv4_cross_entropy(k->logits, k->V, k->target, 0.0f, NULL);
}
static void test_cross_entropy(void) {
    ce_ctx k = {rand_vec(20, 2.0f), 20, 7};
    float *d = calloc(20, sizeof(float));
    dsv4_cross_entropy(k.logits, k.V, k.target, 1.0f, d);
    check_grad("cross-entropy", ce_f, &k, k.logits, d, 20, 20);
    free(k.logits), free(d);
}

/* mHC on one site of layer 1 of the tiny model */
typedef struct {
    const struct dsv4_config *c;
    const dsv4_hc_w *w;
    float *X, *ca, *cp, *cc, *a, *post, *comb, *mixes, *v, *Y;
    int n;
} hc_ctx;
static double hc_pre_f(void *p) {
    hc_ctx *k = p;
    int hc = k->c->hc_mult, d = k->c->dim;
    dsv4_hc_pre(k->w, k->X, k->n, hc, d, k->c->norm_eps, k->c->hc_sinkhorn_iters, k->c->hc_eps, k->a, k->post, k->comb,
                k->mixes);
    return dot(k->ca, k->a, (size_t)k->n * d) + dot(k->cp, k->post, (size_t)k->n * hc) +
           dot(k->cc, k->comb, (size_t)k->n * hc * hc);
}
static double hc_post_f(void *p) {
    hc_ctx *k = p;
    int hc = k->c->hc_mult, d = k->c->dim;
    dsv4_hc_post(k->v, k->X, k->post, k->comb, k->n, hc, d, k->Y);
    return dot(k->ca, k->Y, (size_t)k->n * hc * d);
}
static double hc_head_f(void *p) {
    hc_ctx *k = p;
    int hc = k->c->hc_mult, d = k->c->dim;
    dsv4_hc_head(k->w, k->X, k->n, hc, d, k->c->norm_eps, k->c->hc_eps, k->a, k->mixes);
    return dot(k->ca, k->a, (size_t)k->n * d);
}

typedef struct {
    float *mixes, *scale, *base, *c, pre[8], post[8], comb[64];
    int hc, iters;
} sk_ctx;
static double sinkhorn_f(void *p) {
    sk_ctx *k = p;
    int hc = k->hc;
    dsv4_hc_split_sinkhorn(k->mixes, k->scale, k->base, hc, k->iters, 1e-6f, k->pre, k->post, k->comb);
    return dot(k->c, k->pre, (size_t)hc) + dot(k->c + hc, k->post, (size_t)hc) + dot(k->c + 2 * hc, k->comb, (size_t)hc * hc);
}

static void test_mhc(dsv4_tmodel *tm) {
    const struct dsv4_config *c = &tm->model.cfg;
    int hc = c->hc_mult, d = c->dim, mix = (2 + hc) * hc, n = 5;
    /* the Sinkhorn split alone */
    sk_ctx s = {rand_vec(mix, 1.0f), rand_vec(3, 1.0f), rand_vec(mix, 1.0f), rand_vec(mix, 1.0f), {0}, {0}, {0}, hc, 20};
    float dm[64];
    double dsc[3] = {0}, dba[64] = {0};
    dsv4_hc_split_sinkhorn_backward(s.mixes, s.scale, s.base, hc, 20, 1e-6f, s.c, s.c + hc, s.c + 2 * hc, dm, dsc, dba);
    float dscf[3], dbaf[64];
    for (int i = 0; i < 3; i++) dscf[i] = (float)dsc[i];
    for (int i = 0; i < mix; i++) dbaf[i] = (float)dba[i];
    check_grad("sinkhorn mixes", sinkhorn_f, &s, s.mixes, dm, (size_t)mix, mix);
    check_grad("sinkhorn scale", sinkhorn_f, &s, s.scale, dscf, 3, 3);
    check_grad("sinkhorn base", sinkhorn_f, &s, s.base, dbaf, (size_t)mix, mix);
    free(s.mixes), free(s.scale), free(s.base), free(s.c);

    /* hc_pre / hc_post / hc_head with the model's parameters */
    const dsv4_hc_w *w = &tm->model.layers[1].hc_attn, *gw = &tm->grad.layers[1].hc_attn;
    hc_ctx k = {c, w, rand_vec((size_t)n * hc * d, 1.0f), rand_vec((size_t)n * hc * d, 1.0f), rand_vec((size_t)n * hc, 1.0f),
                rand_vec((size_t)n * hc * hc, 1.0f), calloc((size_t)n * d, 4), calloc((size_t)n * hc, 4),
                calloc((size_t)n * hc * hc, 4), calloc((size_t)n * mix, 4), rand_vec((size_t)n * d, 1.0f),
                calloc((size_t)n * hc * d, 4), n};
    float *dX = calloc((size_t)n * hc * d, 4);
    dsv4_tmodel_zero_grad(tm);
    hc_pre_f(&k);
    dsv4_hc_pre_backward(w, k.X, n, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, k.mixes, k.ca, k.cp, k.cc, dX, gw);
    check_grad("hc_pre X", hc_pre_f, &k, k.X, dX, (size_t)n * hc * d, 40);
    check_params(tm, "layers.1.hc_attn_", NULL, hc_pre_f, &k, 40);

    /* hc_post: v, R (= X), post, comb */
    float *dv = calloc((size_t)n * d, 4), *dR = calloc((size_t)n * hc * d, 4);
    float *dpost = calloc((size_t)n * hc, 4), *dcomb = calloc((size_t)n * hc * hc, 4);
    hc_pre_f(&k); /* post, comb */
    float *ca = k.ca;
    k.ca = rand_vec((size_t)n * hc * d, 1.0f);
    dsv4_hc_post_backward(k.v, k.X, k.post, k.comb, n, hc, d, k.ca, dv, dR, dpost, dcomb);
    check_grad("hc_post v", hc_post_f, &k, k.v, dv, (size_t)n * d, 30);
    check_grad("hc_post R", hc_post_f, &k, k.X, dR, (size_t)n * hc * d, 30);
    check_grad("hc_post post", hc_post_f, &k, k.post, dpost, (size_t)n * hc, 20);
    check_grad("hc_post comb", hc_post_f, &k, k.comb, dcomb, (size_t)n * hc * hc, 40);
    free(k.ca);
    k.ca = ca;

    /* hc_head */
    k.w = &tm->model.hc_head;
    memset(dX, 0, (size_t)n * hc * d * 4);
    dsv4_tmodel_zero_grad(tm);
    hc_head_f(&k);
    dsv4_hc_head_backward(k.w, k.X, n, hc, d, c->norm_eps, c->hc_eps, k.mixes, k.ca, dX, &tm->grad.hc_head);
    check_grad("hc_head X", hc_head_f, &k, k.X, dX, (size_t)n * hc * d, 40);
    check_params(tm, "hc_head_", NULL, hc_head_f, &k, 20);
    free(k.X), free(k.ca), free(k.cp), free(k.cc), free(k.a), free(k.post), free(k.comb), free(k.mixes), free(k.v), free(k.Y);
    free(dX), free(dv), free(dR), free(dpost), free(dcomb);
}

/* ---- the compressor ------------------------------------------------------------------------ */

typedef struct {
    const dsv4_compressor_w *w;
    float *kv, *score, *c, *out;
} pool_ctx;
static double pool_f(void *p) {
    pool_ctx *k = p;
    dsv4_compressor_pool(k->w, k->kv, k->score, k->out);
    return dot(k->c, k->out, (size_t)k->w->dc);
}

typedef struct {
    dsv4_tmodel *tm;
    const dsv4_compressor_w *w;
    const dsv4_rope *rope;
    float *u, *c;
    dsv4_comp_act act;
    dsv4_workspace ws;
} comp_ctx;
static double comp_f(void *p) {
    comp_ctx *k = p;
    dsv4_ws_reset(&k->ws);
    dsv4_compressor_train_forward(&k->tm->model, k->w, k->rope, k->u, T, &k->act, &k->ws);
    return dot(k->c, k->act.rows, (size_t)k->act.n_rows * k->w->dc);
}

static void test_compressor(dsv4_tmodel *tm) {
    /* pooling alone, both layouts; with overlap, window 0 (empty previous slots) and a later one */
    for (int layer = 1; layer <= 2; layer++)
        for (int first = 0; first <= (layer == 1); first++) {
            const dsv4_compressor_w *w = &tm->model.layers[layer].attn.comp;
            int width = (w->overlap ? 2 : 1) * w->dc, rows = (w->overlap ? 2 : 1) * w->ratio;
            pool_ctx k = {w, rand_vec((size_t)rows * width, 1.0f), rand_vec((size_t)rows * width, 1.0f),
                          rand_vec((size_t)w->dc, 1.0f), calloc((size_t)w->dc, 4)};
            if (first)
                for (int i = 0; i < w->ratio * width; i++) {
                    k.kv[i] = 0.0f;
                    k.score[i] = -INFINITY;
                }
            float *dkv = calloc((size_t)rows * width, 4), *ds = calloc((size_t)rows * width, 4);
            dsv4_compressor_pool_backward(w, k.kv, k.score, k.c, dkv, ds);
            char what[64];
            snprintf(what, sizeof what, "pool ratio %d%s kv", w->ratio, first ? " (first window)" : "");
            check_grad(what, pool_f, &k, k.kv, dkv, (size_t)rows * width, 60);
            snprintf(what, sizeof what, "pool ratio %d%s score", w->ratio, first ? " (first window)" : "");
            check_grad(what, pool_f, &k, k.score, ds, (size_t)rows * width, 60);
            free(k.kv), free(k.score), free(k.c), free(k.out), free(dkv), free(ds);
        }
    /* whole sequences: CSA main (overlap), HCA (no overlap), CSA indexer (overlap + Hadamard) */
    const char *prefixes[] = {"layers.1.attn.compressor.", "layers.2.attn.compressor.", "layers.1.attn.indexer.compressor."};
    for (int v = 0; v < 3; v++) {
        int layer = v == 1 ? 2 : 1;
        const dsv4_attn_w *aw = &tm->model.layers[layer].attn, *gaw = &tm->grad.layers[layer].attn;
        const dsv4_compressor_w *w = v == 2 ? &aw->indexer.comp : &aw->comp, *gw = v == 2 ? &gaw->indexer.comp : &gaw->comp;
        int d = tm->model.cfg.dim;
        comp_ctx k = {tm, w, aw->rope, rand_vec((size_t)T * d, 1.0f), rand_vec((size_t)T * w->dc, 1.0f), {0}, {0}};
        float *du = calloc((size_t)T * d, 4);
        dsv4_tmodel_zero_grad(tm);
        comp_f(&k);
        dsv4_compressor_train_backward(&tm->model, w, aw->rope, k.u, T, &k.act, k.c, du, gw);
        char what[96];
        snprintf(what, sizeof what, "%su", prefixes[v]);
        check_grad(what, comp_f, &k, k.u, du, (size_t)T * d, 40);
        check_params(tm, prefixes[v], NULL, comp_f, &k, 30);
        dsv4_ws_free(&k.ws);
        free(k.u), free(k.c), free(du);
    }
}

/* ---- attention and the indexer loss --------------------------------------------------------- */

typedef struct {
    dsv4_tmodel *tm;
    int layer;
    bool reuse, idx_loss;
    float *u, *c, *out;
    dsv4_attn_act act;
    dsv4_workspace ws;
} attn_ctx;
static double attn_f(void *p) {
    attn_ctx *k = p;
    const dsv4_attn_w *aw = &k->tm->model.layers[k->layer].attn;
    dsv4_ws_reset(&k->ws);
    dsv4_attention_train_forward(&k->tm->model, aw, k->u, T, k->out, &k->act, k->reuse, k->idx_loss, &k->ws);
    if (k->idx_loss) {
        int n = 0;
        return dsv4_indexer_loss(&k->tm->model, aw, T, &k->act, &n) / n;
    }
    return dot(k->c, k->out, (size_t)T * k->tm->model.cfg.dim);
}

static void test_attention(dsv4_tmodel *tm) {
    const struct dsv4_config *c = &tm->model.cfg;
    int d = c->dim, topk = c->index_topk;
    for (int layer = 0; layer <= 2; layer++) { /* window only, CSA, HCA */
        const dsv4_attn_w *aw = &tm->model.layers[layer].attn;
        attn_ctx k = {tm, layer, false, false, rand_vec((size_t)T * d, 1.0f), rand_vec((size_t)T * d, 1.0f),
                      calloc((size_t)T * d, 4), {0}, {0}};
        k.act.sel = malloc((size_t)T * topk * sizeof(int));
        k.act.n_sel = calloc(T, sizeof(int));
        attn_f(&k); /* choose the indexer's rows once */
        k.reuse = true;
        if (layer == 1) {
            int pruned = 0;
            for (int t = 0; t < T; t++) pruned += (t + 1) / 4 > k.act.n_sel[t];
            CHECK(pruned > 0, "the CSA layer's indexer should prune some queries");
        }
        float *du = calloc((size_t)T * d, 4);
        dsv4_tmodel_zero_grad(tm);
        attn_f(&k);
        dsv4_attention_train_backward(&tm->model, aw, k.u, T, &k.act, k.c, du, &tm->grad.layers[layer].attn);
        char what[64], prefix[64];
        snprintf(what, sizeof what, "attention layer %d u", layer);
        check_grad(what, attn_f, &k, k.u, du, (size_t)T * d, 40);
        snprintf(prefix, sizeof prefix, "layers.%d.attn.", layer);
        check_params(tm, prefix, ".indexer.", attn_f, &k, 24);
        if (layer == 1) { /* the indexer's KL loss, into the indexer's parameters only */
            k.idx_loss = true;
            dsv4_tmodel_zero_grad(tm);
            int n = 0;
            attn_f(&k);
            dsv4_indexer_loss(&tm->model, aw, T, &k.act, &n);
            CHECK(n > 0, "the indexer loss has terms");
            dsv4_indexer_loss_backward(&tm->model, aw, k.u, T, &k.act, 1.0f / (float)n, &tm->grad.layers[1].attn);
            fd_step = STEP / 10; /* a perturbed key moves every score through a ReLU */
            check_params(tm, "layers.1.attn.indexer.", NULL, attn_f, &k, 24);
            fd_step = STEP;
        }
        dsv4_ws_free(&k.ws);
        free(k.act.sel), free(k.act.n_sel), free(k.u), free(k.c), free(k.out), free(du);
    }
}

/* ---- MoE ------------------------------------------------------------------------------------- */

typedef struct {
    dsv4_tmodel *tm;
    int layer;
    bool reuse;
    float *u, *c, *out;
    dsv4_moe_act act;
    dsv4_workspace ws;
} moe_ctx;
static double moe_f(void *p) {
    moe_ctx *k = p;
    dsv4_ws_reset(&k->ws);
    dsv4_moe_train_forward(&k->tm->model, &k->tm->model.layers[k->layer].moe, k->u, ids, T, k->out, &k->act, k->reuse,
                           &k->ws);
    return dot(k->c, k->out, (size_t)T * k->tm->model.cfg.dim);
}

static void test_moe(dsv4_tmodel *tm) {
    struct dsv4_config *c = &tm->model.cfg;
    int d = c->dim, K = c->n_activated_experts, E = c->n_routed_experts;
    dsv4_score_func funcs[] = {DSV4_SCORE_SQRTSOFTPLUS, DSV4_SCORE_SIGMOID, DSV4_SCORE_SOFTMAX};
    const char *fname[] = {"sqrtsoftplus", "sigmoid", "softmax"};
    float limit = c->swiglu_limit;
    c->swiglu_limit = 1.5f; /* low enough that the clamps fire */
    for (int v = 0; v < 4; v++) { /* hash layer 0, then layer 1 under each scoring function */
        int layer = v == 0 ? 0 : 1;
        c->score_func = funcs[v == 0 ? 0 : v - 1];
        moe_ctx k = {tm, layer, false, rand_vec((size_t)T * d, 1.0f), rand_vec((size_t)T * d, 1.0f), calloc((size_t)T * d, 4),
                     {0}, {0}};
        k.act.idx = malloc((size_t)T * K * sizeof(int));
        k.act.slot = malloc((size_t)T * K * sizeof(int));
        k.act.start = malloc((size_t)(E + 1) * sizeof(int));
        moe_f(&k);
        k.reuse = true;
        float *du = calloc((size_t)T * d, 4);
        dsv4_tmodel_zero_grad(tm);
        moe_f(&k);
        dsv4_moe_train_backward(&tm->model, &tm->model.layers[layer].moe, k.u, T, &k.act, k.c, du, &tm->grad.layers[layer].moe);
        char what[64], prefix[64];
        snprintf(what, sizeof what, "MoE layer %d (%s) u", layer, v == 0 ? "hash" : fname[v - 1]);
        check_grad(what, moe_f, &k, k.u, du, (size_t)T * d, 40);
        snprintf(prefix, sizeof prefix, "layers.%d.ffn.", layer);
        check_params(tm, prefix, NULL, moe_f, &k, 24);
        dsv4_ws_free(&k.ws);
        free(k.act.idx), free(k.act.slot), free(k.act.start), free(k.u), free(k.c), free(k.out), free(du);
    }
    c->score_func = DSV4_SCORE_SQRTSOFTPLUS;
    c->swiglu_limit = limit;
}

/* ---- the whole model ------------------------------------------------------------------------- */

typedef struct {
    dsv4_tmodel *tm;
    dsv4_tape *tp;
    dsv4_loss_opts lo;
} model_ctx;
static double model_f(void *p) {
    model_ctx *k = p;
    dsv4_losses l;
    if (dsv4_train_forward(k->tm, k->tp, ids, T, &k->lo, &l)) return NAN;
    return k->lo.main * l.main + k->lo.mtp * l.mtp + k->lo.indexer * l.indexer + k->lo.balance * l.balance;
}

static void test_model(dsv4_tmodel *tm) {
    dsv4_tape *tp = dsv4_tape_new();
    const char *names[] = {"L", "L_mtp", "L_indexer", "masked L + L_bal"};
    char last_layer[32];
    snprintf(last_layer, sizeof last_layer, "layers.%d.", tm->model.cfg.n_layers - 1);
    /* the fourth: L over the targets of a loss mask, plus the sequence-wise balance loss */
    uint8_t mask[T];
    for (int t = 0; t < T; t++) mask[t] = t % 3 != 1;
    dsv4_loss_opts los[] = {{.main = 1}, {.mtp = 1}, {.indexer = 1}, {.main = 1, .balance = 1, .mask = mask}};
    for (int v = 0; v < 4; v++) {
        model_ctx k = {tm, tp, los[v]};
        tp->reuse_routing = true;
        dsv4_tmodel_zero_grad(tm);
        double f0 = model_f(&k);
        CHECK(isfinite(f0) && f0 > 0, "%s = %g", names[v], f0);
        CHECK(dsv4_train_backward(tm, tp) == DSV4_OK, "backward: %s", dsv4_errmsg());
        printf("whole model, %s = %.6f\n", names[v], f0);
        int before = check_failures;
        for (int i = 0; i < tm->n_table; i++) {
            const dsv4_tparam *p = &tm->table[i];
            char what[160];
            snprintf(what, sizeof what, "%s: %s", names[v], p->name);
            bool indexer = strstr(p->name, ".indexer.") != NULL;
            /* what gets no gradient: gate.bias (selection only); the indexer from L and L_mtp
             * (its choice is not differentiable); the main head from L_mtp; MTP from L; and
             * everything but the indexer from its own loss (the attention target is detached) */
            bool zero = strstr(p->name, "gate.bias") || ((v < 2 || v == 3) && indexer) ||
                        ((v == 0 || v == 3) && !strncmp(p->name, "mtp.", 4)) ||
                        (v == 1 && (!strncmp(p->name, "hc_head", 7) || !strcmp(p->name, "norm.weight"))) ||
                        (v == 2 && !indexer);
            if (zero) {
                size_t j = 0;
                while (j < p->n && tm->grads[p->off + j] == 0.0f) j++;
                CHECK(j == p->n, "%s: gradient should be exactly zero", what);
                continue;
            }
            /* L_mtp reaches the main model only through the final streams: the MTP block, the
             * shared tables and the first and last layers show that path */
            bool mtp_path = !strncmp(p->name, "mtp.", 4) || strstr(p->name, "embed") || strstr(p->name, "head.") ||
                            !strncmp(p->name, "layers.0.", 9) || !strncmp(p->name, last_layer, strlen(last_layer));
            if ((v == 1 && !mtp_path) || i % THIN) continue;
            if (v == 2) fd_step = STEP / 10; /* the indexer's ReLU */
            check_grad_opt(what, model_f, &k, tm->params + p->off, tm->grads + p->off, p->n, 1, false);
            fd_step = STEP;
        }
        CHECK(check_failures == before, "%s: the whole-model check failed", names[v]);
    }
    dsv4_tape_free(tp);
}

int main(void) {
    struct dsv4_config cfg;
    if (dsv4_config_parse(TINY_CONFIG, "tiny config", &cfg)) {
        fprintf(stderr, "%s\n", dsv4_errmsg());
        return 1;
    }
    dsv4_tmodel *tm;
    if (dsv4_tmodel_new(&cfg, &tm)) {
        fprintf(stderr, "%s\n", dsv4_errmsg());
        return 1;
    }
    init_weights(tm);
    dsv4_set_threads(1); /* tiny shapes: threads would only add synchronisation */
    for (int t = 0; t < T; t++) ids[t] = (int32_t)(urand() * cfg.vocab_size) % cfg.vocab_size;

    double t0 = dsv4_now();
    test_rmsnorm();
    test_matmul();
    test_cross_entropy();
    test_mhc(tm);
    double t1 = dsv4_now();
    test_compressor(tm);
    double t2 = dsv4_now();
    test_attention(tm);
    double t3 = dsv4_now();
    test_moe(tm);
    double t4 = dsv4_now();
    test_model(tm);
    double t5 = dsv4_now();
    printf("seconds: ops and mHC %.2f, compressor %.2f, attention %.2f, MoE %.2f, whole model %.2f\n", t1 - t0, t2 - t1,
           t3 - t2, t4 - t3, t5 - t4);
    printf("%d gradient checks\n", n_checks_run);
    dsv4_tmodel_free(tm);
    return check_done("test_grad_fd");
}
