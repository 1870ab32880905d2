/* config.c: config.json -> struct dsv4_config, with validation.
 *
 * The official release ships two configs: the HF config.json (hidden_size, num_hidden_layers,
 * ...) and inference/config.json (dim, n_layers, ...). We accept either spelling. V4.1's HF
 * config nests the text model under "text_config" (the vision tower and the quantization
 * block stay at the top level) and renames a few keys against its inference config
 * (kv_source_layer_ids / kv_source_layers, engram_pad_token_id / engram_pad_id, ...); both are
 * read. Values are checked for the relations the forward pass relies on (head_dim > rope dims,
 * heads divisible by groups, every compressed layer has a source of its ratio, ...), so a bad
 * config fails here and not later. */
#include <jansson.h>
#include <stdio.h>

#include "base/base.h"
#include "model/config.h"

typedef struct {
    json_t *root;
    const char *path;
    dsv4_status rc;
} reader;

static json_t *get2(reader *r, const char *k1, const char *k2) {
    json_t *v = json_object_get(r->root, k1);
    if (!v && k2) v = json_object_get(r->root, k2);
    return v;
}

static int get_int(reader *r, const char *k1, const char *k2, int def, bool required) {
    if (r->rc) return def;
    json_t *v = get2(r, k1, k2);
    if (!v || json_is_null(v)) {
        if (required) r->rc = dsv4_error(DSV4_EFORMAT, "%s: config is missing the key \"%s\"", r->path, k1);
        return def;
    }
    if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v)) return (int)json_real_value(v);
    if (!json_is_integer(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" must be an integer", r->path, k1);
        return def;
    }
    json_int_t x = json_integer_value(v);
    if (x < -2147483647 || x > 2147483647) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" = %lld is out of range", r->path, k1, (long long)x);
        return def;
    }
    return (int)x;
}

static float get_float(reader *r, const char *k1, const char *k2, float def, bool required) {
    if (r->rc) return def;
    json_t *v = get2(r, k1, k2);
    if (!v || json_is_null(v)) {
        if (required) r->rc = dsv4_error(DSV4_EFORMAT, "%s: config is missing the key \"%s\"", r->path, k1);
        return def;
    }
    if (!json_is_number(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" must be a number", r->path, k1);
        return def;
    }
    return (float)json_number_value(v);
}

/* An integer list under either key into out[0..cap); returns its length (0 if absent). */
static int get_int_list(reader *r, const char *k1, const char *k2, long long *out, int cap, long long lo, long long hi) {
    if (r->rc) return 0;
    json_t *v = get2(r, k1, k2);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" must be a list of integers", r->path, k1);
        return 0;
    }
    if ((int)json_array_size(v) > cap) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" has %zu entries (at most %d)", r->path, k1,
                           json_array_size(v), cap);
        return 0;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < lo || json_integer_value(e) > hi) {
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\"[%zu] is not an integer in %lld..%lld", r->path, k1, i,
                               lo, hi);
            return 0;
        }
        out[i] = json_integer_value(e);
    }
    return (int)json_array_size(v);
}

static int get_layer_list(reader *r, const char *k1, const char *k2, int *out, int cap, int n_layers) {
    long long tmp[DSV4_MAX_LAYERS];
    int n = get_int_list(r, k1, k2, tmp, DSV4_MIN(cap, DSV4_MAX_LAYERS), 0, n_layers - 1);
    for (int i = 0; i < n; i++) out[i] = (int)tmp[i];
    return n;
}

static dsv4_status check(reader *r, bool ok, const char *fmt, const char *what, long long v) {
    if (r->rc || ok) return r->rc;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, what, v);
    r->rc = dsv4_error(DSV4_EFORMAT, "%s: %s", r->path, msg);
    return r->rc;
}

