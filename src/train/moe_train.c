/* moe_train.c: the MoE block over a whole sequence, and its gradient.
 *
 * Forward as model/moe.c: router logits = gate u; the experts of each token are chosen by
 * dsv4_moe_route (top-k of score + bias, or the token's row of tid2eid in hash layers) and
 * weighted by the chosen scores, normalised and scaled; each routed expert computes
 * w2(weight * silu(min(w1 u, L)) * clamp(w3 u, -L, L)) for its tokens, the shared expert the
 * same without a weight; the outputs add up in ascending expert order, then the shared one.
 *
 * Backward. The selection is a constant; everything else is differentiated:
 *   SwiGLU with the clamp (torch's clamp passes the gradient where the bound is not exceeded:
 *   g <= L for the gate, -L <= p <= L for the up projection): with h = silu(g') p',
 *   dg = dh p' silu'(g') [g <= L],  dp = dh silu(g') [-L <= p <= L],
 *   silu'(x) = sigmoid(x) (1 + x (1 - sigmoid(x)));
 *   the routing weight: dweight = <dh, h>, and dh is scaled by the weight before the SwiGLU;
 *   the router (dsv4_moe_route_backward): weight_k = scale s_k / sum_j s_j over the chosen
 *   experts with s = sqrt(softplus(logit)), so ds_k = scale (dw_k S - sum_j dw_j s_j) / S^2
 *   and dlogit = ds sigmoid(logit) / (2 s) (softplus is the identity above 20, as in torch).
 * gate.bias only steers the choice: it gets no gradient.
 *
 * The sequence-wise balance loss (DeepSeek-V3 eq. 17-20, kept by V4 with a small weight) of a
 * score-routed layer over a sequence of T tokens:
 *   L_bal = sum_i f_i P_i,  f_i = E/(K T) * #{t : i in top-K(s_t)}  (the scores without the bias),
 *                           P_i = 1/T * sum_t s'_it,  s'_t = s_t / sum_j s_jt.
 * f is a count (a constant); through P, with S_t = sum_j s_jt and g_i = f_i / T,
 *   dL/ds_jt = (g_j - sum_i g_i s'_it) / S_t,
 * then through the score function as in the router's backward (softmax scores are already
 * normalised: dL/dlogit_jt = s_jt (g_j - sum_i g_i s_it)). */
#include <math.h>

#include "base/base.h"
#include "model/forward.h"
#include "train/train.h"

/* Scores of all experts from the router logits, as dsv4_moe_route computes them. */
static void route_scores(const struct dsv4_config *c, const float *logits, float *s) {
    int E = c->n_routed_experts;
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
}

/* The routing weights of given experts (dsv4_moe_route's arithmetic, the choice fixed). */
static void route_weights(const struct dsv4_config *c, const float *logits, const int *idx, float *weight, float *s) {
    int K = c->n_activated_experts;
    route_scores(c, logits, s);
    float sum = 0.0f;
    for (int k = 0; k < K; k++) sum += (weight[k] = s[idx[k]]);
    for (int k = 0; k < K; k++) {
        if (c->score_func != DSV4_SCORE_SOFTMAX) weight[k] /= sum;
        weight[k] *= c->route_scale;
    }
}

void dsv4_moe_route_backward(const struct dsv4_config *c, const dsv4_moe_w *w, const float *logits, int32_t token,
                             const int *idx, const float *weight, const float *dweight, float *dlogits) {
    int E = c->n_routed_experts, K = c->n_activated_experts;
    float s_stack[1024], *s = E <= 1024 ? s_stack : malloc((size_t)E * sizeof(float));
    if (!s) return; /* E > 1024 experts and no memory for E floats */
    route_scores(c, logits, s);
    float rs = c->route_scale;
    if (c->score_func == DSV4_SCORE_SOFTMAX) {
        /* weight_k = rs s_k with s the softmax over all experts */
        double dot = 0.0;
        for (int k = 0; k < K; k++) dot += (double)rs * dweight[k] * s[idx[k]];
        for (int e = 0; e < E; e++) dlogits[e] -= (float)(s[e] * dot);
        for (int k = 0; k < K; k++) dlogits[idx[k]] += rs * dweight[k] * s[idx[k]];
    } else {
        double S = 0.0, A = 0.0;
        for (int k = 0; k < K; k++) {
            S += s[idx[k]];
            A += (double)dweight[k] * s[idx[k]];
        }
        if (!(S > 0.0)) S = 1e-30; /* every chosen score zero: no gradient flows anyway */
        for (int k = 0; k < K; k++) {
            int e = idx[k];
            double ds = rs * ((double)dweight[k] * S - A) / (S * S);
            double l = logits[e], de;
            if (c->score_func == DSV4_SCORE_SIGMOID) de = ds * s[e] * (1.0 - s[e]);
            else if (s[e] > 0.0f) de = ds * (l > 20.0 ? 1.0 : 1.0 / (1.0 + exp(-l))) / (2.0 * s[e]);
            else de = 0.0; /* softplus underflowed: the score is flat at zero */
            dlogits[e] += (float)de;
        }
    }
    if (s != s_stack) free(s);
}

