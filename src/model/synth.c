/* synth.c: writing random DeepSeek-V4-shaped checkpoints (see synth.h).
 *
 * Three steps: resolve the hyper-parameters (the real Flash or Pro values, with the caller's
 * reductions), list every tensor the engine binds with its dtype, shape and a recipe for its
 * values, then write the list into shards through the streaming safetensors writer.
 *
 * Values come from a counter-based generator: element i of a tensor is a function of
 * (seed, tensor name, i) only, so any byte range can be produced on its own, in parallel,
 * and the files do not depend on how the writer chunks them.
 *
 * Quantised weights are drawn directly as codes. For an FP8 weight with fan-in f the target
 * spread is sigma = f^-1/2; a 128x128 block gets the scale s0 = 2^ceil(log2(4 sigma / 448))
 * (what the official quantiser gives a block whose largest value is 4 sigma), doubled in a
 * random half of the blocks so that both the scales and the saturation of the codes vary;
 * its codes are e4m3(N(0, (sigma/s)^2)). FP4 experts do the same per 32 inputs with
 * s0 = 2^ceil(log2(2.5 sigma / 6)). Drawing a code is one table lookup: the table maps a
 * uniform 16-bit (FP8) or 8-bit (FP4) number to the code whose rounding interval holds that
 * quantile of the normal distribution. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/synth.h"
#include "numeric/numeric.h"

/* ---- the hyper-parameters -------------------------------------------------------------------- */

typedef struct scfg {
    bool pro;
    int dim, n_layers, n_heads, head_dim, rope_dim, q_lora, o_groups, o_lora, window;
    int index_heads, index_head_dim, index_topk;
    int n_experts, n_active, inter, n_hash, vocab, hc;
    double route_scale;
    bool mtp;
    int ratios[DSV4_MAX_LAYERS + 1];
} scfg;

static int pick(int asked, int real) { return asked > 0 ? asked : real; }

static dsv4_status resolve(const dsv4_synth_opts *o, scfg *c) {
    memset(c, 0, sizeof *c);
    const char *like = o->like ? o->like : "flash";
    if (!strcmp(like, "pro")) c->pro = true;
    else if (strcmp(like, "flash"))
        return dsv4_error(DSV4_EINVAL, "synth: unknown model \"%s\" (flash or pro)", like);
    /* the official config.json values (spec section 1.1) */
    c->dim = pick(o->dim, c->pro ? 7168 : 4096);
    c->n_layers = pick(o->n_layers, c->pro ? 61 : 43);
    c->n_heads = pick(o->n_heads, c->pro ? 128 : 64);
    c->head_dim = pick(o->head_dim, 512);
    c->rope_dim = 64;
    c->q_lora = pick(o->q_lora_rank, c->pro ? 1536 : 1024);
    c->o_groups = pick(o->o_groups, c->pro ? 16 : 8);
    c->o_lora = pick(o->o_lora_rank, 1024);
    c->window = pick(o->window, 128);
    c->index_heads = pick(o->index_n_heads, 64);
    c->index_head_dim = 128;
    c->index_topk = pick(o->index_topk, c->pro ? 1024 : 512);
    c->n_experts = pick(o->n_experts, c->pro ? 384 : 256);
    c->n_active = DSV4_MIN(pick(o->n_activated, 6), c->n_experts);
    c->inter = pick(o->moe_inter, c->pro ? 3072 : 2048);
    c->vocab = pick(o->vocab, 129280);
    c->hc = 4;
    c->route_scale = c->pro ? 2.5 : 1.5;
    c->mtp = !o->no_mtp;
    /* hash routing in the first three layers; never in the MTP block, whose id is n_layers */
    c->n_hash = DSV4_MIN(3, c->n_layers);
    if (c->n_layers < 1 || c->n_layers + 1 > DSV4_MAX_LAYERS)
        return dsv4_error(DSV4_EINVAL, "synth: %d layers (1..%d)", c->n_layers, DSV4_MAX_LAYERS - 1);
    if (c->dim % 32 || c->inter % 32)
        return dsv4_error(DSV4_EINVAL, "synth: dim (%d) and moe_inter (%d) must be multiples of 32 (FP4 scale groups)",
                          c->dim, c->inter);
    if (c->n_heads % c->o_groups)
        return dsv4_error(DSV4_EINVAL, "synth: o_groups (%d) must divide the heads (%d)", c->o_groups, c->n_heads);
    /* the layer-kind schedule: Flash 0,1 window only, Pro 0,1 HCA; then CSA on even layers,
     * HCA on odd ones; the MTP block is window only */
    for (int l = 0; l < c->n_layers; l++)
        c->ratios[l] = l < 2 ? (c->pro ? 128 : 0) : (l % 2 == 0 ? 4 : 128);
    c->ratios[c->n_layers] = 0;
    return DSV4_OK;
}

