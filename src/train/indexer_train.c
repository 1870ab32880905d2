/* indexer_train.c: the lightning indexer over a whole sequence, and its training loss.
 *
 * Selection (as model/indexer.c in exact numerics): keys are the indexer compressor's rows
 * (RMSNorm, RoPE, Hadamard); queries qI = Hadamard(RoPE(wq_b q_lat)) per head; head weights
 * w = weights_proj(u) / sqrt(head_dim * n_heads); the score of row c for query t is
 *   I_t(c) = sum_h w_h relu(qI_h . K_c),   c < (t+1)/4,
 * and the top-k rows (ties to the lower index) are what the attention reads. The arithmetic is
 * the inference engine's, so both choose the same rows.
 *
 * The top-k is not differentiable, so the LM loss never reaches the indexer. DeepSeek trains it
 * with a KL loss toward the main attention (the V3.2 recipe V4 inherits): for each query, p =
 * the attention probability mass on each selected compressed row summed over heads and
 * normalised over the selected set, and the loss is KL(p || softmax(I_t)) over that set,
 * averaged over the queries that select anything. p is a constant (detached), and so are the
 * indexer's inputs u and q_lat: only the indexer's parameters (wq_b, weights_proj and its
 * compressor) receive this gradient. With dI = (softmax(I) - p) / n_queries:
 *   dw_h += sum_c dI_c relu(d_hc),  dd_hc = dI_c w_h [d_hc > 0],
 *   dqI_h += sum_c dd_hc K_c,  dK_c += sum_h dd_hc qI_h,
 * then back through the Hadamard (its own transpose), RoPE, the linears and the compressor. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "model/forward.h"
#include "train/train.h"

/* I_t(c) for one query against one key, in the engine's order */
static inline float index_score(const float *q, const float *w, const float *key, int nh, int hd) {
    float s = 0.0f;
    for (int h = 0; h < nh; h++) {
        float d = 0.0f;
        const float *qh = q + (size_t)h * hd;
        for (int i = 0; i < hd; i++) d += qh[i] * key[i];
        s += w[h] * fmaxf(d, 0.0f);
    }
    return s;
}

dsv4_status dsv4_indexer_train_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                       dsv4_attn_act *act, bool select, bool keep, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_indexer_w *ix = &aw->indexer;
    int nh = ix->n_heads, hd = ix->head_dim, rd = c->rope_head_dim, topk = ix->topk;
    act->iq = act->iw = act->isc = NULL;
    if (!select && !keep) return DSV4_OK;
    dsv4_status rc = dsv4_compressor_train_forward(m, &ix->comp, aw->rope, u, T, &act->icomp, ws);
    if (rc) return rc;
    /* queries and head weights: kept for the loss, else scratch */
    size_t nq = (size_t)T * nh * hd + 1, nw = (size_t)T * nh + 1;
    float *q = keep ? dsv4_ws_alloc(ws, nq) : malloc(nq * sizeof(float));
    float *w = keep ? dsv4_ws_alloc(ws, nw) : malloc(nw * sizeof(float));
    float *isc = keep ? dsv4_ws_alloc(ws, (size_t)T * topk + 1) : NULL;
    if (!q || !w || (keep && !isc)) {
        if (!keep) {
            free(q);
            free(w);
        }
        return dsv4_error(DSV4_ENOMEM, "out of memory in the indexer (%d tokens)", T);
    }
    dsv4_train_matmul(&ix->wq_b, act->q_lat, T, q);
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            float *qh = q + ((size_t)t * nh + h) * hd;
            dsv4_rope_apply(aw->rope, qh + hd - rd, t, false);
            dsv4_hadamard(qh, hd);
        }
    dsv4_train_matmul(&ix->weights_proj, u, T, w);
    float wscale = 1.0f / sqrtf((float)hd) * (1.0f / sqrtf((float)nh));
    for (size_t i = 0; i < (size_t)T * nh; i++) w[i] *= wscale;

    const float *keys = act->icomp.rows;
    int n_keys = act->icomp.n_rows, nth = omp_get_max_threads();
    float *scores_all = malloc(((size_t)nth * (size_t)(n_keys + 1)) * sizeof(float));
    if (!scores_all) {
        if (!keep) {
            free(q);
            free(w);
        }
        return dsv4_error(DSV4_ENOMEM, "out of memory scoring %d indexer keys", n_keys);
    }
#pragma omp parallel for schedule(dynamic, 4) if (T > 1)
    for (int t = 0; t < T; t++) {
        const float *qt = q + (size_t)t * nh * hd, *wt = w + (size_t)t * nh;
        int *sel = act->sel + (size_t)t * topk;
        if (select) {
            int visible = DSV4_MIN((t + 1) / 4, n_keys);
            float *scores = scores_all + (size_t)omp_get_thread_num() * (size_t)(n_keys + 1);
            for (int k = 0; k < visible; k++) scores[k] = index_score(qt, wt, keys + (size_t)k * hd, nh, hd);
            act->n_sel[t] = dsv4_topk(scores, visible, topk, sel);
        }
        if (keep)
            for (int i = 0; i < act->n_sel[t]; i++) isc[(size_t)t * topk + i] = index_score(qt, wt, keys + (size_t)sel[i] * hd, nh, hd);
    }
    free(scores_all);
    if (keep) {
        act->iq = q;
        act->iw = w;
        act->isc = isc;
    } else {
        free(q);
        free(w);
    }
    return DSV4_OK;
}