double dsv4_moe_balance_loss(const struct dsv4_config *c, int T, const float *logits, float scale, float *dlogits) {
    int E = c->n_routed_experts, K = c->n_activated_experts;
    if (T <= 0) return 0.0;
    double *f = calloc((size_t)E, sizeof(double)), *P = calloc((size_t)E, sizeof(double));
    float *s = malloc((size_t)E * sizeof(float));
    int *top = malloc((size_t)K * sizeof(int));
    if (!f || !P || !s || !top) { /* no memory for E numbers: no balance term this step */
        free(f), free(P), free(s), free(top);
        return 0.0;
    }
    for (int t = 0; t < T; t++) {
        route_scores(c, logits + (size_t)t * E, s);
        int n = dsv4_topk(s, E, K, top);
        for (int k = 0; k < n; k++) f[top[k]] += (double)E / ((double)K * T);
        double S = 0.0;
        for (int e = 0; e < E; e++) S += s[e];
        if (S > 0.0)
            for (int e = 0; e < E; e++) P[e] += s[e] / S / T;
    }
    double loss = 0.0;
    for (int e = 0; e < E; e++) loss += f[e] * P[e];
    if (dlogits)
        for (int t = 0; t < T; t++) {
            const float *lt = logits + (size_t)t * E;
            float *dl = dlogits + (size_t)t * E;
            route_scores(c, lt, s);
            double S = 0.0, gs = 0.0;
            for (int e = 0; e < E; e++) S += s[e];
            if (!(S > 0.0)) continue;
            for (int e = 0; e < E; e++) gs += f[e] / T * s[e] / S;
            for (int e = 0; e < E; e++) {
                double ds = (f[e] / T - gs) / S, de;
                if (c->score_func == DSV4_SCORE_SOFTMAX) de = s[e] * (f[e] / T - gs);
                else if (c->score_func == DSV4_SCORE_SIGMOID) de = ds * s[e] * (1.0 - s[e]);
                else if (s[e] > 0.0f) de = ds * (lt[e] > 20.0f ? 1.0 : 1.0 / (1.0 + exp(-(double)lt[e]))) / (2.0 * s[e]);
                else de = 0.0;
                dl[e] += (float)(scale * de);
            }
        }
    free(f), free(P), free(s), free(top);
    return loss;
}

/* h = [weight *] silu(min(g, L)) * clamp(p, -L, L) for n rows of inter values */
static void swiglu(const float *g, const float *p, int n, int inter, float L, const float *weight, float *h) {
    for (int t = 0; t < n; t++) {
        float rw = weight ? weight[t] : 1.0f;
        for (int i = 0; i < inter; i++) {
            size_t o = (size_t)t * inter + i;
            float gg = g[o], pp = p[o];
            if (L > 0) {
                pp = fminf(fmaxf(pp, -L), L);
                gg = fminf(gg, L);
            }
            float v = dsv4_silu(gg) * pp;
            if (weight) v = rw * v;
            h[o] = v;
        }
    }
}

/* dh (gradient of swiglu's output) -> dg, dp (written) and dweight (written, if weight) */
static void swiglu_backward(const float *g, const float *p, int n, int inter, float L, const float *weight,
                            const float *dh, float *dg, float *dp, float *dweight) {
    for (int t = 0; t < n; t++) {
        float rw = weight ? weight[t] : 1.0f;
        double dwt = 0.0;
        for (int i = 0; i < inter; i++) {
            size_t o = (size_t)t * inter + i;
            float gg = g[o], pp = p[o];
            bool g_pass = true, p_pass = true;
            if (L > 0) {
                p_pass = pp >= -L && pp <= L;
                g_pass = gg <= L;
                pp = fminf(fmaxf(pp, -L), L);
                gg = fminf(gg, L);
            }
            float sg = dsv4_sigmoid(gg), silu = gg * sg;
            dwt += (double)dh[o] * (silu * pp);
            float d = rw * dh[o];
            dg[o] = g_pass ? d * pp * sg * (1.0f + gg * (1.0f - sg)) : 0.0f;
            dp[o] = p_pass ? d * silu : 0.0f;
        }
        if (dweight) dweight[t] = (float)dwt;
    }
}

