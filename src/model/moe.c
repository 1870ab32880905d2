/* moe.c: the mixture-of-experts feed-forward block.
 *
 * Router: logits = gate . u in fp32; scores s = sqrt(softplus(logits)) (V4's scoring
 * function; sigmoid and softmax are accepted for other configs). Selection: in the first
 * num_hash_layers layers the experts are a fixed table of the token id (tid2eid); elsewhere the
 * top-k of s + bias, the bias being the auxiliary-loss-free balancing term that steers
 * selection only. Weights: the chosen scores normalised to sum 1, times routed_scaling_factor.
 *
 * Expert (routed and shared): SwiGLU with the V4 clamp, h = silu(min(g, L)) * clamp(p, -L, L)
 * for g = w1 u, p = w3 u, L = swiglu_limit; a routed expert's h is scaled by its routing weight
 * before w2, as the official code does. Output: routed experts summed in ascending expert
 * order (the official loop order), then the shared expert. */
#include <math.h>

#include "base/base.h"
#include "model/forward.h"
#include "numeric/numeric.h"

void dsv4_moe_route(const struct dsv4_config *c, const dsv4_moe_w *w, const float *logits, int32_t token, int *idx,
                    float *weight) {
    /* DSpark layers carry their own expert counts; 0 means the config's */
    int E = w->n_experts ? w->n_experts : c->n_routed_experts, K = w->top_k ? w->top_k : c->n_activated_experts;
    float scores[1024], biased[1024];
    float *s = E <= 1024 ? scores : malloc((size_t)E * sizeof(float));
    float *sb = E <= 1024 ? biased : malloc((size_t)E * sizeof(float));
    if (!s || !sb) { /* E > 1024 and no memory: route to the first experts, evenly */
        for (int k = 0; k < K; k++) {
            idx[k] = k;
            weight[k] = c->route_scale / (float)K;
        }
        if (s != scores) free(s);
        if (sb != biased) free(sb);
        return;
    }
    if (w->gate_temp > 0.0f && w->gate_temp != 1.0f) { /* V4.1's router temperature */
        for (int e = 0; e < E; e++) sb[e] = logits[e] / w->gate_temp; /* sb is free until selection */
        logits = sb;
    }
    if (c->score_func == DSV4_SCORE_SOFTMAX) {
        float mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < E; e++) mx = fmaxf(mx, logits[e]);
        for (int e = 0; e < E; e++) sum += (s[e] = expf(logits[e] - mx));
        for (int e = 0; e < E; e++) s[e] /= sum;
    } else if (c->score_func == DSV4_SCORE_SIGMOID) {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-logits[e]));
    } else {
        for (int e = 0; e < E; e++) s[e] = sqrtf(dsv4_softplus(logits[e]));
    }
    if (w->hash) {
        for (int k = 0; k < K; k++) idx[k] = w->tid2eid[(size_t)token * K + k];
    } else {
        for (int e = 0; e < E; e++) sb[e] = w->bias ? s[e] + w->bias[e] : s[e];
        dsv4_topk(sb, E, K, idx);
    }
    float sum = 0.0f;
    for (int k = 0; k < K; k++) sum += (weight[k] = s[idx[k]]);
    for (int k = 0; k < K; k++) {
        if (c->score_func != DSV4_SCORE_SOFTMAX) weight[k] /= sum;
        weight[k] *= c->route_scale;
    }
    if (s != scores) free(s);
    if (sb != biased) free(sb);
}

