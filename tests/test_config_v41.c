/* test_config_v41.c: DeepSeek-V4.1 configs in both spellings, layer roles, and refusals.
 *
 *  - The tiny reference checkpoint's HF config.json (text_config, HF key names) and its
 *    inference_config.json (flat ModelArgs names) give the same configuration.
 *  - DeepSeek-V4.1-Flash's values (spec v41-model.md, table 1.1) give the release's layer
 *    roles: 2 SWA, 4 Full (2, 8, 14, 20), 4 Reindex (24, 28, 32, 36), 30 Reuse.
 *  - Inconsistent configs are refused with a message naming the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/config.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static void test_two_spellings(void) {
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s/refvectors-v41/models/tiny_v41flash/config.json", DSV4_SHARED);
    snprintf(p2, sizeof p2, "%s/refvectors-v41/models/tiny_v41flash/inference_config.json", DSV4_SHARED);
    char *j1 = slurp(p1), *j2 = slurp(p2);
    CHECK(j1 && j2, "cannot read %s / %s", p1, p2);
    if (!j1 || !j2) return;
    struct dsv4_config a, b;
    CHECK(dsv4_config_parse(j1, p1, &a) == DSV4_OK, "HF config: %s", dsv4_errmsg());
    CHECK(dsv4_config_parse(j2, p2, &b) == DSV4_OK, "inference config: %s", dsv4_errmsg());
    CHECK(a.family == DSV4_ARCH_V41 && b.family == DSV4_ARCH_V41, "both are V4.1 configs");
    memcpy(b.model_type, a.model_type, sizeof a.model_type);
    b.max_position_embeddings = a.max_position_embeddings; /* max_seq_len is a runtime limit in the inference file */
    CHECK(!memcmp(&a, &b, sizeof a), "the two spellings give different configurations");
    CHECK(a.block_r == 32 && a.block_c == 32 && a.act_block == 32 && a.fp8 && a.expert_fp4, "FP8 32x32 blocks, FP4 experts");
    CHECK(a.n_mtp_layers == 3 && a.dspark_block_size == 4 && a.n_dspark_targets == 3 && a.dspark_n_routed_experts == 4,
          "DSpark keys");
    CHECK(a.n_engram_layers == 2 && a.engram_num_embeddings[1] == 12436 && a.engram_compressed_vocab_size == 173, "Engram keys");
    CHECK(a.candidate_source_layer == 5 && a.candidate_topk_blocks == 8 && a.candidate_block_size == 4, "candidate keys");
    const char *roles[9] = {"SWA", "SWA", "Full", "Reuse", "Full", "Full", "Reuse", "Reindex", "Reuse"};
    for (int l = 0; l < 9; l++)
        CHECK(!strcmp(dsv4_config_layer_role(&a, l), roles[l]), "layer %d is %s, expected %s", l, dsv4_config_layer_role(&a, l),
              roles[l]);
    CHECK(dsv4_config_kv_source_of(&a, 7) == 5 && dsv4_config_index_source_of(&a, 8) == 7 &&
              dsv4_config_kv_source_of(&a, 3) == 2,
          "group sources");
    free(j1);
    free(j2);
}

/* DeepSeek-V4.1-Flash (text_config of the release, spec table 1.1). */
static const char *FLASH =
    "{\"model_type\": \"deepseek_v41\", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\","
    " \"weight_block_size\": [32, 32], \"scale_fmt\": \"ue8m0\", \"expert_dtype\": \"fp4\"},"
    " \"text_config\": {\"vocab_size\": 129280, \"hidden_size\": 5120, \"num_hidden_layers\": 40,"
    " \"num_nextn_predict_layers\": 3, \"num_attention_heads\": 64, \"num_key_value_heads\": 1, \"head_dim\": 512,"
    " \"qk_rope_head_dim\": 64, \"q_lora_rank\": 1280, \"o_groups\": 8, \"o_lora_rank\": 1024, \"sliding_window\": 128,"
    " \"compress_ratios\": [0,0,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0],"
    " \"kv_source_layer_ids\": [2, 8, 14, 20], \"index_source_layer_ids\": [2, 8, 14, 20, 24, 28, 32, 36],"
    " \"candidate_source_layer_id\": 20, \"candidate_topk_blocks\": 2048, \"candidate_block_size\": 8,"
    " \"index_n_heads\": 32, \"index_head_dim\": 128, \"index_topk\": 512, \"compress_rope_theta\": 160000,"
    " \"rope_theta\": 10000, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 16, \"original_max_position_embeddings\": 65536,"
    " \"beta_fast\": 32, \"beta_slow\": 1}, \"max_position_embeddings\": 1048576, \"n_routed_experts\": 384,"
    " \"num_experts_per_tok\": 6, \"n_shared_experts\": 1, \"moe_intermediate_size\": 2304, \"scoring_func\": \"sqrtsoftplus\","
    " \"routed_scaling_factor\": 1.5, \"swiglu_limit\": 10.0, \"rms_norm_eps\": 1e-20, \"hc_mult\": 4,"
    " \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-6, \"engram_layer_ids\": [1, 14],"
    " \"engram_num_embeddings\": [384006168, 384016682], \"engram_max_ngram_size\": 4, \"engram_vocab_size\": 16000000,"
    " \"engram_n_heads\": 8, \"engram_head_dim\": 256, \"engram_pad_token_id\": 2, \"engram_compressed_vocab_size\": 99092,"
    " \"dspark_block_size\": 5, \"dspark_noise_token_id\": 128799, \"dspark_target_layer_ids\": [37, 38, 39],"
    " \"dspark_markov_rank\": 256, \"dspark_n_routed_experts\": 128, \"dspark_num_experts_per_tok\": 3}}";