/* V4.1 keys: CSA2 sharing, candidate pool, Engram, DSpark, router temperature. */
static void parse_v41(reader *r, struct dsv4_config *c) {
    int L = c->n_layers;
    c->n_kv_sources = get_layer_list(r, "kv_source_layer_ids", "kv_source_layers", c->kv_source_layers, DSV4_MAX_LAYERS, L);
    c->n_index_sources =
        get_layer_list(r, "index_source_layer_ids", "index_source_layers", c->index_source_layers, DSV4_MAX_LAYERS, L);
    c->candidate_source_layer = get_int(r, "candidate_source_layer_id", "candidate_source_layer", -1, false);
    c->candidate_topk_blocks = get_int(r, "candidate_topk_blocks", NULL, 0, false);
    c->candidate_block_size = get_int(r, "candidate_block_size", NULL, 0, false);
    c->gate_temp = get_float(r, "gate_temp", NULL, 1.0f, false);

    c->n_engram_layers = get_layer_list(r, "engram_layer_ids", NULL, c->engram_layer_ids, DSV4_MAX_ENGRAM_LAYERS, L);
    int ne = get_int_list(r, "engram_num_embeddings", NULL, c->engram_num_embeddings, DSV4_MAX_ENGRAM_LAYERS, 1,
                          (long long)1 << 40);
    if (!r->rc && ne != c->n_engram_layers)
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: engram_num_embeddings has %d entries for %d engram_layer_ids", r->path, ne,
                           c->n_engram_layers);
    c->engram_max_ngram = get_int(r, "engram_max_ngram_size", NULL, 0, c->n_engram_layers > 0);
    c->engram_vocab_size = get_int(r, "engram_vocab_size", NULL, 0, c->n_engram_layers > 0);
    c->engram_n_heads = get_int(r, "engram_n_heads", NULL, 0, c->n_engram_layers > 0);
    c->engram_head_dim = get_int(r, "engram_head_dim", NULL, 0, c->n_engram_layers > 0);
    c->engram_pad_id = get_int(r, "engram_pad_token_id", "engram_pad_id", 2, false);
    c->engram_compressed_vocab_size = get_int(r, "engram_compressed_vocab_size", NULL, 0, c->n_engram_layers > 0);

    c->dspark_block_size = get_int(r, "dspark_block_size", NULL, 0, false);
    c->dspark_noise_token_id = get_int(r, "dspark_noise_token_id", NULL, 0, false);
    c->dspark_markov_rank = get_int(r, "dspark_markov_rank", NULL, 256, false);
    c->n_dspark_targets =
        get_layer_list(r, "dspark_target_layer_ids", NULL, c->dspark_target_layer_ids, DSV4_MAX_DSPARK_TARGETS, L);
    c->dspark_n_routed_experts = get_int(r, "dspark_n_routed_experts", NULL, 0, false);
    c->dspark_n_activated_experts = get_int(r, "dspark_num_experts_per_tok", "dspark_n_activated_experts", 0, false);
    if (!c->dspark_n_routed_experts) c->dspark_n_routed_experts = c->n_routed_experts;
    if (!c->dspark_n_activated_experts) c->dspark_n_activated_experts = c->n_activated_experts;
    c->image_token_id = get_int(r, "image_token_id", NULL, 129264, false);
}

