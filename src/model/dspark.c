/* dspark.c: DSpark, DeepSeek-V4.1's draft head.
 *
 * After the main model has fed position p and chosen the next token (the anchor, for p+1),
 * DSpark drafts the `block` tokens after it in one pass:
 *   ids  = anchor, then block-1 copies of the noise token, at positions p+1 .. p+block
 *   X    = their embeddings in every stream, first mix one-hot
 *   each stage s: a single-pass block whose attention reads stage s's window (the main
 *        model's states of positions up to p, written during the main steps, model_v41.c)
 *        plus every row of the block, with no causal mask inside the block
 *   y    = the last mix collapse of X;  logits = head . norm(y)
 * and then a sequential Markov refinement: with out[0] = anchor, for i = 0..block-1,
 *   logits[i] += markov_head . markov_embed[out[i]],  out[i+1] = argmax logits[i]
 *   confidence[i] = proj([y_i, markov_embed[out[i]]])  (a raw linear output)
 * so each drafted token conditions the next one through a rank-r bigram term. The draft is
 * out[1..block]. The block's rows are not kept: drafting leaves the session unchanged. */
#include <math.h>

#include "base/base.h"
#include "infer/state.h"
#include "model/forward.h"
#include "model/mhc.h"
#include "model/model.h"

int dsv4_model_dspark_block(const dsv4_model *m) { return m->dspark ? m->dspark->block_size : 0; }

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static dsv4_status draft(dsv4_session *s, int32_t anchor, int32_t *out_ids, float *logits_out, float *conf_out) {
    dsv4_model *m = s->m;
    const struct dsv4_config *c = &m->cfg;
    const dsv4_dspark_w *ds = m->dspark;
    int B = ds->block_size, hc = c->hc_mult, d = c->dim, V = c->vocab_size, R = ds->rank, p = s->pos - 1;
    dsv4_workspace *ws = &m->ws;
    dsv4_ws_reset(ws);
    float *X = dsv4_ws_alloc(ws, (size_t)B * hc * d), *P = dsv4_ws_alloc(ws, (size_t)B * hc);
    float *P2 = dsv4_ws_alloc(ws, (size_t)B * hc), *y = dsv4_ws_alloc(ws, (size_t)B * d);
    float *yn = dsv4_ws_alloc(ws, (size_t)B * d), *emb = dsv4_ws_alloc(ws, (size_t)R);
    float *cin = dsv4_ws_alloc(ws, (size_t)(d + R)), *bias = dsv4_ws_alloc(ws, (size_t)V);
    float *logits = malloc((size_t)B * V * sizeof(float));
    int32_t *ids = malloc((size_t)B * sizeof(int32_t));
    int *pos = malloc((size_t)B * sizeof(int)), *seg_of = calloc((size_t)B, sizeof(int));
    dsv4_status rc = DSV4_OK;
    if (!X || !P || !P2 || !y || !yn || !emb || !cin || !bias || !logits || !ids || !pos || !seg_of)
        rc = dsv4_error(DSV4_ENOMEM, "out of memory drafting %d tokens", B);
    if (!rc) {
        for (int i = 0; i < B; i++) {
            ids[i] = i == 0 ? anchor : ds->noise_id;
            pos[i] = p + 1 + i;
        }
        dsv4_fwd_seg seg = {s, 0, B, p + 1};
        dsv4_fwd_batch b = {.n_rows = B, .n_segs = 1, .segs = &seg, .pos = pos, .ids = ids, .seg_of = seg_of};
        b.dspark = true;
        b.dspark_pos = p;
        dsv4_streams_init_v41(m, ids, B, X, P);
        for (int st = 0; st < ds->n_stages && !rc; st++) {
            b.state = c->n_layers + st;
            rc = dsv4_block_forward_v41(m, &ds->stages[st], &b, X, P, P2);
            float *t = P;
            P = P2;
            P2 = t;
        }
    }
    if (!rc) {
        dsv4_hc_collapse(X, P, B, hc, d, y);
        for (int i = 0; i < B; i++) dsv4_rmsnorm(y + (size_t)i * d, ds->norm, d, c->norm_eps, yn + (size_t)i * d);
        dsv4_matmul(&m->head, yn, B, logits);
        int32_t cur = anchor;
        for (int i = 0; i < B; i++) {
            dsv4_linear_dequant_row(&ds->markov_embed, cur, emb);
            dsv4_matmul(&ds->markov_head, emb, 1, bias);
            float *li = logits + (size_t)i * V;
            for (int v = 0; v < V; v++) li[v] += bias[v];
            if (conf_out) {
                memcpy(cin, y + (size_t)i * d, (size_t)d * sizeof(float));
                memcpy(cin + d, emb, (size_t)R * sizeof(float));
                dsv4_matmul(&ds->confidence, cin, 1, conf_out + i);
            }
            cur = argmax(li, V);
            out_ids[i] = cur;
        }
        if (logits_out) memcpy(logits_out, logits, (size_t)B * V * sizeof(float));
    }
    free(logits);
    free(ids);
    free(pos);
    free(seg_of);
    return rc;
}

dsv4_status dsv4_dspark_draft(dsv4_session *s, int32_t anchor, int32_t *out_ids, float *logits, float *confidence) {
    dsv4_model *m = s->m;
    if (!m->dspark) return dsv4_error(DSV4_EUNSUPPORTED, "%s: the model has no DSpark draft head", m->dir);
    if (s->pos < 1) return dsv4_error(DSV4_EINVAL, "DSpark drafts after a fed token: the session is empty");
    if (anchor < 0 || anchor >= m->cfg.vocab_size)
        return dsv4_error(DSV4_EINVAL, "anchor token id %d is outside the vocabulary (0..%d)", anchor, m->cfg.vocab_size - 1);
    pthread_mutex_lock(&m->lock);
    dsv4_status rc = draft(s, anchor, out_ids, logits, confidence);
    pthread_mutex_unlock(&m->lock);
    return rc;
}
