/* fixture.c: a tiny random DeepSeek-V4 model with a tokenizer, for testing the server.
 *
 *   serve_fixture OUT_DIR REAL_TOKENIZER.json [--dim N] [--layers N] [--experts N]
 *                 [--vocab N] [--max-pos N] [--seed S]
 *
 * The server needs a model directory with a tokenizer.json whose special tokens
 * (<｜User｜>, <｜Assistant｜>, <think>, ｜DSML｜, ...) exist, and a model whose vocabulary is
 * that tokenizer's. The real tokenizer has 129280 tokens, far too many for a test model, so
 * we cut it down instead of inventing one:
 *
 *   - DeepSeek's BPE vocabulary is ordered by merge: ids 0-2 are the sentence and pad tokens,
 *     3..258 the 256 byte-level characters, and merge i creates id 259+i. The first K ids with
 *     the first K-259 merges are therefore a complete byte-level BPE tokenizer by themselves
 *     (it spells words in more, shorter pieces), with the real pre-tokenizer and decoder.
 *   - The added tokens other than the 1200-odd placeholders (66 of them: the chat, thinking,
 *     DSML, FIM and task tokens) follow at ids K.., keeping their flags. BOS and EOS stay at
 *     0 and 1, as in the real model.
 *
 * The model is the shape of the reference tiny model of the shared data (hidden 256, 6 layers
 * with window, CSA and HCA attention, 8 experts, hash routing in the first 3 layers, an MTP
 * block), stored in BF16/F32 with random weights whose scales follow that model: linear
 * weights N(0, 1/in), norms near 1, mHC mixing near the identity. Random weights produce
 * random text, which is all the protocol tests need; the server's scripted-reply test hook
 * makes specific outputs (tool calls) when a test needs them. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "infer/sampler.h"
#include "io/safetensors.h"
#include "numeric/numeric.h"

typedef struct shape {
    int dim, layers, experts, inter, vocab, max_pos, heads, head_dim, rope_dim, q_lora, o_groups, o_lora;
    int index_heads, index_dim, index_topk, window, hc, topk, hash_layers;
} shape;

static const shape default_shape = {
    .dim = 256,
    .layers = 6,
    .experts = 8,
    .inter = 128,
    .vocab = 1024,
    .max_pos = 16384,
    .heads = 4,
    .head_dim = 128,
    .rope_dim = 64,
    .q_lora = 128,
    .o_groups = 2,
    .o_lora = 64,
    .index_heads = 4,
    .index_dim = 128,
    .index_topk = 16,
    .window = 16,
    .hc = 4,
    .topk = 2,
    .hash_layers = 3,
};

/* Layer l's compression: two window-only layers, then CSA (4) and HCA (128) alternating, as
 * in V4-Flash; the MTP block (l == layers) is window-only. */
static int ratio_of(const shape *s, int l) {
    if (l >= s->layers || l < 2) return 0;
    return (l % 2 == 0) ? 4 : 128;
}

/* ---- random numbers ------------------------------------------------------------------------ */

static dsv4_rng rng;

static double normal(void) {
    double u = dsv4_rng_uniform(&rng), v = dsv4_rng_uniform(&rng);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---- tensors ------------------------------------------------------------------------------ */

typedef struct tensors {
    dsv4_st_writer *w;
    void **bufs;
    int n, cap;
    dsv4_status rc;
} tensors;

static void *keep(tensors *t, size_t bytes) {
    if (t->rc) return NULL;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        void **nb = realloc(t->bufs, (size_t)t->cap * sizeof *nb);
        if (!nb) {
            t->rc = dsv4_error(DSV4_ENOMEM, "out of memory");
            return NULL;
        }
        t->bufs = nb;
    }
    void *p = dsv4_malloc(bytes ? bytes : 1, "tensor");
    if (!p)
        t->rc = DSV4_ENOMEM;
    else
        t->bufs[t->n++] = p;
    return p;
}

/* A BF16 [rows, cols] tensor of N(mean, sd) values. */
static void add_bf16(tensors *t, const char *name, int rows, int cols, double mean, double sd) {
    int64_t shp[2] = {rows, cols};
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    uint16_t *v = keep(t, n * sizeof *v);
    if (!v) return;
    for (size_t i = 0; i < n; i++) v[i] = dsv4_f32_to_bf16((float)(mean + sd * normal()));
    if (!t->rc) t->rc = dsv4_st_writer_add(t->w, name, DSV4_DT_BF16, cols ? 2 : 1, shp, v);
}

