/* params.c: the training model: fp32 master weights and their gradients.
 *
 * One walk over the architecture (the same order and names as model/weights.c) runs three
 * times: pass 0 lays out the table of parameters (official name, shape, offset into the flat
 * buffers), pass 1 binds the weight structs of `tm->model` to the parameter buffer, copying
 * the values of a source model if there is one (every stored format dequantised exactly by
 * dsv4_linear_dequant_row), pass 2 binds the same structs of `tm->grad` to the gradient
 * buffer. Every matrix becomes an F32 linear, so the inference engine's math runs on the
 * master weights unchanged. The hash-routing tables are not parameters: they are shared by
 * both views and written with the weights.
 *
 * A view (dsv4_tmodel_new_view) reads the parameters and hash tables of a master model and
 * owns only its gradients: the data-parallel trainer gives each worker one, so workers
 * accumulate gradients side by side and the trainer adds them up in a fixed order. */
#include <stdio.h>

#include "base/base.h"
#include "train/train.h"

typedef struct builder {
    dsv4_tmodel *tm;
    int pass;                      /* 0 layout, 1 values, 2 gradients */
    const struct dsv4_model *src;  /* pass 1: where the values come from (NULL: zeros) */
    const dsv4_tmodel *share;      /* a master whose parameters and hash tables are viewed */
    float *base;
    int next, cap;
    size_t off;
    int n_hash;
    dsv4_status rc;
} builder;

/* One parameter: a vector (cols == 0) or a matrix; binds *vec and/or *lin. */
static void tensor(builder *b, const char *name, int rows, int cols, float **vec, dsv4_linear *lin, const float *src_vec,
                   const dsv4_linear *src_lin) {
    if (b->rc) return;
    dsv4_tmodel *tm = b->tm;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    if (b->pass == 0) {
        if (tm->n_table == b->cap) {
            int cap = b->cap ? 2 * b->cap : 256;
            dsv4_tparam *t = realloc(tm->table, (size_t)cap * sizeof *t);
            if (!t) {
                b->rc = dsv4_error(DSV4_ENOMEM, "out of memory for the parameter table");
                return;
            }
            tm->table = t;
            b->cap = cap;
        }
        dsv4_tparam *p = &tm->table[tm->n_table++];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", name);
        p->ndim = cols ? 2 : 1;
        p->shape[0] = rows;
        p->shape[1] = cols;
        p->off = b->off;
        p->n = n;
        b->off += (n + 15) & ~(size_t)15;
        return;
    }
    const dsv4_tparam *p = &tm->table[b->next++];
    float *data = b->base + p->off;
    if (vec) *vec = data;
    if (lin) {
        memset(lin, 0, sizeof *lin);
        lin->fmt = DSV4_W_F32;
        lin->rows = rows;
        lin->cols = cols;
        lin->w = data;
        lin->name = p->name;
    }
    if (b->pass == 1 && src_vec) memcpy(data, src_vec, n * sizeof(float));
    if (b->pass == 1 && src_lin)
        for (int r = 0; r < rows; r++) dsv4_linear_dequant_row(src_lin, r, data + (size_t)r * cols);
}

#define NAME(...) (snprintf(name, sizeof name, __VA_ARGS__), name)

static void walk_hc(builder *b, const char *prefix, const char *site, int mix, int n_scale, dsv4_hc_w *hc,
                    const dsv4_hc_w *s) {
    const struct dsv4_config *c = &b->tm->model.cfg;
    char name[128];
    int cols = c->hc_mult * c->dim;
    tensor(b, NAME("%s%s_fn", prefix, site), mix, cols, &hc->fn, &hc->fn_lin, s ? s->fn : NULL, NULL);
    tensor(b, NAME("%s%s_base", prefix, site), mix, 0, &hc->base, NULL, s ? s->base : NULL, NULL);
    tensor(b, NAME("%s%s_scale", prefix, site), n_scale, 0, &hc->scale, NULL, s ? s->scale : NULL, NULL);
}

static void walk_compressor(builder *b, const char *prefix, int ratio, int dc, bool rotate, dsv4_compressor_w *cw,
                            const dsv4_compressor_w *s) {
    const struct dsv4_config *c = &b->tm->model.cfg;
    char name[128];
    cw->ratio = ratio;
    cw->dc = dc;
    cw->overlap = ratio == 4;
    cw->rotate = rotate;
    int width = (cw->overlap ? 2 : 1) * dc;
    tensor(b, NAME("%s.wkv.weight", prefix), width, c->dim, NULL, &cw->wkv, NULL, s ? &s->wkv : NULL);
    tensor(b, NAME("%s.wgate.weight", prefix), width, c->dim, NULL, &cw->wgate, NULL, s ? &s->wgate : NULL);
    tensor(b, NAME("%s.ape", prefix), ratio, width, &cw->ape, NULL, s ? s->ape : NULL, NULL);
    tensor(b, NAME("%s.norm.weight", prefix), dc, 0, &cw->norm, NULL, s ? s->norm : NULL, NULL);
}

