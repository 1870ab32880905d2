/* train.h: training DeepSeek-V4: f32 master weights, a whole-sequence forward that keeps
 * what the backward pass needs (the "tape"), the backward pass, and the losses.
 *
 * Weights. A dsv4_tmodel holds every parameter as an fp32 master copy under its official
 * name, all in one flat buffer, and the gradients in a second buffer of the same layout. Both
 * buffers are seen through the inference engine's own weight structs (dsv4_layer_w, ...) with
 * F32 linears, so the training forward calls the same math as inference (dsv4_hc_pre,
 * dsv4_rmsnorm, dsv4_compressor_pool, dsv4_moe_route, dsv4_matmul, ...), and `tm->model` is a
 * complete model the inference engine can run (sessions, generation) on the current weights.
 * `tm->grad` has the same shape over the gradient buffer: the gradient of
 * tm->model.layers[3].attn.wq_a is tm->grad.layers[3].attn.wq_a.
 *
 * Training runs on whole sequences from position 0 (one-shot prefill) in exact numerics
 * (fp32, no FP8/FP4 simulation): the training forward is a separate whole-sequence forward
 * that records activations (src/train/model_train.c), and every *_backward sits beside its
 * forward in src/train/ with the forward's arguments plus the gradients. Backward functions
 * ADD into the gradients of their inputs and parameters (llm.c's convention), so branches
 * that share an input (the residual streams, the embedding and head shared with MTP) simply
 * accumulate; callers zero the gradients once per step (dsv4_tmodel_zero_grad).
 *
 * Discrete choices are not differentiable: expert selection (score top-k, or the token-id hash
 * table) and the lightning indexer's top-k are taken as the forward computed them, and the
 * gradient flows through the selected values only. The indexer's own parameters are trained by
 * a separate KL loss toward the main attention's distribution over the selected compressed
 * rows (indexer_train.c); the LM loss does not reach them. gate.bias steers selection only and
 * gets no gradient (the trainer updates it with the auxiliary-loss-free rule). */
#ifndef DSV4_TRAIN_H
#define DSV4_TRAIN_H

#include <stdbool.h>

#include "model/model.h"

/* ---- parameters ------------------------------------------------------------------------- */

/* Limits of the backward pass (checked when a training model is made). */
#define DSV4_TRAIN_MAX_HC 8
#define DSV4_TRAIN_MAX_SINKHORN 64

typedef struct dsv4_tparam {
    char name[96]; /* official tensor name */
    int ndim;
    int64_t shape[2];
    size_t off, n; /* offset into the flat buffers, element count */
} dsv4_tparam;

typedef struct dsv4_tmodel {
    struct dsv4_model model; /* the values: a runnable model over `params` (exact numerics) */
    struct dsv4_model grad;  /* the same weight views over `grads` (weight fields only) */
    float *params, *grads;   /* flat, `n_floats` each (tensors 16-float aligned) */
    size_t n_floats;
    dsv4_tparam *table;      /* every parameter, in checkpoint order */
    int n_table;
    int32_t **tid2eid;       /* hash-routing tables, one per hash layer */
    int n_tid2eid;
    bool shared;             /* a view: params and tid2eid belong to a master model */
} dsv4_tmodel;

/* A model with every parameter zero, to be initialised by the caller; the hash-routing tables
 * get a balanced default (token t's k-th expert is (t*K + k) mod E). */
dsv4_status dsv4_tmodel_new(const struct dsv4_config *cfg, dsv4_tmodel **out);
/* The initial weights of training from scratch (init.c documents the rules): std is the
 * standard deviation of the matrices (initializer_range). */
void dsv4_tmodel_init(dsv4_tmodel *tm, uint64_t seed, float std);
/* Hash-routing tables balanced for token frequencies freq[vocab] (NULL: all equal), a
 * different random table per hash layer. */
void dsv4_tmodel_init_hash(dsv4_tmodel *tm, const double *freq, uint64_t seed);
/* fp32 master copies of a loaded model's weights (FP8/FP4 dequantised exactly). */
dsv4_status dsv4_tmodel_from_model(const struct dsv4_model *m, dsv4_tmodel **out);
/* A view of a master's parameters (and hash tables) with gradients of its own; the master
 * must outlive it. */