static void add_f32(tensors *t, const char *name, int rows, int cols, double mean, double sd) {
    int64_t shp[2] = {rows, cols};
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    float *v = keep(t, n * sizeof *v);
    if (!v) return;
    for (size_t i = 0; i < n; i++) v[i] = (float)(mean + sd * normal());
    if (!t->rc) t->rc = dsv4_st_writer_add(t->w, name, DSV4_DT_F32, cols ? 2 : 1, shp, v);
}

static void linear(tensors *t, const char *prefix, const char *name, int out, int in) {
    char n[600];
    snprintf(n, sizeof n, "%s%s.weight", prefix, name);
    add_bf16(t, n, out, in, 0.0, 1.0 / sqrt((double)in));
}

static void norm(tensors *t, const char *prefix, const char *name, int dim) {
    char n[600];
    snprintf(n, sizeof n, "%s%s.weight", prefix, name);
    add_bf16(t, n, dim, 0, 1.0, 0.1);
}

/* The mHC parameters of one site: mixing weights, biases and the three (or one) gains. */
static void hc_site(tensors *t, const shape *s, const char *prefix, const char *site, int mix, int n_scale) {
    char n[256];
    snprintf(n, sizeof n, "%s%s_fn", prefix, site);
    add_f32(t, n, mix, s->hc * s->dim, 0.0, 1.0 / sqrt((double)(s->hc * s->dim)));
    snprintf(n, sizeof n, "%s%s_base", prefix, site);
    add_f32(t, n, mix, 0, 0.0, 0.5);
    snprintf(n, sizeof n, "%s%s_scale", prefix, site);
    add_f32(t, n, n_scale, 0, 1.0, 0.2);
}

static void compressor(tensors *t, const shape *s, const char *prefix, int ratio, int dc) {
    int coff = ratio == 4 ? 2 : 1;
    char n[256];
    snprintf(n, sizeof n, "%s.wkv", prefix);
    linear(t, "", n, coff * dc, s->dim);
    snprintf(n, sizeof n, "%s.wgate", prefix);
    linear(t, "", n, coff * dc, s->dim);
    snprintf(n, sizeof n, "%s.ape", prefix);
    add_f32(t, n, ratio, coff * dc, 0.0, 0.5);
    snprintf(n, sizeof n, "%s.norm", prefix);
    norm(t, "", n, dc);
}

static void expert(tensors *t, const shape *s, const char *prefix) {
    linear(t, prefix, ".w1", s->inter, s->dim);
    linear(t, prefix, ".w2", s->dim, s->inter);
    linear(t, prefix, ".w3", s->inter, s->dim);
}

/* One block: "layers.L." or "mtp.0.", with layer id l (which fixes its attention and routing). */
static void block(tensors *t, const shape *s, const char *p, int l) {
    int mix = (2 + s->hc) * s->hc, H = s->heads, D = s->head_dim;
    char n[256];
    hc_site(t, s, p, "hc_attn", mix, 3);
    hc_site(t, s, p, "hc_ffn", mix, 3);
    norm(t, p, "attn_norm", s->dim);
    norm(t, p, "ffn_norm", s->dim);
    snprintf(n, sizeof n, "%sattn.attn_sink", p);
    add_f32(t, n, H, 0, 0.0, 1.0);
    linear(t, p, "attn.wq_a", s->q_lora, s->dim);
    norm(t, p, "attn.q_norm", s->q_lora);
    linear(t, p, "attn.wq_b", H * D, s->q_lora);
    linear(t, p, "attn.wkv", D, s->dim);
    norm(t, p, "attn.kv_norm", D);
    linear(t, p, "attn.wo_a", s->o_groups * s->o_lora, H * D / s->o_groups);
    linear(t, p, "attn.wo_b", s->dim, s->o_groups * s->o_lora);
    int ratio = ratio_of(s, l);
    if (ratio) {
        snprintf(n, sizeof n, "%sattn.compressor", p);
        compressor(t, s, n, ratio, D);
        if (ratio == 4) {
            linear(t, p, "attn.indexer.wq_b", s->index_heads * s->index_dim, s->q_lora);
            linear(t, p, "attn.indexer.weights_proj", s->index_heads, s->dim);
            snprintf(n, sizeof n, "%sattn.indexer.compressor", p);
            compressor(t, s, n, 4, s->index_dim);
        }
    }
    linear(t, p, "ffn.gate", s->experts, s->dim);
    if (l < s->hash_layers) {
        /* hash routing: each token goes to topk distinct experts */
        int64_t shp[2] = {s->vocab, s->topk};
        int64_t *v = keep(t, (size_t)s->vocab * (size_t)s->topk * sizeof *v);
        if (!v) return;
        for (int tok = 0; tok < s->vocab; tok++) {
            int64_t first = (int64_t)(dsv4_rng_next(&rng) % (uint64_t)s->experts);
            for (int k = 0; k < s->topk; k++) v[(size_t)tok * s->topk + k] = (first + k) % s->experts;
        }
        snprintf(n, sizeof n, "%sffn.gate.tid2eid", p);
        if (!t->rc) t->rc = dsv4_st_writer_add(t->w, n, DSV4_DT_I64, 2, shp, v);
    } else {
        snprintf(n, sizeof n, "%sffn.gate.bias", p);
        add_f32(t, n, s->experts, 0, 0.0, 0.1);
    }
    for (int e = 0; e < s->experts; e++) {
        snprintf(n, sizeof n, "%sffn.experts.%d", p, e);
        expert(t, s, n);
    }
    snprintf(n, sizeof n, "%sffn.shared_experts", p);
    expert(t, s, n);
}