static void walk_expert(builder *b, const char *prefix, dsv4_expert_w *e, const dsv4_expert_w *s) {
    const struct dsv4_config *c = &b->tm->model.cfg;
    char name[128];
    tensor(b, NAME("%s.w1.weight", prefix), c->moe_inter_dim, c->dim, NULL, &e->w1, NULL, s ? &s->w1 : NULL);
    tensor(b, NAME("%s.w2.weight", prefix), c->dim, c->moe_inter_dim, NULL, &e->w2, NULL, s ? &s->w2 : NULL);
    tensor(b, NAME("%s.w3.weight", prefix), c->moe_inter_dim, c->dim, NULL, &e->w3, NULL, s ? &s->w3 : NULL);
}

/* The hash table of a hash-routed layer: copied from the source, or a balanced default
 * (token t's k-th expert is (t*K + k) mod E). Shared by the value and gradient views. */
static void hash_table(builder *b, dsv4_moe_w *e, const dsv4_moe_w *s) {
    dsv4_tmodel *tm = b->tm;
    const struct dsv4_config *c = &tm->model.cfg;
    int K = c->n_activated_experts, E = c->n_routed_experts;
    if (b->pass == 0 || b->rc) return;
    if (b->pass == 2 || b->share) {
        e->tid2eid = b->pass == 2 ? tm->tid2eid[b->n_hash++] : b->share->tid2eid[b->n_hash++];
        return;
    }
    size_t n = (size_t)c->vocab_size * K;
    int32_t *t = malloc(n * sizeof(int32_t) + 4);
    if (!t) {
        b->rc = dsv4_error(DSV4_ENOMEM, "out of memory for a hash-routing table");
        return;
    }
    if (s && s->tid2eid) memcpy(t, s->tid2eid, n * sizeof(int32_t));
    else
        for (size_t i = 0; i < n; i++) t[i] = (int32_t)(i % (size_t)E);
    tm->tid2eid[b->n_hash++] = t;
    e->tid2eid = t;
}