/* config.json in the official key order (HF names). */
static json_t *config_json(const scfg *c) {
    json_t *j = json_object();
#define SET(k, v) json_object_set_new(j, k, v)
    json_t *arch = json_array();
    json_array_append_new(arch, json_string("DeepseekV4ForCausalLM"));
    SET("architectures", arch);
    SET("attention_bias", json_false());
    SET("attention_dropout", json_real(0.0));
    SET("bos_token_id", json_integer(0));
    SET("eos_token_id", json_integer(1));
    SET("expert_dtype", json_string("fp4"));
    SET("hc_eps", json_real(1e-6));
    SET("hc_mult", json_integer(c->hc));
    SET("hc_sinkhorn_iters", json_integer(20));
    SET("head_dim", json_integer(c->head_dim));
    SET("hidden_act", json_string("silu"));
    SET("hidden_size", json_integer(c->dim));
    SET("index_head_dim", json_integer(c->index_head_dim));
    SET("index_n_heads", json_integer(c->index_heads));
    SET("index_topk", json_integer(c->index_topk));
    SET("initializer_range", json_real(0.02));
    SET("max_position_embeddings", json_integer(1048576));
    SET("model_type", json_string("deepseek_v4"));
    SET("moe_intermediate_size", json_integer(c->inter));
    SET("n_routed_experts", json_integer(c->n_experts));
    SET("n_shared_experts", json_integer(1));
    SET("norm_topk_prob", json_true());
    SET("num_attention_heads", json_integer(c->n_heads));
    SET("num_experts_per_tok", json_integer(c->n_active));
    SET("num_hidden_layers", json_integer(c->n_layers));
    SET("num_hash_layers", json_integer(c->n_hash));
    SET("num_key_value_heads", json_integer(1));
    SET("num_nextn_predict_layers", json_integer(c->mtp ? 1 : 0));
    SET("o_groups", json_integer(c->o_groups));
    SET("o_lora_rank", json_integer(c->o_lora));
    SET("q_lora_rank", json_integer(c->q_lora));
    SET("qk_rope_head_dim", json_integer(c->rope_dim));
    json_t *q = json_object(), *bs = json_array();
    json_object_set_new(q, "activation_scheme", json_string("dynamic"));
    json_object_set_new(q, "fmt", json_string("e4m3"));
    json_object_set_new(q, "quant_method", json_string("fp8"));
    json_object_set_new(q, "scale_fmt", json_string("ue8m0"));
    json_array_append_new(bs, json_integer(128));
    json_array_append_new(bs, json_integer(128));
    json_object_set_new(q, "weight_block_size", bs);
    SET("quantization_config", q);
    SET("rms_norm_eps", json_real(1e-6));
    json_t *rs = json_object();
    json_object_set_new(rs, "beta_fast", json_integer(32));
    json_object_set_new(rs, "beta_slow", json_integer(1));
    json_object_set_new(rs, "factor", json_integer(16));
    json_object_set_new(rs, "original_max_position_embeddings", json_integer(65536));
    json_object_set_new(rs, "type", json_string("yarn"));
    SET("rope_scaling", rs);
    SET("rope_theta", json_integer(10000));
    SET("routed_scaling_factor", json_real(c->route_scale));
    SET("scoring_func", json_string("sqrtsoftplus"));
    SET("sliding_window", json_integer(c->window));
    SET("swiglu_limit", json_real(10.0));
    SET("tie_word_embeddings", json_false());
    SET("topk_method", json_string("noaux_tc"));
    SET("torch_dtype", json_string("bfloat16"));
    SET("transformers_version", json_string("4.57.1"));
    SET("use_cache", json_true());
    SET("vocab_size", json_integer(c->vocab));
    SET("compress_rope_theta", json_integer(160000));
    json_t *cr = json_array();
    for (int l = 0; l < c->n_layers + (c->mtp ? 1 : 0); l++) json_array_append_new(cr, json_integer(c->ratios[l]));
    SET("compress_ratios", cr);
#undef SET
    return j;
}

