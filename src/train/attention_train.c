/* attention_train.c: one attention layer over a whole sequence, and its gradient.
 *
 * The forward is the inference attention (model/attention.c) specialised to a one-shot
 * prefill from position 0, keeping what the backward needs:
 *   q_lat = q_norm(wq_a u); q = RoPE(rms(wq_b q_lat)) per head;  kv = RoPE(kv_norm(wkv u));
 *   compressed rows from the compressor (CSA: the indexer picks up to topk of them per query);
 *   per query t and head h, over the keys j of t (window positions t-W+1..t oldest first,
 *   then the compressed rows) with the head's sink sigma_h in the denominator:
 *     s_j = q.k_j / sqrt(D),  p_j = exp(s_j - lse),  lse = log(exp(sigma) + sum_j exp(s_j)),
 *     o = sum_j p_j k_j     (keys are the values);
 *   o is de-rotated at t, projected per group by wo_a, then by wo_b.
 * The arithmetic follows dsv4_attend step by step, so the training forward reproduces the
 * inference engine's exact-mode numbers.
 *
 * Backward of the softmax with a sink: with dp_j = <do, k_j> and delta = sum_j p_j dp_j
 * (the sink's value is zero, so it adds nothing to delta),
 *   ds_j = p_j (dp_j - delta),  dq += sum_j ds_j k_j / sqrt(D),
 *   dk_j += ds_j q / sqrt(D) + p_j do,  dsigma = -p_sink delta.
 * The scores are recomputed from q, k and the saved lse (nothing of size T x keys is kept).
 * Queries run in parallel in fixed ranges whose key gradients are summed in range order, so
 * the gradient does not depend on the number of threads.
 * Then each path in reverse: RoPE (the opposite rotation), the norms, the linears; the
 * compressed rows' gradient goes through the compressor into u. The indexer is not
 * differentiated here: its top-k is a choice, and its parameters learn from their own loss. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "train/train.h"

/* The keys of query t as rows of the combined table [kv (T rows); compressed rows]. */
static int key_list(const dsv4_attn_w *aw, int W, int T, int t, const dsv4_attn_act *act, int topk, int *idx) {
    int K = 0;
    for (int j = DSV4_MAX(0, t - W + 1); j <= t; j++) idx[K++] = j;
    if (aw->ratio) {
        if (aw->has_indexer) {
            for (int i = 0; i < act->n_sel[t]; i++) idx[K++] = T + act->sel[(size_t)t * topk + i];
        } else {
            int visible = DSV4_MIN((t + 1) / aw->ratio, act->comp.n_rows);
            for (int i = 0; i < visible; i++) idx[K++] = T + i;
        }
    }
    return K;
}

static inline const float *key_row(const dsv4_attn_act *act, int T, int D, int i) {
    return i < T ? act->kv + (size_t)i * D : act->comp.rows + (size_t)(i - T) * D;
}

static int max_keys(const struct dsv4_config *c, const dsv4_attn_w *aw, const dsv4_attn_act *act) {
    int extra = !aw->ratio ? 0 : aw->has_indexer ? aw->indexer.topk : act->comp.n_rows;
    return c->window_size + extra + 1;
}