static void walk_block(builder *b, const char *prefix, int id, dsv4_layer_w *L, const dsv4_layer_w *S) {
    struct dsv4_model *m = &b->tm->model;
    const struct dsv4_config *c = &m->cfg;
    char name[128];
    int mix = (2 + c->hc_mult) * c->hc_mult, H = c->n_heads, D = c->head_dim, E = c->n_routed_experts;
    L->id = id;
    walk_hc(b, prefix, "hc_attn", mix, 3, &L->hc_attn, S ? &S->hc_attn : NULL);
    walk_hc(b, prefix, "hc_ffn", mix, 3, &L->hc_ffn, S ? &S->hc_ffn : NULL);
    tensor(b, NAME("%sattn_norm.weight", prefix), c->dim, 0, &L->attn_norm, NULL, S ? S->attn_norm : NULL, NULL);
    tensor(b, NAME("%sffn_norm.weight", prefix), c->dim, 0, &L->ffn_norm, NULL, S ? S->ffn_norm : NULL, NULL);

    dsv4_attn_w *a = &L->attn;
    const dsv4_attn_w *sa = S ? &S->attn : NULL;
    a->ratio = c->compress_ratios[id];
    a->rope = a->ratio ? &m->rope_yarn : &m->rope_plain;
    tensor(b, NAME("%sattn.attn_sink", prefix), H, 0, &a->sink, NULL, sa ? sa->sink : NULL, NULL);
    tensor(b, NAME("%sattn.wq_a.weight", prefix), c->q_lora_rank, c->dim, NULL, &a->wq_a, NULL, sa ? &sa->wq_a : NULL);
    tensor(b, NAME("%sattn.q_norm.weight", prefix), c->q_lora_rank, 0, &a->q_norm, NULL, sa ? sa->q_norm : NULL, NULL);
    tensor(b, NAME("%sattn.wq_b.weight", prefix), H * D, c->q_lora_rank, NULL, &a->wq_b, NULL, sa ? &sa->wq_b : NULL);
    tensor(b, NAME("%sattn.wkv.weight", prefix), D, c->dim, NULL, &a->wkv, NULL, sa ? &sa->wkv : NULL);
    tensor(b, NAME("%sattn.kv_norm.weight", prefix), D, 0, &a->kv_norm, NULL, sa ? sa->kv_norm : NULL, NULL);
    tensor(b, NAME("%sattn.wo_a.weight", prefix), c->o_groups * c->o_lora_rank, H * D / c->o_groups, NULL, &a->wo_a, NULL,
           sa ? &sa->wo_a : NULL);
    tensor(b, NAME("%sattn.wo_b.weight", prefix), c->dim, c->o_groups * c->o_lora_rank, NULL, &a->wo_b, NULL,
           sa ? &sa->wo_b : NULL);
    if (a->ratio) {
        walk_compressor(b, NAME("%sattn.compressor", prefix), a->ratio, D, false, &a->comp, sa ? &sa->comp : NULL);
        a->has_indexer = a->ratio == 4;
        if (a->has_indexer) {
            dsv4_indexer_w *ix = &a->indexer;
            const dsv4_indexer_w *si = sa ? &sa->indexer : NULL;
            ix->n_heads = c->index_n_heads;
            ix->head_dim = c->index_head_dim;
            ix->topk = c->index_topk;
            tensor(b, NAME("%sattn.indexer.wq_b.weight", prefix), ix->n_heads * ix->head_dim, c->q_lora_rank, NULL,
                   &ix->wq_b, NULL, si ? &si->wq_b : NULL);
            tensor(b, NAME("%sattn.indexer.weights_proj.weight", prefix), ix->n_heads, c->dim, NULL, &ix->weights_proj,
                   NULL, si ? &si->weights_proj : NULL);
            walk_compressor(b, NAME("%sattn.indexer.compressor", prefix), 4, ix->head_dim, true, &ix->comp,
                            si ? &si->comp : NULL);
        }
    }

    dsv4_moe_w *e = &L->moe;
    const dsv4_moe_w *se = S ? &S->moe : NULL;
    e->hash = id < c->n_hash_layers;
    tensor(b, NAME("%sffn.gate.weight", prefix), E, c->dim, NULL, &e->gate, NULL, se ? &se->gate : NULL);
    if (e->hash) hash_table(b, e, se);
    else tensor(b, NAME("%sffn.gate.bias", prefix), E, 0, &e->bias, NULL, se ? se->bias : NULL, NULL);
    if (b->pass > 0 && !b->rc) {
        e->experts = calloc((size_t)E, sizeof *e->experts);
        if (!e->experts) {
            b->rc = dsv4_error(DSV4_ENOMEM, "out of memory for the experts");
            return;
        }
    }
    dsv4_expert_w scratch; /* pass 0 binds nothing */
    for (int x = 0; x < E && !b->rc; x++)
        walk_expert(b, NAME("%sffn.experts.%d", prefix, x), b->pass ? &e->experts[x] : &scratch, se ? &se->experts[x] : NULL);
    walk_expert(b, NAME("%sffn.shared_experts", prefix), &e->shared, se ? &se->shared : NULL);
}