/* ---- the value generator --------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x) { /* the splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
#define GOLD 0x9e3779b97f4a7c15ull

static uint64_t name_key(uint64_t seed, const char *s) { /* FNV-1a, then mixed with the seed */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return mix64(h ^ mix64(seed + GOLD));
}

/* An approximately standard normal number from 64 random bits (sum of four uniforms). */
static inline float normal_of(uint64_t h) {
    uint32_t s = (uint32_t)(h & 0xffff) + (uint32_t)((h >> 16) & 0xffff) + (uint32_t)((h >> 32) & 0xffff) + (uint32_t)(h >> 48);
    return ((float)s / 65535.0f - 2.0f) * 1.7320508f;
}

typedef enum { G_BF16, G_F32, G_FP8, G_FP8_SCALE, G_FP4, G_FP4_SCALE, G_TID2EID } gen_kind;

typedef struct gen {
    gen_kind kind;
    uint64_t key, block_key; /* values; the per-block scale choice (shared by weight and scale) */
    float mean, std;
    int64_t rows, cols;      /* of the weight (scales too) */
    int e0;                  /* e8m0 byte of the unhalved scale */
    float code_sigma;        /* sigma / s0: the spread of the codes in blocks with scale s0 */
    int experts, topk;       /* tid2eid */
    uint8_t *table[2];       /* code tables for the two block scales, built on first use */
    struct progress *prog;
} gen;

typedef struct progress {
    void (*fn)(void *, const char *, double);
    void *user;
    uint64_t done, total;
    double last;
} progress;

static void gen_free(void *p) {
    gen *g = p;
    free(g->table[0]);
    free(g->table[1]);
    free(g);
}

/* Which of the two scales (s0 or 2 s0) block b uses. */
static inline int block_half(const gen *g, uint64_t b) { return (int)(mix64(g->block_key + b * GOLD) & 1); }

/* Fill table[0..size) with the codes of `fmt` (8: e4m3, 4: e2m1) whose rounding interval
 * holds the quantile (u + 0.5) / size of N(0, sigma^2); values beyond the largest code
 * saturate, as the official quantisers do. */
static void build_table(int fmt, double sigma, uint8_t *table, int size) {
    int n_codes = fmt == 8 ? 256 : 16;
    uint8_t codes[256];
    double vals[256];
    int n = 0;
    for (int k = 0; k < n_codes; k++) {
        double v = fmt == 8 ? dsv4_e4m3_to_f32((uint8_t)k) : dsv4_e2m1_to_f32((uint8_t)k);
        if (isnan(v) || (v == 0 && k != 0)) continue; /* NaN codes and -0 */
        int i = n++;                                    /* insertion sort by value */
        while (i > 0 && vals[i - 1] > v) {
            vals[i] = vals[i - 1];
            codes[i] = codes[i - 1];
            i--;
        }
        vals[i] = v;
        codes[i] = (uint8_t)k;
    }
    int c = 0;
    for (int u = 0; u < size; u++) {
        double p = (u + 0.5) / size;
        /* advance while p lies above the upper boundary (midpoint to the next code) of c */
        while (c + 1 < n && p >= 0.5 * erfc(-0.5 * (vals[c] + vals[c + 1]) / (sigma * M_SQRT2))) c++;
        table[u] = codes[c];
    }
}

