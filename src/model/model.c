/* model.c: opening a model and the whole forward pass, top to bottom.
 *
 *   X = hc copies of embed[token]                      (the hc residual streams)
 *   for each layer:  X = hc_post(Attention(attn_norm(hc_pre(X))), X)
 *                    X = hc_post(MoE(ffn_norm(hc_pre(X))), X)
 *   logits = head . norm(hc_head(X))
 *
 * The MTP block takes the final streams X of position t and the embedding of the token at
 * t+1, runs one more block (with its own window state) and its own head collapse, and shares
 * the embedding and output head.
 *
 * DeepSeek-V4.1 models take their own path through the same entry points (model_v41.c). */
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "infer/state.h"
#include "model/forward.h"
#include "model/mhc.h"
#include "model/model.h"
#include "numeric/numeric.h"

/* ---- workspace ------------------------------------------------------------------------------ */

float *dsv4_ws_alloc(dsv4_workspace *ws, size_t floats) {
    floats = (floats + 15) & ~(size_t)15; /* keep every block 64-byte aligned */
    dsv4_ws_block *b = ws->head;
    while (b && b->cap - b->used < floats) b = b->next;
    if (!b) {
        size_t cap = DSV4_MAX(floats, (size_t)1 << 20);
        b = calloc(1, sizeof *b);
        if (!b) {
            dsv4_error(DSV4_ENOMEM, "out of memory for the forward workspace");
            return NULL;
        }
        b->data = dsv4_alloc_aligned(cap * sizeof(float), "forward workspace");
        if (!b->data) {
            free(b);
            return NULL;
        }
        b->cap = cap;
        b->next = ws->head;
        ws->head = b;
    }
    float *p = b->data + b->used;
    b->used += floats;
    memset(p, 0, floats * sizeof(float));
    return p;
}

void dsv4_ws_reset(dsv4_workspace *ws) {
    for (dsv4_ws_block *b = ws->head; b; b = b->next) b->used = 0;
}

void dsv4_ws_free(dsv4_workspace *ws) {
    dsv4_ws_block *b = ws->head;
    while (b) {
        dsv4_ws_block *n = b->next;
        free(b->data);
        free(b);
        b = n;
    }
    ws->head = NULL;
}

/* ---- open / close --------------------------------------------------------------------------- */

dsv4_status dsv4_model_open(const char *dir, const dsv4_open_opts *opts, dsv4_model **out) {
    *out = NULL;
    if (!dir || !dir[0]) return dsv4_error(DSV4_EINVAL, "dsv4_model_open: no model directory given");
    dsv4_open_opts def = {0};
    if (!opts) opts = &def;
    dsv4_numeric_init();
    if (opts->n_threads > 0) dsv4_set_threads(opts->n_threads);
    dsv4_model *m = dsv4_calloc(1, sizeof *m, "model");
    if (!m) return DSV4_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->numerics = opts->numerics;
    m->kv_bf16_rope = opts->kv_bf16_rope != 0;
    m->dir = strdup(dir);
    dsv4_status rc = m->dir ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory");
    if (!rc) rc = dsv4_config_load(dir, &m->cfg);
    if (!rc && opts->progress) opts->progress(opts->progress_user, "reading tensors", 0.1);
    if (!rc) rc = dsv4_st_open_dir(dir, &m->st);
    if (!rc && opts->progress) opts->progress(opts->progress_user, "binding weights", 0.5);
    if (!rc) rc = dsv4_weights_bind(m);
    m->index_keys_intended = opts->index_keys_intended != 0;
    m->first_topk_tie = INT32_MAX;
    if (!rc && m->engram) {
        if (opts->progress) opts->progress(opts->progress_user, opts->engram_ram ? "Engram tables to RAM" : "Engram", 0.8);
        rc = dsv4_engram_init(m, opts->engram_ram ? DSV4_ENGRAM_RAM : DSV4_ENGRAM_MAPPED, opts->engram_sync != 0);
    }
    if (!rc && opts->progress) opts->progress(opts->progress_user, "ready", 1.0);
    if (rc) {
        dsv4_model_close(m);
        return rc;
    }
    *out = m;
    return DSV4_OK;
}

void dsv4_model_close(dsv4_model *m) {
    if (!m) return;
    dsv4_engram_free(m->engram);
    dsv4_weights_free(m);
    dsv4_st_close(m->st);
    dsv4_ws_free(&m->ws);
    pthread_mutex_destroy(&m->lock);
    free(m->dir);
    free(m);
}

