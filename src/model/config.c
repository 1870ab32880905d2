/* config.c: config.json -> struct dsv4_config, with validation.
 *
 * The official release ships two configs: the HF config.json (hidden_size, num_hidden_layers,
 * ...) and inference/config.json (dim, n_layers, ...). We accept either spelling. Validation
 * runs in three stages, each only if the previous one passed, so no check ever computes with a
 * value that an earlier check would have refused:
 *   1. types: every key present must have the JSON type its field needs ("4" is not 4, a
 *      number that is not integral is not an integer, objects must be objects);
 *   2. ranges: every size lies in a range this build handles (LIMITS below), which also keeps
 *      every product the forward pass forms in int;
 *   3. relations the forward pass relies on (head_dim > rope dims, heads divisible by groups,
 *      ratio table as long as the layers, ...).
 * So a bad config fails here, with the key named, and not later in a kernel. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "io/file.h"
#include "model/config.h"

/* config.json is a few KB; anything past this is not a config */
#define CONFIG_MAX_BYTES ((size_t)1 << 24)

typedef struct {
    json_t *root;
    const char *path;
    const char *section; /* "" or "rope_scaling." / "quantization_config." for messages */
    dsv4_status rc;
} reader;

static json_t *get2(reader *r, const char *k1, const char *k2) {
    json_t *v = json_object_get(r->root, k1);
    if (!v && k2) v = json_object_get(r->root, k2);
    return json_is_null(v) ? NULL : v;
}

static int get_int(reader *r, const char *k1, const char *k2, int def, bool required) {
    if (r->rc) return def;
    json_t *v = get2(r, k1, k2);
    if (!v) {
        if (required) r->rc = dsv4_error(DSV4_EFORMAT, "%s: config is missing the key \"%s%s\"", r->path, r->section, k1);
        return def;
    }
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < -2147483647 || x > 2147483647) {
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" = %lld is out of range", r->path, r->section, k1,
                               (long long)x);
            return def;
        }
        return (int)x;
    }
    /* an integral real (65536.0) is accepted; compared as a double before any conversion */
    double x = json_is_real(v) ? json_real_value(v) : 0;
    if (!json_is_real(v) || x != floor(x)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" must be an integer", r->path, r->section, k1);
        return def;
    }
    if (x < -2147483647.0 || x > 2147483647.0) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" = %g is out of range", r->path, r->section, k1, x);
        return def;
    }
    return (int)x;
}

static float get_float(reader *r, const char *k1, const char *k2, float def, bool required) {
    if (r->rc) return def;
    json_t *v = get2(r, k1, k2);
    if (!v) {
        if (required) r->rc = dsv4_error(DSV4_EFORMAT, "%s: config is missing the key \"%s%s\"", r->path, r->section, k1);
        return def;
    }
    if (!json_is_number(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" must be a number", r->path, r->section, k1);
        return def;
    }
    double x = json_number_value(v);
    if (!(fabs(x) <= FLT_MAX)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" = %g does not fit in a float", r->path, r->section, k1, x);
        return def;
    }
    return (float)x;
}

/* An optional string; `def` when absent. */
static const char *get_str(reader *r, const char *k1, const char *k2, const char *def) {
    if (r->rc) return def;
    json_t *v = get2(r, k1, k2);
    if (!v) return def;
    if (!json_is_string(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" must be a string", r->path, r->section, k1);
        return def;
    }
    return json_string_value(v);
}

/* An optional object; NULL when absent. */
static json_t *get_obj(reader *r, const char *key) {
    if (r->rc) return NULL;
    json_t *v = get2(r, key, NULL);
    if (v && !json_is_object(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" must be an object", r->path, key);
        return NULL;
    }
    return v;
}

/* Stage 2: the range of every integer field. The upper bounds are far above any DeepSeek
 * release (Pro: hidden 7168, 128 heads of 512, 384 experts, vocab 129280) and low enough
 * that the products checked in stage 3 are computed without overflow. */
typedef struct {
    const char *key;
    size_t offset;
    int min, max;
} limit;

