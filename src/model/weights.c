/* weights.c: binding checkpoint tensors to the model structs, with every check up front.
 *
 * For each tensor the config implies we look up its official name, check its dtype and shape
 * (and the shape of its block scales), and build a view (dsv4_linear) or an owned fp32 copy.
 * Matrices may be stored F32 or BF16 (training checkpoints, the exact-math copies) or in the
 * release formats: FP8 e4m3 with e8m0 (or F32) block scales, routed experts as packed FP4 with
 * one scale per 32 inputs. When all tensors are bound, any tensor left over is reported: a
 * checkpoint that does not match its config must not load half-right.
 *
 * V4.1 (bind_block_v41 and below) binds by the layer's CSA2 role: every layer has the
 * attention projections; KV sources add the compressor (bf16 wkv, and wgate at ratio > 1, no
 * ape) and the index-key projection (wk, k_norm); index sources add the indexer query
 * (wq_b, weights_proj); Engram layers add the table (FP8 rows + e8m0 scales), its FP8 wkv
 * and the gate weights; the DSpark stages are blocks with their own expert count, plus the
 * draft head's projections. There is no hc_head and there are no hash-routed layers. */
#include <stdio.h>

#include "base/base.h"
#include "model/model.h"
#include "numeric/numeric.h"

typedef struct binder {
    struct dsv4_model *m;
    bool *used; /* per tensor of the reader */
} binder;

static const char *tensor_file(binder *b, const dsv4_tensor *t) { return dsv4_st_file_path(b->m->st, t->file); }

static dsv4_status find(binder *b, const char *name, const dsv4_tensor **out) {
    const dsv4_tensor *t = dsv4_st_find(b->m->st, name);
    if (!t)
        return dsv4_error(DSV4_ENOTFOUND, "%s: missing tensor %s, which config.json implies", dsv4_st_source(b->m->st),
                          name);
    b->used[t - dsv4_st_at(b->m->st, 0)] = true;
    *out = t;
    return DSV4_OK;
}

/* "[a, b, c]" into buf, cut short (still terminated) if it does not fit. */
static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static dsv4_status expect_shape(binder *b, const dsv4_tensor *t, int ndim, const int64_t *shape) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return DSV4_OK;
    char got[200], want[200];
    shape_str(t->ndim, t->shape, got, sizeof got);
    shape_str(ndim, shape, want, sizeof want);
    return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has shape %s, the config implies %s", tensor_file(b, t), t->name,
                      got, want);
}

static dsv4_status expect_aligned(binder *b, const dsv4_tensor *t) {
    size_t es = dsv4_dtype_size(t->dtype);
    if (es > 1 && ((uintptr_t)t->data % es) != 0)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s (%s) starts at byte %zu, not a multiple of its element size",
                          tensor_file(b, t), t->name, dsv4_dtype_name(t->dtype), t->offset);
    return DSV4_OK;
}

static void *own(struct dsv4_model *m, void *p) {
    if (!p) return NULL;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 256;
        void **n = realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) {
            free(p);
            dsv4_error(DSV4_ENOMEM, "out of memory binding weights");
            return NULL;
        }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return p;
}

/* An owned fp32 copy of a small F32/BF16/F16 tensor of the given shape. */
static dsv4_status load_f32(binder *b, const char *name, int ndim, const int64_t *shape, float **out) {
    const dsv4_tensor *t;
    dsv4_status rc = find(b, name, &t);
    if (rc) return rc;
    if ((rc = expect_shape(b, t, ndim, shape))) return rc;
    size_t n = (size_t)dsv4_tensor_numel(t);
    float *v = own(b->m, dsv4_malloc(n * sizeof(float) + 4, name));
    if (!v) return DSV4_ENOMEM;
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case DSV4_DT_F32: memcpy(v, p, n * 4); break;
    case DSV4_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            v[i] = dsv4_bf16_to_f32(h);
        }
        break;
    case DSV4_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            int s = h >> 15, e = (h >> 10) & 31, mnt = h & 1023;
            float f = e == 0 ? ldexpf((float)mnt, -24) : e == 31 ? (mnt ? NAN : INFINITY) : ldexpf((float)(mnt | 1024), e - 25);
            v[i] = s ? -f : f;
        }
        break;
    default:
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has dtype %s, expected F32, BF16 or F16", tensor_file(b, t), name,
                          dsv4_dtype_name(t->dtype));
    }
    *out = v;
    return DSV4_OK;
}

