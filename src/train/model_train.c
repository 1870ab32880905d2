/* model_train.c: the training forward of the whole model, the losses, and the backward pass.
 *
 *   X = hc copies of embed[ids]                                     [T, hc, d]
 *   per block: X = hc_post(Attention(attn_norm(hc_pre(X))), X)
 *              X = hc_post(MoE(ffn_norm(hc_pre(X))), X)
 *   logits = head . norm(hc_head(X));    L = mean_{i<T-1} CE(logits_i, ids[i+1])
 * and, when asked, the MTP block: row i reads the final streams at position i and the
 * embedding of ids[i+1], runs one more block (its own window, positions 0..T-2) and its own
 * hc_head and norm, shares the head: L_mtp = mean_{i<T-2} CE(mtp_logits_i, ids[i+2]).
 *
 * The forward keeps every block's inputs and intermediate vectors in the tape (an arena reset
 * by each forward) and the discrete choices (experts, indexer rows) in arrays that survive it,
 * so that a finite-difference check can replay them. The backward walks the same steps in
 * reverse; the gradients of the residual streams accumulate across the hc_post / hc_pre
 * branches, those of embed and head across the main model and the MTP block. */
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "model/mhc.h"
#include "train/train.h"

/* ---- the tape ---------------------------------------------------------------------------- */

dsv4_tape *dsv4_tape_new(void) { return calloc(1, sizeof(dsv4_tape)); }

static void block_sel_free(dsv4_block_act *a) {
    free(a->attn.sel);
    free(a->attn.n_sel);
    free(a->moe.idx);
    free(a->moe.slot);
    free(a->moe.start);
}

static void tape_sel_free(dsv4_tape *tp, int n_layers) {
    if (tp->layers)
        for (int l = 0; l < n_layers; l++) block_sel_free(&tp->layers[l]);
    block_sel_free(&tp->mtp_block);
    free(tp->layers);
    tp->layers = NULL;
    memset(&tp->mtp_block, 0, sizeof tp->mtp_block);
}

void dsv4_tape_free(dsv4_tape *tp) {
    if (!tp) return;
    tape_sel_free(tp, tp->n_layers);
    dsv4_ws_free(&tp->ws);
    free(tp->ids);
    free(tp);
}

/* The arrays of one block's discrete choices, for T rows. */
static dsv4_status block_sel_alloc(const struct dsv4_config *c, const dsv4_layer_w *L, int T, dsv4_block_act *a) {
    int K = c->n_activated_experts, E = c->n_routed_experts;
    a->moe.idx = malloc(((size_t)T * K + 1) * sizeof(int));
    a->moe.slot = malloc(((size_t)T * K + 1) * sizeof(int));
    a->moe.start = malloc(((size_t)E + 1) * sizeof(int));
    bool ok = a->moe.idx && a->moe.slot && a->moe.start;
    if (L->attn.has_indexer) {
        a->attn.sel = malloc(((size_t)T * L->attn.indexer.topk + 1) * sizeof(int));
        a->attn.n_sel = calloc((size_t)T + 1, sizeof(int));
        ok = ok && a->attn.sel && a->attn.n_sel;
    }
    return ok ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory for the routing of %d tokens", T);
}

/* Size the tape for T tokens; keeps the choices when T is unchanged. */
static dsv4_status tape_prepare(const dsv4_tmodel *tm, dsv4_tape *tp, int T) {
    const struct dsv4_config *c = &tm->model.cfg;
    dsv4_ws_reset(&tp->ws);
    if (tp->layers && tp->cap_T == T && tp->n_layers == c->n_layers) return DSV4_OK;
    tape_sel_free(tp, tp->n_layers);
    free(tp->ids);
    tp->routed = tp->mtp_routed = false;
    tp->cap_T = 0;
    tp->n_layers = c->n_layers;
    tp->ids = malloc(((size_t)T + 1) * sizeof(int32_t));
    tp->layers = calloc((size_t)c->n_layers + 1, sizeof *tp->layers);
    if (!tp->ids || !tp->layers) return dsv4_error(DSV4_ENOMEM, "out of memory for a tape of %d tokens", T);
    dsv4_status rc;
    for (int l = 0; l < c->n_layers; l++)
        if ((rc = block_sel_alloc(c, &tm->model.layers[l], T, &tp->layers[l]))) return rc;
    if (tm->model.mtp && (rc = block_sel_alloc(c, &tm->model.mtp->block, T, &tp->mtp_block))) return rc;
    tp->cap_T = T;
    return DSV4_OK;
}