static dsv4_status gen_fill(void *ctx, size_t off, void *dst, size_t len) {
    gen *g = ctx;
    uint8_t *out = dst;
    if ((g->kind == G_FP8 || g->kind == G_FP4) && !g->table[0]) {
        int fmt = g->kind == G_FP8 ? 8 : 4, size = g->kind == G_FP8 ? 65536 : 256;
        for (int h = 0; h < 2; h++) {
            if (!(g->table[h] = dsv4_malloc((size_t)size, "synth code table"))) return DSV4_ENOMEM;
            build_table(fmt, g->code_sigma / (h ? 2.0 : 1.0), g->table[h], size);
        }
    }
    const size_t piece = 1 << 16;
    long n_pieces = (long)((len + piece - 1) / piece);
#pragma omp parallel for schedule(dynamic, 4) if (n_pieces > 1)
    for (long pc = 0; pc < n_pieces; pc++) {
        size_t b0 = (size_t)pc * piece, b1 = DSV4_MIN(len, b0 + piece);
        switch (g->kind) {
        case G_BF16:
            for (size_t i = b0; i < b1; i += 2) {
                uint64_t e = (off + i) / 2;
                uint16_t h = dsv4_f32_to_bf16(g->mean + g->std * normal_of(mix64(g->key + e * GOLD)));
                memcpy(out + i, &h, 2);
            }
            break;
        case G_F32:
            for (size_t i = b0; i < b1; i += 4) {
                uint64_t e = (off + i) / 4;
                float v = g->mean + g->std * normal_of(mix64(g->key + e * GOLD));
                memcpy(out + i, &v, 4);
            }
            break;
        case G_FP8: {
            int64_t sc = (g->cols + 127) / 128;
            for (size_t i = b0; i < b1; i++) {
                uint64_t e = off + i;
                int64_t r = (int64_t)(e / (uint64_t)g->cols), c = (int64_t)(e % (uint64_t)g->cols);
                int h = block_half(g, (uint64_t)((r / 128) * sc + c / 128));
                uint16_t u = (uint16_t)(mix64(g->key + (e >> 2) * GOLD) >> (16 * (e & 3)));
                out[i] = g->table[h][u];
            }
            break;
        }
        case G_FP8_SCALE: {
            int64_t sc = (g->cols + 127) / 128;
            for (size_t i = b0; i < b1; i++) {
                uint64_t b = off + i;
                int64_t br = (int64_t)(b / (uint64_t)sc), bc = (int64_t)(b % (uint64_t)sc);
                out[i] = (uint8_t)(g->e0 + block_half(g, (uint64_t)(br * sc + bc)));
            }
            break;
        }
        case G_FP4: {
            uint64_t half = (uint64_t)g->cols / 2, nb = (uint64_t)g->cols / 32;
            for (size_t i = b0; i < b1; i++) {
                uint64_t byte = off + i, r = byte / half, c = 2 * (byte % half);
                int h = block_half(g, r * nb + c / 32);
                uint64_t e = 2 * byte; /* elements e (low nibble) and e + 1 (high) */
                uint64_t bits = mix64(g->key + (e >> 3) * GOLD);
                uint8_t lo = g->table[h][(uint8_t)(bits >> (8 * (e & 7)))];
                uint8_t hi = g->table[h][(uint8_t)(bits >> (8 * ((e + 1) & 7)))];
                out[i] = (uint8_t)(lo | hi << 4);
            }
            break;
        }
        case G_FP4_SCALE:
            for (size_t i = b0; i < b1; i++) out[i] = (uint8_t)(g->e0 + block_half(g, off + i));
            break;
        case G_TID2EID: {
            /* rows of topk distinct experts; a row may straddle the range, so build whole rows */
            size_t row_bytes = (size_t)g->topk * 8;
            for (size_t r = (off + b0) / row_bytes; r * row_bytes < off + b1; r++) {
                int64_t row[64];
                for (int k = 0; k < g->topk; k++) {
                    for (uint64_t attempt = 0;; attempt++) {
                        int64_t x = (int64_t)(mix64(g->key + ((uint64_t)r * 64 + (uint64_t)k + attempt * 0x10001) * GOLD) %
                                              (uint64_t)g->experts);
                        bool dup = false;
                        for (int j = 0; j < k; j++) dup |= row[j] == x;
                        if (!dup) {
                            row[k] = x;
                            break;
                        }
                    }
                }
                size_t r0 = r * row_bytes, lo = DSV4_MAX(r0, off + b0), hi = DSV4_MIN(r0 + row_bytes, off + b1);
                memcpy(out + (lo - off), (uint8_t *)row + (lo - r0), hi - lo);
            }
            break;
        }
        }
    }
    progress *p = g->prog;
    p->done += len;
    double f = p->total ? (double)p->done / (double)p->total : 1.0;
    if (p->fn && f - p->last >= 0.01) {
        p->last = f;
        p->fn(p->user, "writing tensors", f);
    }
    return DSV4_OK;
}