/* The whole model into `dst` (tm->model or tm->grad). */
static void walk_model(builder *b, struct dsv4_model *dst) {
    const struct dsv4_config *c = &b->tm->model.cfg;
    const struct dsv4_model *s = b->src;
    char name[128];
    tensor(b, "embed.weight", c->vocab_size, c->dim, NULL, &dst->embed, NULL, s ? &s->embed : NULL);
    tensor(b, "head.weight", c->vocab_size, c->dim, NULL, &dst->head, NULL, s ? &s->head : NULL);
    tensor(b, "norm.weight", c->dim, 0, &dst->norm, NULL, s ? s->norm : NULL, NULL);
    walk_hc(b, "", "hc_head", c->hc_mult, 1, &dst->hc_head, s ? &s->hc_head : NULL);
    if (b->pass > 0 && !(dst->layers = calloc((size_t)c->n_layers + 1, sizeof *dst->layers))) {
        b->rc = dsv4_error(DSV4_ENOMEM, "out of memory for the layers");
        return;
    }
    dsv4_layer_w scratch; /* pass 0 writes nothing that matters */
    for (int l = 0; l < c->n_layers && !b->rc; l++)
        walk_block(b, NAME("layers.%d.", l), l, b->pass ? &dst->layers[l] : &scratch, s ? &s->layers[l] : NULL);
    if (!c->n_mtp_layers || b->rc) return;
    dsv4_mtp_w mscratch, *t = &mscratch;
    if (b->pass > 0 && !(t = dst->mtp = calloc(1, sizeof *dst->mtp))) {
        b->rc = dsv4_error(DSV4_ENOMEM, "out of memory for the MTP block");
        return;
    }
    const dsv4_mtp_w *st = s ? s->mtp : NULL;
    walk_block(b, "mtp.0.", c->n_layers, &t->block, st ? &st->block : NULL);
    tensor(b, "mtp.0.e_proj.weight", c->dim, c->dim, NULL, &t->e_proj, NULL, st ? &st->e_proj : NULL);
    tensor(b, "mtp.0.h_proj.weight", c->dim, c->dim, NULL, &t->h_proj, NULL, st ? &st->h_proj : NULL);
    tensor(b, "mtp.0.enorm.weight", c->dim, 0, &t->enorm, NULL, st ? st->enorm : NULL, NULL);
    tensor(b, "mtp.0.hnorm.weight", c->dim, 0, &t->hnorm, NULL, st ? st->hnorm : NULL, NULL);
    tensor(b, "mtp.0.norm.weight", c->dim, 0, &t->norm, NULL, st ? st->norm : NULL, NULL);
    walk_hc(b, "mtp.0.", "hc_head", c->hc_mult, 1, &t->hc_head, st ? &st->hc_head : NULL);
}

static void free_views(struct dsv4_model *v, int n_layers) {
    if (v->layers)
        for (int l = 0; l < n_layers; l++) free(v->layers[l].moe.experts);
    if (v->mtp) free(v->mtp->block.moe.experts);
    free(v->layers);
    free(v->mtp);
    v->layers = NULL;
    v->mtp = NULL;
}

void dsv4_tmodel_free(dsv4_tmodel *tm) {
    if (!tm) return;
    int n_layers = tm->model.cfg.n_layers;
    free_views(&tm->model, n_layers);
    free_views(&tm->grad, n_layers);
    if (!tm->shared) {
        for (int i = 0; i < tm->n_tid2eid; i++) free(tm->tid2eid[i]);
        free(tm->params);
    }
    free(tm->tid2eid);
    free(tm->table);
    free(tm->grads);
    free(tm->model.dir);
    dsv4_ws_free(&tm->model.ws);
    pthread_mutex_destroy(&tm->model.lock);
    free(tm);
}

static dsv4_status check_limits(const struct dsv4_config *c) {
    if (c->hc_mult < 1 || c->hc_mult > DSV4_TRAIN_MAX_HC || c->hc_sinkhorn_iters < 1 ||
        c->hc_sinkhorn_iters > DSV4_TRAIN_MAX_SINKHORN)
        return dsv4_error(DSV4_EUNSUPPORTED, "training needs hc_mult <= %d and 1..%d Sinkhorn iterations (config: %d, %d)",
                          DSV4_TRAIN_MAX_HC, DSV4_TRAIN_MAX_SINKHORN, c->hc_mult, c->hc_sinkhorn_iters);
    for (int l = 0; l < c->n_layers + c->n_mtp_layers; l++)
        if (c->compress_ratios[l] > 256)
            return dsv4_error(DSV4_EUNSUPPORTED, "training supports compression ratios up to 256 (layer %d: %d)", l,
                              c->compress_ratios[l]);
    if (c->index_topk > 1024) return dsv4_error(DSV4_EUNSUPPORTED, "training supports index_topk up to 1024 (config: %d)", c->index_topk);
    if (c->n_mtp_layers > 1) return dsv4_error(DSV4_EUNSUPPORTED, "training supports one MTP block (config: %d)", c->n_mtp_layers);
    return DSV4_OK;
}