/* ---- a block ------------------------------------------------------------------------------ */

static dsv4_status site_alloc(const struct dsv4_config *c, int T, dsv4_site_act *s, dsv4_workspace *ws) {
    int hc = c->hc_mult, d = c->dim, mix = (2 + hc) * hc;
    s->mixes = dsv4_ws_alloc(ws, (size_t)T * mix);
    s->post = dsv4_ws_alloc(ws, (size_t)T * hc);
    s->comb = dsv4_ws_alloc(ws, (size_t)T * hc * hc);
    s->a = dsv4_ws_alloc(ws, (size_t)T * d);
    s->u = dsv4_ws_alloc(ws, (size_t)T * d);
    s->v = dsv4_ws_alloc(ws, (size_t)T * d);
    if (!s->mixes || !s->post || !s->comb || !s->a || !s->u || !s->v)
        return dsv4_error(DSV4_ENOMEM, "out of memory for the activations of %d tokens", T);
    return DSV4_OK;
}

/* hc_pre and the sublayer norm of one site: X -> s->u */
static void site_pre(const struct dsv4_config *c, const dsv4_hc_w *hw, const float *norm, const float *X, int T,
                     dsv4_site_act *s) {
    int hc = c->hc_mult, d = c->dim;
    s->X = X;
    dsv4_hc_pre(hw, X, T, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, s->a, s->post, s->comb, s->mixes);
    for (int t = 0; t < T; t++) dsv4_rmsnorm(s->a + (size_t)t * d, norm, d, c->norm_eps, s->u + (size_t)t * d);
}

dsv4_status dsv4_block_train_forward(const struct dsv4_model *m, const dsv4_layer_w *L, const float *X,
                                     const int32_t *ids, int T, float *Y, dsv4_block_act *act, bool reuse_sel,
                                     bool indexer_loss, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim;
    dsv4_status rc;
    dsv4_site_act *sa = &act->attn_site, *sf = &act->ffn_site;
    float *Xm = dsv4_ws_alloc(ws, (size_t)T * hc * d);
    if (!Xm) return dsv4_error(DSV4_ENOMEM, "out of memory for the activations of %d tokens", T);
    if ((rc = site_alloc(c, T, sa, ws)) || (rc = site_alloc(c, T, sf, ws))) return rc;

    site_pre(c, &L->hc_attn, L->attn_norm, X, T, sa);
    if ((rc = dsv4_attention_train_forward(m, &L->attn, sa->u, T, sa->v, &act->attn, reuse_sel, indexer_loss, ws)))
        return rc;
    dsv4_hc_post(sa->v, X, sa->post, sa->comb, T, hc, d, Xm);

    site_pre(c, &L->hc_ffn, L->ffn_norm, Xm, T, sf);
    if ((rc = dsv4_moe_train_forward(m, &L->moe, sf->u, ids, T, sf->v, &act->moe, reuse_sel, ws))) return rc;
    dsv4_hc_post(sf->v, Xm, sf->post, sf->comb, T, hc, d, Y);
    return DSV4_OK;
}

/* One site backward: dY (the gradient of the site's output streams) -> dX (added). `dv` is
 * scratch of T*d floats; `sublayer` runs the sublayer's backward from dv into du. */
typedef dsv4_status (*sublayer_backward_fn)(const struct dsv4_model *m, const dsv4_layer_w *L, int T,
                                            const dsv4_block_act *act, const float *dv, float *du,
                                            const dsv4_layer_w *gL);

static dsv4_status attn_sublayer_backward(const struct dsv4_model *m, const dsv4_layer_w *L, int T,
                                          const dsv4_block_act *act, const float *dv, float *du, const dsv4_layer_w *gL) {
    return dsv4_attention_train_backward(m, &L->attn, act->attn_site.u, T, &act->attn, dv, du, &gL->attn);
}