dsv4_status dsv4_attention_train_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                         float *out, dsv4_attn_act *act, bool reuse_sel, bool indexer_loss,
                                         dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int H = c->n_heads, D = c->head_dim, rd = c->rope_head_dim, W = c->window_size, qr = c->q_lora_rank;
    int G = c->o_groups, olr = c->o_lora_rank, hg = H / G;
    float eps = c->norm_eps;
    act->qa = dsv4_ws_alloc(ws, (size_t)T * qr);
    act->q_lat = dsv4_ws_alloc(ws, (size_t)T * qr);
    act->qb = dsv4_ws_alloc(ws, (size_t)T * H * D);
    act->q = dsv4_ws_alloc(ws, (size_t)T * H * D);
    act->kva = dsv4_ws_alloc(ws, (size_t)T * D);
    act->kv = dsv4_ws_alloc(ws, (size_t)T * D);
    act->lse = dsv4_ws_alloc(ws, (size_t)T * H);
    act->o = dsv4_ws_alloc(ws, (size_t)T * H * D);
    act->zo = dsv4_ws_alloc(ws, (size_t)T * G * olr);
    if (!act->qa || !act->q_lat || !act->qb || !act->q || !act->kva || !act->kv || !act->lse || !act->o || !act->zo)
        return dsv4_error(DSV4_ENOMEM, "out of memory in the attention forward (%d tokens)", T);

    /* query */
    dsv4_matmul(&aw->wq_a, u, T, act->qa);
    for (int t = 0; t < T; t++) dsv4_rmsnorm(act->qa + (size_t)t * qr, aw->q_norm, qr, eps, act->q_lat + (size_t)t * qr);
    dsv4_matmul(&aw->wq_b, act->q_lat, T, act->qb);
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            float *qh = act->q + ((size_t)t * H + h) * D;
            dsv4_rmsnorm(act->qb + ((size_t)t * H + h) * D, NULL, D, eps, qh);
            dsv4_rope_apply(aw->rope, qh + D - rd, t, false);
        }

    /* the key/value rows */
    dsv4_matmul(&aw->wkv, u, T, act->kva);
    for (int t = 0; t < T; t++) {
        float *k = act->kv + (size_t)t * D;
        dsv4_rmsnorm(act->kva + (size_t)t * D, aw->kv_norm, D, eps, k);
        dsv4_rope_apply(aw->rope, k + D - rd, t, false);
    }

    /* compressed rows: the indexer chooses among them (CSA), the compressor makes them */
    dsv4_status rc;
    act->comp.n_rows = 0;
    if (aw->has_indexer && (rc = dsv4_indexer_train_forward(m, aw, u, T, act, !reuse_sel, indexer_loss, ws))) return rc;
    if (aw->ratio && (rc = dsv4_compressor_train_forward(m, &aw->comp, aw->rope, u, T, &act->comp, ws))) return rc;
    int topk = aw->has_indexer ? aw->indexer.topk : 0;
    act->psel = NULL;
    if (aw->has_indexer && indexer_loss && !(act->psel = dsv4_ws_alloc(ws, (size_t)T * topk)))
        return dsv4_error(DSV4_ENOMEM, "out of memory for the indexer loss");

    /* attention, one query per iteration */
    int kmax = max_keys(c, aw, act), nth = omp_get_max_threads();
    int *idx_all = malloc((size_t)nth * kmax * sizeof(int));
    float *s_all = malloc((size_t)nth * kmax * sizeof(float));
    if (!idx_all || !s_all) {
        free(idx_all);
        free(s_all);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the attention forward");
    }
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for schedule(dynamic, 4)
    for (int t = 0; t < T; t++) {
        int *idx = idx_all + (size_t)omp_get_thread_num() * kmax;
        float *s = s_all + (size_t)omp_get_thread_num() * kmax;
        int K = key_list(aw, W, T, t, act, topk, idx), n_win = t - DSV4_MAX(0, t - W + 1) + 1;
        for (int h = 0; h < H; h++) {
            const float *qh = act->q + ((size_t)t * H + h) * D;
            float mx = aw->sink[h];
            for (int j = 0; j < K; j++) {
                const float *k = key_row(act, T, D, idx[j]);
                float d = 0.0f;
                for (int i = 0; i < D; i++) d += qh[i] * k[i];
                s[j] = d * scale;
                mx = fmaxf(mx, s[j]);
            }
            float den = expf(aw->sink[h] - mx);
            for (int j = 0; j < K; j++) {
                s[j] = expf(s[j] - mx);
                den += s[j];
            }
            float *oh = act->o + ((size_t)t * H + h) * D;
            for (int j = 0; j < K; j++) {
                const float *k = key_row(act, T, D, idx[j]);
                for (int i = 0; i < D; i++) oh[i] += s[j] * k[i];
            }
            float inv = 1.0f / den;
            for (int i = 0; i < D; i++) oh[i] *= inv;
            act->lse[(size_t)t * H + h] = mx + logf(den);
            if (act->psel)
                for (int j = n_win; j < K; j++) act->psel[(size_t)t * topk + j - n_win] += s[j] * inv;
            dsv4_rope_apply(aw->rope, oh + D - rd, t, true);
        }
    }
    free(idx_all);
    free(s_all);

    /* grouped low-rank output projection (og: one group's heads, contiguous) */
    float *og = malloc(((size_t)T * hg * D + 1) * sizeof(float));
    if (!og) return dsv4_error(DSV4_ENOMEM, "out of memory in the attention forward (%d tokens)", T);
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < T; t++)
            memcpy(og + (size_t)t * hg * D, act->o + (size_t)t * H * D + (size_t)g * hg * D, (size_t)hg * D * sizeof(float));
        dsv4_linear view = dsv4_linear_rows(&aw->wo_a, g * olr, olr);
        dsv4_matmul_ld(&view, og, T, act->zo + (size_t)g * olr, G * olr);
    }
    free(og);
    dsv4_matmul(&aw->wo_b, act->zo, T, out);
    return DSV4_OK;
}