/* p (the attention target) and log softmax(I) over the selected rows of query t; false when
 * the query selects nothing or puts no mass on its selection */
static bool kl_terms(const dsv4_attn_act *act, int t, int topk, double *p, double *logq) {
    int n = act->n_sel[t];
    const float *ps = act->psel + (size_t)t * topk, *sc = act->isc + (size_t)t * topk;
    double mass = 0.0, mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) {
        mass += ps[i];
        mx = fmax(mx, sc[i]);
    }
    if (n == 0 || !(mass > 0.0)) return false;
    for (int i = 0; i < n; i++) sum += exp(sc[i] - mx);
    for (int i = 0; i < n; i++) {
        p[i] = ps[i] / mass;
        logq[i] = sc[i] - mx - log(sum);
    }
    return true;
}

double dsv4_indexer_loss(const struct dsv4_model *m, const dsv4_attn_w *aw, int T, const dsv4_attn_act *act, int *n) {
    int topk = aw->indexer.topk;
    double total = 0.0, p[1024], logq[1024];
    *n = 0;
    if (!act->psel || !act->isc || topk > 1024) return 0.0;
    for (int t = 0; t < T; t++) {
        if (!kl_terms(act, t, topk, p, logq)) continue;
        for (int i = 0; i < act->n_sel[t]; i++)
            if (p[i] > 0.0) total += p[i] * (log(p[i]) - logq[i]);
        ++*n;
    }
    return total;
}

dsv4_status dsv4_indexer_loss_backward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                       const dsv4_attn_act *act, float scale, const dsv4_attn_w *gw) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_indexer_w *ix = &aw->indexer, *gx = &gw->indexer;
    int nh = ix->n_heads, hd = ix->head_dim, rd = c->rope_head_dim, topk = ix->topk, n_keys = act->icomp.n_rows;
    if (!act->psel || !act->isc || topk > 1024) return DSV4_OK;
    float *dq = calloc((size_t)T * nh * hd + 1, sizeof(float)), *dw = calloc((size_t)T * nh + 1, sizeof(float));
    float *dkeys = calloc((size_t)n_keys * hd + 1, sizeof(float));
    if (!dq || !dw || !dkeys) {
        free(dq);
        free(dw);
        free(dkeys);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the indexer loss backward (%d tokens)", T);
    }
    const float *keys = act->icomp.rows;
    double p[1024], logq[1024];
    float wscale = 1.0f / sqrtf((float)hd) * (1.0f / sqrtf((float)nh));
    for (int t = 0; t < T; t++) { /* in order: keys are shared between queries */
        if (!kl_terms(act, t, topk, p, logq)) continue;
        const float *qt = act->iq + (size_t)t * nh * hd, *wt = act->iw + (size_t)t * nh;
        float *dqt = dq + (size_t)t * nh * hd, *dwt = dw + (size_t)t * nh;
        for (int i = 0; i < act->n_sel[t]; i++) {
            float dI = scale * (float)(exp(logq[i]) - p[i]);
            int row = act->sel[(size_t)t * topk + i];
            const float *key = keys + (size_t)row * hd;
            float *dkey = dkeys + (size_t)row * hd;
            for (int h = 0; h < nh; h++) {
                const float *qh = qt + (size_t)h * hd;
                float d = 0.0f;
                for (int j = 0; j < hd; j++) d += qh[j] * key[j];
                if (d <= 0.0f) continue;
                dwt[h] += dI * d;
                float dd = dI * wt[h];
                float *dqh = dqt + (size_t)h * hd;
                for (int j = 0; j < hd; j++) {
                    dqh[j] += dd * key[j];
                    dkey[j] += dd * qh[j];
                }
            }
        }
    }
    /* queries: Hadamard, RoPE, wq_b (q_lat detached); head weights: weights_proj (u detached) */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            float *d = dq + ((size_t)t * nh + h) * hd;
            dsv4_hadamard(d, hd);
            dsv4_rope_apply_backward(aw->rope, d + hd - rd, t, false);
        }
    dsv4_matmul_backward(&ix->wq_b, act->q_lat, T, dq, NULL, &gx->wq_b);
    for (size_t i = 0; i < (size_t)T * nh; i++) dw[i] *= wscale;
    dsv4_matmul_backward(&ix->weights_proj, u, T, dw, NULL, &gx->weights_proj);
    dsv4_status rc = dsv4_compressor_train_backward(m, &ix->comp, aw->rope, u, T, &act->icomp, dkeys, NULL, &gx->comp);
    free(dq);
    free(dw);
    free(dkeys);
    return rc;
}