static dsv4_status ffn_sublayer_backward(const struct dsv4_model *m, const dsv4_layer_w *L, int T,
                                         const dsv4_block_act *act, const float *dv, float *du, const dsv4_layer_w *gL) {
    return dsv4_moe_train_backward(m, &L->moe, act->ffn_site.u, T, &act->moe, dv, du, &gL->moe);
}

static dsv4_status site_backward(const struct dsv4_model *m, const dsv4_layer_w *L, const dsv4_hc_w *hw,
                                 const float *norm, const dsv4_hc_w *ghw, float *gnorm, int T, const dsv4_block_act *act,
                                 const dsv4_site_act *s, sublayer_backward_fn sublayer, const float *dY, float *dX,
                                 const dsv4_layer_w *gL) {
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim;
    float *dv = calloc((size_t)T * d + 1, sizeof(float)), *du = calloc((size_t)T * d + 1, sizeof(float));
    float *da = calloc((size_t)T * d + 1, sizeof(float)), *dpost = calloc((size_t)T * hc + 1, sizeof(float));
    float *dcomb = calloc((size_t)T * hc * hc + 1, sizeof(float));
    dsv4_status rc = DSV4_OK;
    if (!dv || !du || !da || !dpost || !dcomb) {
        rc = dsv4_error(DSV4_ENOMEM, "out of memory in the backward pass (%d tokens)", T);
        goto done;
    }
    dsv4_hc_post_backward(s->v, s->X, s->post, s->comb, T, hc, d, dY, dv, dX, dpost, dcomb);
    if ((rc = sublayer(m, L, T, act, dv, du, gL))) goto done;
    for (int t = 0; t < T; t++)
        dsv4_rmsnorm_backward(s->a + (size_t)t * d, norm, d, c->norm_eps, du + (size_t)t * d, da + (size_t)t * d, gnorm);
    rc = dsv4_hc_pre_backward(hw, s->X, T, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, s->mixes, da, dpost,
                              dcomb, dX, ghw);
done:
    free(dv);
    free(du);
    free(da);
    free(dpost);
    free(dcomb);
    return rc;
}

dsv4_status dsv4_block_train_backward(const struct dsv4_model *m, const dsv4_layer_w *L, int T,
                                      const dsv4_block_act *act, const float *dY, float *dX, const dsv4_layer_w *gL,
                                      float indexer_scale) {
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim;
    float *dXm = calloc((size_t)T * hc * d + 1, sizeof(float));
    if (!dXm) return dsv4_error(DSV4_ENOMEM, "out of memory in the backward pass (%d tokens)", T);
    dsv4_status rc = site_backward(m, L, &L->hc_ffn, L->ffn_norm, &gL->hc_ffn, gL->ffn_norm, T, act, &act->ffn_site,
                                   ffn_sublayer_backward, dY, dXm, gL);
    if (!rc)
        rc = site_backward(m, L, &L->hc_attn, L->attn_norm, &gL->hc_attn, gL->attn_norm, T, act, &act->attn_site,
                           attn_sublayer_backward, dXm, dX, gL);
    if (!rc && indexer_scale != 0.0f && L->attn.has_indexer)
        rc = dsv4_indexer_loss_backward(m, &L->attn, act->attn_site.u, T, &act->attn, indexer_scale, &gL->attn);
    free(dXm);
    return rc;
}

/* ---- the head and the losses -------------------------------------------------------------- */

/* The head over n rows of streams X, where row i predicts next[i] for i < n_next; with a
 * mask only the rows whose next token is a target (mask[i] != 0) get logits:
 *   logits [n_rows, V] = head . norm(hc_head(X))[rows]. */
