/* model.h: the weights of a DeepSeek-V4 / V4.1 model as plain structs, and the model object.
 *
 * Each part of the architecture owns a weights struct (mhc, attention with its compressor and
 * indexer, MoE with its experts, the MTP block). Matrices are dsv4_linear views into the
 * memory-mapped checkpoint; small vectors (norm weights, mHC parameters, biases, sinks) are
 * converted to owned fp32 arrays at load, so the math never cares how they were stored.
 * weights.c binds names to these structs and checks every dtype and shape. V4.1 reuses the
 * same structs (its compressor has no ape and no overlap; its indexer owns key projections
 * instead of a compressor) and adds the Engram tables and the DSpark draft head. */
#ifndef DSV4_MODEL_H
#define DSV4_MODEL_H

#include <pthread.h>
#include <stdbool.h>

#include "dsv4.h"
#include "io/safetensors.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/engram.h"

/* mHC parameters of one site (attn, ffn) or of a head collapse. */
typedef struct dsv4_hc_w {
    float *fn;    /* [mix, hc*dim]; mix = (2+hc)*hc for sites, hc for heads */
    float *base;  /* [mix] */
    float *scale; /* [3] for sites, [1] for heads */
    dsv4_linear fn_lin; /* fn as an F32 linear, for the batched mixes */
} dsv4_hc_w;

/* The KV compressor: softmax-gated pooling of `ratio` tokens (overlapping windows when
 * ratio == 4), followed by RMSNorm, RoPE and the storage rounding. */
typedef struct dsv4_compressor_w {
    int ratio, dc;   /* compression ratio, output dims (head_dim or index_head_dim) */
    bool overlap;    /* ratio == 4: entries pool the previous window's A-halves too */
    bool rotate;     /* indexer keys: Hadamard + FP4 instead of FP8 */
    dsv4_linear wkv, wgate; /* [coff*dc, dim], run in fp32 */
    float *ape;      /* [ratio, coff*dc] learned in-window position bias */
    float *norm;     /* [dc] */
} dsv4_compressor_w;

typedef struct dsv4_indexer_w {
    int n_heads, head_dim, topk;
    dsv4_linear wq_b;         /* [n_heads*head_dim, q_lora_rank] */
    dsv4_linear weights_proj; /* [n_heads, dim] */
    dsv4_compressor_w comp;   /* V4: the keys' own compressor */
    dsv4_linear wk;           /* V4.1 key owners: [head_dim, kv head_dim], keys from the KV latent */
    float *k_norm;            /* V4.1 key owners: [head_dim] */
} dsv4_indexer_w;

typedef struct dsv4_attn_w {
    int ratio;                /* 0 window only, 4 CSA, 128 HCA (any > 0 compresses) */
    float *sink;              /* [n_heads] */
    dsv4_linear wq_a, wq_b, wkv, wo_a, wo_b;
    float *q_norm, *kv_norm;
    dsv4_compressor_w comp;   /* when ratio > 0 */
    bool has_indexer;         /* ratio == 4 */
    dsv4_indexer_w indexer;
    const dsv4_rope *rope;    /* plain (ratio 0) or YaRN (compressed layers) */
    /* V4.1 (CSA2): the layer's role in its group. A KV source compresses and owns index
     * keys; an index source scores (its own wq_b / weights_proj); the rest reuse. */
    bool csa2;                /* V4.1 attention (no per-head q norm, FP8 window over all dims) */
    bool kv_source, index_source, candidate_source, uses_candidates;
    int kv_src, index_src;    /* layers whose compressed KV / selections this layer reads */
} dsv4_attn_w;

typedef struct dsv4_expert_w {
    dsv4_linear w1, w2, w3; /* gate [inter, dim], down [dim, inter], up [inter, dim] */
} dsv4_expert_w;

typedef struct dsv4_moe_w {
    int n_experts, top_k; /* routed experts and how many a token uses (DSpark has its own) */
    float gate_temp;    /* router logits are divided by it (V4.1) */
    dsv4_linear gate;   /* router [n_experts, dim], fp32 math */
    float *bias;        /* [n_experts] selection-only bias (score-routed layers) */
    float *bias_vl;     /* V4.1: the bias of image tokens (bound when present, unused by text) */
    int32_t *tid2eid;   /* [vocab, top_k] (hash-routed layers) */
    bool hash;
    dsv4_expert_w *experts;
    dsv4_expert_w shared;
} dsv4_moe_w;

