/* config.c: config.json -> struct dsv4_config, with validation.
 *
 * The official release ships two configs: the HF config.json (hidden_size, num_hidden_layers,
 * ...) and inference/config.json (dim, n_layers, ...). We accept either spelling. V4.1's HF
 * config nests the text model under "text_config" (the vision tower and the quantization
 * block stay at the top level) and renames a few keys against its inference config
 * (kv_source_layer_ids / kv_source_layers, engram_pad_token_id / engram_pad_id, ...); both are
 * read, and messages name a key by its HF spelling without the text_config prefix.
 *
 * Validation runs in three stages, each only if the previous one passed, so no check ever
 * computes with a value that an earlier check would have refused:
 *   1. types: every key present must have the JSON type its field needs ("4" is not 4, a
 *      number that is not integral is not an integer, objects must be objects, layer lists
 *      must be lists of integers);
 *   2. ranges: every size lies in a range this build handles (LIMITS below, and the family's
 *      own table), which also keeps every product the forward pass forms in int; then the
 *      tables whose length or entries depend on the layer count (compress_ratios, V4.1's
 *      layer lists);
 *   3. relations the forward pass relies on (head_dim > rope dims, heads divisible by groups,
 *      ratio table as long as the layers, every V4.1 compressed layer has sources of its
 *      ratio, ...).
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

/* V4: one MTP block. */
static const limit LIMITS_V4[] = {
    LIMIT("num_hidden_layers", n_layers, 1, DSV4_MAX_LAYERS - 1),
    LIMIT("num_nextn_predict_layers", n_mtp_layers, 0, 1),
};

/* V4.1: up to DSV4_MAX_DSPARK_STAGES DSpark stages after the layers (all in the ratio table),
 * and its own scalar keys (0 where a key is absent and its feature unused). */
static const limit LIMITS_V41[] = {
    LIMIT("num_hidden_layers", n_layers, 1, DSV4_MAX_LAYERS - DSV4_MAX_DSPARK_STAGES),
    LIMIT("num_nextn_predict_layers", n_mtp_layers, 0, DSV4_MAX_DSPARK_STAGES),
    LIMIT("candidate_source_layer_id", candidate_source_layer, -1, DSV4_MAX_LAYERS - 1),
    LIMIT("candidate_topk_blocks", candidate_topk_blocks, 0, 1 << 24),
    LIMIT("candidate_block_size", candidate_block_size, 0, 1 << 16),
    LIMIT("engram_max_ngram_size", engram_max_ngram, 0, DSV4_MAX_NGRAM),
    LIMIT("engram_vocab_size", engram_vocab_size, 0, 1 << 30),
    LIMIT("engram_n_heads", engram_n_heads, 0, 1 << 10),
    LIMIT("engram_head_dim", engram_head_dim, 0, 1 << 16),
    LIMIT("engram_pad_token_id", engram_pad_id, 0, 1 << 24),
    LIMIT("engram_compressed_vocab_size", engram_compressed_vocab_size, 0, 1 << 24),
    LIMIT("dspark_block_size", dspark_block_size, 0, 1 << 10),
    LIMIT("dspark_noise_token_id", dspark_noise_token_id, 0, 1 << 24),
    LIMIT("dspark_markov_rank", dspark_markov_rank, 1, 1 << 16),
    LIMIT("dspark_n_routed_experts", dspark_n_routed_experts, 1, 1 << 16),
    LIMIT("dspark_num_experts_per_tok", dspark_n_activated_experts, 1, 1 << 16),
    LIMIT("image_token_id", image_token_id, 0, 1 << 24),
};