static dsv4_status head_forward(const struct dsv4_model *m, const dsv4_hc_w *hc_head, const float *norm, const float *X,
                                int n, const int32_t *next, int n_next, const uint8_t *mask, dsv4_head_act *h,
                                dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim, V = c->vocab_size;
    h->X = X;
    h->mixes = dsv4_ws_alloc(ws, (size_t)n * hc);
    h->y = dsv4_ws_alloc(ws, (size_t)n * d);
    h->yn = dsv4_ws_alloc(ws, (size_t)n * d);
    h->rows = (int *)dsv4_ws_alloc(ws, (size_t)n + 1);
    h->targets = (int32_t *)dsv4_ws_alloc(ws, (size_t)n + 1);
    if (!h->mixes || !h->y || !h->yn || !h->rows || !h->targets)
        return dsv4_error(DSV4_ENOMEM, "out of memory for the head of %d tokens", n);
    h->n_rows = 0;
    for (int i = 0; i < n; i++)
        if (!mask || (i < n_next && mask[i])) {
            h->rows[h->n_rows] = i;
            h->targets[h->n_rows++] = i < n_next ? next[i] : -1;
        }
    h->logits = dsv4_ws_alloc(ws, (size_t)h->n_rows * V + 1);
    h->ysel = mask ? dsv4_ws_alloc(ws, (size_t)h->n_rows * d + 1) : NULL;
    if (!h->logits || (mask && !h->ysel))
        return dsv4_error(DSV4_ENOMEM, "out of memory for %d x %d logits", h->n_rows, V);
    dsv4_hc_head(hc_head, X, n, hc, d, c->norm_eps, c->hc_eps, h->y, h->mixes);
    for (int t = 0; t < n; t++) dsv4_rmsnorm(h->y + (size_t)t * d, norm, d, c->norm_eps, h->yn + (size_t)t * d);
    if (mask)
        for (int j = 0; j < h->n_rows; j++)
            memcpy(h->ysel + (size_t)j * d, h->yn + (size_t)h->rows[j] * d, (size_t)d * sizeof(float));
    else h->ysel = h->yn;
    dsv4_train_matmul(&m->head, h->ysel, h->n_rows, h->logits);
    return DSV4_OK;
}

/* Mean cross-entropy over the head's rows that have a target (counted in *n_loss); with
 * dlogits, adds its gradient times `weight`. */
static double head_loss(const dsv4_head_act *h, int V, float weight, float *dlogits, int *n_loss) {
    int n = 0;
    for (int j = 0; j < h->n_rows; j++) n += h->targets[j] >= 0;
    double total = 0.0;
    for (int j = 0; j < h->n_rows; j++)
        if (h->targets[j] >= 0)
            total += dsv4_cross_entropy(h->logits + (size_t)j * V, V, h->targets[j], weight / (float)n,
                                        dlogits ? dlogits + (size_t)j * V : NULL);
    if (n_loss) *n_loss = n;
    return n > 0 ? total / n : 0.0;
}

/* The head's backward for the loss rows: -> dX [n, hc, d] (added). */
static dsv4_status head_backward(const struct dsv4_model *m, const struct dsv4_model *g, const dsv4_hc_w *hc_head,
                                 const float *norm, const dsv4_hc_w *g_hc_head, float *g_norm, const dsv4_head_act *h,
                                 int n, float weight, float *dX) {
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim, V = c->vocab_size, nr = h->n_rows;
    float *dlogits = calloc((size_t)nr * V + 1, sizeof(float)), *dsel = calloc((size_t)nr * d + 1, sizeof(float));
    float *dy = calloc((size_t)n * d + 1, sizeof(float));
    dsv4_status rc = DSV4_OK;
    if (!dlogits || !dsel || !dy) {
        rc = dsv4_error(DSV4_ENOMEM, "out of memory for the gradient of %d x %d logits", nr, V);
        goto done;
    }
    head_loss(h, V, weight, dlogits, NULL);
    dsv4_matmul_backward(&m->head, h->ysel, nr, dlogits, dsel, &g->head);
    for (int j = 0; j < nr; j++) {
        size_t t = (size_t)h->rows[j];
        dsv4_rmsnorm_backward(h->y + t * d, norm, d, c->norm_eps, dsel + (size_t)j * d, dy + t * d, g_norm);
    }
    rc = dsv4_hc_head_backward(hc_head, h->X, n, hc, d, c->norm_eps, c->hc_eps, h->mixes, dy, dX, g_hc_head);
done:
    free(dlogits);
    free(dsel);
    free(dy);
    return rc;
}