/* ---- the tensor list ------------------------------------------------------------------------- */

typedef struct tensor {
    char name[96];
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[2];
    gen g;
    uint64_t bytes;
} tensor;

typedef struct tlist {
    tensor *t;
    int n, cap;
    uint64_t seed;
    dsv4_status rc;
} tlist;

static tensor *push(tlist *L, const char *name, dsv4_dtype dt, int64_t r, int64_t c, gen_kind kind) {
    if (L->rc) return NULL;
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 1024;
        tensor *t = realloc(L->t, (size_t)cap * sizeof *t);
        if (!t) {
            L->rc = dsv4_error(DSV4_ENOMEM, "synth: out of memory listing tensors");
            return NULL;
        }
        L->t = t;
        L->cap = cap;
    }
    tensor *t = &L->t[L->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    t->bytes = (uint64_t)r * (uint64_t)(c ? c : 1) * dsv4_dtype_size(dt);
    t->g.kind = kind;
    t->g.key = name_key(L->seed, name);
    return t;
}

static void vec(tlist *L, const char *name, dsv4_dtype dt, int64_t n, float mean, float std) {
    tensor *t = push(L, name, dt, n, 0, dt == DSV4_DT_BF16 ? G_BF16 : G_F32);
    if (t) {
        t->g.mean = mean;
        t->g.std = std;
    }
}

static void mat(tlist *L, const char *name, dsv4_dtype dt, int64_t r, int64_t c, float mean, float std) {
    tensor *t = push(L, name, dt, r, c, dt == DSV4_DT_BF16 ? G_BF16 : G_F32);
    if (t) {
        t->g.mean = mean;
        t->g.std = std;
    }
}

/* log2 of pow2_ceil(v) */
static int log2_ceil(double v) { return (int)ceil(log2(v) - 1e-12); }

/* An FP8 linear `prefix`.weight [rows, cols] e4m3 + `prefix`.scale [rows/128, cols/128] e8m0. */
static void fp8_linear(tlist *L, const char *prefix, int64_t rows, int64_t cols) {
    char n[128];
    double sigma = 1.0 / sqrt((double)cols);
    int e = log2_ceil(4.0 * sigma / 448.0);
    uint64_t bkey = name_key(L->seed ^ 0x5ca1e, prefix);
    snprintf(n, sizeof n, "%s.weight", prefix);
    push(L, n, DSV4_DT_F8_E4M3, rows, cols, G_FP8);
    snprintf(n, sizeof n, "%s.scale", prefix);
    push(L, n, DSV4_DT_F8_E8M0, (rows + 127) / 128, (cols + 127) / 128, G_FP8_SCALE);
    if (L->rc) return;
    tensor *w = &L->t[L->n - 2], *s = &L->t[L->n - 1]; /* (push may move the list) */
    w->g.rows = s->g.rows = rows;
    w->g.cols = s->g.cols = cols;
    w->g.block_key = s->g.block_key = bkey;
    w->g.code_sigma = (float)(sigma / ldexp(1.0, e));
    s->g.e0 = 127 + e;
}

