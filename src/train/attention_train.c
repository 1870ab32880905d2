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
 * It is the engine's arithmetic up to the order of summation (the products run as sgemm), so
 * the training forward reproduces the inference engine's exact-mode numbers to rounding.
 *
 * Backward of the softmax with a sink: with dp_j = <do, k_j> and delta = sum_j p_j dp_j
 * (the sink's value is zero, so it adds nothing to delta),
 *   ds_j = p_j (dp_j - delta),  dq += sum_j ds_j k_j / sqrt(D),
 *   dk_j += ds_j q / sqrt(D) + p_j do,  dsigma = -p_sink delta.
 * The scores are recomputed from q, k and the saved lse (nothing of size T x keys is kept).
 * The core runs by blocks of queries as matrix products (see "the attention core" below).
 * Then each path in reverse: RoPE (the opposite rotation), the norms, the linears; the
 * compressed rows' gradient goes through the compressor into u. The indexer is not
 * differentiated here: its top-k is a choice, and its parameters learn from their own loss. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "train/train.h"

/* ---- the attention core, by blocks of queries -------------------------------------------------
 * Every query reads the keys of the combined table [kv rows 0..T-1; compressed rows]: the
 * window rows t-W+1..t, and the compressed rows it may see (HCA: the completed ones; CSA: the
 * indexer's selection). All heads share the one K=V head, so a block of QB queries is one
 * product with the keys any of its queries reads (the window rows of the block, contiguous,
 * and the compressed rows, for CSA the union of the block's selections): S = Q K^T over
 * QB*H rows, masked per query, then O = P K. The backward is the same products transposed.
 * A block's rows and shapes depend only on T and the selections, so results do not depend on
 * the number of threads; key gradients are summed per block and added in block order. */
enum { QB = 64 };

typedef struct qblock {
    int t0, t1;      /* queries [t0, t1) */
    int lo, n_win;   /* window rows lo .. t1-1 */
    int n_keys;      /* n_win window rows, then compressed rows */
    int *comp;       /* [n_keys - n_win] compressed row of each compressed key (ascending) */
    int *pos;        /* [n_comp] a compressed row's key index, or -1 (CSA) */
    uint8_t *valid;  /* [(t1-t0) * n_keys] whether query t reads key j */
    float *K;        /* [n_keys, D] the keys */
} qblock;

static void qblock_free(qblock *b) {
    free(b->comp);
    free(b->pos);
    free(b->valid);
    free(b->K);
}

/* The keys of queries [t0, t1), their validity per query, and a copy of them. */
static bool qblock_make(const dsv4_attn_w *aw, int W, int D, int T, int t0, int t1, const dsv4_attn_act *act, int topk,
                        qblock *b) {
    memset(b, 0, sizeof *b);
    b->t0 = t0, b->t1 = t1;
    b->lo = DSV4_MAX(0, t0 - W + 1);
    b->n_win = t1 - b->lo;
    int n_comp = aw->ratio ? act->comp.n_rows : 0, nc = 0;
    b->comp = malloc(((size_t)n_comp + 1) * sizeof(int));
    b->pos = malloc(((size_t)n_comp + 1) * sizeof(int));
    if (!b->comp || !b->pos) return false;
    if (aw->has_indexer) {
        for (int i = 0; i < n_comp; i++) b->pos[i] = -1;
        for (int t = t0; t < t1; t++)
            for (int i = 0; i < act->n_sel[t]; i++) b->pos[act->sel[(size_t)t * topk + i]] = 0;
        for (int i = 0; i < n_comp; i++)
            if (b->pos[i] == 0) b->comp[nc++] = i;
        for (int i = 0; i < nc; i++) b->pos[b->comp[i]] = b->n_win + i;
    } else if (aw->ratio) {
        nc = DSV4_MIN(t1 / aw->ratio, n_comp); /* what the block's last query sees */
        for (int i = 0; i < nc; i++) b->comp[i] = i;
    }
    b->n_keys = b->n_win + nc;
    int Q = t1 - t0, nk = b->n_keys;
    b->valid = calloc((size_t)Q * nk + 1, 1);
    b->K = malloc(((size_t)nk * D + 1) * sizeof(float));
    if (!b->valid || !b->K) return false;
    memcpy(b->K, act->kv + (size_t)b->lo * D, (size_t)b->n_win * D * sizeof(float));
    for (int i = 0; i < nc; i++)
        memcpy(b->K + (size_t)(b->n_win + i) * D, act->comp.rows + (size_t)b->comp[i] * D, (size_t)D * sizeof(float));
    for (int t = t0; t < t1; t++) {
        uint8_t *v = b->valid + (size_t)(t - t0) * nk;
        for (int j = DSV4_MAX(0, t - W + 1); j <= t; j++) v[j - b->lo] = 1;
        if (aw->has_indexer)
            for (int i = 0; i < act->n_sel[t]; i++) v[b->pos[act->sel[(size_t)t * topk + i]]] = 1;
        else if (aw->ratio)
            for (int i = 0, n = DSV4_MIN((t + 1) / aw->ratio, n_comp); i < n; i++) v[b->n_win + i] = 1;
    }
    return true;
}

/* P [Q*H, n_keys] = the attention probabilities of the block (zero where a query does not read
 * the key) from the scores S (scaled): with lse given (the backward), exp(S - lse); else the
 * softmax with the sink, writing lse. */
static void block_probs(const dsv4_attn_w *aw, int H, const qblock *b, float *P, float *lse, bool have_lse) {
    int Q = b->t1 - b->t0, nk = b->n_keys;
    for (int q = 0; q < Q; q++) {
        const uint8_t *v = b->valid + (size_t)q * nk;
        for (int h = 0; h < H; h++) {
            float *p = P + ((size_t)q * H + h) * nk, *l = lse + (size_t)(b->t0 + q) * H + h;
            if (!have_lse) {
                float mx = aw->sink[h];
                for (int j = 0; j < nk; j++)
                    if (v[j]) mx = fmaxf(mx, p[j]);
                float den = expf(aw->sink[h] - mx);
                for (int j = 0; j < nk; j++) den += v[j] ? (p[j] = expf(p[j] - mx)) : 0.0f;
                float inv = 1.0f / den;
                for (int j = 0; j < nk; j++) p[j] = v[j] ? p[j] * inv : 0.0f;
                *l = mx + logf(den);
            } else {
                for (int j = 0; j < nk; j++) p[j] = v[j] ? expf(p[j] - *l) : 0.0f;
            }
        }
    }
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
    dsv4_train_matmul(&aw->wq_a, u, T, act->qa);
    for (int t = 0; t < T; t++) dsv4_rmsnorm(act->qa + (size_t)t * qr, aw->q_norm, qr, eps, act->q_lat + (size_t)t * qr);
    dsv4_train_matmul(&aw->wq_b, act->q_lat, T, act->qb);
#pragma omp parallel for schedule(static) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            float *qh = act->q + ((size_t)t * H + h) * D;
            dsv4_rmsnorm(act->qb + ((size_t)t * H + h) * D, NULL, D, eps, qh);
            dsv4_rope_apply(aw->rope, qh + D - rd, t, false);
        }

    /* the key/value rows */
    dsv4_train_matmul(&aw->wkv, u, T, act->kva);
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

    /* attention, by blocks of queries */
    float scale = 1.0f / sqrtf((float)D);
    int n_qb = (T + QB - 1) / QB;
    bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
    for (int bi = 0; bi < n_qb; bi++) {
        qblock b;
        int t0 = bi * QB, t1 = DSV4_MIN(T, t0 + QB), Q = t1 - t0;
        float *P = NULL;
        if (qblock_make(aw, W, D, T, t0, t1, act, topk, &b) && (P = malloc(((size_t)Q * H * b.n_keys + 1) * sizeof(float)))) {
            int nk = b.n_keys;
            dsv4_sgemm_tiled(false, true, Q * H, nk, D, scale, act->q + (size_t)t0 * H * D, D, b.K, D, 0.0f, P, nk);
            block_probs(aw, H, &b, P, act->lse, false);
            dsv4_sgemm_tiled(false, false, Q * H, D, nk, 1.0f, P, nk, b.K, D, 0.0f, act->o + (size_t)t0 * H * D, D);
            if (act->psel)
                for (int t = t0; t < t1; t++)
                    for (int i = 0; i < act->n_sel[t]; i++) {
                        int j = b.pos[act->sel[(size_t)t * topk + i]];
                        float mass = 0.0f;
                        for (int h = 0; h < H; h++) mass += P[((size_t)(t - t0) * H + h) * nk + j];
                        act->psel[(size_t)t * topk + i] = mass;
                    }
            for (int t = t0; t < t1; t++)
                for (int h = 0; h < H; h++) dsv4_rope_apply(aw->rope, act->o + ((size_t)t * H + h) * D + D - rd, t, true);
        } else {
            ok = false;
        }
        free(P);
        qblock_free(&b);
    }
    if (!ok) return dsv4_error(DSV4_ENOMEM, "out of memory in the attention forward (%d tokens)", T);

    /* grouped low-rank output projection (og: one group's heads, contiguous) */
    float *og = malloc(((size_t)T * hg * D + 1) * sizeof(float));
    if (!og) return dsv4_error(DSV4_ENOMEM, "out of memory in the attention forward (%d tokens)", T);
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < T; t++)
            memcpy(og + (size_t)t * hg * D, act->o + (size_t)t * H * D + (size_t)g * hg * D, (size_t)hg * D * sizeof(float));
        dsv4_linear view = dsv4_linear_rows(&aw->wo_a, g * olr, olr);
        dsv4_train_matmul_ld(&view, og, T, act->zo + (size_t)g * olr, G * olr);
    }
    free(og);
    dsv4_train_matmul(&aw->wo_b, act->zo, T, out);
    return DSV4_OK;
}