static dsv4_status load_vec(binder *b, const char *name, int64_t n, float **out) {
    return load_f32(b, name, 1, &n, out);
}

typedef enum { LIN_DENSE, LIN_EXPERT } lin_kind;

/* Bind `prefix`.weight (+ .scale) as a [rows, cols] linear. */
static dsv4_status bind_linear(binder *b, const char *prefix, int rows, int cols, lin_kind kind, bool act_quant,
                               dsv4_linear *L) {
    char wname[256], sname[256];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(sname, sizeof sname, "%s.scale", prefix);
    const dsv4_tensor *t, *s = NULL;
    dsv4_status rc = find(b, wname, &t);
    if (rc) return rc;
    memset(L, 0, sizeof *L);
    L->rows = rows;
    L->cols = cols;
    L->w = t->data;
    L->act_quant = act_quant;
    L->name = t->name;
    const struct dsv4_config *c = &b->m->cfg;
    L->act_block = c->act_block;
    int64_t shape[2] = {rows, cols};
    switch (t->dtype) {
    case DSV4_DT_F32: L->fmt = DSV4_W_F32; break;
    case DSV4_DT_BF16: L->fmt = DSV4_W_BF16; break;
    case DSV4_DT_F8_E4M3:
        L->fmt = DSV4_W_FP8;
        L->br = c->block_r;
        L->bc = c->block_c;
        break;
    case DSV4_DT_I8:
    case DSV4_DT_U8:
        if (kind != LIN_EXPERT || !c->expert_fp4)
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s is %s (packed FP4), which the config allows only for routed experts with expert_dtype fp4",
                              tensor_file(b, t), wname, dsv4_dtype_name(t->dtype));
        if (cols % 32)
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: FP4 needs the input size %d to be a multiple of 32", tensor_file(b, t), wname, cols);
        L->fmt = DSV4_W_FP4;
        L->br = 1;
        L->bc = 32;
        shape[1] = cols / 2;
        break;
    default:
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has dtype %s, expected F32, BF16, F8_E4M3%s", tensor_file(b, t), wname,
                          dsv4_dtype_name(t->dtype), kind == LIN_EXPERT ? " or I8 (FP4)" : "");
    }
    if ((rc = expect_shape(b, t, 2, shape)) || (rc = expect_aligned(b, t))) return rc;
    if (L->fmt == DSV4_W_FP8 || L->fmt == DSV4_W_FP4) {
        if (!dsv4_st_find(b->m->st, sname))
            return dsv4_error(DSV4_ENOTFOUND, "%s: tensor %s is %s but its scale tensor %s is missing", tensor_file(b, t),
                              wname, dsv4_dtype_name(t->dtype), sname);
        if ((rc = find(b, sname, &s))) return rc;
        int64_t sshape[2];
        if (L->fmt == DSV4_W_FP8) {
            sshape[0] = (rows + L->br - 1) / L->br;
            sshape[1] = (cols + L->bc - 1) / L->bc;
        } else {
            sshape[0] = rows;
            sshape[1] = cols / 32;
        }
        if ((rc = expect_shape(b, s, 2, sshape))) return rc;
        L->sc = (int)sshape[1];
        if (s->dtype == DSV4_DT_F8_E8M0 || s->dtype == DSV4_DT_U8) L->scale_e8m0 = s->data;
        else if (s->dtype == DSV4_DT_F32) {
            if ((rc = expect_aligned(b, s))) return rc;
            L->scale_f32 = s->data;
        } else
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has dtype %s, expected F8_E8M0 or F32", tensor_file(b, s), sname,
                              dsv4_dtype_name(s->dtype));
    } else if (dsv4_st_find(b->m->st, sname)) {
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s is %s but has a block scale %s", tensor_file(b, t), wname,
                          dsv4_dtype_name(t->dtype), sname);
    }
    return DSV4_OK;
}

static dsv4_status bind_hc(binder *b, const char *prefix, const char *site, int mix, int n_scale, dsv4_hc_w *hc) {
    const struct dsv4_config *c = &b->m->cfg;
    char n1[256], n2[256], n3[256];
    snprintf(n1, sizeof n1, "%s%s_fn", prefix, site);
    snprintf(n2, sizeof n2, "%s%s_base", prefix, site);
    snprintf(n3, sizeof n3, "%s%s_scale", prefix, site);
    int64_t fshape[2] = {mix, (int64_t)c->hc_mult * c->dim};
    dsv4_status rc;
    if ((rc = load_f32(b, n1, 2, fshape, &hc->fn)) || (rc = load_vec(b, n2, mix, &hc->base)) ||
        (rc = load_vec(b, n3, n_scale, &hc->scale)))
        return rc;
    memset(&hc->fn_lin, 0, sizeof hc->fn_lin);
    hc->fn_lin.fmt = DSV4_W_F32;
    hc->fn_lin.rows = mix;
    hc->fn_lin.cols = c->hc_mult * c->dim;
    hc->fn_lin.w = hc->fn;
    return DSV4_OK;
}