/* The balance losses of the score-routed MoE layers of a block, and their weight for the
 * backward. */
static double block_balance(const struct dsv4_config *c, const dsv4_layer_w *L, dsv4_block_act *a, int T, float weight) {
    a->moe.balance = 0.0f;
    if (weight == 0.0f || L->moe.hash) return 0.0;
    a->moe.balance = weight;
    return dsv4_moe_balance_loss(c, T, a->moe.logits, 0.0f, NULL);
}

/* ---- the whole model ---------------------------------------------------------------------- */

/* The MTP block's forward over rows 0..T-2 (tp->T >= 2). */
static dsv4_status mtp_forward(dsv4_tmodel *tm, dsv4_tape *tp, bool reuse) {
    const struct dsv4_model *m = &tm->model;
    const struct dsv4_config *c = &m->cfg;
    const dsv4_mtp_w *t = m->mtp;
    int n = tp->T - 1, hc = c->hc_mult, d = c->dim;
    dsv4_workspace *ws = &tp->ws;
    tp->mtp_e = dsv4_ws_alloc(ws, (size_t)n * d);
    tp->mtp_en = dsv4_ws_alloc(ws, (size_t)n * d);
    tp->mtp_hn = dsv4_ws_alloc(ws, (size_t)n * hc * d);
    tp->mtp_X0 = dsv4_ws_alloc(ws, (size_t)n * hc * d);
    tp->mtp_X = dsv4_ws_alloc(ws, (size_t)n * hc * d);
    float *ep = dsv4_ws_alloc(ws, (size_t)n * d);
    if (!tp->mtp_e || !tp->mtp_en || !tp->mtp_hn || !tp->mtp_X0 || !tp->mtp_X || !ep)
        return dsv4_error(DSV4_ENOMEM, "out of memory for the MTP block (%d tokens)", n);
    const int32_t *next = tp->ids + 1;
    for (int r = 0; r < n; r++) dsv4_linear_dequant_row(&m->embed, next[r], tp->mtp_e + (size_t)r * d);
    for (int r = 0; r < n; r++) dsv4_rmsnorm(tp->mtp_e + (size_t)r * d, t->enorm, d, c->norm_eps, tp->mtp_en + (size_t)r * d);
    for (int r = 0; r < n * hc; r++)
        dsv4_rmsnorm(tp->X_final + (size_t)r * d, t->hnorm, d, c->norm_eps, tp->mtp_hn + (size_t)r * d);
    dsv4_train_matmul(&t->e_proj, tp->mtp_en, n, ep);
    dsv4_train_matmul(&t->h_proj, tp->mtp_hn, n * hc, tp->mtp_X0);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < hc; j++) {
            float *x = tp->mtp_X0 + ((size_t)r * hc + j) * d;
            const float *p = ep + (size_t)r * d;
            for (int i = 0; i < d; i++) x[i] = p[i] + x[i];
        }
    dsv4_status rc =
        dsv4_block_train_forward(m, &t->block, tp->mtp_X0, next, n, tp->mtp_X, &tp->mtp_block, reuse, false, ws);
    if (!rc)
        rc = head_forward(m, &t->hc_head, t->norm, tp->mtp_X, n, tp->ids + 2, n - 1, tp->lo.mask ? tp->lo.mask + 2 : NULL,
                          &tp->mtp_head, ws);
    return rc;
}