static dsv4_status write_model(const shape *s, const char *dir) {
    tensors t = {dsv4_st_writer_new(), NULL, 0, 0, DSV4_OK};
    if (!t.w) return DSV4_ENOMEM;
    add_bf16(&t, "embed.weight", s->vocab, s->dim, 0.0, 1.0);
    add_bf16(&t, "head.weight", s->vocab, s->dim, 0.0, 1.0 / sqrt((double)s->dim));
    norm(&t, "", "norm", s->dim);
    hc_site(&t, s, "", "hc_head", s->hc, 1);
    for (int l = 0; l < s->layers; l++) {
        char p[64];
        snprintf(p, sizeof p, "layers.%d.", l);
        block(&t, s, p, l);
    }
    block(&t, s, "mtp.0.", s->layers);
    linear(&t, "mtp.0.", "e_proj", s->dim, s->dim);
    linear(&t, "mtp.0.", "h_proj", s->dim, s->dim);
    norm(&t, "mtp.0.", "enorm", s->dim);
    norm(&t, "mtp.0.", "hnorm", s->dim);
    norm(&t, "mtp.0.", "norm", s->dim);
    hc_site(&t, s, "mtp.0.", "hc_head", s->hc, 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dsv4_status rc = t.rc ? t.rc : dsv4_st_writer_write(t.w, path);
    dsv4_st_writer_free(t.w);
    for (int i = 0; i < t.n; i++) free(t.bufs[i]);
    free(t.bufs);
    return rc;
}

static dsv4_status write_json(json_t *j, const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!j) return dsv4_error(DSV4_ENOMEM, "out of memory building %s", path);
    int r = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    return r ? dsv4_error(DSV4_EIO, "%s: cannot write", path) : DSV4_OK;
}

static dsv4_status write_config(const shape *s, const char *dir) {
    json_t *ratios = json_array();
    for (int l = 0; l <= s->layers; l++) json_array_append_new(ratios, json_integer(ratio_of(s, l)));
    json_t *c = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i,"
        " s:i, s:i, s:i, s:f, s:s, s:f, s:f, s:i, s:f, s:f, s:f, s:{s:s, s:f, s:i, s:i, s:i}, s:o}",
        "architectures", "DeepseekV4ForCausalLM", "model_type", "deepseek_v4", "vocab_size", s->vocab, "hidden_size",
        s->dim, "num_hidden_layers", s->layers, "num_nextn_predict_layers", 1, "num_attention_heads", s->heads,
        "num_key_value_heads", 1, "head_dim", s->head_dim, "qk_rope_head_dim", s->rope_dim, "q_lora_rank", s->q_lora,
        "o_groups", s->o_groups, "o_lora_rank", s->o_lora, "sliding_window", s->window, "max_position_embeddings",
        s->max_pos, "index_n_heads", s->index_heads, "index_head_dim", s->index_dim, "index_topk", s->index_topk,
        "n_routed_experts", s->experts, "n_shared_experts", 1, "num_experts_per_tok", s->topk, "moe_intermediate_size",
        s->inter, "num_hash_layers", s->hash_layers, "routed_scaling_factor", 1.5, "scoring_func", "sqrtsoftplus",
        "swiglu_limit", 10.0, "rms_norm_eps", 1e-6, "hc_mult", s->hc, "hc_eps", 1e-6, "rope_theta", 10000.0,
        "compress_rope_theta", 160000.0, "rope_scaling", "type", "yarn", "factor", 16.0,
        "original_max_position_embeddings", 65536, "beta_fast", 32, "beta_slow", 1, "compress_ratios", ratios);
    if (c) {
        json_object_set_new(c, "hc_sinkhorn_iters", json_integer(20));
        json_object_set_new(c, "bos_token_id", json_integer(0));
        json_object_set_new(c, "eos_token_id", json_integer(1));
    }
    return write_json(c, dir, "config.json");
}