static dsv4_status bind_compressor(binder *b, const char *prefix, int ratio, int dc, bool rotate, dsv4_compressor_w *cw) {
    const struct dsv4_config *c = &b->m->cfg;
    char n[256];
    cw->ratio = ratio;
    cw->dc = dc;
    cw->overlap = ratio == 4;
    cw->rotate = rotate;
    int coff = cw->overlap ? 2 : 1;
    dsv4_status rc;
    snprintf(n, sizeof n, "%s.wkv", prefix);
    if ((rc = bind_linear(b, n, coff * dc, c->dim, LIN_DENSE, false, &cw->wkv))) return rc;
    snprintf(n, sizeof n, "%s.wgate", prefix);
    if ((rc = bind_linear(b, n, coff * dc, c->dim, LIN_DENSE, false, &cw->wgate))) return rc;
    snprintf(n, sizeof n, "%s.ape", prefix);
    int64_t ashape[2] = {ratio, coff * dc};
    if ((rc = load_f32(b, n, 2, ashape, &cw->ape))) return rc;
    snprintf(n, sizeof n, "%s.norm.weight", prefix);
    return load_vec(b, n, dc, &cw->norm);
}

static dsv4_status bind_expert(binder *b, const char *prefix, lin_kind kind, dsv4_expert_w *e) {
    const struct dsv4_config *c = &b->m->cfg;
    char n[256];
    dsv4_status rc;
    snprintf(n, sizeof n, "%s.w1", prefix);
    if ((rc = bind_linear(b, n, c->moe_inter_dim, c->dim, kind, true, &e->w1))) return rc;
    snprintf(n, sizeof n, "%s.w2", prefix);
    if ((rc = bind_linear(b, n, c->dim, c->moe_inter_dim, kind, true, &e->w2))) return rc;
    snprintf(n, sizeof n, "%s.w3", prefix);
    return bind_linear(b, n, c->moe_inter_dim, c->dim, kind, true, &e->w3);
}

/* One transformer block: layers.L. or mtp.0. (prefix), with layer id `id` (the MTP block's id
 * is n_layers, which selects its compression ratio and routing kind). */
/* The projections every attention layer has, V4 and V4.1 alike: the sink, the low-rank query
 * (wq_a, q_norm, wq_b), the single KV head (wkv, kv_norm) and the grouped output (wo_a, wo_b). */
static dsv4_status bind_attn_core(binder *b, const char *prefix, dsv4_attn_w *a) {
    const struct dsv4_config *c = &b->m->cfg;
    int H = c->n_heads, D = c->head_dim;
    char n[256];
    dsv4_status rc;
    snprintf(n, sizeof n, "%sattn.attn_sink", prefix);
    if ((rc = load_vec(b, n, H, &a->sink))) return rc;
    snprintf(n, sizeof n, "%sattn.wq_a", prefix);
    if ((rc = bind_linear(b, n, c->q_lora_rank, c->dim, LIN_DENSE, true, &a->wq_a))) return rc;
    snprintf(n, sizeof n, "%sattn.q_norm.weight", prefix);
    if ((rc = load_vec(b, n, c->q_lora_rank, &a->q_norm))) return rc;
    snprintf(n, sizeof n, "%sattn.wq_b", prefix);
    if ((rc = bind_linear(b, n, H * D, c->q_lora_rank, LIN_DENSE, true, &a->wq_b))) return rc;
    snprintf(n, sizeof n, "%sattn.wkv", prefix);
    if ((rc = bind_linear(b, n, D, c->dim, LIN_DENSE, true, &a->wkv))) return rc;
    snprintf(n, sizeof n, "%sattn.kv_norm.weight", prefix);
    if ((rc = load_vec(b, n, D, &a->kv_norm))) return rc;
    /* wo_a: the official code dequantises it to bf16 at load and runs a plain einsum, so its
     * input is never FP8-quantised (act_quant false). */
    snprintf(n, sizeof n, "%sattn.wo_a", prefix);
    if ((rc = bind_linear(b, n, c->o_groups * c->o_lora_rank, H * D / c->o_groups, LIN_DENSE, false, &a->wo_a))) return rc;
    snprintf(n, sizeof n, "%sattn.wo_b", prefix);
    if ((rc = bind_linear(b, n, c->dim, c->o_groups * c->o_lora_rank, LIN_DENSE, true, &a->wo_b))) return rc;
    return DSV4_OK;
}

