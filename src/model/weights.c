/* weights.c: binding checkpoint tensors to the model structs, with every check up front.
 *
 * For each tensor the config implies we look up its official name, check its dtype and shape
 * (and the shape of its block scales), and build a view (dsv4_linear) or an owned fp32 copy.
 * Matrices may be stored F32 or BF16 (training checkpoints, the exact-math copies) or in the
 * release formats: FP8 e4m3 with e8m0 (or F32) block scales, routed experts as packed FP4 with
 * one scale per 32 inputs. When all tensors are bound, any tensor left over is reported: a
 * checkpoint that does not match its config must not load half-right. */
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
    int H = c->n_heads, D = c->head_dim;
    a->ratio = c->compress_ratios[id];
    a->rope = a->ratio ? &m->rope_yarn : &m->rope_plain;
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
    e->hash = id < c->n_hash_layers;
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