/* The core's backward: do_ [T, H*D] (the gradient of o before de-rotation) -> dq [T, H*D],
 * dkeys [T + n_comp, D], dsink [H] (all added). With dp = dO K^T and delta = <dO, O> per row
 * (the sink's value is zero), dS = P (dp - delta) / sqrt(D), dQ = dS K, dK = dS^T Q + P^T dO;
 * the blocks' key gradients are added in block order. */
static dsv4_status attend_backward(const struct dsv4_config *c, const dsv4_attn_w *aw, int T, const dsv4_attn_act *act,
                                   const float *do_, float *dq, float *dkeys, double *dsink) {
    int H = c->n_heads, D = c->head_dim, W = c->window_size;
    int topk = aw->has_indexer ? aw->indexer.topk : 0, n_qb = (T + QB - 1) / QB;
    float scale = 1.0f / sqrtf((float)D);
    qblock *blocks = calloc((size_t)n_qb, sizeof *blocks);
    float **dK = calloc((size_t)n_qb, sizeof *dK);
    double *ds_all = calloc((size_t)n_qb * H + 1, sizeof(double));
    if (!blocks || !dK || !ds_all) {
        free(blocks), free(dK), free(ds_all);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the attention backward (%d tokens)", T);
    }
    bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
    for (int bi = 0; bi < n_qb; bi++) {
        qblock *b = &blocks[bi];
        int t0 = bi * QB, t1 = DSV4_MIN(T, t0 + QB), Q = t1 - t0;
        float *P = NULL, *dP = NULL, *O = NULL;
        if (!qblock_make(aw, W, D, T, t0, t1, act, topk, b)) {
            ok = false;
            continue;
        }
        int nk = b->n_keys;
        size_t np = (size_t)Q * H * nk + 1;
        P = malloc(np * sizeof(float)), dP = malloc(np * sizeof(float));
        O = malloc(((size_t)Q * H * D + 1) * sizeof(float));
        dK[bi] = calloc((size_t)nk * D + 1, sizeof(float));
        if (!P || !dP || !O || !dK[bi]) {
            ok = false;
        } else {
            const float *Qb = act->q + (size_t)t0 * H * D, *dO = do_ + (size_t)t0 * H * D;
            dsv4_sgemm_tiled(false, true, Q * H, nk, D, scale, Qb, D, b->K, D, 0.0f, P, nk);
            block_probs(aw, H, b, P, (float *)act->lse, true);
            /* O again (before de-rotation): delta = <dO, O> */
            dsv4_sgemm_tiled(false, false, Q * H, D, nk, 1.0f, P, nk, b->K, D, 0.0f, O, D);
            dsv4_sgemm_tiled(false, true, Q * H, nk, D, 1.0f, dO, D, b->K, D, 0.0f, dP, nk);
            for (int r = 0; r < Q * H; r++) {
                const float *o = O + (size_t)r * D, *g = dO + (size_t)r * D;
                double delta = 0.0;
                for (int i = 0; i < D; i++) delta += (double)o[i] * g[i];
                float *p = P + (size_t)r * nk, *dp = dP + (size_t)r * nk;
                for (int j = 0; j < nk; j++) dp[j] = p[j] * (dp[j] - (float)delta) * scale; /* dS */
                int h = r % H, t = t0 + r / H;
                ds_all[(size_t)bi * H + h] -= exp((double)aw->sink[h] - act->lse[(size_t)t * H + h]) * delta;
            }
            dsv4_sgemm_tiled(false, false, Q * H, D, nk, 1.0f, dP, nk, b->K, D, 1.0f, dq + (size_t)t0 * H * D, D);
            dsv4_sgemm_tiled(true, false, nk, D, Q * H, 1.0f, dP, nk, Qb, D, 0.0f, dK[bi], D);
            dsv4_sgemm_tiled(true, false, nk, D, Q * H, 1.0f, P, nk, dO, D, 1.0f, dK[bi], D);
        }
        free(P), free(dP), free(O);
    }
    for (int bi = 0; bi < n_qb && ok; bi++) { /* in block order */
        const qblock *b = &blocks[bi];
        for (int j = 0; j < b->n_keys; j++) {
            float *d = dkeys + (size_t)(j < b->n_win ? b->lo + j : T + b->comp[j - b->n_win]) * D;
            const float *s = dK[bi] + (size_t)j * D;
            for (int i = 0; i < D; i++) d[i] += s[i];
        }
        for (int h = 0; h < H; h++) dsink[h] += ds_all[(size_t)bi * H + h];
    }
    for (int bi = 0; bi < n_qb; bi++) {
        qblock_free(&blocks[bi]);
        free(dK[bi]);
    }
    free(blocks), free(dK), free(ds_all);
    return ok ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory in the attention backward (%d tokens)", T);
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