dsv4_status dsv4_tmodel_new_view(const dsv4_tmodel *master, dsv4_tmodel **out);
void dsv4_tmodel_free(dsv4_tmodel *tm);
void dsv4_tmodel_zero_grad(dsv4_tmodel *tm);
const dsv4_tparam *dsv4_tmodel_find(const dsv4_tmodel *tm, const char *name);
/* Write the parameters (or the gradients) as F32 safetensors under the official names (with
 * the hash tables as I32 when writing parameters); skip_zero leaves out all-zero tensors. */
dsv4_status dsv4_tmodel_write(const dsv4_tmodel *tm, const char *path, bool grads, bool skip_zero);

/* ---- the tape: activations of one training forward ---------------------------------------- */

/* One mHC site (attn or ffn) and its sublayer: X the residual streams it reads [T, hc, d]. */
typedef struct dsv4_site_act {
    const float *X;
    float *mixes;      /* [T, mix] hc_pre's mixes (after the rms factor) */
    float *post, *comb; /* [T, hc], [T, hc, hc] */
    float *a;          /* [T, d] collapsed input (before the sublayer norm) */
    float *u;          /* [T, d] normed sublayer input */
    float *v;          /* [T, d] sublayer output */
} dsv4_site_act;

typedef struct dsv4_comp_act {
    int n_rows;        /* T / ratio completed rows */
    float *a, *z;      /* [T, coff*dc] wkv and wgate outputs (z without ape) */
    float *pooled;     /* [n_rows, dc] before the norm */
    float *rows;       /* [n_rows, dc] the compressed rows attention (or the indexer) reads */
} dsv4_comp_act;

typedef struct dsv4_attn_act {
    float *qa, *q_lat; /* [T, q_lora_rank] wq_a output, after q_norm */
    float *qb, *q;     /* [T, H*D] wq_b output, after the per-head norm and RoPE */
    float *kva, *kv;   /* [T, D] wkv output, after kv_norm and RoPE */
    dsv4_comp_act comp;
    float *lse;        /* [T, H] log of each softmax denominator (the sink included) */
    float *o;          /* [T, H*D] attention output after the RoPE de-rotation (wo_a input) */
    float *zo;         /* [T, G*o_lora_rank] wo_a output (wo_b input) */
    /* CSA: the indexer's selection (persistent across forwards, see reuse_routing) */
    int *sel, *n_sel;  /* [T, topk], [T] */
    /* CSA with the indexer loss: the indexer's activations and the attention mass on the
     * selected rows (heads summed) */
    dsv4_comp_act icomp;
    float *iq, *iw;    /* [T, nh*hd] queries (roped, rotated), [T, nh] head weights */
    float *isc;        /* [T, topk] index scores of the selected rows */
    float *psel;       /* [T, topk] attention probability mass, summed over heads */
} dsv4_attn_act;

typedef struct dsv4_moe_act {
    float *logits;     /* [T, E] router logits */
    int *idx;          /* [T, K] chosen experts (persistent across forwards) */
    float *weight;     /* [T, K] routing weights */
    int *slot;         /* [T*K] (t*K + k) grouped by expert, ascending expert then token */
    int *start;        /* [E+1] each expert's range in `slot` */
    float *g, *p;      /* [T*K, inter] routed w1, w3 outputs in `slot` order */
    float *sg, *sp;    /* [T, inter] the shared expert's */
    float balance;     /* the backward adds balance * dL_bal/dlogits (score-routed layers) */
} dsv4_moe_act;

typedef struct dsv4_block_act {
    dsv4_site_act attn_site, ffn_site;
    dsv4_attn_act attn;
    dsv4_moe_act moe;
} dsv4_block_act;

typedef struct dsv4_head_act {
    const float *X;    /* [n, hc, d] final streams */
    float *mixes;      /* [n, hc] */
    float *y, *yn;     /* [n, d] hc_head output, after the final norm */
    int n_rows;        /* rows with a loss: logits are computed for these only */
    int *rows;         /* [n_rows] their positions (ascending) */
    int32_t *targets;  /* [n_rows] the token each should predict */
    float *ysel;       /* [n_rows, d] yn of those rows (the head's input) */
    float *logits;     /* [n_rows, vocab]; without a mask, every row in order */
} dsv4_head_act;

