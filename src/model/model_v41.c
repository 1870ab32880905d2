/* model_v41.c: the DeepSeek-V4.1 forward pass, top to bottom.
 *
 *   rows = Engram row ids of every position (hashing needs only the token ids), gathered
 *          by the reader thread while the first layers run
 *   X = hc copies of embed[token];  P = (1, 0, ..., 0)
 *   for each layer l:
 *       if l has Engram:  X = Engram_l(X)                          (before the block)
 *       if l is a DSpark target: keep mean_j X_j                   (the draft head's input)
 *       (a, post, comb) = mixes(X);  X = hc_post(Attention(attn_norm(P . X)), X)
 *       (f, post, comb) = mixes(X);  X = hc_post(MoE(ffn_norm(a . X)), X);  P = f
 *   logits = head . norm(P . X)
 *
 * This is the single-pass mHC: each site's pre-weights are applied by the next site, the
 * first site reads stream 0 and the output is collapsed with the last site's pre-weights
 * (no hc_head). After the step, the DSpark stages' windows receive the main model's state
 * of every fed position (main_kv of main_norm(main_proj(targets))), which is all a later
 * draft needs from it.
 *
 * Steps at position 0 are prefills; later steps are decode steps (csa2.c explains why the
 * two differ under the official index-key slot). A decode step of several tokens is computed
 * as one batch, each row with the semantics of its own single-token step; only when a row
 * would read index keys that an earlier row of the same step has not yet produced in a later
 * layer (a short context and a long step) are the tokens fed one at a time instead. */
#include <math.h>

#include "base/base.h"
#include "infer/state.h"
#include "model/forward.h"
#include "model/mhc.h"
#include "model/model.h"
#include "numeric/numeric.h"

/* One single-pass block: X [N, hc, d] in place; pre_in collapses for the attention, pre_out
 * receives this block's FFN-site pre-weights (the next block's input mix). */
dsv4_status dsv4_block_forward_v41(dsv4_model *m, const dsv4_layer_w *L, const dsv4_fwd_batch *b, float *X,
                                   const float *pre_in, float *pre_out) {
    const struct dsv4_config *c = &m->cfg;
    int N = b->n_rows, hc = c->hc_mult, d = c->dim, mix = (2 + hc) * hc;
    dsv4_workspace *ws = &m->ws;
    float *a = dsv4_ws_alloc(ws, (size_t)N * d), *v = dsv4_ws_alloc(ws, (size_t)N * d);
    float *apre = dsv4_ws_alloc(ws, (size_t)N * hc), *post = dsv4_ws_alloc(ws, (size_t)N * hc);
    float *comb = dsv4_ws_alloc(ws, (size_t)N * hc * hc), *mixes = dsv4_ws_alloc(ws, (size_t)N * mix);
    float *Y = dsv4_ws_alloc(ws, (size_t)N * hc * d);
    if (!a || !v || !apre || !post || !comb || !mixes || !Y) return DSV4_ENOMEM;
    dsv4_status rc;

    dsv4_hc_coeffs(&L->hc_attn, X, N, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, apre, post, comb, mixes);
    dsv4_hc_collapse(X, pre_in, N, hc, d, a);
    for (int r = 0; r < N; r++) dsv4_rmsnorm(a + (size_t)r * d, L->attn_norm, d, c->norm_eps, a + (size_t)r * d);
    if ((rc = dsv4_attention_forward(m, &L->attn, b, a, v, ws))) return rc;
    dsv4_hc_post(v, X, post, comb, N, hc, d, Y);

    dsv4_hc_coeffs(&L->hc_ffn, Y, N, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, pre_out, post, comb, mixes);
    dsv4_hc_collapse(Y, apre, N, hc, d, a);
    for (int r = 0; r < N; r++) dsv4_rmsnorm(a + (size_t)r * d, L->ffn_norm, d, c->norm_eps, a + (size_t)r * d);
    if ((rc = dsv4_moe_forward(m, &L->moe, b, a, v, ws))) return rc;
    dsv4_hc_post(v, Y, post, comb, N, hc, d, X);
    return DSV4_OK;
}

void dsv4_streams_init_v41(const dsv4_model *m, const int32_t *ids, int n, float *X, float *pre) {
    int hc = m->cfg.hc_mult, d = m->cfg.dim;
    for (int r = 0; r < n; r++) {
        float *x = X + (size_t)r * hc * d;
        dsv4_linear_dequant_row(&m->embed, ids[r], x);
        for (int j = 1; j < hc; j++) memcpy(x + (size_t)j * d, x, (size_t)d * sizeof(float));
        for (int j = 0; j < hc; j++) pre[(size_t)r * hc + j] = j == 0 ? 1.0f : 0.0f;
    }
}