/* The core's backward: do_ [T, H*D] (the gradient of o before de-rotation) -> dq [T, H*D],
 * dkeys [T + n_comp, D], dsink [H] (all added). Queries are cut into a fixed number of
 * ranges, each summing its key gradients in a buffer of its own, and the buffers are added in
 * range order: the result does not depend on the number of threads. */
enum { KEY_RANGES = 8 };

static dsv4_status attend_backward(const struct dsv4_config *c, const dsv4_attn_w *aw, int T, const dsv4_attn_act *act,
                                   const float *do_, float *dq, float *dkeys, double *dsink) {
    int H = c->n_heads, D = c->head_dim, W = c->window_size, n_keys = T + act->comp.n_rows;
    int topk = aw->has_indexer ? aw->indexer.topk : 0, kmax = max_keys(c, aw, act);
    float scale = 1.0f / sqrtf((float)D);
    int *idx_all = malloc((size_t)KEY_RANGES * kmax * sizeof(int));
    float *s_all = malloc((size_t)KEY_RANGES * 2 * kmax * sizeof(float));
    float *dk_all = calloc((size_t)KEY_RANGES * n_keys * D, sizeof(float));
    double *ds_all = calloc((size_t)KEY_RANGES * H, sizeof(double));
    if (!idx_all || !s_all || !dk_all || !ds_all) {
        free(idx_all);
        free(s_all);
        free(dk_all);
        free(ds_all);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the attention backward (%d tokens)", T);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int rg = 0; rg < KEY_RANGES; rg++) {
        int *idx = idx_all + (size_t)rg * kmax;
        float *p = s_all + (size_t)rg * 2 * kmax, *dp = p + kmax, *dk = dk_all + (size_t)rg * n_keys * D;
        double *dsr = ds_all + (size_t)rg * H;
        for (int t = (int)((long long)T * rg / KEY_RANGES); t < (int)((long long)T * (rg + 1) / KEY_RANGES); t++) {
            int K = key_list(aw, W, T, t, act, topk, idx);
            for (int h = 0; h < H; h++) {
                const float *qh = act->q + ((size_t)t * H + h) * D, *doh = do_ + ((size_t)t * H + h) * D;
                float lse = act->lse[(size_t)t * H + h], *dqh = dq + ((size_t)t * H + h) * D;
                double delta = 0.0;
                for (int j = 0; j < K; j++) {
                    const float *k = key_row(act, T, D, idx[j]);
                    float d = 0.0f, g = 0.0f;
                    for (int i = 0; i < D; i++) {
                        d += qh[i] * k[i];
                        g += doh[i] * k[i];
                    }
                    p[j] = expf(d * scale - lse);
                    dp[j] = g;
                    delta += (double)p[j] * g;
                }
                for (int j = 0; j < K; j++) {
                    const float *k = key_row(act, T, D, idx[j]);
                    float ds = p[j] * (dp[j] - (float)delta) * scale, pj = p[j];
                    float *dkj = dk + (size_t)idx[j] * D;
                    for (int i = 0; i < D; i++) {
                        dqh[i] += ds * k[i];
                        dkj[i] += ds * qh[i] + pj * doh[i];
                    }
                }
                dsr[h] -= exp((double)aw->sink[h] - lse) * delta;
            }
        }
    }
    for (int rg = 0; rg < KEY_RANGES; rg++) {
        const float *dk = dk_all + (size_t)rg * n_keys * D;
        for (size_t i = 0; i < (size_t)n_keys * D; i++) dkeys[i] += dk[i];
        for (int h = 0; h < H; h++) dsink[h] += ds_all[(size_t)rg * H + h];
    }
    free(idx_all);
    free(s_all);
    free(dk_all);
    free(ds_all);
    return DSV4_OK;
}