dsv4_status dsv4_train_forward(dsv4_tmodel *tm, dsv4_tape *tp, const int32_t *ids, int T, const dsv4_loss_opts *lo,
                               dsv4_losses *out) {
    const struct dsv4_model *m = &tm->model;
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim, V = c->vocab_size;
    if (T < 1) return dsv4_error(DSV4_EINVAL, "training forward: no tokens");
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return dsv4_error(DSV4_EINVAL, "token id %d at index %d is outside the vocabulary (0..%d)", ids[t], t, V - 1);
    dsv4_loss_opts none = {.main = 1.0f};
    if (!lo) lo = &none;
    if (lo->mtp != 0.0f && !m->mtp) return dsv4_error(DSV4_EUNSUPPORTED, "the MTP loss needs a model with an MTP block");
    tp->ready = false;
    dsv4_status rc = tape_prepare(tm, tp, T);
    if (rc) return rc;
    bool reuse = tp->reuse_routing && tp->routed && tp->T == T && !memcmp(tp->ids, ids, (size_t)T * sizeof(int32_t));
    if (!reuse) tp->routed = tp->mtp_routed = false; /* until this forward has made them all */
    tp->T = T;
    tp->lo = *lo;
    memcpy(tp->ids, ids, (size_t)T * sizeof(int32_t));
    memset(&tp->losses, 0, sizeof tp->losses);
    dsv4_workspace *ws = &tp->ws;
    bool want_mtp = lo->mtp != 0.0f && T >= 2, want_idx = lo->indexer != 0.0f;

    float *X = dsv4_ws_alloc(ws, (size_t)T * hc * d);
    if (!X) return dsv4_error(DSV4_ENOMEM, "out of memory for the activations of %d tokens", T);
    for (int t = 0; t < T; t++) { /* every stream starts as the token's embedding */
        float *x = X + (size_t)t * hc * d;
        dsv4_linear_dequant_row(&m->embed, ids[t], x);
        for (int j = 1; j < hc; j++) memcpy(x + (size_t)j * d, x, (size_t)d * sizeof(float));
    }
    for (int l = 0; l < c->n_layers; l++) {
        float *Y = dsv4_ws_alloc(ws, (size_t)T * hc * d);
        if (!Y) return dsv4_error(DSV4_ENOMEM, "out of memory for the activations of %d tokens", T);
        if ((rc = dsv4_block_train_forward(m, &m->layers[l], X, ids, T, Y, &tp->layers[l], reuse, want_idx, ws))) return rc;
        X = Y;
    }
    tp->X_final = X;
    if ((rc = head_forward(m, &m->hc_head, m->norm, X, T, ids + 1, T - 1, lo->mask ? lo->mask + 1 : NULL, &tp->head, ws)))
        return rc;
    tp->losses.main = head_loss(&tp->head, V, 0.0f, NULL, &tp->losses.n_main);
    tp->mtp_head.logits = NULL;
    if (want_mtp) {
        if ((rc = mtp_forward(tm, tp, reuse && tp->mtp_routed))) return rc;
        tp->losses.mtp = head_loss(&tp->mtp_head, V, 0.0f, NULL, &tp->losses.n_mtp);
    }
    for (int l = 0; l < c->n_layers; l++)
        tp->losses.balance += block_balance(c, &m->layers[l], &tp->layers[l], T, lo->balance);
    if (want_mtp) tp->losses.balance += block_balance(c, &m->mtp->block, &tp->mtp_block, T - 1, lo->balance);
    if (want_idx) {
        double total = 0.0;
        for (int l = 0; l < c->n_layers; l++) {
            if (!m->layers[l].attn.has_indexer) continue;
            int n = 0;
            double s = dsv4_indexer_loss(m, &m->layers[l].attn, T, &tp->layers[l].attn, &n);
            if (n) total += s / n;
            tp->losses.n_indexer += n;
        }
        tp->losses.indexer = total;
    }
    tp->mtp_routed = want_mtp || (reuse && tp->mtp_routed);
    tp->routed = tp->ready = true;
    tp->lo.mask = NULL; /* the heads keep their rows and targets; the caller's mask may go */
    if (out) *out = tp->losses;
    return DSV4_OK;
}