/* logits[n, vocab] = head . norm(y) for rows y[n, d], in chunks (the [chunk, vocab] buffer
 * stays small for long prompts). */
static void head_rows(const dsv4_model *m, const float *norm_w, const float *y, int n, float **dst) {
    const struct dsv4_config *c = &m->cfg;
    int d = c->dim, V = c->vocab_size;
    const int chunk = 64;
    float *yn = malloc((size_t)DSV4_MIN(n, chunk) * d * sizeof(float) + 1);
    float *buf = malloc((size_t)DSV4_MIN(n, chunk) * V * sizeof(float) + 1);
    for (int c0 = 0; c0 < n && yn && buf; c0 += chunk) {
        int cn = DSV4_MIN(chunk, n - c0);
        for (int i = 0; i < cn; i++) dsv4_rmsnorm(y + (size_t)(c0 + i) * d, norm_w, d, c->norm_eps, yn + (size_t)i * d);
        dsv4_matmul(&m->head, yn, cn, buf);
        for (int i = 0; i < cn; i++) memcpy(dst[c0 + i], buf + (size_t)i * V, (size_t)V * sizeof(float));
    }
    free(yn);
    free(buf);
}

/* The Engram rows of every row of the step, [n_layers][N][n_cols]; records the compressed
 * ids of the step's positions in each session's history first. */
static void engram_rows(const dsv4_model *m, const dsv4_fwd_batch *b, int64_t *rows) {
    const dsv4_engram *e = m->engram;
    int N = b->n_rows;
    for (int g = 0; g < b->n_segs; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        for (int t = 0; t < sg->n; t++) sg->s->engram_ids[sg->pos0 + t] = e->token_map[b->ids[sg->row0 + t]];
    }
    for (int l = 0; l < e->n_layers; l++) {
        const dsv4_engram_w *w = &e->layers[l];
        for (int r = 0; r < N; r++)
            dsv4_engram_hash(b->segs[b->seg_of[r]].s->engram_ids, b->pos[r], e->max_ngram, e->n_heads, e->pad_c, w->mult,
                             w->primes, w->offsets, rows + ((size_t)l * N + r) * e->n_cols);
    }
}

/* The DSpark stages' windows take the main model's state at every fed position:
 * kv_norm(wkv(main_norm(main_proj(hidden)))), rotated at the position, rounded as stored. */
static dsv4_status dspark_seed(dsv4_model *m, const dsv4_fwd_batch *b, const float *hidden) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_dspark_w *ds = m->dspark;
    int N = b->n_rows, d = c->dim, D = c->head_dim, rd = c->rope_head_dim, W = c->window_size;
    float *mx = dsv4_ws_alloc(&m->ws, (size_t)N * d), *kv = dsv4_ws_alloc(&m->ws, (size_t)N * D);
    float *xq = dsv4_ws_alloc(&m->ws, (size_t)N * ds->n_targets * d);
    if (!mx || !kv || !xq) return DSV4_ENOMEM;
    dsv4_linear_forward(&ds->main_proj, hidden, N, mx, m->numerics, xq);
    for (int r = 0; r < N; r++) dsv4_rmsnorm(mx + (size_t)r * d, ds->main_norm, d, c->norm_eps, mx + (size_t)r * d);
    for (int st = 0; st < ds->n_stages; st++) {
        const dsv4_attn_w *aw = &ds->stages[st].attn;
        dsv4_linear_forward(&aw->wkv, mx, N, kv, m->numerics, xq);
        for (int g = 0; g < b->n_segs; g++) {
            const dsv4_fwd_seg *sg = &b->segs[g];
            dsv4_rowstore *win = &sg->s->layers[c->n_layers + st].win;
            for (int t = DSV4_MAX(0, sg->n - W); t < sg->n; t++) {
                float *k = kv + (size_t)(sg->row0 + t) * D;
                dsv4_rmsnorm(k, aw->kv_norm, D, c->norm_eps, k);
                dsv4_rope_apply(aw->rope, k + D - rd, sg->pos0 + t, false);
                dsv4_rowstore_put(win, (sg->pos0 + t) % W, k);
            }
        }
    }
    return DSV4_OK;
}