typedef struct dsv4_layer_w {
    int id;
    dsv4_hc_w hc_attn, hc_ffn;
    float *attn_norm, *ffn_norm;
    dsv4_attn_w attn;
    dsv4_moe_w moe;
    int engram;         /* V4.1: index into the model's Engram layers, -1 without */
} dsv4_layer_w;

typedef struct dsv4_mtp_w {
    dsv4_layer_w block;
    dsv4_linear e_proj, h_proj;
    float *enorm, *hnorm, *norm;
    dsv4_hc_w hc_head;
} dsv4_mtp_w;

/* V4.1's DSpark draft head: n_mtp_layers stages (blocks whose attention reads the main
 * model's hidden states through a window), then the shared head with a Markov refinement. */
typedef struct dsv4_dspark_w {
    int n_stages, block_size, noise_id, n_targets, rank;
    dsv4_layer_w *stages;
    dsv4_linear main_proj;      /* [dim, n_targets*dim] */
    float *main_norm, *norm;    /* [dim] */
    dsv4_linear markov_embed;   /* [vocab, rank] rows looked up */
    dsv4_linear markov_head;    /* [vocab, rank], fp32 */
    dsv4_linear confidence;     /* [1, dim + rank], fp32 */
} dsv4_dspark_w;

/* Grow-only scratch memory for one forward step: blocks are never moved, so pointers stay
 * valid until dsv4_ws_reset. */
typedef struct dsv4_ws_block {
    struct dsv4_ws_block *next;
    size_t cap, used;
    float *data;
} dsv4_ws_block;
typedef struct dsv4_workspace {
    dsv4_ws_block *head;
} dsv4_workspace;
float *dsv4_ws_alloc(dsv4_workspace *ws, size_t floats); /* zeroed; NULL on ENOMEM */
void dsv4_ws_reset(dsv4_workspace *ws);
void dsv4_ws_free(dsv4_workspace *ws);

/* Counters a benchmark reads (dsv4 bench): time and work of the expert products. Updated
 * only while model->perf is set; the forward pass never depends on them. */
typedef struct dsv4_perf {
    double expert_s;       /* wall time of the routed + shared expert products */
    double expert_cpu_s;   /* CPU time of all threads meanwhile */
    double expert_flops;   /* their floating-point operations */
    double expert_bytes;   /* weight bytes they read: each expert used in a step, once */
    double head_s;         /* wall time of the LM head product */
    double attn_s;         /* wall time of the attention blocks (projections included) */
} dsv4_perf;

struct dsv4_model {
    char *dir;
    struct dsv4_config cfg;
    dsv4_st *st;
    dsv4_numerics numerics;
    bool kv_bf16_rope; /* store KV rope dims in bf16 (the 584-byte production rows) */
    dsv4_linear embed; /* [vocab, dim]: rows are looked up, never multiplied */
    dsv4_linear head;  /* [vocab, dim] */
    float *norm;
    dsv4_hc_w hc_head;
    dsv4_layer_w *layers;
    dsv4_mtp_w *mtp;   /* NULL without an MTP block */
    /* V4.1 */
    dsv4_dspark_w *dspark;       /* NULL without DSpark */
    dsv4_engram *engram;         /* NULL without Engram layers */
    bool index_keys_intended;    /* CSA2: own group keys on every step (not the reference's stale slot) */
    dsv4_rope rope_plain, rope_yarn;
    /* owned fp32 copies of small tensors, freed at close */
    void **owned;
    int n_owned, cap_owned;
    /* one forward step at a time per model */
    pthread_mutex_t lock;
    dsv4_workspace ws;
    dsv4_perf *perf;   /* NULL unless a benchmark is counting */
    /* Diagnostics a test reads: the first position whose indexer top-k boundary was a near-tie
     * (the k-th kept and the best dropped score within 1e-6 relative), where any last-bit
     * difference from another implementation may select another row. INT32_MAX: none yet. */
    int first_topk_tie;
};

/* weights.c */
dsv4_status dsv4_weights_bind(struct dsv4_model *m);
void dsv4_weights_free(struct dsv4_model *m);

#endif