const dsv4_config *dsv4_model_config(const dsv4_model *m) { return &m->cfg; }
int dsv4_model_vocab(const dsv4_model *m) { return m->cfg.vocab_size; }
int dsv4_model_dim(const dsv4_model *m) { return m->cfg.dim; }
int dsv4_model_hc(const dsv4_model *m) { return m->cfg.hc_mult; }
int dsv4_model_has_mtp(const dsv4_model *m) { return m->mtp != NULL; }
const char *dsv4_model_dir(const dsv4_model *m) { return m->dir; }

/* ---- the forward pass ----------------------------------------------------------------------- */

/* One block (attention then MoE) over the step's rows; X [N, hc, d] is updated in place. */
static dsv4_status block_forward(dsv4_model *m, const dsv4_layer_w *L, const dsv4_fwd_batch *b, float *X) {
    const struct dsv4_config *c = &m->cfg;
    int N = b->n_rows, hc = c->hc_mult, d = c->dim, mix = (2 + hc) * hc;
    dsv4_workspace *ws = &m->ws;
    float *a = dsv4_ws_alloc(ws, (size_t)N * d), *v = dsv4_ws_alloc(ws, (size_t)N * d);
    float *post = dsv4_ws_alloc(ws, (size_t)N * hc), *comb = dsv4_ws_alloc(ws, (size_t)N * hc * hc);
    float *mixes = dsv4_ws_alloc(ws, (size_t)N * mix), *Y = dsv4_ws_alloc(ws, (size_t)N * hc * d);
    if (!a || !v || !post || !comb || !mixes || !Y) return DSV4_ENOMEM;
    dsv4_status rc;

    dsv4_hc_pre(&L->hc_attn, X, N, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, a, post, comb, mixes);
    for (int r = 0; r < N; r++) dsv4_rmsnorm(a + (size_t)r * d, L->attn_norm, d, c->norm_eps, a + (size_t)r * d);
    double t0 = m->perf ? dsv4_now() : 0;
    if ((rc = dsv4_attention_forward(m, &L->attn, b, a, v, ws))) return rc;
    if (m->perf) m->perf->attn_s += dsv4_now() - t0;
    dsv4_hc_post(v, X, post, comb, N, hc, d, Y);

    dsv4_hc_pre(&L->hc_ffn, Y, N, hc, d, c->norm_eps, c->hc_sinkhorn_iters, c->hc_eps, a, post, comb, mixes);
    for (int r = 0; r < N; r++) dsv4_rmsnorm(a + (size_t)r * d, L->ffn_norm, d, c->norm_eps, a + (size_t)r * d);
    if ((rc = dsv4_moe_forward(m, &L->moe, b, a, v, ws))) return rc;
    dsv4_hc_post(v, Y, post, comb, N, hc, d, X);
    return DSV4_OK;
}

/* logits[n, vocab] = head . norm(hc_head(X)) for the listed rows of X. */
static dsv4_status head_forward(dsv4_model *m, const dsv4_hc_w *hc_head, const float *norm_w, const float *X,
                                const int *rows, int n, float *logits) {
    const struct dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, d = c->dim;
    float *Xs = dsv4_ws_alloc(&m->ws, (size_t)n * hc * d), *y = dsv4_ws_alloc(&m->ws, (size_t)n * d);
    float *mixes = dsv4_ws_alloc(&m->ws, (size_t)n * hc);
    if (!Xs || !y || !mixes) return DSV4_ENOMEM;
    for (int i = 0; i < n; i++) memcpy(Xs + (size_t)i * hc * d, X + (size_t)rows[i] * hc * d, (size_t)hc * d * sizeof(float));
    dsv4_hc_head(hc_head, Xs, n, hc, d, c->norm_eps, c->hc_eps, y, mixes);
    for (int i = 0; i < n; i++) dsv4_rmsnorm(y + (size_t)i * d, norm_w, d, c->norm_eps, y + (size_t)i * d);
    double t0 = m->perf ? dsv4_now() : 0;
    dsv4_matmul(&m->head, y, n, logits);
    if (m->perf) m->perf->head_s += dsv4_now() - t0;
    return DSV4_OK;
}

static void embed_row(const dsv4_model *m, int32_t id, float *out) { dsv4_linear_dequant_row(&m->embed, id, out); }

