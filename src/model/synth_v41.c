/* synth_v41.c: writing random DeepSeek-V4.1-Flash-shaped checkpoints (see synth_v41.h).
 *
 * Three steps: resolve the hyper-parameters (the real V4.1-Flash values with the caller's
 * reductions, the CSA2 schedule scaled to the layer count), list every tensor the engine
 * binds with its dtype, shape and recipe, then write the list into shards through the
 * streaming safetensors writer, the Engram tables last, one shard each.
 *
 * The schedule for L layers: layers 0 and 1 window only (Engram at 1); then L/2 - 1 ratio-2
 * layers in groups of six, each led by a Full layer; then L/2 ratio-1 layers led by a Full
 * layer that is also the candidate source, with a Reindex layer every fourth; the second
 * Engram layer is the third ratio-2 Full layer; DSpark reads the last three layers. For
 * L = 40 this is the release: Full 2, 8, 14, 20, Reindex 24, 28, 32, 36, Engram 1 and 14.
 *
 * Values come from a counter-based generator (element i of a tensor is a function of the
 * seed, the tensor's name and i), so any byte range is produced on its own. Quantised
 * weights are drawn as codes: a block with target spread sigma gets the scale the official
 * quantiser would give a block whose largest value is 4 sigma (FP8) or 2.5 sigma (FP4), and
 * codes drawn from a table mapping a uniform 16-bit (8-bit) number to the code whose rounding
 * interval holds that quantile of the normal distribution at a fixed spread in code units. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/engram.h"
#include "model/synth_v41.h"
#include "numeric/numeric.h"

enum { NAME_LEN = 128 }; /* tensor names are far shorter; the margin keeps snprintf exact */

/* ---- hyper-parameters ------------------------------------------------------------------------ */

typedef struct {
    int L, dim, vocab, inter, H, D, rd, q_lora, o_lora, og, win, ih, ihd, itopk, E, K, hc;
    int dsE, dsK, stages, block, rank, noise;
    int ratios[DSV4_MAX_LAYERS];
    int kv[DSV4_MAX_LAYERS], n_kv, idx[DSV4_MAX_LAYERS], n_idx, cand, eng[2], targets[3];
    int e_vocab, e_hd, e_heads, e_ngram, e_compressed;
    int64_t e_rows[2];
} scfg;

static int pick(int asked, int real) { return asked > 0 ? asked : real; }

static dsv4_status resolve(const dsv4_synth_v41_opts *o, scfg *c) {
    memset(c, 0, sizeof *c);
    c->L = pick(o->n_layers, 40);
    c->dim = pick(o->dim, 5120);
    c->vocab = pick(o->vocab, 129280);
    c->inter = pick(o->moe_inter, 2304);
    c->H = pick(o->n_heads, 64);
    c->D = pick(o->head_dim, 512);
    c->rd = 64;
    c->q_lora = pick(o->q_lora_rank, 1280);
    c->o_lora = pick(o->o_lora_rank, 1024);
    c->og = pick(o->o_groups, 8);
    c->win = pick(o->window, 128);
    c->ih = pick(o->index_n_heads, 32);
    c->ihd = 128;
    c->itopk = pick(o->index_topk, 512);
    c->E = pick(o->n_experts, 384);
    c->K = DSV4_MIN(pick(o->n_activated, 6), c->E);
    c->hc = 4;
    c->stages = o->no_dspark ? 0 : 3;
    c->dsE = DSV4_MIN(128, c->E);
    c->dsK = DSV4_MIN(3, c->dsE);
    c->block = 5;
    c->rank = 256;
    c->noise = c->vocab > 128799 ? 128799 : c->vocab - 1;
    c->e_vocab = pick(o->engram_vocab_size, 16000000);
    c->e_hd = pick(o->engram_head_dim, 256);
    c->e_heads = 8;
    c->e_ngram = 4;
    if (c->L < 8 || c->L + c->stages > DSV4_MAX_LAYERS)
        return dsv4_error(DSV4_EINVAL, "synth v41: %d layers (8..%d)", c->L, DSV4_MAX_LAYERS - 3);
    if (c->dim % 32 || c->inter % 32 || c->D % 32 || c->q_lora % 32 || c->e_hd % 32)
        return dsv4_error(DSV4_EINVAL, "synth v41: dim, moe_inter, head_dim, q_lora and the Engram head dim must be multiples of 32");
    if (c->H % c->og || c->D <= c->rd)
        return dsv4_error(DSV4_EINVAL, "synth v41: o_groups must divide the heads and head_dim exceed %d", c->rd);
    if (c->e_vocab < 64) return dsv4_error(DSV4_EINVAL, "synth v41: engram_vocab_size %d is too small", c->e_vocab);

    /* the CSA2 schedule (see the file comment) */
    int n1 = c->L / 2, n2 = c->L - 2 - n1, first1 = 2 + n2, fulls2 = 0;
    for (int l = 2; l < first1; l++) {
        c->ratios[l] = 2;
        if ((l - 2) % 6 == 0) {
            c->kv[c->n_kv++] = l;
            c->idx[c->n_idx++] = l;
            if (++fulls2 <= 3) c->eng[1] = l;
        }
    }
    for (int l = first1; l < c->L; l++) {
        c->ratios[l] = 1;
        if (l == first1) c->kv[c->n_kv++] = l;
        if ((l - first1) % 4 == 0) c->idx[c->n_idx++] = l;
    }
    c->cand = first1;
    c->eng[0] = 1;
    for (int k = 0; k < 3; k++) c->targets[k] = c->L - 3 + k;

    int64_t primes[2 * 3 * 8];
    dsv4_engram_primes(2, c->e_ngram, c->e_heads, c->e_vocab, primes);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 24; k++) c->e_rows[l] += primes[l * 24 + k];
    return DSV4_OK;
}

