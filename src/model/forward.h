/* forward.h: one batched forward step, as seen by the parts of a layer.
 *
 * A step feeds several sequences at once. Their tokens are laid out as consecutive rows
 * (segment s owns rows [row0, row0+n) at positions pos0..pos0+n-1 of its session). Matrix
 * products run over all rows together; attention, the compressors and the indexer work per
 * segment on that session's state. `state` selects which layer state of each session a block
 * uses: its layer id, or n_layers for the MTP block. */
#ifndef DSV4_FORWARD_H
#define DSV4_FORWARD_H

#include "infer/state.h"
#include "model/model.h"

typedef struct dsv4_fwd_seg {
    dsv4_session *s;
    int row0, n, pos0;
} dsv4_fwd_seg;

typedef struct dsv4_fwd_batch {
    int n_rows, n_segs;
    dsv4_fwd_seg *segs;
    int *pos;      /* [n_rows] absolute position of each row */
    int32_t *ids;  /* [n_rows] token ids (hash routing, the MTP block's input) */
    int *seg_of;   /* [n_rows] segment of each row */
    int state;     /* layer-state index in each session */
} dsv4_fwd_batch;

static inline dsv4_layer_state *dsv4_seg_state(const dsv4_fwd_batch *b, const dsv4_fwd_seg *sg) {
    return &sg->s->layers[b->state];
}

/* compressor.c: feed the step's tokens (a, z: [n_rows, coff*dc], computed by the caller)
 * through each segment's compressor state; completed rows are post-processed (norm, rope,
 * storage rounding) and appended to the state's row store. */
void dsv4_compressor_forward(const struct dsv4_model *m, const dsv4_compressor_w *w, const dsv4_rope *rope,
                             const dsv4_fwd_batch *b, bool indexer, const float *a, const float *z, float *tmp);
/* Pool one completed window from the state buffers (for tests and training). */
void dsv4_compressor_pool(const dsv4_compressor_w *w, const float *kv, const float *score, float *out);
/* Norm, rope at the window's first position, and the storage rounding of one entry. */
void dsv4_compressor_finish(const dsv4_compressor_w *w, const dsv4_rope *rope, float norm_eps, int pos_first,
                            dsv4_row_fmt fmt, int rd, float *entry);

/* indexer.c: top-k compressed rows for every row of the step. sel[n_rows, topk] gets row
 * indices (descending score, ties to the lower index), n_sel[n_rows] how many are valid. */
dsv4_status dsv4_indexer_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b,
                                 const float *u, const float *q_lat, int *sel, int *n_sel, dsv4_workspace *ws);
/* scores[k] = sum_h w[h] * relu(q_h . key_k) for the n_keys keys [n_keys, hd] of one query
 * q [nh, hd] with head weights w [nh]. */
void dsv4_indexer_scores(const float *q, const float *w, int nh, int hd, const float *keys, int n_keys,
                         float *scores);
/* Stable top-k of scores[0..n): indices of the k largest, ties to the lower index. */
int dsv4_topk(const float *scores, int n, int k, int *out);

/* attention.c: out[n_rows, dim] = Attention(u) for the layer; updates the session state. */
dsv4_status dsv4_attention_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b,
                                   const float *u, float *out, dsv4_workspace *ws);
/* One query row over K keys (= values), H heads of dim D, with per-head sinks. */
void dsv4_attend(const float *q, const float *keys, int K, int H, int D, float scale, const float *sink, float *o);

/* moe.c: out[n_rows, dim] = MoE(u) (routed experts + shared expert). */
dsv4_status dsv4_moe_forward(const struct dsv4_model *m, const dsv4_moe_w *w, const dsv4_fwd_batch *b,
                             const float *u, float *out, dsv4_workspace *ws);
/* One expert (routed or shared) on n rows: y[n, dim] = w2(route_w * h) with h = silu(min(g, L)) *
 * clamp(p, -L, L), g = w1 x, p = w3 x (route_w NULL: weight 1). Scratch: xq [n * max(dim, inter)],
 * g and p [n * inter]. */
void dsv4_expert_forward(const struct dsv4_model *m, const dsv4_expert_w *e, const float *x, int n, const float *route_w,
                         float *y, float *xq, float *g, float *p);
/* Routing of one token: experts idx[k] and weights w[k] from the router logits. */
void dsv4_moe_route(const struct dsv4_config *c, const dsv4_moe_w *w, const float *logits, int32_t token, int *idx,
                    float *weight);

#endif