static dsv4_status bind_block(binder *b, const char *prefix, int id, dsv4_layer_w *L) {
    struct dsv4_model *m = b->m;
    const struct dsv4_config *c = &m->cfg;
    char n[256];
    dsv4_status rc;
    int mix = (2 + c->hc_mult) * c->hc_mult;
    L->id = id;
    if ((rc = bind_hc(b, prefix, "hc_attn", mix, 3, &L->hc_attn)) || (rc = bind_hc(b, prefix, "hc_ffn", mix, 3, &L->hc_ffn)))
        return rc;
    snprintf(n, sizeof n, "%sattn_norm.weight", prefix);
    if ((rc = load_vec(b, n, c->dim, &L->attn_norm))) return rc;
    snprintf(n, sizeof n, "%sffn_norm.weight", prefix);
    if ((rc = load_vec(b, n, c->dim, &L->ffn_norm))) return rc;

    /* attention */
    dsv4_attn_w *a = &L->attn;
    int D = c->head_dim;
    a->ratio = c->compress_ratios[id];
    a->rope = a->ratio ? &m->rope_yarn : &m->rope_plain;
    if ((rc = bind_attn_core(b, prefix, a))) return rc;
    if (a->ratio) {
        snprintf(n, sizeof n, "%sattn.compressor", prefix);
        if ((rc = bind_compressor(b, n, a->ratio, D, false, &a->comp))) return rc;
        a->has_indexer = a->ratio == 4;
        if (a->has_indexer) {
            dsv4_indexer_w *ix = &a->indexer;
            ix->n_heads = c->index_n_heads;
            ix->head_dim = c->index_head_dim;
            ix->topk = c->index_topk;
            snprintf(n, sizeof n, "%sattn.indexer.wq_b", prefix);
            if ((rc = bind_linear(b, n, ix->n_heads * ix->head_dim, c->q_lora_rank, LIN_DENSE, true, &ix->wq_b))) return rc;
            snprintf(n, sizeof n, "%sattn.indexer.weights_proj", prefix);
            if ((rc = bind_linear(b, n, ix->n_heads, c->dim, LIN_DENSE, false, &ix->weights_proj))) return rc;
            snprintf(n, sizeof n, "%sattn.indexer.compressor", prefix);
            if ((rc = bind_compressor(b, n, 4, ix->head_dim, true, &ix->comp))) return rc;
        }
    }

    /* MoE */
    dsv4_moe_w *e = &L->moe;
    int E = c->n_routed_experts, K = c->n_activated_experts;
    e->n_experts = E;
    e->top_k = K;
    e->gate_temp = 1.0f;
    e->hash = id < c->n_hash_layers;
    L->engram = -1;
    snprintf(n, sizeof n, "%sffn.gate", prefix);
    if ((rc = bind_linear(b, n, E, c->dim, LIN_DENSE, false, &e->gate))) return rc;
    if (e->hash) {
        const dsv4_tensor *t;
        snprintf(n, sizeof n, "%sffn.gate.tid2eid", prefix);
        if ((rc = find(b, n, &t))) return rc;
        int64_t shape[2] = {c->vocab_size, K};
        if ((rc = expect_shape(b, t, 2, shape))) return rc;
        if (t->dtype != DSV4_DT_I64 && t->dtype != DSV4_DT_I32)
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has dtype %s, expected I64 or I32", tensor_file(b, t), n,
                              dsv4_dtype_name(t->dtype));
        size_t cnt = (size_t)c->vocab_size * (size_t)K;
        e->tid2eid = own(m, dsv4_malloc(cnt * sizeof(int32_t), n));
        if (!e->tid2eid) return DSV4_ENOMEM;
        for (size_t i = 0; i < cnt; i++) {
            int64_t v;
            if (t->dtype == DSV4_DT_I64) memcpy(&v, (const uint8_t *)t->data + 8 * i, 8);
            else {
                int32_t v32;
                memcpy(&v32, (const uint8_t *)t->data + 4 * i, 4);
                v = v32;
            }
            if (v < 0 || v >= E)
                return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: token %zu routes to expert %lld, outside 0..%d", tensor_file(b, t),
                                  n, i / (size_t)K, (long long)v, E - 1);
            /* a token's experts must be distinct: the official block adds each expert's output
             * once per token (a repeat would be dropped there) and moe.c sizes its per-expert
             * row lists by the token count */
            for (size_t j = i - i % (size_t)K; j < i; j++)
                if (e->tid2eid[j] == v)
                    return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: token %zu routes to expert %lld twice",
                                      tensor_file(b, t), n, i / (size_t)K, (long long)v);
            e->tid2eid[i] = (int32_t)v;
        }
    } else {
        snprintf(n, sizeof n, "%sffn.gate.bias", prefix);
        if ((rc = load_vec(b, n, E, &e->bias))) return rc;
    }
    e->experts = own(m, dsv4_calloc((size_t)E, sizeof *e->experts, "experts"));
    if (!e->experts) return DSV4_ENOMEM;
    for (int x = 0; x < E; x++) {
        snprintf(n, sizeof n, "%sffn.experts.%d", prefix, x);
        if ((rc = bind_expert(b, n, LIN_EXPERT, &e->experts[x]))) return rc;
    }
    snprintf(n, sizeof n, "%sffn.shared_experts", prefix);
    return bind_expert(b, n, LIN_DENSE, &e->shared);
}