dsv4_status dsv4_attention_train_backward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                          const dsv4_attn_act *act, const float *dout, float *du,
                                          const dsv4_attn_w *gw) {
    const struct dsv4_config *c = &m->cfg;
    int H = c->n_heads, D = c->head_dim, rd = c->rope_head_dim, qr = c->q_lora_rank;
    int G = c->o_groups, olr = c->o_lora_rank, hg = H / G, n_keys = T + act->comp.n_rows;
    float eps = c->norm_eps;
    float *dzo = calloc((size_t)T * G * olr + 1, sizeof(float)), *do_ = calloc((size_t)T * H * D + 1, sizeof(float));
    float *dq = calloc((size_t)T * H * D + 1, sizeof(float)), *dkeys = calloc((size_t)n_keys * D + 1, sizeof(float));
    float *dkva = calloc((size_t)T * D + 1, sizeof(float)), *dqb = calloc((size_t)T * H * D + 1, sizeof(float));
    float *dql = calloc((size_t)T * qr + 1, sizeof(float)), *dqa = calloc((size_t)T * qr + 1, sizeof(float));
    double *dsink = calloc((size_t)H, sizeof(double));
    dsv4_status rc = DSV4_OK;
    if (!dzo || !do_ || !dq || !dkeys || !dkva || !dqb || !dql || !dqa || !dsink) {
        rc = dsv4_error(DSV4_ENOMEM, "out of memory in the attention backward (%d tokens)", T);
        goto done;
    }

    /* output projections */
    dsv4_matmul_backward(&aw->wo_b, act->zo, T, dout, dzo, &gw->wo_b);
    for (int g = 0; g < G; g++) {
        dsv4_linear view = dsv4_linear_rows(&aw->wo_a, g * olr, olr), gview = dsv4_linear_rows(&gw->wo_a, g * olr, olr);
        dsv4_matmul_backward_ld(&view, act->o + (size_t)g * hg * D, H * D, T, dzo + (size_t)g * olr, G * olr,
                                do_ + (size_t)g * hg * D, H * D, &gview);
    }
    /* the de-rotation, then the core */
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) dsv4_rope_apply_backward(aw->rope, do_ + ((size_t)t * H + h) * D + D - rd, t, true);
    if ((rc = attend_backward(c, aw, T, act, do_, dq, dkeys, dsink))) goto done;
    for (int h = 0; h < H; h++) gw->sink[h] += (float)dsink[h];

    /* compressed rows -> the compressor */
    if (aw->ratio &&
        (rc = dsv4_compressor_train_backward(m, &aw->comp, aw->rope, u, T, &act->comp, dkeys + (size_t)T * D, du, &gw->comp)))
        goto done;

    /* window rows: RoPE, kv_norm, wkv */
    for (int t = 0; t < T; t++) {
        float *d = dkeys + (size_t)t * D;
        dsv4_rope_apply_backward(aw->rope, d + D - rd, t, false);
        dsv4_rmsnorm_backward(act->kva + (size_t)t * D, aw->kv_norm, D, eps, d, dkva + (size_t)t * D, gw->kv_norm);
    }
    dsv4_matmul_backward(&aw->wkv, u, T, dkva, du, &gw->wkv);

    /* queries: RoPE, the per-head norm, wq_b, q_norm, wq_a */
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            size_t o = ((size_t)t * H + h) * D;
            dsv4_rope_apply_backward(aw->rope, dq + o + D - rd, t, false);
            dsv4_rmsnorm_backward(act->qb + o, NULL, D, eps, dq + o, dqb + o, NULL);
        }
    dsv4_matmul_backward(&aw->wq_b, act->q_lat, T, dqb, dql, &gw->wq_b);
    for (int t = 0; t < T; t++)
        dsv4_rmsnorm_backward(act->qa + (size_t)t * qr, aw->q_norm, qr, eps, dql + (size_t)t * qr, dqa + (size_t)t * qr,
                              gw->q_norm);
    dsv4_matmul_backward(&aw->wq_a, u, T, dqa, du, &gw->wq_a);

done:
    free(dzo);
    free(do_);
    free(dq);
    free(dkeys);
    free(dkva);
    free(dqb);
    free(dql);
    free(dqa);
    free(dsink);
    return rc;
}