/* The relations the V4.1 forward pass relies on. */
static void check_v41(reader *r, const struct dsv4_config *c) {
    int L = c->n_layers;
    for (int l = 0; l < L + c->n_mtp_layers && !r->rc; l++) {
        int ratio = c->compress_ratios[l];
        if (l >= L) {
            check(r, ratio == 0, "%s[%lld] must be 0: DSpark stages attend to their window only", "compress_ratios", l);
            continue;
        }
        if (dsv4_config_is_kv_source(c, l))
            check(r, ratio > 0, "%s: KV source layer %lld has ratio 0", "compress_ratios", l);
        if (!ratio) {
            check(r, !dsv4_config_is_index_source(c, l), "%s: index source layer %lld has ratio 0", "compress_ratios", l);
            continue;
        }
        int ks = dsv4_config_kv_source_of(c, l), is = dsv4_config_index_source_of(c, l);
        check(r, ks >= 0 && c->compress_ratios[ks] == ratio, "%s: layer %lld has no KV source of its ratio at or before it",
              "kv_source_layers", l);
        check(r, is >= 0 && c->compress_ratios[is] == ratio, "%s: layer %lld has no index source of its ratio at or before it",
              "index_source_layers", l);
    }
    check(r, c->index_head_dim > c->rope_head_dim && c->index_head_dim % 32 == 0,
          "%s must be a multiple of 32 above the rope dims (FP4 key blocks) (got %lld)", "index_head_dim", c->index_head_dim);
    check(r, c->head_dim % 32 == 0, "%s must be a multiple of 32 (FP8 window blocks) (got %lld)", "head_dim", c->head_dim);
    check(r, c->index_n_heads > 0 && c->index_topk > 0, "%s must be positive (got %lld)", "index_n_heads/index_topk",
          c->index_n_heads);
    if (c->candidate_source_layer >= 0) {
        int cs = c->candidate_source_layer;
        check(r, cs < L && dsv4_config_is_index_source(c, cs), "%s %lld must be an index source",
              "candidate_source_layer", cs);
        check(r, c->candidate_topk_blocks > 0 && c->candidate_block_size > 0, "%s must be positive (got %lld)",
              "candidate_topk_blocks/candidate_block_size", c->candidate_block_size);
        for (int i = 0; i < c->n_index_sources && !r->rc; i++) {
            int l = c->index_source_layers[i];
            if (l > cs)
                check(r, c->compress_ratios[l] == c->compress_ratios[cs],
                      "%s: index source %lld reads the candidate pool but has another ratio", "candidate_source_layer", l);
        }
    }
    if (c->n_engram_layers) {
        check(r, c->engram_max_ngram >= 2 && c->engram_max_ngram <= DSV4_MAX_NGRAM, "%s must be in 2..8 (got %lld)",
              "engram_max_ngram_size", c->engram_max_ngram);
        check(r, c->engram_n_heads > 0, "%s must be positive (got %lld)", "engram_n_heads", c->engram_n_heads);
        check(r, c->engram_head_dim > 0 && c->engram_head_dim % 32 == 0, "%s must be a positive multiple of 32 (got %lld)",
              "engram_head_dim", c->engram_head_dim);
        check(r, c->engram_vocab_size > 1, "%s must be at least 2 (got %lld)", "engram_vocab_size", c->engram_vocab_size);
        check(r, c->engram_compressed_vocab_size > 0 && c->engram_compressed_vocab_size <= c->vocab_size,
              "%s must be in 1..vocab_size (got %lld)", "engram_compressed_vocab_size", c->engram_compressed_vocab_size);
        check(r, c->engram_pad_id >= 0 && c->engram_pad_id < c->vocab_size, "%s must be a token id (got %lld)",
              "engram_pad_id", c->engram_pad_id);
    }
    if (c->dspark_block_size) {
        check(r, c->n_mtp_layers >= 1, "%s must be at least 1 with DSpark (got %lld)", "num_nextn_predict_layers",
              c->n_mtp_layers);
        check(r, c->n_dspark_targets >= 1, "%s must list at least one layer (got %lld)", "dspark_target_layer_ids",
              c->n_dspark_targets);
        check(r, c->dspark_noise_token_id >= 0 && c->dspark_noise_token_id < c->vocab_size, "%s must be a token id (got %lld)",
              "dspark_noise_token_id", c->dspark_noise_token_id);
        check(r, c->dspark_markov_rank > 0, "%s must be positive (got %lld)", "dspark_markov_rank", c->dspark_markov_rank);
        check(r, c->dspark_n_activated_experts > 0 && c->dspark_n_activated_experts <= c->dspark_n_routed_experts,
              "%s must be in 1..dspark_n_routed_experts (got %lld)", "dspark_n_activated_experts",
              c->dspark_n_activated_experts);
    }
}