/* ---- V4.1 ------------------------------------------------------------------------------------ */

/* The MoE of a V4.1 block: score routing only, the router temperature, and (DSpark stages)
 * its own expert count. */
static dsv4_status bind_moe_v41(binder *b, const char *prefix, int E, int K, dsv4_moe_w *e) {
    struct dsv4_model *m = b->m;
    const struct dsv4_config *c = &m->cfg;
    char n[256];
    dsv4_status rc;
    e->n_experts = E;
    e->top_k = K;
    e->gate_temp = c->gate_temp;
    snprintf(n, sizeof n, "%sffn.gate", prefix);
    if ((rc = bind_linear(b, n, E, c->dim, LIN_DENSE, false, &e->gate))) return rc;
    snprintf(n, sizeof n, "%sffn.gate.bias", prefix);
    if ((rc = load_vec(b, n, E, &e->bias))) return rc;
    snprintf(n, sizeof n, "%sffn.gate.bias_vl", prefix);
    if (dsv4_st_find(m->st, n) && (rc = load_vec(b, n, E, &e->bias_vl))) return rc;
    e->experts = own(m, dsv4_calloc((size_t)E, sizeof *e->experts, "experts"));
    if (!e->experts) return DSV4_ENOMEM;
    for (int x = 0; x < E; x++) {
        snprintf(n, sizeof n, "%sffn.experts.%d", prefix, x);
        if ((rc = bind_expert(b, n, LIN_EXPERT, &e->experts[x]))) return rc;
    }
    snprintf(n, sizeof n, "%sffn.shared_experts", prefix);
    return bind_expert(b, n, LIN_DENSE, &e->shared);
}

/* The CSA2 parts of a backbone layer's attention, by role. */
static dsv4_status bind_csa2(binder *b, const char *prefix, int id, dsv4_attn_w *a) {
    const struct dsv4_config *c = &b->m->cfg;
    char n[256];
    dsv4_status rc;
    a->kv_source = dsv4_config_is_kv_source(c, id);
    a->index_source = dsv4_config_is_index_source(c, id);
    a->kv_src = dsv4_config_kv_source_of(c, id);
    a->index_src = dsv4_config_index_source_of(c, id);
    a->candidate_source = c->candidate_source_layer == id;
    a->uses_candidates = a->index_source && c->candidate_source_layer >= 0 && c->candidate_source_layer < id;
    if (a->kv_source) {
        dsv4_compressor_w *cw = &a->comp;
        cw->ratio = a->ratio;
        cw->dc = c->head_dim;
        snprintf(n, sizeof n, "%sattn.compressor.wkv", prefix);
        if ((rc = bind_linear(b, n, c->head_dim, c->dim, LIN_DENSE, false, &cw->wkv))) return rc;
        if (a->ratio > 1) {
            snprintf(n, sizeof n, "%sattn.compressor.wgate", prefix);
            if ((rc = bind_linear(b, n, c->head_dim, c->dim, LIN_DENSE, false, &cw->wgate))) return rc;
        }
        snprintf(n, sizeof n, "%sattn.compressor.norm.weight", prefix);
        if ((rc = load_vec(b, n, c->head_dim, &cw->norm))) return rc;
        snprintf(n, sizeof n, "%sattn.indexer.wk", prefix);
        if ((rc = bind_linear(b, n, c->index_head_dim, c->head_dim, LIN_DENSE, false, &a->indexer.wk))) return rc;
        snprintf(n, sizeof n, "%sattn.indexer.k_norm.weight", prefix);
        if ((rc = load_vec(b, n, c->index_head_dim, &a->indexer.k_norm))) return rc;
    }
    if (a->index_source) {
        dsv4_indexer_w *ix = &a->indexer;
        a->has_indexer = true;
        ix->n_heads = c->index_n_heads;
        ix->head_dim = c->index_head_dim;
        ix->topk = c->index_topk;
        snprintf(n, sizeof n, "%sattn.indexer.wq_b", prefix);
        if ((rc = bind_linear(b, n, ix->n_heads * ix->head_dim, c->q_lora_rank, LIN_DENSE, true, &ix->wq_b))) return rc;
        snprintf(n, sizeof n, "%sattn.indexer.weights_proj", prefix);
        if ((rc = bind_linear(b, n, ix->n_heads, c->dim, LIN_DENSE, false, &ix->weights_proj))) return rc;
    }
    return DSV4_OK;
}