dsv4_status dsv4_train_backward(dsv4_tmodel *tm, dsv4_tape *tp) {
    const struct dsv4_model *m = &tm->model, *g = &tm->grad;
    const struct dsv4_config *c = &m->cfg;
    int T = tp->T, hc = c->hc_mult, d = c->dim;
    const dsv4_loss_opts *lo = &tp->lo;
    if (!tp->ready) return dsv4_error(DSV4_EINVAL, "training backward: no completed forward on this tape");
    size_t nX = (size_t)T * hc * d;
    float *dX = calloc(nX + 1, sizeof(float)), *dY = calloc(nX + 1, sizeof(float));
    dsv4_status rc = DSV4_OK;
    if (!dX || !dY) {
        rc = dsv4_error(DSV4_ENOMEM, "out of memory in the backward pass (%d tokens)", T);
        goto done;
    }
    /* the MTP loss: into the MTP block, the shared embedding and head, and the final streams */
    if (lo->mtp != 0.0f && tp->mtp_head.logits && T >= 2) {
        const dsv4_mtp_w *t = m->mtp, *gt = g->mtp;
        int n = T - 1;
        float *dXm = calloc((size_t)n * hc * d + 1, sizeof(float)), *dX0 = calloc((size_t)n * hc * d + 1, sizeof(float));
        float *dep = calloc((size_t)n * d + 1, sizeof(float)), *den = calloc((size_t)n * d + 1, sizeof(float));
        float *dhn = calloc((size_t)n * hc * d + 1, sizeof(float)), *de = calloc((size_t)n * d + 1, sizeof(float));
        if (!dXm || !dX0 || !dep || !den || !dhn || !de) rc = dsv4_error(DSV4_ENOMEM, "out of memory in the MTP backward");
        if (!rc)
            rc = head_backward(m, g, &t->hc_head, t->norm, &gt->hc_head, gt->norm, &tp->mtp_head, n, lo->mtp, dXm);
        if (!rc) rc = dsv4_block_train_backward(m, &t->block, n, &tp->mtp_block, dXm, dX0, &gt->block, 0.0f);
        if (!rc) {
            for (int r = 0; r < n; r++) /* X0 = e_proj(en) on every stream + h_proj(hn) */
                for (int j = 0; j < hc; j++) {
                    const float *s = dX0 + ((size_t)r * hc + j) * d;
                    for (int i = 0; i < d; i++) dep[(size_t)r * d + i] += s[i];
                }
            dsv4_matmul_backward(&t->e_proj, tp->mtp_en, n, dep, den, &gt->e_proj);
            dsv4_matmul_backward(&t->h_proj, tp->mtp_hn, n * hc, dX0, dhn, &gt->h_proj);
            for (int r = 0; r < n * hc; r++)
                dsv4_rmsnorm_backward(tp->X_final + (size_t)r * d, t->hnorm, d, c->norm_eps, dhn + (size_t)r * d,
                                      dY + (size_t)r * d, gt->hnorm);
            for (int r = 0; r < n; r++) {
                dsv4_rmsnorm_backward(tp->mtp_e + (size_t)r * d, t->enorm, d, c->norm_eps, den + (size_t)r * d,
                                      de + (size_t)r * d, gt->enorm);
                float *ge = dsv4_lin_data(&g->embed) + (size_t)tp->ids[r + 1] * d;
                for (int i = 0; i < d; i++) ge[i] += de[(size_t)r * d + i];
            }
        }
        free(dXm);
        free(dX0);
        free(dep);
        free(den);
        free(dhn);
        free(de);
        if (rc) goto done;
    }
    /* the main loss */
    if (lo->main != 0.0f &&
        (rc = head_backward(m, g, &m->hc_head, m->norm, &g->hc_head, g->norm, &tp->head, T, lo->main, dY)))
        goto done;
    /* the blocks, last to first */
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const dsv4_attn_w *aw = &m->layers[l].attn;
        float idx_scale = 0.0f;
        if (lo->indexer != 0.0f && aw->has_indexer) {
            int n = 0;
            dsv4_indexer_loss(m, aw, T, &tp->layers[l].attn, &n);
            idx_scale = n ? lo->indexer / (float)n : 0.0f;
        }
        memset(dX, 0, nX * sizeof(float));
        if ((rc = dsv4_block_train_backward(m, &m->layers[l], T, &tp->layers[l], dY, dX, &g->layers[l], idx_scale)))
            goto done;
        float *tmp = dY;
        dY = dX;
        dX = tmp;
    }
    /* the embedding: every stream started as a copy of the row */
    float *ge = dsv4_lin_data(&g->embed);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < hc; j++) {
            const float *s = dY + ((size_t)t * hc + j) * d;
            float *row = ge + (size_t)tp->ids[t] * d;
            for (int i = 0; i < d; i++) row[i] += s[i];
        }
done:
    free(dX);
    free(dY);
    return rc;
}