dsv4_status dsv4_config_parse(const char *json_text, const char *path, struct dsv4_config *c) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON at line %d: %s", path, jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: not a JSON object", path);
    }
    /* the text model's keys: V4.1's HF config nests them under text_config */
    json_t *tc = json_object_get(root, "text_config");
    if (tc && !json_is_object(tc)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: text_config is not an object", path);
    }
    json_t *text = tc ? tc : root;
    reader r = {text, path, DSV4_OK};
    json_t *mt = json_object_get(root, "model_type");
    snprintf(c->model_type, sizeof c->model_type, "%s", json_is_string(mt) ? json_string_value(mt) : "deepseek_v4");
    bool v41 = !strncmp(c->model_type, "deepseek_v41", 12) || json_object_get(text, "kv_source_layers") ||
               json_object_get(text, "kv_source_layer_ids");
    c->family = v41 ? DSV4_FAMILY_V41 : DSV4_FAMILY_V4;
    if (v41 && !json_is_string(mt)) snprintf(c->model_type, sizeof c->model_type, "deepseek_v41");

    c->vocab_size = get_int(&r, "vocab_size", NULL, 0, true);
    c->dim = get_int(&r, "hidden_size", "dim", 0, true);
    c->n_layers = get_int(&r, "num_hidden_layers", "n_layers", 0, true);
    c->n_mtp_layers = get_int(&r, "num_nextn_predict_layers", "n_mtp_layers", 0, false);
    c->n_heads = get_int(&r, "num_attention_heads", "n_heads", 0, true);
    c->n_kv_heads = get_int(&r, "num_key_value_heads", NULL, 1, false);
    c->head_dim = get_int(&r, "head_dim", NULL, 0, true);
    c->rope_head_dim = get_int(&r, "qk_rope_head_dim", "rope_head_dim", 0, true);
    c->q_lora_rank = get_int(&r, "q_lora_rank", NULL, 0, true);
    c->o_groups = get_int(&r, "o_groups", NULL, 0, true);
    c->o_lora_rank = get_int(&r, "o_lora_rank", NULL, 0, true);
    c->window_size = get_int(&r, "sliding_window", "window_size", 0, true);
    c->rope_theta = get_float(&r, "rope_theta", NULL, 10000.0f, true);
    c->compress_rope_theta = get_float(&r, "compress_rope_theta", NULL, c->rope_theta, false);
    c->max_position_embeddings = get_int(&r, "max_position_embeddings", "max_seq_len", 1 << 20, false);
    c->index_n_heads = get_int(&r, "index_n_heads", NULL, 0, false);
    c->index_head_dim = get_int(&r, "index_head_dim", NULL, 0, false);
    c->index_topk = get_int(&r, "index_topk", NULL, 0, false);
    c->n_routed_experts = get_int(&r, "n_routed_experts", NULL, 0, true);
    c->n_activated_experts = get_int(&r, "num_experts_per_tok", "n_activated_experts", 0, true);
    c->n_shared_experts = get_int(&r, "n_shared_experts", NULL, 1, false);
    c->moe_inter_dim = get_int(&r, "moe_intermediate_size", "moe_inter_dim", 0, true);
    c->n_hash_layers = get_int(&r, "num_hash_layers", "n_hash_layers", 0, false);
    c->route_scale = get_float(&r, "routed_scaling_factor", "route_scale", 1.0f, false);
    c->swiglu_limit = get_float(&r, "swiglu_limit", NULL, 0.0f, false);
    c->norm_eps = get_float(&r, "rms_norm_eps", "norm_eps", 1e-6f, false);
    c->hc_mult = get_int(&r, "hc_mult", NULL, 0, true);
    c->hc_sinkhorn_iters = get_int(&r, "hc_sinkhorn_iters", NULL, 20, false);
    c->hc_eps = get_float(&r, "hc_eps", NULL, 1e-6f, false);
    c->bos_token_id = get_int(&r, "bos_token_id", NULL, 0, false);
    c->eos_token_id = get_int(&r, "eos_token_id", NULL, 1, false);
    c->gate_temp = 1.0f;
    c->candidate_source_layer = -1;

    if (!r.rc) {
        json_t *sf = get2(&r, "scoring_func", "score_func");
        const char *s = json_is_string(sf) ? json_string_value(sf) : "sqrtsoftplus";
        if (!strcmp(s, "sqrtsoftplus")) c->score_func = DSV4_SCORE_SQRTSOFTPLUS;
        else if (!strcmp(s, "sigmoid")) c->score_func = DSV4_SCORE_SIGMOID;
        else if (!strcmp(s, "softmax")) c->score_func = DSV4_SCORE_SOFTMAX;
        else r.rc = dsv4_error(DSV4_EFORMAT, "%s: unknown scoring_func \"%s\"", path, s);
    }

    /* YaRN: HF rope_scaling {type: yarn, factor, original_max_position_embeddings, beta_*}
     * or the inference names original_seq_len / rope_factor / beta_fast / beta_slow. */
    c->rope_factor = 1.0f;
    c->beta_fast = 32.0f;
    c->beta_slow = 1.0f;
    if (!r.rc) {
        json_t *rs = json_object_get(text, "rope_scaling");
        if (json_is_object(rs)) {
            reader rr = {rs, path, DSV4_OK};
            json_t *ty = json_object_get(rs, "type");
            if (!ty) ty = json_object_get(rs, "rope_type");
            if (json_is_string(ty) && strcmp(json_string_value(ty), "yarn"))
                r.rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: rope_scaling type \"%s\" (only yarn)", path, json_string_value(ty));
            c->rope_factor = get_float(&rr, "factor", NULL, 1.0f, true);
            c->original_seq_len = get_int(&rr, "original_max_position_embeddings", NULL, 0, true);
            c->beta_fast = get_float(&rr, "beta_fast", NULL, 32.0f, false);
            c->beta_slow = get_float(&rr, "beta_slow", NULL, 1.0f, false);
            if (rr.rc && !r.rc) r.rc = dsv4_error_wrap(rr.rc, "rope_scaling");
        } else {
            c->original_seq_len = get_int(&r, "original_seq_len", NULL, 0, false);
            c->rope_factor = get_float(&r, "rope_factor", NULL, 1.0f, false);
            c->beta_fast = get_float(&r, "beta_fast", NULL, 32.0f, false);
            c->beta_slow = get_float(&r, "beta_slow", NULL, 1.0f, false);
        }
    }

    /* compress_ratios: one per layer, optionally one more per MTP layer (ratio 0 if absent) */
    if (!r.rc) {
        json_t *cr = json_object_get(text, "compress_ratios");
        int total = c->n_layers + c->n_mtp_layers;
        if (!json_is_array(cr)) {
            r.rc = dsv4_error(DSV4_EFORMAT, "%s: config is missing the key \"compress_ratios\"", path);
        } else if (total > DSV4_MAX_LAYERS || c->n_layers <= 0 || c->n_mtp_layers < 0) {
            r.rc = dsv4_error(DSV4_EFORMAT, "%s: %d layers (1..%d supported)", path, total, DSV4_MAX_LAYERS);
        } else {
            size_t n = json_array_size(cr);
            if ((int)n != c->n_layers && (int)n != total)
                r.rc = dsv4_error(DSV4_EFORMAT, "%s: compress_ratios has %zu entries, expected %d (layers) or %d (layers + MTP)",
                                  path, n, c->n_layers, total);
            for (size_t i = 0; i < n && !r.rc; i++) {
                json_t *v = json_array_get(cr, i);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 20)
                    r.rc = dsv4_error(DSV4_EFORMAT, "%s: compress_ratios[%zu] is not a valid ratio", path, i);
                else c->compress_ratios[i] = (int)json_integer_value(v);
            }
        }
    }

    /* storage formats: HF quantization_config (top level, also in text_config), or the
     * inference config's dtype / expert_dtype */
    c->block_r = c->block_c = v41 ? 32 : 128;
    if (!r.rc) {
        json_t *q = json_object_get(root, "quantization_config");
        if (!q && tc) q = json_object_get(tc, "quantization_config");
        json_t *dt = json_object_get(text, "dtype");
        if (json_is_string(dt) && !strcmp(json_string_value(dt), "fp8")) c->fp8 = 1;
        if (json_is_object(q)) {
            c->fp8 = 1;
            json_t *fmt = json_object_get(q, "fmt");
            if (json_is_string(fmt) && strcmp(json_string_value(fmt), "e4m3"))
                r.rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: quantization fmt \"%s\" (only e4m3)", path, json_string_value(fmt));
            json_t *bs = json_object_get(q, "weight_block_size");
            if (json_is_array(bs) && json_array_size(bs) == 2 && json_is_integer(json_array_get(bs, 0)) &&
                json_is_integer(json_array_get(bs, 1))) {
                c->block_r = (int)json_integer_value(json_array_get(bs, 0));
                c->block_c = (int)json_integer_value(json_array_get(bs, 1));
            } else if (bs) {
                r.rc = dsv4_error(DSV4_EFORMAT, "%s: quantization_config.weight_block_size must be two integers", path);
            }
        }
        json_t *ed = json_object_get(text, "expert_dtype");
        if (!ed && json_is_object(q)) ed = json_object_get(q, "expert_dtype");
        if (json_is_string(ed)) {
            if (!strcmp(json_string_value(ed), "fp4")) c->expert_fp4 = 1;
            else if (strcmp(json_string_value(ed), "fp8") && strcmp(json_string_value(ed), "bf16"))
                r.rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: expert_dtype \"%s\"", path, json_string_value(ed));
        }
    }
    c->act_block = c->block_c;
    if (v41 && !r.rc) parse_v41(&r, c);

    /* relations the forward pass relies on */
    check(&r, c->vocab_size > 0, "%s must be positive (got %lld)", "vocab_size", c->vocab_size);
    check(&r, c->dim > 0, "%s must be positive (got %lld)", "hidden_size", c->dim);
    check(&r, c->n_heads > 0, "%s must be positive (got %lld)", "num_attention_heads", c->n_heads);
    check(&r, c->n_kv_heads == 1, "%s must be 1: V4 attention has one shared K=V head (got %lld)", "num_key_value_heads", c->n_kv_heads);
    check(&r, c->rope_head_dim > 0 && c->rope_head_dim % 2 == 0, "%s must be even and positive (got %lld)", "qk_rope_head_dim", c->rope_head_dim);
    check(&r, c->head_dim > c->rope_head_dim, "%s must exceed qk_rope_head_dim (got %lld)", "head_dim", c->head_dim);
    if (!v41)
        check(&r, (c->head_dim - c->rope_head_dim) % 64 == 0, "%s minus the rope dims must be a multiple of 64 (KV FP8 blocks) (got %lld)", "head_dim", c->head_dim);
    check(&r, c->o_groups > 0 && c->n_heads % c->o_groups == 0, "%s must divide num_attention_heads (got %lld)", "o_groups", c->o_groups);
    check(&r, c->q_lora_rank > 0 && c->o_lora_rank > 0, "%s must be positive (got %lld)", "q_lora_rank/o_lora_rank", c->q_lora_rank);
    check(&r, c->window_size > 0, "%s must be positive (got %lld)", "sliding_window", c->window_size);
    check(&r, c->n_routed_experts > 0, "%s must be positive (got %lld)", "n_routed_experts", c->n_routed_experts);
    check(&r, c->n_activated_experts > 0 && c->n_activated_experts <= c->n_routed_experts,
          "%s must be in 1..n_routed_experts (got %lld)", "num_experts_per_tok", c->n_activated_experts);
    check(&r, c->n_shared_experts == 1, "%s must be 1 as in the official code (got %lld)", "n_shared_experts", c->n_shared_experts);
    check(&r, c->moe_inter_dim > 0, "%s must be positive (got %lld)", "moe_intermediate_size", c->moe_inter_dim);
    check(&r, c->hc_mult > 0 && c->hc_mult <= 16, "%s must be in 1..16 (got %lld)", "hc_mult", c->hc_mult);
    check(&r, c->hc_sinkhorn_iters >= 1, "%s must be at least 1 (got %lld)", "hc_sinkhorn_iters", c->hc_sinkhorn_iters);
    if (v41) check(&r, c->n_mtp_layers >= 0 && c->n_mtp_layers <= 16, "%s must be in 0..16 (got %lld)", "num_nextn_predict_layers", c->n_mtp_layers);
    else check(&r, c->n_mtp_layers >= 0 && c->n_mtp_layers <= 1, "%s must be 0 or 1 (got %lld)", "num_nextn_predict_layers", c->n_mtp_layers);
    check(&r, c->block_r > 0 && c->block_c > 0, "%s must be positive (got %lld)", "weight_block_size", c->block_r);
    check(&r, c->gate_temp > 0, "%s must be positive (got %lld)", "gate_temp", (long long)c->gate_temp);
    int any_csa = 0;
    for (int i = 0; i < c->n_layers + c->n_mtp_layers && !r.rc; i++) {
        int m = c->compress_ratios[i];
        if (m == 4) any_csa = 1;
        if (!v41) check(&r, m == 0 || m > 1, "%s[%lld] must be 0 or at least 2", "compress_ratios", i);
    }
    if (v41) {
        if (!r.rc) check_v41(&r, c);
    } else if (any_csa) {
        check(&r, c->index_n_heads > 0, "%s must be positive when a layer has ratio 4 (got %lld)", "index_n_heads", c->index_n_heads);
        check(&r, c->index_head_dim > c->rope_head_dim && (c->index_head_dim & (c->index_head_dim - 1)) == 0 &&
                      c->index_head_dim % 32 == 0,
              "%s must be a power of two >= 32 above the rope dims (Hadamard, FP4 blocks) (got %lld)", "index_head_dim", c->index_head_dim);
        check(&r, c->index_topk > 0, "%s must be positive (got %lld)", "index_topk", c->index_topk);
    }
    json_decref(root);
    return r.rc;
}