/* The real tokenizer cut to its first `base` ids (see the file comment). */
static dsv4_status write_tokenizer(const shape *s, const char *real, const char *dir) {
    json_error_t jerr;
    json_t *r = json_load_file(real, 0, &jerr);
    if (!r) return dsv4_error(DSV4_EFORMAT, "%s: line %d: %s", real, jerr.line, jerr.text);
    json_t *model = json_object_get(r, "model"), *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges"), *added = json_object_get(r, "added_tokens");
    dsv4_status rc = DSV4_OK;
    if (!json_is_object(vocab) || !json_is_array(merges) || !json_is_array(added))
        rc = dsv4_error(DSV4_EFORMAT, "%s: not a BPE tokenizer.json with added_tokens", real);
    /* the added tokens we keep: 0-2 stay, the others (no placeholders) go after the base */
    size_t n_extra = 0, i;
    json_t *a;
    json_array_foreach(added, i, a) {
        const char *content = json_string_value(json_object_get(a, "content"));
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        if (content && id > 2 && !strstr(content, "place▁holder")) n_extra++;
    }
    int base = s->vocab - (int)n_extra;
    if (!rc && base < 259 + 16)
        rc = dsv4_error(DSV4_EINVAL, "--vocab %d leaves room for only %d merges", s->vocab, base - 259);
    json_t *nv = json_object(), *nm = json_array(), *na = json_array();
    const char *key;
    json_t *v;
    if (!rc) {
        json_object_foreach(vocab, key, v) if (json_integer_value(v) < base) json_object_set(nv, key, v);
        for (i = 0; i < (size_t)(base - 259) && i < json_array_size(merges); i++)
            json_array_append(nm, json_array_get(merges, i));
        json_int_t next = base;
        json_array_foreach(added, i, a) {
            const char *content = json_string_value(json_object_get(a, "content"));
            json_int_t id = json_integer_value(json_object_get(a, "id"));
            if (!content || (id > 2 && strstr(content, "place▁holder"))) continue;
            json_t *copy = json_deep_copy(a);
            if (id > 2) json_object_set_new(copy, "id", json_integer(next++));
            json_array_append_new(na, copy);
        }
        if (json_object_size(nv) != (size_t)base)
            rc = dsv4_error(DSV4_EFORMAT, "%s: ids below %d are not all in the vocabulary", real, base);
    }
    if (!rc) {
        json_object_set_new(model, "vocab", nv);
        json_object_set_new(model, "merges", nm);
        json_object_set_new(r, "added_tokens", na);
        rc = write_json(json_incref(r), dir, "tokenizer.json");
    } else {
        json_decref(nv);
        json_decref(nm);
        json_decref(na);
    }
    json_decref(r);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: serve_fixture OUT_DIR REAL_TOKENIZER.json [--dim N] [--layers N] [--experts N]"
                        " [--vocab N] [--max-pos N] [--seed S]\n");
        return 2;
    }
    shape s = default_shape;
    unsigned long long seed = 1234;
    for (int i = 3; i + 1 < argc; i += 2) {
        long long v = strtoll(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--dim"))
            s.dim = (int)v;
        else if (!strcmp(argv[i], "--layers"))
            s.layers = (int)v;
        else if (!strcmp(argv[i], "--experts"))
            s.experts = (int)v;
        else if (!strcmp(argv[i], "--vocab"))
            s.vocab = (int)v;
        else if (!strcmp(argv[i], "--max-pos"))
            s.max_pos = (int)v;
        else if (!strcmp(argv[i], "--seed"))
            seed = (unsigned long long)v;
        else {
            fprintf(stderr, "serve_fixture: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (s.dim < 128 || s.dim % 128 || s.layers < 3 || s.experts < s.topk) {
        fprintf(stderr, "serve_fixture: --dim must be a multiple of 128, --layers >= 3, --experts >= %d\n", s.topk);
        return 2;
    }
    s.inter = s.dim / 2;
    dsv4_rng_seed(&rng, seed);
    if (mkdir(argv[1], 0755) && errno != EEXIST) {
        fprintf(stderr, "serve_fixture: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    dsv4_status rc = write_tokenizer(&s, argv[2], argv[1]);
    if (!rc) rc = write_config(&s, argv[1]);
    if (!rc) rc = write_model(&s, argv[1]);
    if (rc) {
        fprintf(stderr, "serve_fixture: %s\n", dsv4_errmsg());
        return 1;
    }
    return 0;
}