/* A routed expert's FP4 linear: I8 [rows, cols/2] + e8m0 [rows, cols/32]. */
static void fp4_linear(tlist *L, const char *prefix, int64_t rows, int64_t cols) {
    char n[128];
    double sigma = 1.0 / sqrt((double)cols);
    int e = log2_ceil(2.5 * sigma / 6.0);
    uint64_t bkey = name_key(L->seed ^ 0x5ca1e, prefix);
    snprintf(n, sizeof n, "%s.weight", prefix);
    push(L, n, DSV4_DT_I8, rows, cols / 2, G_FP4);
    snprintf(n, sizeof n, "%s.scale", prefix);
    push(L, n, DSV4_DT_F8_E8M0, rows, cols / 32, G_FP4_SCALE);
    if (L->rc) return;
    tensor *w = &L->t[L->n - 2], *s = &L->t[L->n - 1]; /* (push may move the list) */
    w->g.rows = s->g.rows = rows;
    w->g.cols = s->g.cols = cols;
    w->g.block_key = s->g.block_key = bkey;
    w->g.code_sigma = (float)(sigma / ldexp(1.0, e));
    s->g.e0 = 127 + e;
}

static void hc_site(tlist *L, const char *prefix, const char *site, int mix, int n_scale, const scfg *c) {
    char n[128];
    snprintf(n, sizeof n, "%s%s_fn", prefix, site);
    mat(L, n, DSV4_DT_F32, mix, (int64_t)c->hc * c->dim, 0.0f, (float)(1.0 / sqrt((double)c->hc * c->dim)));
    snprintf(n, sizeof n, "%s%s_base", prefix, site);
    vec(L, n, DSV4_DT_F32, mix, 0.0f, 0.5f);
    snprintf(n, sizeof n, "%s%s_scale", prefix, site);
    vec(L, n, DSV4_DT_F32, n_scale, 1.0f, 0.2f);
}

static void compressor(tlist *L, const char *prefix, int ratio, int dc, const scfg *c) {
    char n[128];
    int coff = ratio == 4 ? 2 : 1;
    float s = (float)(1.0 / sqrt((double)c->dim));
    snprintf(n, sizeof n, "%s.wkv.weight", prefix);
    mat(L, n, DSV4_DT_BF16, (int64_t)coff * dc, c->dim, 0.0f, s);
    snprintf(n, sizeof n, "%s.wgate.weight", prefix);
    mat(L, n, DSV4_DT_BF16, (int64_t)coff * dc, c->dim, 0.0f, s);
    snprintf(n, sizeof n, "%s.ape", prefix);
    mat(L, n, DSV4_DT_F32, ratio, (int64_t)coff * dc, 0.0f, 0.5f);
    snprintf(n, sizeof n, "%s.norm.weight", prefix);
    vec(L, n, DSV4_DT_BF16, dc, 1.0f, 0.1f);
}