/* Lay out the batch's rows and check every item. */
dsv4_status dsv4_fwd_batch_build(dsv4_model *m, dsv4_batch_item *items, int n_items, dsv4_fwd_batch *b, int state_of_mtp) {
    const struct dsv4_config *c = &m->cfg;
    int N = 0;
    for (int i = 0; i < n_items; i++) {
        dsv4_session *s = items[i].session;
        if (!s || s->m != m) return dsv4_error(DSV4_EINVAL, "batch item %d: session does not belong to this model", i);
        if (items[i].n < 0 || (items[i].n > 0 && !items[i].ids))
            return dsv4_error(DSV4_EINVAL, "batch item %d: bad token count %d", i, items[i].n);
        for (int j = 0; j < i; j++)
            if (items[j].session == s) return dsv4_error(DSV4_EINVAL, "batch items %d and %d share a session", j, i);
        int pos = state_of_mtp ? s->mtp_pos : s->pos;
        if ((long long)pos + items[i].n > s->max_ctx)
            return dsv4_error(DSV4_EINVAL, "sequence of %d tokens would exceed the session's context of %d tokens",
                              pos + items[i].n, s->max_ctx);
        for (int t = 0; t < items[i].n; t++)
            if (items[i].ids[t] < 0 || items[i].ids[t] >= c->vocab_size)
                return dsv4_error(DSV4_EINVAL, "token id %d at index %d is outside the vocabulary (0..%d)", items[i].ids[t], t,
                                  c->vocab_size - 1);
        N += items[i].n;
    }
    b->n_rows = N;
    b->n_segs = n_items;
    b->segs = calloc((size_t)n_items + 1, sizeof *b->segs);
    b->pos = calloc((size_t)N + 1, sizeof(int));
    b->ids = calloc((size_t)N + 1, sizeof(int32_t));
    b->seg_of = calloc((size_t)N + 1, sizeof(int));
    if (!b->segs || !b->pos || !b->ids || !b->seg_of) return dsv4_error(DSV4_ENOMEM, "out of memory laying out a batch");
    int row = 0;
    for (int i = 0; i < n_items; i++) {
        dsv4_session *s = items[i].session;
        int pos0 = state_of_mtp ? s->mtp_pos : s->pos;
        b->segs[i] = (dsv4_fwd_seg){s, row, items[i].n, pos0};
        for (int t = 0; t < items[i].n; t++, row++) {
            b->pos[row] = pos0 + t;
            b->ids[row] = items[i].ids[t];
            b->seg_of[row] = i;
        }
    }
    b->state = state_of_mtp ? c->n_layers : 0;
    return DSV4_OK;
}

void dsv4_fwd_batch_free(dsv4_fwd_batch *b) {
    free(b->segs);
    free(b->pos);
    free(b->ids);
    free(b->seg_of);
}

/* Logits wanted by the items: row list and where each goes. */
static dsv4_status emit_logits(dsv4_model *m, const dsv4_hc_w *hc_head, const float *norm_w, dsv4_batch_item *items,
                               int n_items, const dsv4_fwd_batch *b, const float *X) {
    int V = m->cfg.vocab_size;
    int n = 0;
    for (int i = 0; i < n_items; i++)
        n += items[i].want_logits == DSV4_LOGITS_ALL ? items[i].n : (items[i].want_logits == DSV4_LOGITS_LAST && items[i].n > 0);
    if (!n) return DSV4_OK;
    int *rows = malloc((size_t)n * sizeof(int));
    float **dst = malloc((size_t)n * sizeof(float *));
    if (!rows || !dst) {
        free(rows);
        free(dst);
        return dsv4_error(DSV4_ENOMEM, "out of memory for logits");
    }
    int k = 0;
    for (int i = 0; i < n_items; i++) {
        const dsv4_fwd_seg *sg = &b->segs[i];
        if (items[i].want_logits == DSV4_LOGITS_ALL)
            for (int t = 0; t < sg->n; t++, k++) {
                rows[k] = sg->row0 + t;
                dst[k] = items[i].logits + (size_t)t * V;
            }
        else if (items[i].want_logits == DSV4_LOGITS_LAST && sg->n > 0) {
            rows[k] = sg->row0 + sg->n - 1;
            dst[k++] = items[i].logits;
        }
    }
    /* bounded chunks keep the [chunk, vocab] buffer small for long prompts */
    dsv4_status rc = DSV4_OK;
    const int chunk = 64;
    float *buf = malloc((size_t)DSV4_MIN(n, chunk) * V * sizeof(float));
    if (!buf) rc = dsv4_error(DSV4_ENOMEM, "out of memory for logits");
    for (int c0 = 0; c0 < n && !rc; c0 += chunk) {
        int cn = DSV4_MIN(chunk, n - c0);
        rc = head_forward(m, hc_head, norm_w, X, rows + c0, cn, buf);
        for (int i = 0; i < cn && !rc; i++) memcpy(dst[c0 + i], buf + (size_t)i * V, (size_t)V * sizeof(float));
    }
    free(buf);
    free(rows);
    free(dst);
    return rc;
}

