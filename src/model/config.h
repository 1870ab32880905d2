/* config.h: the model's hyper-parameters, read from a Hugging Face config.json.
 *
 * Field names follow the official inference code (ModelArgs); the loader accepts the HF key
 * and the inference key for each field (hidden_size or dim, ...). Keys that decide shapes are
 * required and a missing one is an error naming it; the rest default as the official code. */
#ifndef DSV4_CONFIG_H
#define DSV4_CONFIG_H

#include "dsv4.h"

#define DSV4_MAX_LAYERS 256

typedef enum { DSV4_SCORE_SQRTSOFTPLUS, DSV4_SCORE_SIGMOID, DSV4_SCORE_SOFTMAX } dsv4_score_func;

struct dsv4_config {
    char model_type[32];
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
    int block_r, block_c;     /* weight_block_size, 128 x 128 in V4 */
    int expert_fp4;           /* expert_dtype == "fp4" */
};

/* Parse `dir`/config.json. */
dsv4_status dsv4_config_load(const char *dir, struct dsv4_config *cfg);
/* Parse a config from JSON text (path is used in messages). */
dsv4_status dsv4_config_parse(const char *json_text, const char *path, struct dsv4_config *cfg);

/* Layer kinds by compression ratio. */
static inline int dsv4_layer_ratio(const struct dsv4_config *c, int layer) { return c->compress_ratios[layer]; }

#endif