static dsv4_status tmodel_build(const struct dsv4_config *cfg, const struct dsv4_model *src, const dsv4_tmodel *share,
                                dsv4_tmodel **out) {
    *out = NULL;
    dsv4_status rc = check_limits(cfg);
    if (rc) return rc;
    dsv4_tmodel *tm = calloc(1, sizeof *tm);
    if (!tm) return dsv4_error(DSV4_ENOMEM, "out of memory for a training model");
    struct dsv4_model *m = &tm->model;
    m->cfg = *cfg;
    m->numerics = DSV4_NUMERICS_EXACT;
    pthread_mutex_init(&m->lock, NULL);
    m->dir = strdup(src ? src->dir : share ? share->model.dir : "(training weights)");
    dsv4_rope_init(&m->rope_plain, cfg->rope_head_dim, cfg->rope_theta, 0, 1.0f, cfg->beta_fast, cfg->beta_slow);
    dsv4_rope_init(&m->rope_yarn, cfg->rope_head_dim, cfg->compress_rope_theta, cfg->original_seq_len, cfg->rope_factor,
                   cfg->beta_fast, cfg->beta_slow);
    tm->grad.cfg = *cfg;
    tm->shared = share != NULL;
    int n_hash = 0;
    for (int l = 0; l < cfg->n_layers; l++) n_hash += l < cfg->n_hash_layers;
    tm->tid2eid = calloc((size_t)n_hash + 1, sizeof(int32_t *));
    if (!m->dir || !tm->tid2eid) {
        dsv4_tmodel_free(tm);
        return dsv4_error(DSV4_ENOMEM, "out of memory for a training model");
    }
    tm->n_tid2eid = n_hash;
    if (share)
        for (int i = 0; i < n_hash; i++) tm->tid2eid[i] = share->tid2eid[i];

    builder b = {.tm = tm, .pass = 0};
    walk_model(&b, &tm->grad); /* lays out the table; binds nothing yet */
    if (!b.rc) {
        tm->n_floats = b.off;
        tm->params = share ? share->params : dsv4_alloc_aligned(b.off * sizeof(float) + 64, "training weights");
        tm->grads = dsv4_alloc_aligned(b.off * sizeof(float) + 64, "training gradients");
        if (!tm->params || !tm->grads) b.rc = DSV4_ENOMEM;
    }
    int cap = b.cap;
    for (int pass = 1; pass <= 2 && !b.rc; pass++) {
        b = (builder){.tm = tm, .pass = pass, .src = pass == 1 ? src : NULL, .share = pass == 1 ? share : NULL,
                      .cap = cap, .base = pass == 1 ? tm->params : tm->grads};
        walk_model(&b, pass == 1 ? &tm->model : &tm->grad);
    }
    if (b.rc) {
        dsv4_tmodel_free(tm);
        return b.rc;
    }
    *out = tm;
    return DSV4_OK;
}

dsv4_status dsv4_tmodel_new(const struct dsv4_config *cfg, dsv4_tmodel **out) { return tmodel_build(cfg, NULL, NULL, out); }

dsv4_status dsv4_tmodel_from_model(const struct dsv4_model *m, dsv4_tmodel **out) {
    return tmodel_build(&m->cfg, m, NULL, out);
}

dsv4_status dsv4_tmodel_new_view(const dsv4_tmodel *master, dsv4_tmodel **out) {
    return tmodel_build(&master->model.cfg, NULL, master, out);
}

void dsv4_tmodel_zero_grad(dsv4_tmodel *tm) { memset(tm->grads, 0, tm->n_floats * sizeof(float)); }

const dsv4_tparam *dsv4_tmodel_find(const dsv4_tmodel *tm, const char *name) {
    for (int i = 0; i < tm->n_table; i++)
        if (!strcmp(tm->table[i].name, name)) return &tm->table[i];
    return NULL;
}

dsv4_status dsv4_tmodel_write(const dsv4_tmodel *tm, const char *path, bool grads, bool skip_zero) {
    const struct dsv4_config *c = &tm->model.cfg;
    dsv4_st_writer *w = dsv4_st_writer_new();
    if (!w) return dsv4_error(DSV4_ENOMEM, "out of memory writing %s", path);
    dsv4_status rc = DSV4_OK;
    const float *base = grads ? tm->grads : tm->params;
    for (int i = 0; i < tm->n_table && !rc; i++) {
        const dsv4_tparam *p = &tm->table[i];
        const float *data = base + p->off;
        if (skip_zero) {
            size_t j = 0;
            while (j < p->n && data[j] == 0.0f) j++;
            if (j == p->n) continue;
        }
        rc = dsv4_st_writer_add(w, p->name, DSV4_DT_F32, p->ndim, p->shape, data);
    }
    if (!grads) {
        for (int l = 0, h = 0; l < c->n_layers && l < c->n_hash_layers && !rc; l++, h++) {
            char name[96];
            snprintf(name, sizeof name, "layers.%d.ffn.gate.tid2eid", l);
            int64_t shape[2] = {c->vocab_size, c->n_activated_experts};
            rc = dsv4_st_writer_add(w, name, DSV4_DT_I32, 2, shape, tm->tid2eid[h]);
        }
    }
    if (!rc) rc = dsv4_st_writer_write(w, path);
    dsv4_st_writer_free(w);
    return rc;
}