/* One V4.1 block: layers.L. or a DSpark stage mtp.S. (id = n_layers + S). */
static dsv4_status bind_block_v41(binder *b, const char *prefix, int id, dsv4_layer_w *L) {
    struct dsv4_model *m = b->m;
    const struct dsv4_config *c = &m->cfg;
    char n[256];
    dsv4_status rc;
    int mix = (2 + c->hc_mult) * c->hc_mult;
    bool stage = id >= c->n_layers;
    L->id = id;
    L->engram = stage ? -1 : dsv4_config_engram_index(c, id);
    if ((rc = bind_hc(b, prefix, "hc_attn", mix, 3, &L->hc_attn)) || (rc = bind_hc(b, prefix, "hc_ffn", mix, 3, &L->hc_ffn)))
        return rc;
    snprintf(n, sizeof n, "%sattn_norm.weight", prefix);
    if ((rc = load_vec(b, n, c->dim, &L->attn_norm))) return rc;
    snprintf(n, sizeof n, "%sffn_norm.weight", prefix);
    if ((rc = load_vec(b, n, c->dim, &L->ffn_norm))) return rc;

    dsv4_attn_w *a = &L->attn;
    a->csa2 = true;
    a->ratio = c->compress_ratios[id];
    a->rope = a->ratio ? &m->rope_yarn : &m->rope_plain;
    a->kv_src = a->index_src = -1;
    if ((rc = bind_attn_core(b, prefix, a))) return rc;
    if (!stage && a->ratio && (rc = bind_csa2(b, prefix, id, a))) return rc;

    if (stage) return bind_moe_v41(b, prefix, c->dspark_n_routed_experts, c->dspark_n_activated_experts, &L->moe);
    return bind_moe_v41(b, prefix, c->n_routed_experts, c->n_activated_experts, &L->moe);
}

/* An Engram layer: the table (rows of e4m3 codes and e8m0 scales per 32 dims), the fused
 * key/value projection and the per-stream gate weights (used only as their product). */
static dsv4_status bind_engram(binder *b, int index, dsv4_engram_w *ew) {
    struct dsv4_model *m = b->m;
    const struct dsv4_config *c = &m->cfg;
    char n[256];
    dsv4_status rc;
    int layer = c->engram_layer_ids[index], hd = c->engram_head_dim, hc = c->hc_mult, d = c->dim;
    int n_cols = (c->engram_max_ngram - 1) * c->engram_n_heads;
    int64_t rows = c->engram_num_embeddings[index];
    ew->layer = layer;
    ew->index = index;
    ew->rows = rows;
    const dsv4_tensor *t;
    snprintf(n, sizeof n, "layers.%d.engram.embed.weight", layer);
    if ((rc = find(b, n, &t))) return rc;
    int64_t shape[2] = {rows, hd};
    if ((rc = expect_shape(b, t, 2, shape))) return rc;
    if (t->dtype != DSV4_DT_F8_E4M3)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has dtype %s, expected F8_E4M3", tensor_file(b, t), n,
                          dsv4_dtype_name(t->dtype));
    ew->t_codes = t;
    ew->codes = t->data;
    snprintf(n, sizeof n, "layers.%d.engram.embed.scale", layer);
    if ((rc = find(b, n, &t))) return rc;
    int64_t sshape[2] = {rows, hd / 32};
    if ((rc = expect_shape(b, t, 2, sshape))) return rc;
    if (t->dtype != DSV4_DT_F8_E8M0 && t->dtype != DSV4_DT_U8)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s has dtype %s, expected F8_E8M0", tensor_file(b, t), n,
                          dsv4_dtype_name(t->dtype));
    ew->t_scales = t;
    ew->scales = t->data;
    snprintf(n, sizeof n, "layers.%d.engram.wkv", layer);
    if ((rc = bind_linear(b, n, (hc + 1) * d, n_cols * hd, LIN_DENSE, true, &ew->wkv))) return rc;
    float *q, *k;
    int64_t gshape[2] = {hc, d};
    snprintf(n, sizeof n, "layers.%d.engram.q_weight", layer);
    if ((rc = load_f32(b, n, 2, gshape, &q))) return rc;
    snprintf(n, sizeof n, "layers.%d.engram.k_weight", layer);
    if ((rc = load_f32(b, n, 2, gshape, &k))) return rc;
    for (int i = 0; i < hc * d; i++) q[i] *= k[i]; /* the official code uses only the product */
    ew->gate_w = q;
    return DSV4_OK;
}