/* ---- V4.1 layer roles -------------------------------------------------------------------------- */

static int in_list(const int *list, int n, int v) {
    for (int i = 0; i < n; i++)
        if (list[i] == v) return 1;
    return 0;
}

int dsv4_config_is_kv_source(const struct dsv4_config *c, int layer) {
    return layer < c->n_layers && in_list(c->kv_source_layers, c->n_kv_sources, layer);
}

int dsv4_config_is_index_source(const struct dsv4_config *c, int layer) {
    return layer < c->n_layers && in_list(c->index_source_layers, c->n_index_sources, layer);
}

int dsv4_config_kv_source_of(const struct dsv4_config *c, int layer) {
    for (int l = DSV4_MIN(layer, c->n_layers - 1); l >= 0; l--)
        if (dsv4_config_is_kv_source(c, l)) return l;
    return -1;
}

int dsv4_config_index_source_of(const struct dsv4_config *c, int layer) {
    for (int l = DSV4_MIN(layer, c->n_layers - 1); l >= 0; l--)
        if (dsv4_config_is_index_source(c, l)) return l;
    return -1;
}

int dsv4_config_engram_index(const struct dsv4_config *c, int layer) {
    for (int i = 0; i < c->n_engram_layers; i++)
        if (c->engram_layer_ids[i] == layer) return i;
    return -1;
}

const char *dsv4_config_layer_role(const struct dsv4_config *c, int layer) {
    if (layer >= c->n_layers) return "DSpark";
    if (!c->compress_ratios[layer]) return "SWA";
    if (dsv4_config_is_kv_source(c, layer)) return "Full";
    if (dsv4_config_is_index_source(c, layer)) return "Reindex";
    return "Reuse";
}

dsv4_status dsv4_config_load(const char *dir, struct dsv4_config *cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return dsv4_error(DSV4_ENOTFOUND, "%s: cannot open config.json", path);
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return dsv4_error(DSV4_EIO, "%s: cannot read", path);
    }
    long n = ftell(f);
    rewind(f);
    if (n < 0 || n > (1 << 24)) {
        fclose(f);
        return dsv4_error(DSV4_EFORMAT, "%s: unreasonable size %ld", path, n);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return dsv4_error(DSV4_ENOMEM, "out of memory reading %s", path);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    dsv4_status rc = dsv4_config_parse(buf, path, cfg);
    free(buf);
    return rc;
}