dsv4_status dsv4_moe_train_forward(const struct dsv4_model *m, const dsv4_moe_w *w, const float *u, const int32_t *ids,
                                   int T, float *out, dsv4_moe_act *act, bool reuse_sel, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int E = c->n_routed_experts, K = c->n_activated_experts, dim = c->dim, inter = c->moe_inter_dim;
    float L = c->swiglu_limit;
    act->logits = dsv4_ws_alloc(ws, (size_t)T * E);
    act->weight = dsv4_ws_alloc(ws, (size_t)T * K);
    act->g = dsv4_ws_alloc(ws, (size_t)T * K * inter);
    act->p = dsv4_ws_alloc(ws, (size_t)T * K * inter);
    act->sg = dsv4_ws_alloc(ws, (size_t)T * inter);
    act->sp = dsv4_ws_alloc(ws, (size_t)T * inter);
    /* scratch: an expert sees at most T*K rows (a hash table may repeat an expert in a token) */
    size_t rows = (size_t)T * K;
    float *xe = malloc((rows * dim + 1) * sizeof(float)), *ye = malloc((rows * dim + 1) * sizeof(float));
    float *h = malloc((rows * inter + 1) * sizeof(float)), *rw = malloc((rows + 1) * sizeof(float));
    float *s = malloc(((size_t)E + 1) * sizeof(float));
    int *fill = malloc((size_t)(E + 1) * sizeof(int));
    dsv4_status rc = DSV4_OK;
    if (!act->logits || !act->weight || !act->g || !act->p || !act->sg || !act->sp || !xe || !ye || !h || !rw || !s ||
        !fill) {
        rc = dsv4_error(DSV4_ENOMEM, "out of memory in the MoE forward (%d tokens)", T);
        goto done;
    }

    dsv4_train_matmul(&w->gate, u, T, act->logits);
    for (int t = 0; t < T; t++) {
        const float *lt = act->logits + (size_t)t * E;
        int *idx = act->idx + (size_t)t * K;
        float *wt = act->weight + (size_t)t * K;
        if (reuse_sel) route_weights(c, lt, idx, wt, s);
        else dsv4_moe_route(c, w, lt, ids[t], idx, wt);
    }
    /* group the (token, k) slots by expert (a counting sort: tokens stay in order) */
    memset(act->start, 0, (size_t)(E + 1) * sizeof(int));
    for (int i = 0; i < T * K; i++) act->start[act->idx[i] + 1]++;
    for (int e = 0; e < E; e++) act->start[e + 1] += act->start[e];
    memcpy(fill, act->start, (size_t)(E + 1) * sizeof(int));
    for (int i = 0; i < T * K; i++) act->slot[fill[act->idx[i]]++] = i;

    memset(out, 0, (size_t)T * dim * sizeof(float));
    for (int e = 0; e < E; e++) {
        int s0 = act->start[e], ne = act->start[e + 1] - s0;
        if (!ne) continue;
        const dsv4_expert_w *ex = &w->experts[e];
        for (int i = 0; i < ne; i++) {
            int sl = act->slot[s0 + i];
            rw[i] = act->weight[sl];
            memcpy(xe + (size_t)i * dim, u + (size_t)(sl / K) * dim, (size_t)dim * sizeof(float));
        }
        float *g = act->g + (size_t)s0 * inter, *p = act->p + (size_t)s0 * inter;
        dsv4_train_matmul(&ex->w1, xe, ne, g);
        dsv4_train_matmul(&ex->w3, xe, ne, p);
        swiglu(g, p, ne, inter, L, rw, h);
        dsv4_train_matmul(&ex->w2, h, ne, ye);
        for (int i = 0; i < ne; i++) {
            float *o = out + (size_t)(act->slot[s0 + i] / K) * dim;
            const float *y = ye + (size_t)i * dim;
            for (int d = 0; d < dim; d++) o[d] += y[d];
        }
    }
    dsv4_train_matmul(&w->shared.w1, u, T, act->sg);
    dsv4_train_matmul(&w->shared.w3, u, T, act->sp);
    swiglu(act->sg, act->sp, T, inter, L, NULL, h);
    dsv4_train_matmul(&w->shared.w2, h, T, ye);
    for (size_t i = 0; i < (size_t)T * dim; i++) out[i] += ye[i];
done:
    free(xe);
    free(ye);
    free(h);
    free(rw);
    free(s);
    free(fill);
    return rc;
}