static dsv4_status bind_dspark(binder *b) {
    struct dsv4_model *m = b->m;
    const struct dsv4_config *c = &m->cfg;
    int S = c->n_mtp_layers, d = c->dim;
    char n[256];
    dsv4_status rc;
    dsv4_dspark_w *ds = own(m, dsv4_calloc(1, sizeof *ds, "dspark"));
    if (!ds) return DSV4_ENOMEM;
    m->dspark = ds;
    ds->n_stages = S;
    ds->block_size = c->dspark_block_size;
    ds->noise_id = c->dspark_noise_token_id;
    ds->n_targets = c->n_dspark_targets;
    ds->rank = c->dspark_markov_rank;
    ds->stages = own(m, dsv4_calloc((size_t)S, sizeof *ds->stages, "dspark stages"));
    if (!ds->stages) return DSV4_ENOMEM;
    for (int s = 0; s < S; s++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "mtp.%d.", s);
        if ((rc = bind_block_v41(b, prefix, c->n_layers + s, &ds->stages[s]))) return rc;
    }
    if ((rc = bind_linear(b, "mtp.0.main_proj", d, ds->n_targets * d, LIN_DENSE, true, &ds->main_proj))) return rc;
    if ((rc = load_vec(b, "mtp.0.main_norm.weight", d, &ds->main_norm))) return rc;
    snprintf(n, sizeof n, "mtp.%d.norm.weight", S - 1);
    if ((rc = load_vec(b, n, d, &ds->norm))) return rc;
    snprintf(n, sizeof n, "mtp.%d.markov_head.embed", S - 1);
    if ((rc = bind_linear(b, n, c->vocab_size, ds->rank, LIN_DENSE, false, &ds->markov_embed))) return rc;
    snprintf(n, sizeof n, "mtp.%d.markov_head.head", S - 1);
    if ((rc = bind_linear(b, n, c->vocab_size, ds->rank, LIN_DENSE, false, &ds->markov_head))) return rc;
    snprintf(n, sizeof n, "mtp.%d.confidence_head.proj", S - 1);
    if ((rc = bind_linear(b, n, 1, d + ds->rank, LIN_DENSE, false, &ds->confidence))) return rc;
    if (ds->markov_embed.fmt > DSV4_W_BF16 || ds->markov_head.fmt > DSV4_W_BF16 || ds->confidence.fmt > DSV4_W_BF16)
        return dsv4_error(DSV4_EFORMAT, "%s: the DSpark Markov and confidence heads must be BF16 or F32", m->dir);
    return DSV4_OK;
}

/* The V4.1 tensor set: embed, head, norm (no hc_head), the layers, Engram, DSpark. */
static dsv4_status bind_v41(binder *b) {
    struct dsv4_model *m = b->m;
    const struct dsv4_config *c = &m->cfg;
    dsv4_status rc;
    m->layers = own(m, dsv4_calloc((size_t)c->n_layers, sizeof *m->layers, "layers"));
    if (!m->layers) return DSV4_ENOMEM;
    for (int l = 0; l < c->n_layers; l++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%d.", l);
        if ((rc = bind_block_v41(b, prefix, l, &m->layers[l]))) return rc;
    }
    if (c->n_engram_layers) {
        dsv4_engram *e = own(m, dsv4_calloc(1, sizeof *e, "engram"));
        if (!e) return DSV4_ENOMEM;
        m->engram = e;
        e->n_layers = c->n_engram_layers;
        e->layers = own(m, dsv4_calloc((size_t)e->n_layers, sizeof *e->layers, "engram layers"));
        if (!e->layers) return DSV4_ENOMEM;
        for (int i = 0; i < e->n_layers; i++)
            if ((rc = bind_engram(b, i, &e->layers[i]))) return rc;
    }
    if (c->dspark_block_size && (rc = bind_dspark(b))) return rc;
    return DSV4_OK;
}

