/* forward.h: one batched forward step, as seen by the parts of a layer.
 *
 * A step feeds several sequences at once. Their tokens are laid out as consecutive rows
 * (segment s owns rows [row0, row0+n) at positions pos0..pos0+n-1 of its session). Matrix
 * products run over all rows together; attention, the compressors and the indexer work per
 * segment on that session's state. `state` selects which layer state of each session a block
 * uses: its layer id, or n_layers for the MTP block (V4.1: n_layers + s for DSpark stage s).
 *
 * V4.1's CSA2 layers hand results down the stack within a step: an index source publishes
 * its selections (and the candidate source its candidate blocks) in the step's dsv4_csa2_rt,
 * which the following layers of its group read. */
#ifndef DSV4_FORWARD_H
#define DSV4_FORWARD_H

#include "infer/state.h"
#include "model/model.h"

typedef struct dsv4_fwd_seg {
    dsv4_session *s;
    int row0, n, pos0;
} dsv4_fwd_seg;

/* What V4.1 attention layers publish for the layers after them within one step. */
typedef struct dsv4_csa2_rt {
    int topk, cand_cap;
    int *sel, *n_sel;   /* [n_rows, topk] compressed rows selected (ascending), [n_rows] how many */
    int *cand, *n_cand; /* [n_rows, cand_cap] candidate blocks of the candidate source */
    int sel_layer;      /* the index source that published sel (-1: none yet this step) */
} dsv4_csa2_rt;

typedef struct dsv4_fwd_batch {
    int n_rows, n_segs;
    dsv4_fwd_seg *segs;
    int *pos;      /* [n_rows] absolute position of each row */
    int32_t *ids;  /* [n_rows] token ids (hash routing, the MTP block's input) */
    int *seg_of;   /* [n_rows] segment of each row */
    int state;     /* layer-state index in each session */
    dsv4_csa2_rt *csa2;  /* V4.1 */
    bool dspark;         /* V4.1: the rows are a DSpark draft block ... */
    int dspark_pos;      /* ... reading its stage's window up to main position dspark_pos */
} dsv4_fwd_batch;

/* model.c: lay out the items' rows (checking sessions, ids and context), and release. */
dsv4_status dsv4_fwd_batch_build(struct dsv4_model *m, dsv4_batch_item *items, int n_items, dsv4_fwd_batch *b,
                                 int state_of_mtp);
void dsv4_fwd_batch_free(dsv4_fwd_batch *b);

/* model_v41.c: the V4.1 forward step (called with the model locked), one single-pass block,
 * and the initial streams (embedding in every stream, the one-hot first mix). */
dsv4_status dsv4_forward_batch_v41(struct dsv4_model *m, dsv4_batch_item *items, int n_items);
dsv4_status dsv4_block_forward_v41(struct dsv4_model *m, const dsv4_layer_w *L, const dsv4_fwd_batch *b, float *X,
                                   const float *pre_in, float *pre_out);
void dsv4_streams_init_v41(const struct dsv4_model *m, const int32_t *ids, int n, float *X, float *pre);

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

/* csa2.c: V4.1's compressed part of attention for layer aw: the KV source's compressor and
 * index keys, the index source's scoring (candidate pool, top-k), published in b->csa2. */
dsv4_status dsv4_csa2_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b, const float *u,
                              const float *q_lat, dsv4_workspace *ws);
/* The index-key source a decode-semantics row at position p of layer l scores against under
 * the official code's shared slot (-1: its own group's keys), and how many of its rows existed
 * then (*avail). */
int dsv4_csa2_stale_source(const struct dsv4_model *m, const dsv4_session *s, int layer, int p, int pos0, int *avail);
/* The session's shared index-key slot after the step that ends at position `last`
 * (prefill = the step started at position 0 with `n` tokens). */
int dsv4_csa2_slot_after(const struct dsv4_model *m, int last, bool prefill, int n);

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