static void test_flash_roles(void) {
    struct dsv4_config c;
    CHECK(dsv4_config_parse(FLASH, "flash", &c) == DSV4_OK, "V4.1-Flash config: %s", dsv4_errmsg());
    int n[4] = {0};
    const char *names[4] = {"SWA", "Full", "Reindex", "Reuse"};
    for (int l = 0; l < c.n_layers; l++)
        for (int k = 0; k < 4; k++) n[k] += !strcmp(dsv4_config_layer_role(&c, l), names[k]);
    CHECK(n[0] == 2 && n[1] == 4 && n[2] == 4 && n[3] == 30, "roles SWA %d Full %d Reindex %d Reuse %d, expected 2/4/4/30", n[0],
          n[1], n[2], n[3]);
    CHECK(dsv4_config_kv_source_of(&c, 39) == 20 && dsv4_config_index_source_of(&c, 39) == 36, "layer 39 reads 20 and 36");
    CHECK(dsv4_config_engram_index(&c, 14) == 1 && c.engram_num_embeddings[0] == 384006168, "Engram layers");
}

/* A broken copy of the tiny config must fail naming `key`. */
static void expect_refused(const char *from, const char *to, const char *key) {
    char path[4096];
    snprintf(path, sizeof path, "%s/refvectors-v41/models/tiny_v41flash/config.json", DSV4_SHARED);
    char *j = slurp(path);
    if (!j) return;
    char *at = strstr(j, from);
    CHECK(at != NULL, "test setup: %s not in the config", from);
    if (!at) {
        free(j);
        return;
    }
    size_t nf = strlen(from), nt = strlen(to), n = strlen(j);
    char *k = malloc(n - nf + nt + 1);
    memcpy(k, j, (size_t)(at - j));
    memcpy(k + (at - j), to, nt);
    strcpy(k + (at - j) + nt, at + nf);
    struct dsv4_config c;
    dsv4_status rc = dsv4_config_parse(k, "broken", &c);
    CHECK(rc != DSV4_OK, "a config with %s -> %s was accepted", from, to);
    CHECK(rc == DSV4_OK || strstr(dsv4_errmsg(), key), "the message \"%s\" does not name %s", dsv4_errmsg(), key);
    free(k);
    free(j);
}

static void test_refusals(void) {
    /* layer 2 stops being an index source: layers 2-4 have no indexer of their ratio */
    expect_refused("\"index_source_layer_ids\": [\n   2,", "\"index_source_layer_ids\": [\n   5,", "index_source_layer_ids");
    /* a KV source of ratio 0 */
    expect_refused("\"kv_source_layer_ids\": [\n   2,", "\"kv_source_layer_ids\": [\n   0,", "compress_ratios");
    expect_refused("\"engram_num_embeddings\": [\n   12126,\n   12436\n  ]", "\"engram_num_embeddings\": [\n   12126\n  ]",
                   "engram_num_embeddings");
    expect_refused("\"engram_head_dim\": 32", "\"engram_head_dim\": 20", "engram_head_dim");
    expect_refused("\"dspark_noise_token_id\": 511", "\"dspark_noise_token_id\": 512", "dspark_noise_token_id");
}

int main(void) {
    test_two_spellings();
    test_flash_roles();
    test_refusals();
    return check_done("test_config_v41");
}