/* How the forward's losses combine for the backward. */
typedef struct dsv4_loss_opts {
    float main;        /* weight of L = mean over targets of CE(logits_i, ids[i+1]) */
    float mtp;         /* weight of L_mtp = mean over targets of CE(mtp_logits_i, ids[i+2]); 0 skips the
                        * MTP block */
    float indexer;     /* weight of the indexer loss (the sum over CSA layers of the mean KL
                        * per query, indexer_train.c); 0 skips it */
    float balance;     /* weight of the sequence-wise balance loss (the sum over score-routed
                        * MoE layers, the MTP block's included); 0 skips it */
    const uint8_t *mask; /* NULL: every next token is a target; else ids[i] is one iff mask[i]
                          * (L: rows i with mask[i+1]; L_mtp: rows i with mask[i+2]) */
} dsv4_loss_opts;

typedef struct dsv4_losses {
    double main, mtp, indexer, balance;
    int n_main, n_mtp, n_indexer; /* terms averaged (n_indexer: queries over all CSA layers) */
} dsv4_losses;

typedef struct dsv4_tape {
    int T, cap_T;
    int32_t *ids;
    dsv4_loss_opts lo;
    dsv4_losses losses;
    /* true: reuse the expert and indexer selections of the previous forward (same T), as a
     * finite-difference check needs; false: choose them as inference does */
    bool reuse_routing;
    bool routed, mtp_routed; /* the main (MTP) selections are valid for ids[0..T) */
    bool ready;        /* a forward completed: the backward may run */
    int n_layers;
    dsv4_workspace ws; /* float activations, reset by every forward */
    dsv4_block_act *layers;
    float *X_final;    /* [T, hc, d] */
    dsv4_head_act head;
    /* MTP: row i = the final streams at position i and the embedding of ids[i+1] */
    float *mtp_e, *mtp_en;    /* [T-1, d] embedding, after enorm */
    float *mtp_hn;            /* [T-1, hc, d] hnorm of the final streams */
    float *mtp_X0;            /* [T-1, hc, d] block input */
    dsv4_block_act mtp_block;
    float *mtp_X;             /* [T-1, hc, d] block output */
    dsv4_head_act mtp_head;
} dsv4_tape;

/* A tape serves one model (its arrays are sized by that model's config). */
dsv4_tape *dsv4_tape_new(void);
void dsv4_tape_free(dsv4_tape *tp);

/* Run the training forward on ids[0..T) (positions 0..T-1) and compute the losses `lo` asks
 * for (L is always computed). */
dsv4_status dsv4_train_forward(dsv4_tmodel *tm, dsv4_tape *tp, const int32_t *ids, int T, const dsv4_loss_opts *lo,
                               dsv4_losses *out);
/* Add the gradient of lo.main*L + lo.mtp*L_mtp + lo.indexer*L_idx + lo.balance*L_bal into
 * tm->grads. */
dsv4_status dsv4_train_backward(dsv4_tmodel *tm, dsv4_tape *tp);

/* ---- matrix products of training (gemm.c) -------------------------------------------------
 * sgemm (OpenBLAS, single-threaded) over a fixed grid of output tiles spread over OpenMP
 * threads: the results do not depend on the number of threads.
 * y[n, rows] = x[n, cols] W^T for an F32 view (other formats: dsv4_matmul); _ld: output rows
 * ldy floats apart. */
void dsv4_train_matmul(const dsv4_linear *L, const float *x, int n, float *y);
void dsv4_train_matmul_ld(const dsv4_linear *L, const float *x, int n, float *y, int ldy);
/* For y[n, rows] = x[n, cols] W^T over an F32 view L:
 *   dx[n, cols] += dy W       (dx may be NULL)
 *   dW[rows, cols] += dy^T x  (dL may be NULL; an F32 view of the gradient)
 * The _ld form takes row strides for x, dy and dx. */
void dsv4_matmul_backward(const dsv4_linear *L, const float *x, int n, const float *dy, float *dx,
                          const dsv4_linear *dL);
