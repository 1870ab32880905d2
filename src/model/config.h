/* config.h: the model's hyper-parameters, read from a Hugging Face config.json.
 *
 * Field names follow the official inference code (ModelArgs); the loader accepts the HF key
 * and the inference key for each field (hidden_size or dim, ...). Keys that decide shapes are
 * required and a missing one is an error naming it; the rest default as the official code.
 *
 * Two model families share the engine. DeepSeek-V4 (CSA/HCA attention, mHC with a head
 * collapse, hash-routed first layers, one MTP block) and DeepSeek-V4.1 (CSA2 attention whose
 * compressed KV, index keys and selections are shared across a group of layers, single-pass
 * mHC, Engram n-gram memory, the DSpark draft head). A V4.1 config is recognised by its
 * model_type (deepseek_v41) or by its CSA2 keys; its HF form nests the text model's keys in
 * "text_config", its inference form (inference/config.json) is flat with other key names. */
#ifndef DSV4_CONFIG_H
#define DSV4_CONFIG_H

#include "dsv4.h"

#define DSV4_MAX_LAYERS 256

#define DSV4_MAX_ENGRAM_LAYERS 8
#define DSV4_MAX_NGRAM 8
#define DSV4_MAX_DSPARK_TARGETS 8
#define DSV4_MAX_DSPARK_STAGES 16 /* V4.1: num_nextn_predict_layers */

typedef enum { DSV4_SCORE_SQRTSOFTPLUS, DSV4_SCORE_SIGMOID, DSV4_SCORE_SOFTMAX } dsv4_score_func;
typedef enum { DSV4_ARCH_V4 = 0, DSV4_ARCH_V41 = 1 } dsv4_arch; /* the model family */

struct dsv4_config {
    char model_type[32];
    dsv4_arch family;
    int vocab_size, dim, n_layers, n_mtp_layers;
    int n_heads, head_dim, rope_head_dim, q_lora_rank, o_groups, o_lora_rank;
    int n_kv_heads;
    int window_size;
    int compress_ratios[DSV4_MAX_LAYERS]; /* n_layers + n_mtp_layers entries */
    float rope_theta, compress_rope_theta;
    /* YaRN: applied on compressed layers when original_seq_len > 0 */
    int original_seq_len;
    float rope_factor, beta_fast, beta_slow;
    int max_position_embeddings;
    int index_n_heads, index_head_dim, index_topk;
    int n_routed_experts, n_activated_experts, n_shared_experts, moe_inter_dim, n_hash_layers;
    dsv4_score_func score_func;
    float route_scale, swiglu_limit, norm_eps;
    int hc_mult, hc_sinkhorn_iters;
    float hc_eps;
    int bos_token_id, eos_token_id;
    /* storage */
    int fp8;                  /* quantization_config present: FP8 block-scaled linears */
    int block_r, block_c;     /* weight_block_size, 128 x 128 in V4, 32 x 32 in V4.1 */
    int act_block;            /* activation quantisation block before FP8/FP4 matmuls (= block_c) */
    int expert_fp4;           /* expert_dtype == "fp4" */

    /* ---- V4.1 ---- */
    float gate_temp;          /* router logits are divided by it */
    /* CSA2: which layers compress KV (and own index keys), which run an indexer, and the
     * candidate pool (a source layer that pre-selects blocks for the later indexers) */
    int n_kv_sources, kv_source_layers[DSV4_MAX_LAYERS];
    int n_index_sources, index_source_layers[DSV4_MAX_LAYERS];
    int candidate_source_layer; /* -1: none */
    int candidate_topk_blocks, candidate_block_size;
    /* Engram */
    int n_engram_layers, engram_layer_ids[DSV4_MAX_ENGRAM_LAYERS];
    long long engram_num_embeddings[DSV4_MAX_ENGRAM_LAYERS];
    int engram_max_ngram, engram_vocab_size, engram_n_heads, engram_head_dim, engram_pad_id;
    int engram_compressed_vocab_size;
    /* DSpark (the draft head, n_mtp_layers stages) */
    int dspark_block_size, dspark_noise_token_id, dspark_markov_rank;
    int n_dspark_targets, dspark_target_layer_ids[DSV4_MAX_DSPARK_TARGETS];
    int dspark_n_routed_experts, dspark_n_activated_experts;
    int image_token_id;
};

/* Parse `dir`/config.json. */
dsv4_status dsv4_config_load(const char *dir, struct dsv4_config *cfg);
/* Parse a config from JSON text (path is used in messages). */
dsv4_status dsv4_config_parse(const char *json_text, const char *path, struct dsv4_config *cfg);

/* Layer kinds by compression ratio. */
static inline int dsv4_layer_ratio(const struct dsv4_config *c, int layer) { return c->compress_ratios[layer]; }

/* V4.1 layer roles. A KV source compresses KV and owns index keys; an index source runs an
 * indexer; every other layer with a ratio reuses what its group's sources published. */
int dsv4_config_is_kv_source(const struct dsv4_config *c, int layer);
int dsv4_config_is_index_source(const struct dsv4_config *c, int layer);
/* The KV source / index source a layer reads from: the latest one at or before it (-1: none). */
int dsv4_config_kv_source_of(const struct dsv4_config *c, int layer);
int dsv4_config_index_source_of(const struct dsv4_config *c, int layer);
/* Index of `layer` in engram_layer_ids, -1 if it has no Engram. */
int dsv4_config_engram_index(const struct dsv4_config *c, int layer);
/* "SWA", "Full", "Reindex" or "Reuse" (the tech report's names for V4.1 layers). */
const char *dsv4_config_layer_role(const struct dsv4_config *c, int layer);

#endif