#define LIMIT(key, field, min, max) {key, offsetof(struct dsv4_config, field), min, max}
static const limit LIMITS[] = {
    LIMIT("vocab_size", vocab_size, 1, 1 << 24),
    LIMIT("hidden_size", dim, 1, 1 << 20),
    LIMIT("num_hidden_layers", n_layers, 1, DSV4_MAX_LAYERS - 1),
    LIMIT("num_nextn_predict_layers", n_mtp_layers, 0, 1),
    LIMIT("num_attention_heads", n_heads, 1, 1 << 16),
    LIMIT("head_dim", head_dim, 1, 1 << 16),
    LIMIT("qk_rope_head_dim", rope_head_dim, 2, 1 << 16),
    LIMIT("q_lora_rank", q_lora_rank, 1, 1 << 20),
    LIMIT("o_groups", o_groups, 1, 1 << 16),
    LIMIT("o_lora_rank", o_lora_rank, 1, 1 << 20),
    LIMIT("sliding_window", window_size, 1, 1 << 20),
    LIMIT("max_position_embeddings", max_position_embeddings, 1, 1 << 30),
    LIMIT("index_n_heads", index_n_heads, 0, 1 << 16),
    LIMIT("index_head_dim", index_head_dim, 0, 1 << 16),
    LIMIT("index_topk", index_topk, 0, 1 << 24),
    LIMIT("n_routed_experts", n_routed_experts, 1, 1 << 16),
    LIMIT("num_experts_per_tok", n_activated_experts, 1, 1 << 16),
    LIMIT("moe_intermediate_size", moe_inter_dim, 1, 1 << 20),
    LIMIT("num_hash_layers", n_hash_layers, 0, DSV4_MAX_LAYERS),
    LIMIT("hc_mult", hc_mult, 1, 16),
    LIMIT("hc_sinkhorn_iters", hc_sinkhorn_iters, 1, 1 << 10),
    LIMIT("rope_scaling.original_max_position_embeddings", original_seq_len, 0, 1 << 30),
    LIMIT("quantization_config.weight_block_size", block_r, 1, 1 << 16),
    LIMIT("quantization_config.weight_block_size", block_c, 1, 1 << 16),
};

static void check_limits(reader *r, const struct dsv4_config *c) {
    for (size_t i = 0; i < DSV4_ARRAY_LEN(LIMITS) && !r->rc; i++) {
        int v;
        memcpy(&v, (const char *)c + LIMITS[i].offset, sizeof v);
        if (v < LIMITS[i].min || v > LIMITS[i].max)
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" = %d is outside %d..%d", r->path, LIMITS[i].key, v,
                               LIMITS[i].min, LIMITS[i].max);
    }
}

/* Stage 3: one relation; `what` names the key at fault. Only called once stage 2 passed. */
static void relation(reader *r, bool ok, const char *what, const char *fmt, long long v) {
    if (r->rc || ok) return;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, v);
    r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" %s", r->path, what, msg);
}