static void check_limits(reader *r, const struct dsv4_config *c, const limit *table, size_t n) {
    for (size_t i = 0; i < n && !r->rc; i++) {
        int v;
        memcpy(&v, (const char *)c + table[i].offset, sizeof v);
        if (v < table[i].min || v > table[i].max)
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\" = %d is outside %d..%d", r->path, table[i].key, v,
                               table[i].min, table[i].max);
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
    bool v4 = c->family == DSV4_ARCH_V4;
    if (v4) /* V4.1 stores window rows as FP8 over all dims (blocks of 32, checked in check_v41) */
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
    for (int i = 0; i < c->n_layers + c->n_mtp_layers && v4; i++) { /* V4.1 has ratio 1 (CSA2) */
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
               {"routed_scaling_factor", c->route_scale}, {"gate_temp", c->gate_temp}};
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

/* Storage formats: FP8 block-scaled linears when quantization_config is present (at the top
 * level of the file, also looked for in text_config) or the inference config says dtype fp8;
 * FP4 experts by expert_dtype (top level, or inside quantization_config as V4.1's HF config
 * has it). Blocks default to the family's: 128 x 128 (V4), 32 x 32 (V4.1). */
static void read_storage(reader *r, json_t *top, struct dsv4_config *c) {
    c->block_r = c->block_c = c->family == DSV4_ARCH_V41 ? 32 : 128;
    reader rt = {top, r->path, "", r->rc};
    json_t *q = get_obj(&rt, "quantization_config");
    r->rc = rt.rc;
    if (!q && top != r->root) q = get_obj(r, "quantization_config");
    const char *ed = NULL;
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
        ed = get_str(&rq, "expert_dtype", NULL, NULL);
        if (!r->rc) r->rc = rq.rc;
    }
    const char *dt = get_str(r, "dtype", NULL, NULL); /* inference config: "fp8" or "bf16" */
    if (dt && !strcmp(dt, "fp8")) c->fp8 = 1;
    ed = get_str(r, "expert_dtype", NULL, ed);
    if (r->rc) return;
    if (ed && !strcmp(ed, "fp4")) c->expert_fp4 = 1;
    else if (ed && strcmp(ed, "fp8") && strcmp(ed, "bf16"))
        r->rc = dsv4_error(DSV4_EUNSUPPORTED, "%s: config key \"expert_dtype\" is \"%s\" (fp4, fp8 or bf16)", r->path, ed);
}

/* ---- V4.1 ------------------------------------------------------------------------------------ */

/* A list of integers as read in stage 1 (entries range-checked in stage 2). */
typedef struct {
    const char *key;
    int n;
    long long v[DSV4_MAX_LAYERS];
} int_list;

/* Stage 1 for an optional list under either key: a JSON array of at most `cap` integers. */
static void get_int_list(reader *r, const char *k1, const char *k2, int cap, int_list *out) {
    out->key = k1;
    out->n = 0;
    if (r->rc) return;
    json_t *v = get2(r, k1, k2);
    if (!v) return;
    if (!json_is_array(v)) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" must be a list of integers", r->path, r->section, k1);
        return;
    }
    if (json_array_size(v) > (size_t)cap) {
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\" has %zu entries (at most %d)", r->path, r->section, k1,
                           json_array_size(v), cap);
        return;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e)) {
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s%s\"[%zu] must be an integer", r->path, r->section, k1, i);
            return;
        }
        out->v[i] = json_integer_value(e);
    }
    out->n = (int)json_array_size(v);
}

/* Stage 2 for a list: every entry in lo..hi. */
static void list_range(reader *r, const int_list *l, long long lo, long long hi) {
    for (int i = 0; i < l->n && !r->rc; i++)
        if (l->v[i] < lo || l->v[i] > hi)
            r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"%s\"[%d] = %lld is outside %lld..%lld", r->path, l->key, i,
                               l->v[i], lo, hi);
}

/* A list of layer ids (checked against the layer count) into an int table. */
static int layer_list(reader *r, const int_list *l, int n_layers, int *out) {
    list_range(r, l, 0, n_layers - 1);
    if (r->rc) return 0;
    for (int i = 0; i < l->n; i++) out[i] = (int)l->v[i];
    return l->n;
}

/* V4.1's lists, read in stage 1 and stored in stage 2. */
typedef struct {
    int_list kv, index, engram, engram_rows, dspark_targets;
} v41_lists;

/* Stage 1 for the V4.1 keys: CSA2 sharing, candidate pool, Engram, DSpark, router temperature. */
static void read_v41(reader *r, struct dsv4_config *c, v41_lists *ls) {
    get_int_list(r, "kv_source_layer_ids", "kv_source_layers", DSV4_MAX_LAYERS, &ls->kv);
    get_int_list(r, "index_source_layer_ids", "index_source_layers", DSV4_MAX_LAYERS, &ls->index);
    c->candidate_source_layer = get_int(r, "candidate_source_layer_id", "candidate_source_layer", -1, false);
    c->candidate_topk_blocks = get_int(r, "candidate_topk_blocks", NULL, 0, false);
    c->candidate_block_size = get_int(r, "candidate_block_size", NULL, 0, false);
    c->gate_temp = get_float(r, "gate_temp", NULL, 1.0f, false);

    get_int_list(r, "engram_layer_ids", NULL, DSV4_MAX_ENGRAM_LAYERS, &ls->engram);
    get_int_list(r, "engram_num_embeddings", NULL, DSV4_MAX_ENGRAM_LAYERS, &ls->engram_rows);
    bool engram = ls->engram.n > 0; /* then its sizes are required */
    c->engram_max_ngram = get_int(r, "engram_max_ngram_size", NULL, 0, engram);
    c->engram_vocab_size = get_int(r, "engram_vocab_size", NULL, 0, engram);
    c->engram_n_heads = get_int(r, "engram_n_heads", NULL, 0, engram);
    c->engram_head_dim = get_int(r, "engram_head_dim", NULL, 0, engram);
    c->engram_pad_id = get_int(r, "engram_pad_token_id", "engram_pad_id", 2, false);
    c->engram_compressed_vocab_size = get_int(r, "engram_compressed_vocab_size", NULL, 0, engram);

    c->dspark_block_size = get_int(r, "dspark_block_size", NULL, 0, false);
    c->dspark_noise_token_id = get_int(r, "dspark_noise_token_id", NULL, 0, false);
    c->dspark_markov_rank = get_int(r, "dspark_markov_rank", NULL, 256, false);
    get_int_list(r, "dspark_target_layer_ids", NULL, DSV4_MAX_DSPARK_TARGETS, &ls->dspark_targets);
    /* 0 or absent: the main model's expert counts */
    c->dspark_n_routed_experts = get_int(r, "dspark_n_routed_experts", NULL, 0, false);
    c->dspark_n_activated_experts = get_int(r, "dspark_num_experts_per_tok", "dspark_n_activated_experts", 0, false);
    if (!c->dspark_n_routed_experts) c->dspark_n_routed_experts = c->n_routed_experts;
    if (!c->dspark_n_activated_experts) c->dspark_n_activated_experts = c->n_activated_experts;
    c->image_token_id = get_int(r, "image_token_id", NULL, 129264, false);
}