dsv4_status dsv4_moe_train_backward(const struct dsv4_model *m, const dsv4_moe_w *w, const float *u, int T,
                                    const dsv4_moe_act *act, const float *dout, float *du, const dsv4_moe_w *gw) {
    const struct dsv4_config *c = &m->cfg;
    int E = c->n_routed_experts, K = c->n_activated_experts, dim = c->dim, inter = c->moe_inter_dim;
    float L = c->swiglu_limit;
    size_t big = (size_t)T * K * DSV4_MAX(dim, inter) + 1;
    float *h = malloc(big * sizeof(float)), *dh = malloc(big * sizeof(float));
    float *dg = malloc(big * sizeof(float)), *dp = malloc(big * sizeof(float));
    float *xe = malloc(big * sizeof(float)), *dye = malloc(big * sizeof(float)), *dxe = malloc(big * sizeof(float));
    float *rw = malloc(((size_t)T * K + 1) * sizeof(float)), *drw = malloc(((size_t)T * K + 1) * sizeof(float));
    float *dweight = calloc((size_t)T * K + 1, sizeof(float)), *dlogits = calloc((size_t)T * E + 1, sizeof(float));
    dsv4_status rc = DSV4_OK;
    if (!h || !dh || !dg || !dp || !xe || !dye || !dxe || !rw || !drw || !dweight || !dlogits) {
        rc = dsv4_error(DSV4_ENOMEM, "out of memory in the MoE backward (%d tokens)", T);
        goto done;
    }

    /* the shared expert */
    swiglu(act->sg, act->sp, T, inter, L, NULL, h);
    memset(dh, 0, (size_t)T * inter * sizeof(float));
    dsv4_matmul_backward(&w->shared.w2, h, T, dout, dh, &gw->shared.w2);
    swiglu_backward(act->sg, act->sp, T, inter, L, NULL, dh, dg, dp, NULL);
    dsv4_matmul_backward(&w->shared.w1, u, T, dg, du, &gw->shared.w1);
    dsv4_matmul_backward(&w->shared.w3, u, T, dp, du, &gw->shared.w3);

    /* routed experts, on their own tokens */
    for (int e = 0; e < E; e++) {
        int s0 = act->start[e], ne = act->start[e + 1] - s0;
        if (!ne) continue;
        const dsv4_expert_w *ex = &w->experts[e], *gx = &gw->experts[e];
        for (int i = 0; i < ne; i++) {
            int sl = act->slot[s0 + i], t = sl / K;
            rw[i] = act->weight[sl];
            memcpy(xe + (size_t)i * dim, u + (size_t)t * dim, (size_t)dim * sizeof(float));
            memcpy(dye + (size_t)i * dim, dout + (size_t)t * dim, (size_t)dim * sizeof(float));
        }
        const float *g = act->g + (size_t)s0 * inter, *p = act->p + (size_t)s0 * inter;
        swiglu(g, p, ne, inter, L, rw, h);
        memset(dh, 0, (size_t)ne * inter * sizeof(float));
        dsv4_matmul_backward(&ex->w2, h, ne, dye, dh, &gx->w2);
        swiglu_backward(g, p, ne, inter, L, rw, dh, dg, dp, drw);
        memset(dxe, 0, (size_t)ne * dim * sizeof(float));
        dsv4_matmul_backward(&ex->w1, xe, ne, dg, dxe, &gx->w1);
        dsv4_matmul_backward(&ex->w3, xe, ne, dp, dxe, &gx->w3);
        for (int i = 0; i < ne; i++) {
            int sl = act->slot[s0 + i];
            dweight[sl] += drw[i];
            float *d = du + (size_t)(sl / K) * dim;
            const float *x = dxe + (size_t)i * dim;
            for (int j = 0; j < dim; j++) d[j] += x[j];
        }
    }

    /* the router, and the balance loss */
    if (act->balance != 0.0f && !w->hash) dsv4_moe_balance_loss(c, T, act->logits, act->balance, dlogits);
    for (int t = 0; t < T; t++)
        dsv4_moe_route_backward(c, w, act->logits + (size_t)t * E, 0, act->idx + (size_t)t * K, act->weight + (size_t)t * K,
                                dweight + (size_t)t * K, dlogits + (size_t)t * E);
    dsv4_matmul_backward(&w->gate, u, T, dlogits, du, &gw->gate);

done:
    free(h);
    free(dh);
    free(dg);
    free(dp);
    free(xe);
    free(dye);
    free(dxe);
    free(rw);
    free(drw);
    free(dweight);
    free(dlogits);
    return rc;
}