/* y[n, dim] = w2(route_w * swiglu(w1 x, w3 x)) for n rows of x (route_w NULL: weight 1). */
static void expert_forward(const struct dsv4_model *m, const dsv4_expert_w *e, const float *x, int n, const float *route_w,
                           float *y, float *xq, float *g, float *p) {
    const struct dsv4_config *c = &m->cfg;
    int dim = c->dim, inter = c->moe_inter_dim;
    float L = c->swiglu_limit;
    /* w1 and w3 read the same (quantised) input: round it once */
    const float *in = x;
    bool quant = m->numerics == DSV4_NUMERICS_DEFAULT && e->w1.act_quant && (e->w1.fmt == DSV4_W_FP8 || e->w1.fmt == DSV4_W_FP4);
    if (quant) {
        memcpy(xq, x, (size_t)n * dim * sizeof(float));
        for (int t = 0; t < n; t++) dsv4_fp8_fake_quant(xq + (size_t)t * dim, dim, e->w1.act_block ? e->w1.act_block : 128);
        in = xq;
    }
    dsv4_matmul(&e->w1, in, n, g);
    dsv4_matmul(&e->w3, in, n, p);
    for (int t = 0; t < n; t++) {
        float *gt = g + (size_t)t * inter, *pt = p + (size_t)t * inter;
        float rw = route_w ? route_w[t] : 1.0f;
        for (int i = 0; i < inter; i++) {
            float gg = gt[i], pp = pt[i];
            if (L > 0) {
                pp = fminf(fmaxf(pp, -L), L);
                gg = fminf(gg, L);
            }
            float h = dsv4_silu(gg) * pp;
            if (route_w) h = rw * h;
            gt[i] = h;
        }
    }
    dsv4_linear_forward(&e->w2, g, n, y, m->numerics, xq);
}

dsv4_status dsv4_moe_forward(const struct dsv4_model *m, const dsv4_moe_w *w, const dsv4_fwd_batch *b, const float *u,
                             float *out, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int N = b->n_rows, dim = c->dim, inter = c->moe_inter_dim;
    int E = w->n_experts ? w->n_experts : c->n_routed_experts, K = w->top_k ? w->top_k : c->n_activated_experts;
    float *logits = dsv4_ws_alloc(ws, (size_t)N * E), *wt = dsv4_ws_alloc(ws, (size_t)N * K);
    float *xe = dsv4_ws_alloc(ws, (size_t)N * dim), *ye = dsv4_ws_alloc(ws, (size_t)N * dim);
    float *xq = dsv4_ws_alloc(ws, (size_t)N * DSV4_MAX(dim, inter));
    float *g = dsv4_ws_alloc(ws, (size_t)N * inter), *p = dsv4_ws_alloc(ws, (size_t)N * inter);
    float *rw = dsv4_ws_alloc(ws, (size_t)N);
    int *idx = malloc((size_t)N * K * sizeof(int)), *rows = malloc((size_t)N * sizeof(int));
    int *count = calloc((size_t)E + 1, sizeof(int));
    if (!logits || !wt || !xe || !ye || !xq || !g || !p || !rw || !idx || !rows || !count) {
        free(idx);
        free(rows);
        free(count);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the MoE block");
    }
    dsv4_matmul(&w->gate, u, N, logits);
    for (int r = 0; r < N; r++) {
        dsv4_moe_route(c, w, logits + (size_t)r * E, b->ids[r], idx + (size_t)r * K, wt + (size_t)r * K);
        for (int k = 0; k < K; k++) count[idx[(size_t)r * K + k]]++;
    }
    memset(out, 0, (size_t)N * dim * sizeof(float));
    for (int e = 0; e < E; e++) {
        if (!count[e]) continue;
        int ne = 0;
        for (int r = 0; r < N; r++)
            for (int k = 0; k < K; k++)
                if (idx[(size_t)r * K + k] == e) {
                    rows[ne] = r;
                    rw[ne] = wt[(size_t)r * K + k];
                    memcpy(xe + (size_t)ne * dim, u + (size_t)r * dim, (size_t)dim * sizeof(float));
                    ne++;
                }
        expert_forward(m, &w->experts[e], xe, ne, rw, ye, xq, g, p);
        for (int i = 0; i < ne; i++) {
            float *o = out + (size_t)rows[i] * dim;
            const float *y = ye + (size_t)i * dim;
            for (int d = 0; d < dim; d++) o[d] += y[d];
        }
    }
    expert_forward(m, &w->shared, u, N, NULL, ye, xq, g, p);
    for (size_t i = 0; i < (size_t)N * dim; i++) out[i] += ye[i];
    free(idx);
    free(rows);
    free(count);
    return DSV4_OK;
}