void dsv4_matmul_backward_ld(const dsv4_linear *L, const float *x, int ldx, int n, const float *dy, int ldy,
                             float *dx, int lddx, const dsv4_linear *dL);
/* C[M, N] = alpha op(A) op(B) + beta C, row-major (op = transpose when ta / tb), tiled as above. */
void dsv4_sgemm_tiled(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc);
/* OpenBLAS to one thread (done by the products themselves; callable early). */
void dsv4_train_blas_init(void);
/* The writable data of an F32 view (gradients). */
static inline float *dsv4_lin_data(const dsv4_linear *L) { return (float *)L->w; }

/* ---- backward of the library's per-vector operations (ops_backward.c) --------------------- */

/* y = w * x * rsqrt(mean(x^2) + eps): dx += ..., dw += dy * x * r (w, dw may be NULL). */
void dsv4_rmsnorm_backward(const float *x, const float *w, int n, float eps, const float *dy, float *dx, float *dw);
/* The rotation's transpose: dx = R(pos)^T dy in place (a rotation by -pos, or +pos for inverse). */
void dsv4_rope_apply_backward(const dsv4_rope *r, float *d, int pos, bool inverse);
/* Cross-entropy of one row: returns log(sum exp(logits)) - logits[target]; with dlogits, adds
 * scale * (softmax(logits) - onehot(target)) to it. */
double dsv4_cross_entropy(const float *logits, int V, int target, float scale, float *dlogits);

/* ---- backward of mHC (mhc_backward.c) ------------------------------------------------------ */

/* The Sinkhorn split of one token: gradients of the pre, post and comb outputs (any may be
 * NULL) give dmixes (written, mix values) and add into dscale[3], dbase[mix]. */
void dsv4_hc_split_sinkhorn_backward(const float *mixes, const float *scale, const float *base, int hc, int iters,
                                     float eps, const float *dpre, const float *dpost, const float *dcomb,
                                     float *dmixes, double *dscale, double *dbase);
/* hc_pre over n tokens: da [n, d], dpost [n, hc], dcomb [n, hc, hc] -> dX [n, hc, d] (added)
 * and the site's parameter gradients gw (fn, base, scale). `mixes` as the forward left them. */
dsv4_status dsv4_hc_pre_backward(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps, int iters,
                                 float hc_eps, const float *mixes, const float *da, const float *dpost,
                                 const float *dcomb, float *dX, const dsv4_hc_w *gw);
/* hc_post: dY [n, hc, d] -> dv [n, d], dR [n, hc, d], dpost [n, hc], dcomb [n, hc, hc] (all
 * added). */
void dsv4_hc_post_backward(const float *v, const float *R, const float *post, const float *comb, int n, int hc, int d,
                           const float *dY, float *dv, float *dR, float *dpost, float *dcomb);
/* hc_head: dy [n, d] -> dX (added) and gw. */
dsv4_status dsv4_hc_head_backward(const dsv4_hc_w *w, const float *X, int n, int hc, int d, float norm_eps,
                                  float hc_eps, const float *mixes, const float *dy, float *dX, const dsv4_hc_w *gw);

/* ---- the compressor (compressor_train.c) ----------------------------------------------------- */

/* dsv4_compressor_pool's gradient: dout [dc] -> dkv, dscore in the state-buffer layout
 * (added). */
void dsv4_compressor_pool_backward(const dsv4_compressor_w *w, const float *kv, const float *score, const float *dout,
                                   float *dkv, float *dscore);
/* Whole-sequence compressor over u [T, dim]: the n = T/ratio completed rows. */
dsv4_status dsv4_compressor_train_forward(const struct dsv4_model *m, const dsv4_compressor_w *w, const dsv4_rope *rope,
                                          const float *u, int T, dsv4_comp_act *act, dsv4_workspace *ws);
/* drows [n_rows, dc] -> du [T, dim] (added; may be NULL) and the parameter gradients gw. */
dsv4_status dsv4_compressor_train_backward(const struct dsv4_model *m, const dsv4_compressor_w *w,
                                           const dsv4_rope *rope, const float *u, int T, const dsv4_comp_act *act,
                                           const float *drows, float *du, const dsv4_compressor_w *gw);