/* One block: "layers.L." or "mtp.0." (layer id `id` picks the ratio and the routing kind). */
static void block(tlist *L, const char *p, int id, const scfg *c) {
    char n[128];
    int mix = (2 + c->hc) * c->hc, H = c->n_heads, D = c->head_dim, ratio = c->ratios[id];
    float sd = (float)(1.0 / sqrt((double)c->dim));
    hc_site(L, p, "hc_attn", mix, 3, c);
    hc_site(L, p, "hc_ffn", mix, 3, c);
    snprintf(n, sizeof n, "%sattn_norm.weight", p);
    vec(L, n, DSV4_DT_BF16, c->dim, 1.0f, 0.1f);
    snprintf(n, sizeof n, "%sffn_norm.weight", p);
    vec(L, n, DSV4_DT_BF16, c->dim, 1.0f, 0.1f);

    snprintf(n, sizeof n, "%sattn.attn_sink", p);
    vec(L, n, DSV4_DT_F32, H, 0.0f, 0.9f);
    snprintf(n, sizeof n, "%sattn.wq_a", p);
    fp8_linear(L, n, c->q_lora, c->dim);
    snprintf(n, sizeof n, "%sattn.q_norm.weight", p);
    vec(L, n, DSV4_DT_BF16, c->q_lora, 1.0f, 0.1f);
    snprintf(n, sizeof n, "%sattn.wq_b", p);
    fp8_linear(L, n, (int64_t)H * D, c->q_lora);
    snprintf(n, sizeof n, "%sattn.wkv", p);
    fp8_linear(L, n, D, c->dim);
    snprintf(n, sizeof n, "%sattn.kv_norm.weight", p);
    vec(L, n, DSV4_DT_BF16, D, 1.0f, 0.1f);
    snprintf(n, sizeof n, "%sattn.wo_a", p);
    fp8_linear(L, n, (int64_t)c->o_groups * c->o_lora, (int64_t)H * D / c->o_groups);
    snprintf(n, sizeof n, "%sattn.wo_b", p);
    fp8_linear(L, n, c->dim, (int64_t)c->o_groups * c->o_lora);
    if (ratio) {
        snprintf(n, sizeof n, "%sattn.compressor", p);
        compressor(L, n, ratio, D, c);
        if (ratio == 4) {
            snprintf(n, sizeof n, "%sattn.indexer.wq_b", p);
            fp8_linear(L, n, (int64_t)c->index_heads * c->index_head_dim, c->q_lora);
            snprintf(n, sizeof n, "%sattn.indexer.weights_proj.weight", p);
            mat(L, n, DSV4_DT_BF16, c->index_heads, c->dim, 0.0f, sd);
            snprintf(n, sizeof n, "%sattn.indexer.compressor", p);
            compressor(L, n, 4, c->index_head_dim, c);
        }
    }

    snprintf(n, sizeof n, "%sffn.gate.weight", p);
    mat(L, n, DSV4_DT_BF16, c->n_experts, c->dim, 0.0f, sd);
    if (id < c->n_hash) {
        snprintf(n, sizeof n, "%sffn.gate.tid2eid", p);
        tensor *t = push(L, n, DSV4_DT_I64, c->vocab, c->n_active, G_TID2EID);
        if (t) {
            t->g.experts = c->n_experts;
            t->g.topk = c->n_active;
        }
    } else {
        snprintf(n, sizeof n, "%sffn.gate.bias", p);
        vec(L, n, DSV4_DT_F32, c->n_experts, 0.0f, 0.1f);
    }
    for (int e = 0; e < c->n_experts; e++) {
        snprintf(n, sizeof n, "%sffn.experts.%d.w1", p, e);
        fp4_linear(L, n, c->inter, c->dim);
        snprintf(n, sizeof n, "%sffn.experts.%d.w2", p, e);
        fp4_linear(L, n, c->dim, c->inter);
        snprintf(n, sizeof n, "%sffn.experts.%d.w3", p, e);
        fp4_linear(L, n, c->inter, c->dim);
    }
    snprintf(n, sizeof n, "%sffn.shared_experts.w1", p);
    fp8_linear(L, n, c->inter, c->dim);
    snprintf(n, sizeof n, "%sffn.shared_experts.w2", p);
    fp8_linear(L, n, c->dim, c->inter);
    snprintf(n, sizeof n, "%sffn.shared_experts.w3", p);
    fp8_linear(L, n, c->inter, c->dim);
}

static void build_list(tlist *L, const scfg *c) {
    char p[64], n[128];
    mat(L, "embed.weight", DSV4_DT_BF16, c->vocab, c->dim, 0.0f, 1.0f);
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(p, sizeof p, "layers.%d.", l);
        block(L, p, l, c);
    }
    if (c->mtp) {
        block(L, "mtp.0.", c->n_layers, c);
        fp8_linear(L, "mtp.0.e_proj", c->dim, c->dim);
        fp8_linear(L, "mtp.0.h_proj", c->dim, c->dim);
        vec(L, "mtp.0.enorm.weight", DSV4_DT_BF16, c->dim, 1.0f, 0.1f);
        vec(L, "mtp.0.hnorm.weight", DSV4_DT_BF16, c->dim, 1.0f, 0.1f);
        vec(L, "mtp.0.norm.weight", DSV4_DT_BF16, c->dim, 1.0f, 0.1f);
        hc_site(L, "mtp.0.", "hc_head", c->hc, 1, c);
    }
    snprintf(n, sizeof n, "head.weight");
    mat(L, n, DSV4_DT_BF16, c->vocab, c->dim, 0.0f, (float)(1.0 / sqrt((double)c->dim)));
    vec(L, "norm.weight", DSV4_DT_BF16, c->dim, 1.0f, 0.1f);
    hc_site(L, "", "hc_head", c->hc, 1, c);
}