/* One step over an already laid-out batch. */
static dsv4_status step(dsv4_model *m, dsv4_batch_item *items, int n_items, dsv4_fwd_batch *b) {
    const struct dsv4_config *c = &m->cfg;
    int N = b->n_rows, hc = c->hc_mult, d = c->dim, V = c->vocab_size;
    dsv4_workspace *ws = &m->ws;
    dsv4_engram *e = m->engram;
    int nt = m->dspark ? m->dspark->n_targets : 0;
    float *X = dsv4_ws_alloc(ws, (size_t)N * hc * d), *P = dsv4_ws_alloc(ws, (size_t)N * hc);
    float *P2 = dsv4_ws_alloc(ws, (size_t)N * hc);
    float *hidden = nt ? dsv4_ws_alloc(ws, (size_t)N * nt * d) : NULL;
    dsv4_csa2_rt rt = {0};
    rt.topk = c->index_topk;
    rt.cand_cap = DSV4_MAX(c->candidate_topk_blocks, 1);
    rt.sel_layer = -1;
    rt.sel = calloc((size_t)N * DSV4_MAX(rt.topk, 1) + 1, sizeof(int));
    rt.n_sel = calloc((size_t)N + 1, sizeof(int));
    rt.cand = calloc((size_t)N * rt.cand_cap + 1, sizeof(int));
    rt.n_cand = calloc((size_t)N + 1, sizeof(int));
    int64_t *rows = e ? malloc((size_t)e->n_layers * N * e->n_cols * sizeof(int64_t) + 1) : NULL;
    uint8_t *staged = e ? malloc((size_t)e->n_layers * N * e->n_cols * dsv4_engram_row_bytes(e) + 1) : NULL;
    dsv4_status rc = DSV4_OK;
    if (!X || !P || !P2 || (nt && !hidden) || !rt.sel || !rt.n_sel || !rt.cand || !rt.n_cand || (e && (!rows || !staged)))
        rc = dsv4_error(DSV4_ENOMEM, "out of memory for a forward step of %d tokens", N);
    b->csa2 = &rt;
    bool gathering = false;
    if (!rc && e) {
        engram_rows(m, b, rows);
        dsv4_engram_gather_begin(e, rows, N, staged);
        gathering = true;
    }
    if (!rc) dsv4_streams_init_v41(m, b->ids, N, X, P);
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const dsv4_layer_w *L = &m->layers[l];
        if (L->engram >= 0) {
            dsv4_engram_wait(e, L->engram);
            rc = dsv4_engram_forward(m, L->engram, staged, N, X);
            if (rc) break;
        }
        for (int k = 0; k < nt; k++) /* the draft head reads the streams entering its targets */
            if (c->dspark_target_layer_ids[k] == l)
                for (int r = 0; r < N; r++) {
                    const float *x = X + (size_t)r * hc * d;
                    float *o = hidden + ((size_t)r * nt + k) * d;
                    for (int i = 0; i < d; i++) {
                        float s = 0.0f;
                        for (int j = 0; j < hc; j++) s += x[(size_t)j * d + i];
                        o[i] = s / (float)hc;
                    }
                }
        b->state = l;
        rc = dsv4_block_forward_v41(m, L, b, X, P, P2);
        float *t = P;
        P = P2;
        P2 = t;
    }
    if (gathering) dsv4_engram_finish(e); /* the staging buffer is freed below */

    /* logits of the rows the items asked for */
    if (!rc) {
        int n_out = 0;
        for (int i = 0; i < n_items; i++)
            n_out += items[i].want_logits == DSV4_LOGITS_ALL ? items[i].n : (items[i].want_logits == DSV4_LOGITS_LAST && items[i].n > 0);
        float *y = n_out ? malloc((size_t)n_out * d * sizeof(float)) : NULL;
        float **dst = n_out ? malloc((size_t)n_out * sizeof(float *)) : NULL;
        if (n_out && (!y || !dst)) rc = dsv4_error(DSV4_ENOMEM, "out of memory for logits");
        int k = 0;
        for (int i = 0; i < n_items && !rc; i++) {
            const dsv4_fwd_seg *sg = &b->segs[i];
            int from = items[i].want_logits == DSV4_LOGITS_ALL ? 0 : items[i].want_logits == DSV4_LOGITS_LAST ? sg->n - 1 : sg->n;
            for (int t = DSV4_MAX(from, 0); t < sg->n; t++, k++) {
                int r = sg->row0 + t;
                dsv4_hc_collapse(X + (size_t)r * hc * d, P + (size_t)r * hc, 1, hc, d, y + (size_t)k * d);
                dst[k] = items[i].logits + (items[i].want_logits == DSV4_LOGITS_ALL ? (size_t)t * V : 0);
            }
        }
        if (!rc && n_out) head_rows(m, m->norm, y, n_out, dst);
        free(y);
        free(dst);
    }
    for (int i = 0; i < n_items && !rc; i++)
        if (items[i].hidden)
            memcpy(items[i].hidden, X + (size_t)b->segs[i].row0 * hc * d, (size_t)items[i].n * hc * d * sizeof(float));
    if (!rc && m->dspark) rc = dspark_seed(m, b, hidden);

    /* the shared index-key slot as the step leaves it */
    for (int g = 0; g < b->n_segs && !rc; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        if (sg->n == 0) continue;
        int v = -1;
        if (sg->pos0 == 0) v = dsv4_csa2_slot_after(m, sg->n - 1, true, sg->n);
        else
            for (int q = sg->pos0 + sg->n - 1; q >= sg->pos0 && v < 0; q--) v = dsv4_csa2_slot_after(m, q, false, 0);
        if (v >= 0) sg->s->idx_slot = v;
    }
    free(rt.sel);
    free(rt.n_sel);
    free(rt.cand);
    free(rt.n_cand);
    free(rows);
    free(staged);
    return rc;
}