/* ---- attention (attention_train.c) ----------------------------------------------------------- */

/* out [T, dim] = Attention(u) at positions 0..T-1; act keeps what the backward needs (its
 * sel / n_sel arrays are the caller's: with reuse_sel they are read, else the indexer fills
 * them); indexer_loss keeps what the indexer loss needs too. */
dsv4_status dsv4_attention_train_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                         float *out, dsv4_attn_act *act, bool reuse_sel, bool indexer_loss,
                                         dsv4_workspace *ws);
/* dout [T, dim] -> du [T, dim] (added) and gw; the indexer is not differentiated. */
dsv4_status dsv4_attention_train_backward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                          const dsv4_attn_act *act, const float *dout, float *du,
                                          const dsv4_attn_w *gw);

/* ---- the lightning indexer (indexer_train.c) ------------------------------------------------- */

/* Scores and top-k for every query (as dsv4_indexer_forward in exact numerics); with
 * keep, the activations the indexer loss needs are kept in act. */
dsv4_status dsv4_indexer_train_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                       dsv4_attn_act *act, bool select, bool keep, dsv4_workspace *ws);
/* The indexer's KL loss of one layer: sum over queries of KL(p || softmax(scores)) over the
 * selected rows, p = the attention mass on those rows (heads summed, normalised). Returns the
 * sum and the number of queries in *n. */
double dsv4_indexer_loss(const struct dsv4_model *m, const dsv4_attn_w *aw, int T, const dsv4_attn_act *act, int *n);
/* Its gradient times `scale` into the indexer's parameters (the inputs are detached). */
dsv4_status dsv4_indexer_loss_backward(const struct dsv4_model *m, const dsv4_attn_w *aw, const float *u, int T,
                                       const dsv4_attn_act *act, float scale, const dsv4_attn_w *gw);

/* ---- MoE (moe_train.c) ----------------------------------------------------------------------- */

/* out [T, dim] = MoE(u) for tokens ids (hash routing); act's idx / slot / start arrays are
 * the caller's (with reuse_sel, idx is read instead of chosen). */
dsv4_status dsv4_moe_train_forward(const struct dsv4_model *m, const dsv4_moe_w *w, const float *u, const int32_t *ids,
                                   int T, float *out, dsv4_moe_act *act, bool reuse_sel, dsv4_workspace *ws);
/* dout -> du (added) and gw (gate.bias gets nothing). */
dsv4_status dsv4_moe_train_backward(const struct dsv4_model *m, const dsv4_moe_w *w, const float *u, int T,
                                    const dsv4_moe_act *act, const float *dout, float *du, const dsv4_moe_w *gw);
/* The sequence-wise balance loss sum_i f_i P_i of one score-routed layer from its router
 * logits [T, E] (moe_train.c has the definition); with dlogits, adds scale * its gradient. */
double dsv4_moe_balance_loss(const struct dsv4_config *c, int T, const float *logits, float scale, float *dlogits);
/* dsv4_moe_route's gradient: dweight [K] of the chosen experts -> dlogits [E] (added). */
void dsv4_moe_route_backward(const struct dsv4_config *c, const dsv4_moe_w *w, const float *logits, int32_t token,
                             const int *idx, const float *weight, const float *dweight, float *dlogits);

/* ---- a block (model_train.c) -----------------------------------------------------------------
 * Y [T, hc, d] = the block on the streams X; the backward adds dX and the gradients gL, plus
 * indexer_scale times the gradient of the block's indexer loss (CSA, when kept). */

dsv4_status dsv4_block_train_forward(const struct dsv4_model *m, const dsv4_layer_w *L, const float *X,
                                     const int32_t *ids, int T, float *Y, dsv4_block_act *act, bool reuse_sel,
                                     bool indexer_loss, dsv4_workspace *ws);
/* dY [T, hc, d] -> dX [T, hc, d] (added). */
dsv4_status dsv4_block_train_backward(const struct dsv4_model *m, const dsv4_layer_w *L, int T,
                                      const dsv4_block_act *act, const float *dY, float *dX, const dsv4_layer_w *gL,
                                      float indexer_scale);

#endif