/* ---- writing --------------------------------------------------------------------------------- */

static dsv4_status write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    return ok ? DSV4_OK : dsv4_error(DSV4_EIO, "%s: write failed", path);
}

dsv4_status dsv4_synth_write(const dsv4_synth_opts *o, const char *dir, uint64_t *total_bytes) {
    dsv4_numeric_init();
    scfg c;
    dsv4_status rc = resolve(o, &c);
    if (rc) return rc;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return dsv4_error(DSV4_EIO, "%s: cannot create: %s", dir, strerror(errno));
    char path[4096];

    /* config.json, checked by the engine's own parser before anything else is written */
    json_t *cj = config_json(&c);
    char *text = json_dumps(cj, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(cj);
    if (!text) return dsv4_error(DSV4_ENOMEM, "synth: out of memory");
    struct dsv4_config check;
    snprintf(path, sizeof path, "%s/config.json", dir);
    rc = dsv4_config_parse(text, path, &check);
    if (!rc) rc = write_text(path, text);
    free(text);
    if (rc) return rc;

    tlist L = {.seed = o->seed};
    build_list(&L, &c);
    if (L.rc) {
        free(L.t);
        return L.rc;
    }
    progress prog = {o->progress, o->progress_user, 0, 0, 0};
    for (int i = 0; i < L.n; i++) {
        prog.total += L.t[i].bytes;
        L.t[i].g.prog = &prog;
    }
    if (total_bytes) *total_bytes = prog.total;

    /* shards: consecutive tensors up to the size limit */
    uint64_t cap = (uint64_t)((o->shard_gib > 0 ? o->shard_gib : 4.0) * 1073741824.0);
    int *shard_of = malloc((size_t)L.n * sizeof(int)), n_shards = 0;
    if (!shard_of) {
        free(L.t);
        return dsv4_error(DSV4_ENOMEM, "synth: out of memory");
    }
    uint64_t fill = 0;
    for (int i = 0; i < L.n; i++) {
        if (n_shards == 0 || (fill > 0 && fill + L.t[i].bytes > cap)) {
            n_shards++;
            fill = 0;
        }
        shard_of[i] = n_shards - 1;
        fill += L.t[i].bytes;
    }
    json_t *wmap = json_object();
    char fname[64];
    for (int s = 0; s < n_shards && !rc; s++) {
        if (n_shards == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        dsv4_st_writer *w = dsv4_st_writer_new();
        if (!w) rc = DSV4_ENOMEM;
        for (int i = 0; i < L.n && !rc; i++) {
            if (shard_of[i] != s) continue;
            tensor *t = &L.t[i];
            gen *g = malloc(sizeof *g);
            if (!g) {
                rc = dsv4_error(DSV4_ENOMEM, "synth: out of memory");
                break;
            }
            *g = t->g;
            rc = dsv4_st_writer_add_gen(w, t->name, t->dtype, t->ndim, t->shape, gen_fill, g, gen_free);
            json_object_set_new(wmap, t->name, json_string(fname));
        }
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        if (!rc) rc = dsv4_st_writer_write(w, path);
        dsv4_st_writer_free(w);
    }
    /* the index (only for sharded checkpoints; a stale one would shadow model.safetensors) */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!rc && n_shards > 1) {
        json_t *idx = json_object(), *meta = json_object();
        json_object_set_new(meta, "total_size", json_integer((json_int_t)prog.total));
        json_object_set_new(idx, "metadata", meta);
        json_object_set(idx, "weight_map", wmap);
        char *itext = json_dumps(idx, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(idx);
        rc = itext ? write_text(path, itext) : dsv4_error(DSV4_ENOMEM, "synth: out of memory");
        free(itext);
    } else if (!rc) {
        remove(path);
    }
    if (!rc && n_shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        remove(path);
    }
    json_decref(wmap);
    free(shard_of);
    free(L.t);
    if (!rc && o->progress) o->progress(o->progress_user, "done", 1.0);
    return rc;
}