/* Stage 2 for the V4.1 lists: layer ids below the layer count, table sizes positive. */
static void store_v41_lists(reader *r, struct dsv4_config *c, const v41_lists *ls) {
    int L = c->n_layers;
    c->n_kv_sources = layer_list(r, &ls->kv, L, c->kv_source_layers);
    c->n_index_sources = layer_list(r, &ls->index, L, c->index_source_layers);
    c->n_engram_layers = layer_list(r, &ls->engram, L, c->engram_layer_ids);
    c->n_dspark_targets = layer_list(r, &ls->dspark_targets, L, c->dspark_target_layer_ids);
    list_range(r, &ls->engram_rows, 1, (long long)1 << 40);
    for (int i = 0; i < ls->engram_rows.n && !r->rc; i++) c->engram_num_embeddings[i] = ls->engram_rows.v[i];
    if (!r->rc && ls->engram_rows.n != c->n_engram_layers)
        r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"engram_num_embeddings\" has %d entries, expected %d (one per engram_layer_ids entry)",
                           r->path, ls->engram_rows.n, c->n_engram_layers);
}

/* Stage 3 for V4.1: the relations its forward pass relies on (layer roles, the candidate pool,
 * Engram and DSpark sizes). */
static void check_v41(reader *r, const struct dsv4_config *c) {
    int L = c->n_layers;
    for (int l = 0; l < L + c->n_mtp_layers && !r->rc; l++) {
        int ratio = c->compress_ratios[l];
        if (l >= L) {
            if (ratio)
                r->rc = dsv4_error(DSV4_EFORMAT, "%s: config key \"compress_ratios\"[%d] must be 0: DSpark stages attend to their window only (got %d)",
                                   r->path, l, ratio);
            continue;
        }
        relation(r, !dsv4_config_is_kv_source(c, l) || ratio > 0, "kv_source_layer_ids",
                 "lists layer %lld, whose compress_ratios entry is 0", l);
        relation(r, !dsv4_config_is_index_source(c, l) || ratio > 0, "index_source_layer_ids",
                 "lists layer %lld, whose compress_ratios entry is 0", l);
        if (!ratio) continue;
        int ks = dsv4_config_kv_source_of(c, l), is = dsv4_config_index_source_of(c, l);
        relation(r, ks >= 0 && c->compress_ratios[ks] == ratio, "kv_source_layer_ids",
                 "has no layer of layer %lld's compress ratio at or before it", l);
        relation(r, is >= 0 && c->compress_ratios[is] == ratio, "index_source_layer_ids",
                 "has no layer of layer %lld's compress ratio at or before it", l);
    }
    relation(r, c->head_dim % 32 == 0, "head_dim", "must be a multiple of 32 (FP8 window blocks) (got %lld)", c->head_dim);
    if (c->n_kv_sources) {
        relation(r, c->index_head_dim > c->rope_head_dim && c->index_head_dim % 32 == 0, "index_head_dim",
                 "must be a multiple of 32 above the rope dims (FP4 key blocks) (got %lld)", c->index_head_dim);
        relation(r, c->index_n_heads > 0, "index_n_heads", "must be positive with CSA2 layers (got %lld)", c->index_n_heads);
        relation(r, c->index_topk > 0, "index_topk", "must be positive with CSA2 layers (got %lld)", c->index_topk);
    }
    if (c->candidate_source_layer >= 0) {
        int cs = c->candidate_source_layer;
        relation(r, cs < L && dsv4_config_is_index_source(c, cs), "candidate_source_layer_id",
                 "must be one of the index_source_layer_ids (got %lld)", cs);
        relation(r, c->candidate_topk_blocks > 0, "candidate_topk_blocks", "must be positive with a candidate source (got %lld)",
                 c->candidate_topk_blocks);
        relation(r, c->candidate_block_size > 0, "candidate_block_size", "must be positive with a candidate source (got %lld)",
                 c->candidate_block_size);
        for (int i = 0; i < c->n_index_sources && !r->rc; i++) {
            int l = c->index_source_layers[i];
            relation(r, l <= cs || c->compress_ratios[l] == c->compress_ratios[cs], "candidate_source_layer_id",
                     "feeds index source %lld, which has another compress ratio", l);
        }
    }
    if (c->n_engram_layers) {
        relation(r, c->engram_max_ngram >= 2, "engram_max_ngram_size", "must be in 2..8 (got %lld)", c->engram_max_ngram);
        relation(r, c->engram_n_heads > 0, "engram_n_heads", "must be positive (got %lld)", c->engram_n_heads);
        relation(r, c->engram_head_dim > 0 && c->engram_head_dim % 32 == 0, "engram_head_dim",
                 "must be a positive multiple of 32 (got %lld)", c->engram_head_dim);
        relation(r, c->engram_vocab_size > 1, "engram_vocab_size", "must be at least 2 (got %lld)", c->engram_vocab_size);
        relation(r, c->engram_compressed_vocab_size > 0 && c->engram_compressed_vocab_size <= c->vocab_size,
                 "engram_compressed_vocab_size", "must be in 1..vocab_size (got %lld)", c->engram_compressed_vocab_size);
        relation(r, c->engram_pad_id < c->vocab_size, "engram_pad_token_id", "must be a token id below vocab_size (got %lld)",
                 c->engram_pad_id);
    }
    if (c->dspark_block_size) {
        relation(r, c->n_mtp_layers >= 1, "num_nextn_predict_layers", "must be at least 1 with DSpark (got %lld)",
                 c->n_mtp_layers);
        relation(r, c->n_dspark_targets >= 1, "dspark_target_layer_ids", "must list at least one layer (got %lld)",
                 c->n_dspark_targets);
        relation(r, c->dspark_noise_token_id < c->vocab_size, "dspark_noise_token_id",
                 "must be a token id below vocab_size (got %lld)", c->dspark_noise_token_id);
        relation(r, c->dspark_n_activated_experts <= c->dspark_n_routed_experts, "dspark_num_experts_per_tok",
                 "must be at most dspark_n_routed_experts (got %lld)", c->dspark_n_activated_experts);
    }
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
    /* the text model's keys: V4.1's HF config nests them under text_config */
    reader r = {root, path, "", DSV4_OK};
    json_t *tc = get_obj(&r, "text_config");
    if (tc) r.root = tc;
    reader rt = {root, path, "", r.rc};
    const char *mt = get_str(&rt, "model_type", NULL, NULL);
    r.rc = rt.rc;
    bool v41 = (mt && !strncmp(mt, "deepseek_v41", 12)) || get2(&r, "kv_source_layer_ids", "kv_source_layers");
    c->family = v41 ? DSV4_ARCH_V41 : DSV4_ARCH_V4;
    snprintf(c->model_type, sizeof c->model_type, "%s", mt ? mt : v41 ? "deepseek_v41" : "deepseek_v4");

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
    read_storage(&r, root, c);
    c->act_block = c->block_c;
    c->gate_temp = 1.0f;
    c->candidate_source_layer = -1;
    v41_lists *ls = NULL; /* ~10 KB of stage-1 lists, V4.1 only */
    if (v41 && !r.rc) {
        ls = calloc(1, sizeof *ls);
        if (!ls) r.rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory reading the V4.1 keys", path);
        else read_v41(&r, c, ls);
    }

    /* stage 2, then the tables whose length or entries need the layer counts in range, stage 3 */
    if (!r.rc) check_limits(&r, c, LIMITS, DSV4_ARRAY_LEN(LIMITS));
    if (!r.rc && v41) check_limits(&r, c, LIMITS_V41, DSV4_ARRAY_LEN(LIMITS_V41));
    else if (!r.rc) check_limits(&r, c, LIMITS_V4, DSV4_ARRAY_LEN(LIMITS_V4));
    read_ratios(&r, c);
    if (!r.rc && ls) store_v41_lists(&r, c, ls);
    if (!r.rc) check_relations(&r, c);
    if (!r.rc && v41) check_v41(&r, c);
    free(ls);
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