dsv4_status dsv4_weights_bind(struct dsv4_model *m) {
    const struct dsv4_config *c = &m->cfg;
    binder b = {m, NULL};
    b.used = dsv4_calloc((size_t)dsv4_st_count(m->st) + 1, sizeof(bool), "tensor table");
    if (!b.used) return DSV4_ENOMEM;
    dsv4_status rc;

    dsv4_rope_init(&m->rope_plain, c->rope_head_dim, c->rope_theta, 0, 1.0f, c->beta_fast, c->beta_slow);
    dsv4_rope_init(&m->rope_yarn, c->rope_head_dim, c->compress_rope_theta, c->original_seq_len, c->rope_factor,
                   c->beta_fast, c->beta_slow);

    if ((rc = bind_linear(&b, "embed", c->vocab_size, c->dim, LIN_DENSE, false, &m->embed))) goto out;
    if (m->embed.fmt != DSV4_W_F32 && m->embed.fmt != DSV4_W_BF16) {
        const dsv4_tensor *t = dsv4_st_find(m->st, "embed.weight");
        rc = dsv4_error(DSV4_EFORMAT, "%s: tensor embed.weight has dtype %s; the embedding must be BF16 or F32",
                        dsv4_st_file_path(m->st, t->file), dsv4_dtype_name(t->dtype));
        goto out;
    }
    if ((rc = bind_linear(&b, "head", c->vocab_size, c->dim, LIN_DENSE, false, &m->head))) goto out;
    if ((rc = load_vec(&b, "norm.weight", c->dim, &m->norm))) goto out;
    if (c->family == DSV4_ARCH_V41) {
        if ((rc = bind_v41(&b))) goto out;
        goto leftovers;
    }
    if ((rc = bind_hc(&b, "", "hc_head", c->hc_mult, 1, &m->hc_head))) goto out;

    m->layers = own(m, dsv4_calloc((size_t)c->n_layers, sizeof *m->layers, "layers"));
    if (!m->layers) {
        rc = DSV4_ENOMEM;
        goto out;
    }
    for (int l = 0; l < c->n_layers; l++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%d.", l);
        if ((rc = bind_block(&b, prefix, l, &m->layers[l]))) goto out;
    }
    if (c->n_mtp_layers) {
        dsv4_mtp_w *t = own(m, dsv4_calloc(1, sizeof *t, "mtp"));
        if (!t) {
            rc = DSV4_ENOMEM;
            goto out;
        }
        m->mtp = t;
        if ((rc = bind_block(&b, "mtp.0.", c->n_layers, &t->block))) goto out;
        if ((rc = bind_linear(&b, "mtp.0.e_proj", c->dim, c->dim, LIN_DENSE, true, &t->e_proj))) goto out;
        if ((rc = bind_linear(&b, "mtp.0.h_proj", c->dim, c->dim, LIN_DENSE, true, &t->h_proj))) goto out;
        if ((rc = load_vec(&b, "mtp.0.enorm.weight", c->dim, &t->enorm))) goto out;
        if ((rc = load_vec(&b, "mtp.0.hnorm.weight", c->dim, &t->hnorm))) goto out;
        if ((rc = load_vec(&b, "mtp.0.norm.weight", c->dim, &t->norm))) goto out;
        if ((rc = bind_hc(&b, "mtp.0.", "hc_head", c->hc_mult, 1, &t->hc_head))) goto out;
    }
leftovers:
    for (int i = 0; i < dsv4_st_count(m->st); i++) {
        if (!b.used[i]) {
            const dsv4_tensor *t = dsv4_st_at(m->st, i);
            rc = dsv4_error(DSV4_EFORMAT, "%s: unexpected tensor %s: not part of a model with this config.json",
                            dsv4_st_file_path(m->st, t->file), t->name);
            goto out;
        }
    }
out:
    free(b.used);
    return rc;
}

void dsv4_weights_free(struct dsv4_model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    m->owned = NULL;
    m->n_owned = m->cap_owned = 0;
}