/* Whether a decode step of several tokens must be fed one token at a time: some row would
 * read, through the official index-key slot, keys that a later layer produces for an
 * earlier row of the same step (csa2.c). */
static bool needs_token_steps(const dsv4_model *m, const dsv4_fwd_seg *sg) {
    const struct dsv4_config *c = &m->cfg;
    if (m->index_keys_intended || sg->pos0 == 0 || sg->n < 2) return false;
    for (int i = 0; i < c->n_index_sources; i++) {
        int l = c->index_source_layers[i], r = c->compress_ratios[l];
        for (int t = 0; t < sg->n; t++) {
            int p = sg->pos0 + t, avail;
            int src = dsv4_csa2_stale_source(m, sg->s, l, p, sg->pos0, &avail);
            if (src > l && DSV4_MIN((p + 1) / r, avail) > sg->pos0 / c->compress_ratios[src]) return true;
        }
    }
    return false;
}

/* The items that need it are fed one token at a time, after the others in one step. */
static dsv4_status split_steps(dsv4_model *m, dsv4_batch_item *items, int n_items, const bool *split) {
    dsv4_batch_item *sub = malloc(((size_t)n_items + 1) * sizeof *sub);
    if (!sub) return dsv4_error(DSV4_ENOMEM, "out of memory splitting a step");
    int V = m->cfg.vocab_size, hcd = m->cfg.hc_mult * m->cfg.dim, k = 0, most = 0;
    for (int i = 0; i < n_items; i++) {
        if (!split[i]) sub[k++] = items[i];
        else most = DSV4_MAX(most, items[i].n);
    }
    dsv4_status rc = k ? dsv4_forward_batch_v41(m, sub, k) : DSV4_OK;
    for (int t = 0; t < most && !rc; t++) {
        k = 0;
        for (int i = 0; i < n_items; i++) {
            if (!split[i] || t >= items[i].n) continue;
            dsv4_batch_item it = items[i];
            it.ids += t;
            it.n = 1;
            if (it.want_logits == DSV4_LOGITS_ALL) it.logits += (size_t)t * V;
            else if (it.want_logits == DSV4_LOGITS_LAST && t < items[i].n - 1) it.want_logits = DSV4_LOGITS_NONE;
            if (it.hidden) it.hidden += (size_t)t * hcd;
            sub[k++] = it;
        }
        rc = dsv4_forward_batch_v41(m, sub, k);
    }
    free(sub);
    return rc;
}

dsv4_status dsv4_forward_batch_v41(dsv4_model *m, dsv4_batch_item *items, int n_items) {
    dsv4_fwd_batch b = {0};
    dsv4_ws_reset(&m->ws);
    dsv4_status rc = dsv4_fwd_batch_build(m, items, n_items, &b, 0);
    bool *split = rc ? NULL : calloc((size_t)n_items + 1, sizeof(bool)), any = false;
    if (!rc && !split) rc = dsv4_error(DSV4_ENOMEM, "out of memory laying out a batch");
    for (int i = 0; i < n_items && !rc; i++) any |= split[i] = needs_token_steps(m, &b.segs[i]);
    if (!rc && any) {
        dsv4_fwd_batch_free(&b);
        rc = split_steps(m, items, n_items, split);
        free(split);
        return rc;
    }
    free(split);
    if (!rc && b.n_rows > 0) rc = step(m, items, n_items, &b);
    if (!rc)
        for (int i = 0; i < n_items; i++) items[i].session->pos += items[i].n;
    dsv4_fwd_batch_free(&b);
    return rc;
}