dsv4_status dsv4_forward_batch(dsv4_model *m, dsv4_batch_item *items, int n_items) {
    const struct dsv4_config *c = &m->cfg;
    dsv4_fwd_batch b = {0};
    pthread_mutex_lock(&m->lock);
    if (c->family == DSV4_ARCH_V41) {
        dsv4_status rc = dsv4_forward_batch_v41(m, items, n_items);
        pthread_mutex_unlock(&m->lock);
        return rc;
    }
    dsv4_ws_reset(&m->ws);
    dsv4_status rc = dsv4_fwd_batch_build(m, items, n_items, &b, 0);
    int N = b.n_rows, hc = c->hc_mult, d = c->dim;
    float *X = NULL;
    if (!rc && N > 0) {
        X = dsv4_ws_alloc(&m->ws, (size_t)N * hc * d);
        if (!X) rc = DSV4_ENOMEM;
    }
    if (!rc && N > 0) {
        for (int r = 0; r < N; r++) {
            float *x = X + (size_t)r * hc * d;
            embed_row(m, b.ids[r], x);
            for (int j = 1; j < hc; j++) memcpy(x + (size_t)j * d, x, (size_t)d * sizeof(float));
        }
        for (int l = 0; l < c->n_layers && !rc; l++) {
            b.state = l;
            rc = block_forward(m, &m->layers[l], &b, X);
        }
        if (!rc) rc = emit_logits(m, &m->hc_head, m->norm, items, n_items, &b, X);
        for (int i = 0; i < n_items && !rc; i++)
            if (items[i].hidden)
                memcpy(items[i].hidden, X + (size_t)b.segs[i].row0 * hc * d, (size_t)items[i].n * hc * d * sizeof(float));
        if (!rc)
            for (int i = 0; i < n_items; i++) items[i].session->pos += items[i].n;
    }
    dsv4_fwd_batch_free(&b);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

dsv4_status dsv4_forward(dsv4_session *s, const int32_t *ids, int n, int want_logits, float *logits) {
    dsv4_batch_item it = {s, ids, n, want_logits, logits, NULL};
    return dsv4_forward_batch(s->m, &it, 1);
}

dsv4_status dsv4_mtp_forward(dsv4_session *s, const float *hidden, const int32_t *next_ids, int n, float *logits) {
    dsv4_model *m = s->m;
    const struct dsv4_config *c = &m->cfg;
    if (!m->mtp) return dsv4_error(DSV4_EUNSUPPORTED, "%s: the model has no MTP block", m->dir);
    const dsv4_mtp_w *t = m->mtp;
    int hc = c->hc_mult, d = c->dim;
    dsv4_batch_item it = {s, next_ids, n, DSV4_LOGITS_ALL, logits, NULL};
    dsv4_fwd_batch b = {0};
    pthread_mutex_lock(&m->lock);
    dsv4_ws_reset(&m->ws);
    dsv4_status rc = dsv4_fwd_batch_build(m, &it, 1, &b, 1);
    float *X = NULL, *e = NULL, *ep = NULL, *hx = NULL, *xq = NULL;
    if (!rc && n > 0) {
        X = dsv4_ws_alloc(&m->ws, (size_t)n * hc * d);
        e = dsv4_ws_alloc(&m->ws, (size_t)n * d);
        ep = dsv4_ws_alloc(&m->ws, (size_t)n * d);
        hx = dsv4_ws_alloc(&m->ws, (size_t)n * hc * d);
        xq = dsv4_ws_alloc(&m->ws, (size_t)n * hc * d);
        if (!X || !e || !ep || !hx || !xq) rc = DSV4_ENOMEM;
    }
    if (!rc && n > 0) {
        /* X_in = e_proj(enorm(embed(next))) broadcast to every stream + h_proj(hnorm(stream)) */
        for (int r = 0; r < n; r++) {
            embed_row(m, next_ids[r], e + (size_t)r * d);
            dsv4_rmsnorm(e + (size_t)r * d, t->enorm, d, c->norm_eps, e + (size_t)r * d);
            for (int j = 0; j < hc; j++) {
                const float *src = hidden + ((size_t)r * hc + j) * d;
                dsv4_rmsnorm(src, t->hnorm, d, c->norm_eps, hx + ((size_t)r * hc + j) * d);
            }
        }
        dsv4_linear_forward(&t->e_proj, e, n, ep, m->numerics, xq);
        dsv4_linear_forward(&t->h_proj, hx, n * hc, X, m->numerics, xq);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < hc; j++) {
                float *x = X + ((size_t)r * hc + j) * d;
                const float *p = ep + (size_t)r * d;
                for (int i = 0; i < d; i++) x[i] = p[i] + x[i];
            }
        rc = block_forward(m, &t->block, &b, X);
        if (!rc) rc = emit_logits(m, &t->hc_head, t->norm, &it, 1, &b, X);
        if (!rc) s->mtp_pos += n;
    }
    dsv4_fwd_batch_free(&b);
    pthread_mutex_unlock(&m->lock);
    return rc;
}