static json_t *int_list(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

/* config.json in the HF form: the text model under text_config. */
static json_t *config_json(const scfg *c) {
    json_t *t = json_object();
#define SET(k, v) json_object_set_new(t, k, v)
    SET("model_type", json_string("deepseek_v41_text"));
    SET("vocab_size", json_integer(c->vocab));
    SET("hidden_size", json_integer(c->dim));
    SET("moe_intermediate_size", json_integer(c->inter));
    SET("num_hidden_layers", json_integer(c->L));
    SET("num_nextn_predict_layers", json_integer(c->stages));
    SET("num_attention_heads", json_integer(c->H));
    SET("num_key_value_heads", json_integer(1));
    SET("head_dim", json_integer(c->D));
    SET("qk_rope_head_dim", json_integer(c->rd));
    SET("q_lora_rank", json_integer(c->q_lora));
    SET("o_groups", json_integer(c->og));
    SET("o_lora_rank", json_integer(c->o_lora));
    SET("sliding_window", json_integer(c->win));
    int ratios[DSV4_MAX_LAYERS] = {0};
    memcpy(ratios, c->ratios, sizeof c->ratios);
    SET("compress_ratios", int_list(ratios, c->L + c->stages));
    SET("kv_source_layer_ids", int_list(c->kv, c->n_kv));
    SET("index_source_layer_ids", int_list(c->idx, c->n_idx));
    SET("candidate_source_layer_id", json_integer(c->cand));
    SET("candidate_topk_blocks", json_integer(2048));
    SET("candidate_block_size", json_integer(8));
    SET("index_n_heads", json_integer(c->ih));
    SET("index_head_dim", json_integer(c->ihd));
    SET("index_topk", json_integer(c->itopk));
    SET("compress_rope_theta", json_real(160000.0));
    SET("rope_theta", json_real(10000.0));
    json_t *rs = json_object();
    json_object_set_new(rs, "type", json_string("yarn"));
    json_object_set_new(rs, "factor", json_integer(16));
    json_object_set_new(rs, "original_max_position_embeddings", json_integer(65536));
    json_object_set_new(rs, "beta_fast", json_integer(32));
    json_object_set_new(rs, "beta_slow", json_integer(1));
    SET("rope_scaling", rs);
    SET("max_position_embeddings", json_integer(1048576));
    SET("n_routed_experts", json_integer(c->E));
    SET("num_experts_per_tok", json_integer(c->K));
    SET("n_shared_experts", json_integer(1));
    SET("scoring_func", json_string("sqrtsoftplus"));
    SET("topk_method", json_string("noaux_tc"));
    SET("norm_topk_prob", json_true());
    SET("routed_scaling_factor", json_real(1.5));
    SET("swiglu_limit", json_real(10.0));
    SET("rms_norm_eps", json_real(1e-20));
    SET("hc_mult", json_integer(c->hc));
    SET("hc_sinkhorn_iters", json_integer(20));
    SET("hc_eps", json_real(1e-6));
    SET("engram_layer_ids", int_list(c->eng, 2));
    json_t *ne = json_array();
    for (int l = 0; l < 2; l++) json_array_append_new(ne, json_integer(c->e_rows[l]));
    SET("engram_num_embeddings", ne);
    SET("engram_max_ngram_size", json_integer(c->e_ngram));
    SET("engram_vocab_size", json_integer(c->e_vocab));
    SET("engram_n_heads", json_integer(c->e_heads));
    SET("engram_head_dim", json_integer(c->e_hd));
    SET("engram_pad_token_id", json_integer(2));
    SET("engram_compressed_vocab_size", json_integer(c->e_compressed));
    if (c->stages) {
        SET("dspark_block_size", json_integer(c->block));
        SET("dspark_noise_token_id", json_integer(c->noise));
        SET("dspark_target_layer_ids", int_list(c->targets, 3));
        SET("dspark_markov_rank", json_integer(c->rank));
        SET("dspark_n_routed_experts", json_integer(c->dsE));
        SET("dspark_num_experts_per_tok", json_integer(c->dsK));
    }
    SET("bos_token_id", json_integer(0));
    SET("eos_token_id", json_integer(1));
    SET("pad_token_id", json_integer(2));
    SET("tie_word_embeddings", json_false());
#undef SET
    json_t *root = json_object(), *arch = json_array(), *q = json_object(), *bs = json_array();
    json_array_append_new(arch, json_string("DeepseekV41ForCausalLM"));
    json_object_set_new(root, "architectures", arch);
    json_object_set_new(root, "model_type", json_string("deepseek_v41"));
    json_object_set_new(root, "text_config", t);
    json_object_set_new(q, "quant_method", json_string("fp8"));
    json_object_set_new(q, "fmt", json_string("e4m3"));
    json_object_set_new(q, "activation_scheme", json_string("dynamic"));
    json_array_append_new(bs, json_integer(32));
    json_array_append_new(bs, json_integer(32));
    json_object_set_new(q, "weight_block_size", bs);
    json_object_set_new(q, "scale_fmt", json_string("ue8m0"));
    json_object_set_new(q, "expert_dtype", json_string("fp4"));
    json_object_set_new(root, "quantization_config", q);
    json_object_set_new(root, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(root, "note", json_string("random weights written by dsv4 synth --like v41-flash"));
    return root;
}

/* ---- values ---------------------------------------------------------------------------------- */

typedef enum { R_FP8, R_FP8_SCALE, R_FP4, R_FP4_SCALE, R_BF16, R_ONES_BF16, R_F32, R_ZERO_F32 } recipe;

typedef struct {
    recipe kind;
    float sigma;
    uint64_t key;
    int block_cols; /* FP8 scale columns (unused by the others) */
} tensor_gen;

static uint8_t fp8_codes[65536], fp4_codes[256];

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
static double norm_quantile(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01,  -1.328068155288572e+01};
    static const double cc[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                -2.549671010429312e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00};
    double q, r;
    if (p < 0.02425) {
        q = sqrt(-2 * log(p));
        return (((((cc[0] * q + cc[1]) * q + cc[2]) * q + cc[3]) * q + cc[4]) * q + cc[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - 0.02425) return -norm_quantile(1 - p);
    q = p - 0.5;
    r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/* Codes of N(0, 80^2) in e4m3 units (a block scale of pow2_ceil(4 sigma / 448) puts sigma at
 * 56..112 units) and of N(0, 1.7^2) in e2m1 units. */
static void build_code_tables(void) {
    for (int u = 0; u < 65536; u++) fp8_codes[u] = dsv4_f32_to_e4m3((float)(norm_quantile((u + 0.5) / 65536.0) * 80.0));
    for (int u = 0; u < 256; u++) fp4_codes[u] = dsv4_f32_to_e2m1((float)(norm_quantile((u + 0.5) / 256.0) * 1.7));
}

static float normal_at(uint64_t key, uint64_t i) {
    uint64_t r = splitmix(key ^ splitmix(i));
    return (float)norm_quantile(((double)(r >> 11) + 0.5) * 0x1p-53);
}

static dsv4_status gen(void *ctx, size_t off, void *dst, size_t len) {
    const tensor_gen *g = ctx;
    uint8_t *o = dst;
    switch (g->kind) {
    case R_FP8:
        for (size_t i = 0; i < len; i++) o[i] = fp8_codes[splitmix(g->key + (off + i)) & 0xffff];
        break;
    case R_FP4:
        for (size_t i = 0; i < len; i++) {
            uint64_t r = splitmix(g->key + (off + i));
            o[i] = (uint8_t)(fp4_codes[r & 0xff] | fp4_codes[(r >> 8) & 0xff] << 4);
        }
        break;
    case R_FP8_SCALE: memset(o, dsv4_f32_to_e8m0(dsv4_pow2_ceil(4.0f * g->sigma / 448.0f)), len); break;
    case R_FP4_SCALE: memset(o, dsv4_f32_to_e8m0(dsv4_pow2_ceil(2.5f * g->sigma / 6.0f)), len); break;
    case R_BF16:
    case R_ONES_BF16:
        for (size_t i = 0; i < len; i++) {
            size_t e = (off + i) / 2;
            uint16_t h = dsv4_f32_to_bf16(g->kind == R_ONES_BF16 ? 1.0f : g->sigma * normal_at(g->key, e));
            o[i] = (uint8_t)((off + i) % 2 ? h >> 8 : h & 0xff);
        }
        break;
    case R_F32:
    case R_ZERO_F32:
        for (size_t i = 0; i < len; i++) {
            size_t e = (off + i) / 4;
            float f = g->kind == R_ZERO_F32 ? 0.0f : g->sigma * normal_at(g->key, e);
            uint8_t b[4];
            memcpy(b, &f, 4);
            o[i] = b[(off + i) % 4];
        }
        break;
    }
    return DSV4_OK;
}

/* ---- the tensor list ------------------------------------------------------------------------- */

typedef struct {
    char name[NAME_LEN + 32];
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[2];
    tensor_gen g;
    int shard;
} tensor;

typedef struct {
    tensor *t;
    int n, cap;
    uint64_t seed;
    dsv4_status rc;
} tlist;

static void add(tlist *l, const char *name, dsv4_dtype dt, int64_t r, int64_t c, recipe kind, float sigma) {
    if (l->rc) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 1024;
        tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) {
            l->rc = dsv4_error(DSV4_ENOMEM, "out of memory listing synthetic tensors");
            return;
        }
        l->t = t;
        l->cap = cap;
    }
    tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    uint64_t h = l->seed * 0x100000001b3ull;
    for (const char *p = name; *p; p++) h = splitmix(h ^ (uint8_t)*p);
    t->g = (tensor_gen){kind, sigma, h, 0};
}

static void add_vec(tlist *l, const char *name, int64_t n, recipe kind, float sigma) {
    add(l, name, kind == R_F32 || kind == R_ZERO_F32 ? DSV4_DT_F32 : DSV4_DT_BF16, n, 0, kind, sigma);
}

/* An FP8 linear [out, in] and its 32 x 32 e8m0 block scales. */
static void add_fp8(tlist *l, const char *prefix, int64_t out, int64_t in) {
    char n[NAME_LEN + 16];
    float sigma = 1.0f / sqrtf((float)in);
    snprintf(n, sizeof n, "%s.weight", prefix);
    add(l, n, DSV4_DT_F8_E4M3, out, in, R_FP8, sigma);
    snprintf(n, sizeof n, "%s.scale", prefix);
    add(l, n, DSV4_DT_F8_E8M0, (out + 31) / 32, (in + 31) / 32, R_FP8_SCALE, sigma);
}

static void add_bf16(tlist *l, const char *prefix, int64_t out, int64_t in) {
    char n[NAME_LEN + 16];
    snprintf(n, sizeof n, "%s.weight", prefix);
    add(l, n, DSV4_DT_BF16, out, in, R_BF16, 1.0f / sqrtf((float)in));
}

static void add_expert(tlist *l, const char *prefix, int dim, int inter, bool fp4) {
    char n[NAME_LEN];
    const char *w[3] = {"w1", "w2", "w3"};
    for (int k = 0; k < 3; k++) {
        int64_t out = k == 1 ? dim : inter, in = k == 1 ? inter : dim;
        snprintf(n, sizeof n, "%s.%s", prefix, w[k]);
        if (!fp4) {
            add_fp8(l, n, out, in);
            continue;
        }
        float sigma = 1.0f / sqrtf((float)in);
        char wn[NAME_LEN + 16], sn[NAME_LEN + 16];
        snprintf(wn, sizeof wn, "%s.weight", n);
        snprintf(sn, sizeof sn, "%s.scale", n);
        add(l, wn, DSV4_DT_I8, out, in / 2, R_FP4, sigma);
        add(l, sn, DSV4_DT_F8_E8M0, out, in / 32, R_FP4_SCALE, sigma);
    }
}

static bool in(const int *v, int n, int x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

static void add_block(tlist *l, const scfg *c, const char *p, int id) {
    char n[NAME_LEN];
    int mix = (2 + c->hc) * c->hc, E = id < c->L ? c->E : c->dsE;
    float hs = 0.5f / sqrtf((float)(c->hc * c->dim));
    const char *site[2] = {"attn", "ffn"};
    for (int s = 0; s < 2; s++) {
        snprintf(n, sizeof n, "%shc_%s_fn", p, site[s]);
        add(l, n, DSV4_DT_F32, mix, (int64_t)c->hc * c->dim, R_F32, hs);
        snprintf(n, sizeof n, "%shc_%s_base", p, site[s]);
        add_vec(l, n, mix, R_ZERO_F32, 0);
        snprintf(n, sizeof n, "%shc_%s_scale", p, site[s]);
        add_vec(l, n, 3, R_F32, 0.5f);
        snprintf(n, sizeof n, "%s%s_norm.weight", p, site[s]);
        add_vec(l, n, c->dim, R_ONES_BF16, 0);
    }
    snprintf(n, sizeof n, "%sattn.attn_sink", p);
    add_vec(l, n, c->H, R_ZERO_F32, 0);
    snprintf(n, sizeof n, "%sattn.q_norm.weight", p);
    add_vec(l, n, c->q_lora, R_ONES_BF16, 0);
    snprintf(n, sizeof n, "%sattn.kv_norm.weight", p);
    add_vec(l, n, c->D, R_ONES_BF16, 0);
    const struct {
        const char *name;
        int64_t out, in;
    } fp8s[] = {{"attn.wq_a", c->q_lora, c->dim},
                {"attn.wq_b", (int64_t)c->H * c->D, c->q_lora},
                {"attn.wkv", c->D, c->dim},
                {"attn.wo_a", (int64_t)c->og * c->o_lora, (int64_t)c->H * c->D / c->og},
                {"attn.wo_b", c->dim, (int64_t)c->og * c->o_lora}};
    for (size_t k = 0; k < DSV4_ARRAY_LEN(fp8s); k++) {
        snprintf(n, sizeof n, "%s%s", p, fp8s[k].name);
        add_fp8(l, n, fp8s[k].out, fp8s[k].in);
    }
    if (id < c->L && in(c->kv, c->n_kv, id)) {
        snprintf(n, sizeof n, "%sattn.compressor.wkv", p);
        add_bf16(l, n, c->D, c->dim);
        if (c->ratios[id] > 1) {
            snprintf(n, sizeof n, "%sattn.compressor.wgate", p);
            add_bf16(l, n, c->D, c->dim);
        }
        snprintf(n, sizeof n, "%sattn.compressor.norm.weight", p);
        add_vec(l, n, c->D, R_ONES_BF16, 0);
        snprintf(n, sizeof n, "%sattn.indexer.wk", p);
        add_bf16(l, n, c->ihd, c->D);
        snprintf(n, sizeof n, "%sattn.indexer.k_norm.weight", p);
        add_vec(l, n, c->ihd, R_ONES_BF16, 0);
    }
    if (id < c->L && in(c->idx, c->n_idx, id)) {
        snprintf(n, sizeof n, "%sattn.indexer.wq_b", p);
        add_fp8(l, n, (int64_t)c->ih * c->ihd, c->q_lora);
        snprintf(n, sizeof n, "%sattn.indexer.weights_proj", p);
        add_bf16(l, n, c->ih, c->dim);
    }
    snprintf(n, sizeof n, "%sffn.gate", p);
    add_bf16(l, n, E, c->dim);
    snprintf(n, sizeof n, "%sffn.gate.bias", p);
    add_vec(l, n, E, R_ZERO_F32, 0);
    for (int e = 0; e < E; e++) {
        snprintf(n, sizeof n, "%sffn.experts.%d", p, e);
        add_expert(l, n, c->dim, c->inter, true);
    }
    snprintf(n, sizeof n, "%sffn.shared_experts", p);
    add_expert(l, n, c->dim, c->inter, false);
}

static void list_tensors(tlist *l, const scfg *c) {
    char n[NAME_LEN];
    add(l, "embed.weight", DSV4_DT_BF16, c->vocab, c->dim, R_BF16, 0.12f);
    add_bf16(l, "head", c->vocab, c->dim);
    add_vec(l, "norm.weight", c->dim, R_ONES_BF16, 0);
    for (int id = 0; id < c->L; id++) {
        char p[32];
        snprintf(p, sizeof p, "layers.%d.", id);
        add_block(l, c, p, id);
        int e = c->eng[0] == id ? 0 : c->eng[1] == id ? 1 : -1;
        if (e < 0) continue;
        int n_cols = (c->e_ngram - 1) * c->e_heads;
        snprintf(n, sizeof n, "%sengram.wkv", p);
        add_fp8(l, n, (int64_t)(c->hc + 1) * c->dim, (int64_t)n_cols * c->e_hd);
        snprintf(n, sizeof n, "%sengram.q_weight", p);
        add(l, n, DSV4_DT_BF16, c->hc, c->dim, R_ONES_BF16, 0);
        snprintf(n, sizeof n, "%sengram.k_weight", p);
        add(l, n, DSV4_DT_BF16, c->hc, c->dim, R_ONES_BF16, 0);
    }
    for (int s = 0; s < c->stages; s++) {
        char p[32];
        snprintf(p, sizeof p, "mtp.%d.", s);
        add_block(l, c, p, c->L + s);
    }
    if (c->stages) {
        add_fp8(l, "mtp.0.main_proj", c->dim, 3 * (int64_t)c->dim);
        add_vec(l, "mtp.0.main_norm.weight", c->dim, R_ONES_BF16, 0);
        int last = c->stages - 1; /* the last stage holds the draft head */
        snprintf(n, sizeof n, "mtp.%d.norm.weight", last);
        add_vec(l, n, c->dim, R_ONES_BF16, 0);
        snprintf(n, sizeof n, "mtp.%d.markov_head.embed.weight", last);
        add(l, n, DSV4_DT_BF16, c->vocab, c->rank, R_BF16, 1.0f / sqrtf((float)c->rank));
        snprintf(n, sizeof n, "mtp.%d.markov_head.head", last);
        add_bf16(l, n, c->vocab, c->rank);
        snprintf(n, sizeof n, "mtp.%d.confidence_head.proj", last);
        add_bf16(l, n, 1, (int64_t)c->dim + c->rank);
    }
}

/* The Engram tables, last and one shard each (as the release keeps them in its last shards). */
static void list_tables(tlist *l, const scfg *c) {
    for (int e = 0; e < 2; e++) {
        char n[NAME_LEN];
        snprintf(n, sizeof n, "layers.%d.engram.embed.weight", c->eng[e]);
        add(l, n, DSV4_DT_F8_E4M3, c->e_rows[e], c->e_hd, R_FP8, 1.0f);
        snprintf(n, sizeof n, "layers.%d.engram.embed.scale", c->eng[e]);
        add(l, n, DSV4_DT_F8_E8M0, c->e_rows[e], c->e_hd / 32, R_FP8_SCALE, 1.0f);
    }
}

static size_t tensor_bytes(const tensor *t) {
    size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
    return n * dsv4_dtype_size(t->dtype);
}

/* ---- writing --------------------------------------------------------------------------------- */

static dsv4_status copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    if (!in || !out) {
        if (in) fclose(in);
        return dsv4_error(DSV4_EIO, "synth v41: cannot copy %s to %s: %s", from, to, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    fclose(in);
    if (fclose(out) || !ok) return dsv4_error(DSV4_EIO, "synth v41: writing %s failed", to);
    return DSV4_OK;
}

dsv4_status dsv4_synth_v41_write(const dsv4_synth_v41_opts *o, const char *dir, uint64_t *total_bytes) {
    scfg c;
    dsv4_status rc = resolve(o, &c);
    if (rc) return rc;
    if (mkdir(dir, 0755) && errno != EEXIST) return dsv4_error(DSV4_EIO, "synth v41: cannot create %s: %s", dir, strerror(errno));
    char path[4096];
    /* the Engram vocabulary decides every hash multiplier: from the tokenizer if one is
     * given (it goes into the directory), else the synthetic tokenizer's */
    int32_t *map = NULL;
    if (o->tokenizer) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if ((rc = copy_file(o->tokenizer, path))) return rc;
        rc = dsv4_engram_token_map_from_tokenizer(path, c.vocab, &map, &c.e_compressed);
    } else {
        rc = dsv4_engram_token_map_synthetic(c.vocab, &map, &c.e_compressed);
    }
    free(map);
    if (rc) return rc;

    json_t *cfg = config_json(&c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int jr = json_dump_file(cfg, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    if (jr) return dsv4_error(DSV4_EIO, "synth v41: cannot write %s", path);

    build_code_tables();
    tlist l = {.seed = o->seed};
    list_tensors(&l, &c);
    int n_backbone = l.n;
    list_tables(&l, &c);
    if (l.rc) {
        free(l.t);
        return l.rc;
    }
    /* shards: the backbone in pieces of at most shard_gib, then one per Engram table */
    size_t limit = (size_t)((o->shard_gib > 0 ? o->shard_gib : 4.0) * (double)(1ull << 30)), acc = 0;
    int shard = 0;
    uint64_t total = 0;
    for (int i = 0; i < n_backbone; i++) {
        size_t b = tensor_bytes(&l.t[i]);
        if (acc && acc + b > limit) {
            shard++;
            acc = 0;
        }
        l.t[i].shard = shard;
        acc += b;
        total += b;
    }
    for (int i = n_backbone; i < l.n; i++) {
        l.t[i].shard = shard + 1 + (i - n_backbone) / 2;
        total += tensor_bytes(&l.t[i]);
    }
    int n_shards = shard + 3;
    json_t *wm = json_object();
    for (int s = 0; s < n_shards && !rc; s++) {
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        if (o->progress) o->progress(o->progress_user, fname, (double)s / n_shards);
        dsv4_st_writer *w = dsv4_st_writer_new();
        if (!w) rc = DSV4_ENOMEM;
        for (int i = 0; i < l.n && !rc; i++) {
            if (l.t[i].shard != s) continue;
            rc = dsv4_st_writer_add_gen(w, l.t[i].name, l.t[i].dtype, l.t[i].ndim, l.t[i].shape, gen, &l.t[i].g, NULL);
            json_object_set_new(wm, l.t[i].name, json_string(fname));
        }
        if (!rc) rc = dsv4_st_writer_write(w, path);
        dsv4_st_writer_free(w);
    }
    if (!rc) {
        json_t *idx = json_object(), *meta = json_object();
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
        json_object_set_new(idx, "metadata", meta);
        json_object_set(idx, "weight_map", wm);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (json_dump_file(idx, path, JSON_INDENT(1))) rc = dsv4_error(DSV4_EIO, "synth v41: cannot write %s", path);
        json_decref(idx);
    }
    json_decref(wm);
    if (o->progress && !rc) o->progress(o->progress_user, "done", 1.0);
    free(l.t);
    if (total_bytes) *total_bytes = total;
    return rc;
}