static void check_relations(reader *r, const struct dsv4_config *c) {
    const long long big = 1 << 30; /* products used as int sizes stay below this */
    relation(r, c->n_kv_heads == 1, "num_key_value_heads", "must be 1: V4 attention has one shared K=V head (got %lld)", c->n_kv_heads);
    relation(r, c->rope_head_dim % 2 == 0, "qk_rope_head_dim", "must be even (got %lld)", c->rope_head_dim);
    relation(r, c->head_dim > c->rope_head_dim, "head_dim", "must exceed qk_rope_head_dim (got %lld)", c->head_dim);
    relation(r, (c->head_dim - c->rope_head_dim) % 64 == 0, "head_dim",
             "minus qk_rope_head_dim must be a multiple of 64 (KV FP8 blocks) (got %lld)", c->head_dim);
    relation(r, c->n_heads % c->o_groups == 0, "o_groups", "must divide num_attention_heads (got %lld)", c->o_groups);
    relation(r, (long long)c->n_heads * c->head_dim <= big, "num_attention_heads",
             "times head_dim must be at most 2^30 (got %lld)", (long long)c->n_heads * c->head_dim);
    relation(r, (long long)c->o_groups * c->o_lora_rank <= big, "o_lora_rank",
             "times o_groups must be at most 2^30 (got %lld)", (long long)c->o_groups * c->o_lora_rank);
    relation(r, (long long)c->hc_mult * c->dim <= big, "hidden_size", "times hc_mult must be at most 2^30 (got %lld)",
             (long long)c->hc_mult * c->dim);
    relation(r, (long long)c->index_n_heads * c->index_head_dim <= big, "index_n_heads",
             "times index_head_dim must be at most 2^30 (got %lld)", (long long)c->index_n_heads * c->index_head_dim);
    relation(r, c->n_activated_experts <= c->n_routed_experts, "num_experts_per_tok",
             "must be at most n_routed_experts (got %lld)", c->n_activated_experts);
    relation(r, c->n_shared_experts == 1, "n_shared_experts", "must be 1 as in the official code (got %lld)", c->n_shared_experts);
    relation(r, c->bos_token_id >= 0 && c->bos_token_id < c->vocab_size, "bos_token_id", "must be a token id below vocab_size (got %lld)",
             c->bos_token_id);
    relation(r, c->eos_token_id >= 0 && c->eos_token_id < c->vocab_size, "eos_token_id", "must be a token id below vocab_size (got %lld)",
             c->eos_token_id);
    int any_csa = 0;
    for (int i = 0; i < c->n_layers + c->n_mtp_layers; i++) {
        int m = c->compress_ratios[i];
        if (m == 4) any_csa = 1;
        if (!r->rc && m == 1)
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"compress_ratios\"[%d] must be 0 or at least 2 (got 1)",
                               r->path, i);
    }
    if (any_csa) {
        relation(r, c->index_n_heads > 0, "index_n_heads", "must be positive when a layer has ratio 4 (got %lld)", c->index_n_heads);
        relation(r, c->index_head_dim > c->rope_head_dim && (c->index_head_dim & (c->index_head_dim - 1)) == 0 &&
                        c->index_head_dim % 32 == 0,
                 "index_head_dim", "must be a power of two >= 32 above the rope dims (Hadamard, FP4 blocks) (got %lld)",
                 c->index_head_dim);
        relation(r, c->index_topk > 0, "index_topk", "must be positive when a layer has ratio 4 (got %lld)", c->index_topk);
    }
    /* floats: positive where they divide or scale, finite by get_float */
    struct {
        const char *key;
        float v;
    } pos[] = {{"rope_theta", c->rope_theta}, {"compress_rope_theta", c->compress_rope_theta},
               {"rms_norm_eps", c->norm_eps}, {"rope_scaling.factor", c->rope_factor},
               {"routed_scaling_factor", c->route_scale}};
    for (size_t i = 0; i < DSV4_ARRAY_LEN(pos) && !r->rc; i++)
        if (!(pos[i].v > 0))
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" must be positive (got %g)", r->path, pos[i].key, pos[i].v);
    if (!r->rc && (c->hc_eps < 0 || c->swiglu_limit < 0))
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" must not be negative", r->path,
                           c->hc_eps < 0 ? "hc_eps" : "swiglu_limit");
}

/* compress_ratios: one per layer, optionally one more per MTP layer (ratio 0 if absent). */
static void read_ratios(reader *r, struct dsv4_config *c) {
    if (r->rc) return;
    json_t *cr = get2(r, "compress_ratios", NULL);
    if (!cr) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config is missing the key \"compress_ratios\"", r->path);
        return;
    }
    if (!json_is_array(cr)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"compress_ratios\" must be an array", r->path);
        return;
    }
    /* n_layers and n_mtp_layers are in range (stage 2), so the sum fits the table */
    int total = c->n_layers + c->n_mtp_layers;
    size_t n = json_array_size(cr);
    if (n != (size_t)c->n_layers && n != (size_t)total) {
        r->rc = dsv4_error(DSV4_EFORMAT,
                           "%s: config key \"compress_ratios\" has %zu entries, expected %d (layers) or %d (layers + MTP)",
                           r->path, n, c->n_layers, total);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(cr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 20) {
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"compress_ratios\"[%zu] is not an integer in 0..%d", r->path,
                               i, 1 << 20);
            return;
        }
        c->compress_ratios[i] = (int)json_integer_value(v);
    }
}

/* YaRN: HF rope_scaling {type: yarn, factor, original_max_position_embeddings, beta_*}
 * or the inference names original_seq_len / rope_factor / beta_fast / beta_slow. */
static void read_rope_scaling(reader *r, struct dsv4_config *c) {
    c->rope_factor = 1.0f;
    c->beta_fast = 32.0f;
    c->beta_slow = 1.0f;
    json_t *rs = get_obj(r, "rope_scaling");
    if (r->rc) return;
    if (!rs) {
        c->original_seq_len = get_int(r, "original_seq_len", NULL, 0, false);
        c->rope_factor = get_float(r, "rope_factor", NULL, 1.0f, false);
        c->beta_fast = get_float(r, "beta_fast", NULL, 32.0f, false);
        c->beta_slow = get_float(r, "beta_slow", NULL, 1.0f, false);
        return;
    }
    reader rr = {rs, r->path, "rope_scaling.", DSV4_OK};
    const char *type = get_str(&rr, "type", "rope_type", "yarn");
    if (!rr.rc && strcmp(type, "yarn")) {
        r->rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: config key \"rope_scaling.type\" is \"%s\" (only yarn is supported)",
                           r->path, type);
        return;
    }
    c->rope_factor = get_float(&rr, "factor", NULL, 1.0f, true);
    c->original_seq_len = get_int(&rr, "original_max_position_embeddings", NULL, 0, true);
    c->beta_fast = get_float(&rr, "beta_fast", NULL, 32.0f, false);
    c->beta_slow = get_float(&rr, "beta_slow", NULL, 1.0f, false);
    r->rc = rr.rc;
}

/* Storage formats: FP8 block-scaled linears when quantization_config is present, FP4 experts. */
static void read_storage(reader *r, struct dsv4_config *c) {
    c->block_r = c->block_c = 128;
    json_t *q = get_obj(r, "quantization_config");
    if (q) {
        c->fp8 = 1;
        reader rq = {q, r->path, "quantization_config.", DSV4_OK};
        const char *fmt = get_str(&rq, "fmt", NULL, "e4m3");
        if (!rq.rc && strcmp(fmt, "e4m3"))
            rq.rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: config key \"quantization_config.fmt\" is \"%s\" (only e4m3)",
                               r->path, fmt);
        json_t *bs = rq.rc ? NULL : get2(&rq, "weight_block_size", NULL);
        if (bs) {
            if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(json_array_get(bs, 0)) ||
                !json_is_integer(json_array_get(bs, 1)))
                rq.rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"quantization_config.weight_block_size\" must be two integers",
                                   r->path);
            else {
                json_int_t br = json_integer_value(json_array_get(bs, 0)), bc = json_integer_value(json_array_get(bs, 1));
                /* clamped into int here; the range check (stage 2) reports values outside 1..2^16 */
                c->block_r = br < 0 ? -1 : br > 1 << 30 ? 1 << 30 : (int)br;
                c->block_c = bc < 0 ? -1 : bc > 1 << 30 ? 1 << 30 : (int)bc;
            }
        }
        r->rc = rq.rc;
    }
    const char *ed = get_str(r, "expert_dtype", NULL, NULL);
    if (ed && !strcmp(ed, "fp4")) c->expert_fp4 = 1;
    else if (ed && strcmp(ed, "fp8") && strcmp(ed, "bf16"))
        r->rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: config key \"expert_dtype\" is \"%s\" (fp4, fp8 or bf16)", r->path, ed);
}

dsv4_status dsv4_config_parse(const char *json_text, const char *path, struct dsv4_config *c) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON at line %d, column %d: %s", path, jerr.line, jerr.column,
                          jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: not a JSON object", path);
    }
    reader r = {root, path, "", DSV4_OK};
    snprintf(c->model_type, sizeof c->model_type, "%s", get_str(&r, "model_type", NULL, "deepseek_v4"));

    /* stage 1: types (and presence of the keys that decide shapes) */
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

    const char *sf = get_str(&r, "scoring_func", "score_func", "sqrtsoftplus");
    if (!r.rc) {
        if (!strcmp(sf, "sqrtsoftplus")) c->score_func = DSV4_SCORE_SQRTSOFTPLUS;
        else if (!strcmp(sf, "sigmoid")) c->score_func = DSV4_SCORE_SIGMOID;
        else if (!strcmp(sf, "softmax")) c->score_func = DSV4_SCORE_SOFTMAX;
        else r.rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"scoring_func\" is \"%s\" (sqrtsoftplus, sigmoid or softmax)",
                               path, sf);
    }
    read_rope_scaling(&r, c);
    read_storage(&r, c);

    /* stage 2, then the ratio table (its length needs the layer counts in range), stage 3 */
    if (!r.rc) check_limits(&r, c);
    read_ratios(&r, c);
    if (!r.rc) check_relations(&r, c);
    json_decref(root);
    return r.rc;
}

dsv4_status dsv4_config_load(const char *dir, struct dsv4_config *cfg) {
    size_t n = strlen(dir) + sizeof "/config.json";
    char *path = dsv4_malloc(n, "config path");
    if (!path) return DSV4_ENOMEM;
    snprintf(path, n, "%s/config.json", dir);
    char *text;
    size_t len;
    dsv4_status rc = dsv4_file_read(path, CONFIG_MAX_BYTES, &text, &len);
    if (rc == DSV4_ENOTFOUND) rc = dsv4_error(DSV4_ENOTFOUND, "%s: no config.json in the model directory", path);
    if (!rc && strlen(text) != len)
        rc = dsv4_error(DSV4_EFORMAT, "%s: NUL byte at offset %zu: not a JSON text", path, strlen(text));
    if (!rc) rc = dsv4_config_parse(text, path, cfg);
    free(text);
    free(path);
    return rc;
}
