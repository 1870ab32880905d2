/* info.c: what a model holds and what it costs per token.
 *
 * Parameter counts are logical (an FP4 byte is two parameters; block scales are not
 * parameters). "Active" follows DeepSeek's accounting: everything a token passes through,
 * with only num_experts_per_tok of the routed experts of each layer, and without the
 * embedding table (a lookup, not a matmul). KV bytes per token are the amortised growth of a
 * sequence's state in the engine's row formats; the sliding windows are a fixed cost.
 *
 * V4.1 is counted by layer role (only KV sources compress, only index sources score) and
 * keeps Engram apart: its tables are parameters of a lookup, like the embedding, so they
 * are reported on their own, with the bytes a token reads from them. */
#include <stdio.h>

#include "base/base.h"
#include "infer/state.h"
#include "model/info.h"

static double lin_params(const dsv4_linear *L) { return (double)L->rows * (double)L->cols; }

static double compressor_params(const dsv4_compressor_w *c) {
    int coff = c->overlap ? 2 : 1;
    return lin_params(&c->wkv) + lin_params(&c->wgate) + (double)c->ratio * coff * c->dc + c->dc;
}

static double block_params(const struct dsv4_config *c, const dsv4_layer_w *L, double *routed, double *routed_active) {
    int mix = (2 + c->hc_mult) * c->hc_mult;
    double p = 2.0 * ((double)mix * c->hc_mult * c->dim + mix + 3) + 2.0 * c->dim;
    const dsv4_attn_w *a = &L->attn;
    p += c->n_heads + lin_params(&a->wq_a) + c->q_lora_rank + lin_params(&a->wq_b) + lin_params(&a->wkv) + c->head_dim +
         lin_params(&a->wo_a) + lin_params(&a->wo_b);
    if (a->ratio) p += compressor_params(&a->comp);
    if (a->has_indexer)
        p += lin_params(&a->indexer.wq_b) + lin_params(&a->indexer.weights_proj) + compressor_params(&a->indexer.comp);
    const dsv4_moe_w *m = &L->moe;
    p += lin_params(&m->gate) + (m->bias ? c->n_routed_experts : 0);
    double e = lin_params(&m->experts[0].w1) + lin_params(&m->experts[0].w2) + lin_params(&m->experts[0].w3);
    p += lin_params(&m->shared.w1) + lin_params(&m->shared.w2) + lin_params(&m->shared.w3);
    *routed = e * c->n_routed_experts;
    *routed_active = e * c->n_activated_experts;
    return p;
}

static double lin_bytes_active(const dsv4_linear *L) { return (double)dsv4_linear_bytes(L); }

static double block_decode_bytes(const struct dsv4_config *c, const dsv4_layer_w *L) {
    const dsv4_attn_w *a = &L->attn;
    double b = lin_bytes_active(&a->wq_a) + lin_bytes_active(&a->wq_b) + lin_bytes_active(&a->wkv) +
               lin_bytes_active(&a->wo_a) + lin_bytes_active(&a->wo_b);
    if (a->ratio) b += lin_bytes_active(&a->comp.wkv) + lin_bytes_active(&a->comp.wgate);
    if (a->has_indexer)
        b += lin_bytes_active(&a->indexer.wq_b) + lin_bytes_active(&a->indexer.weights_proj) +
             lin_bytes_active(&a->indexer.comp.wkv) + lin_bytes_active(&a->indexer.comp.wgate);
    const dsv4_moe_w *m = &L->moe;
    double e = lin_bytes_active(&m->experts[0].w1) + lin_bytes_active(&m->experts[0].w2) + lin_bytes_active(&m->experts[0].w3);
    b += lin_bytes_active(&m->gate) + e * c->n_activated_experts + lin_bytes_active(&m->shared.w1) +
         lin_bytes_active(&m->shared.w2) + lin_bytes_active(&m->shared.w3);
    int mix = (2 + c->hc_mult) * c->hc_mult;
    b += 2.0 * 4.0 * mix * c->hc_mult * c->dim; /* hc_fn, fp32 */
    return b;
}

/* ---- V4.1 -------------------------------------------------------------------------------------- */

static double norm_params(const float *w, int n) { return w ? n : 0; }

static double block_params_v41(const struct dsv4_config *c, const dsv4_layer_w *L, double *routed, double *routed_active,
                               double *decode) {
    int mix = (2 + c->hc_mult) * c->hc_mult;
    double p = 2.0 * ((double)mix * c->hc_mult * c->dim + mix + 3) + 2.0 * c->dim;
    const dsv4_attn_w *a = &L->attn;
    const dsv4_linear *lins[] = {&a->wq_a, &a->wq_b, &a->wkv, &a->wo_a, &a->wo_b, &a->comp.wkv, &a->comp.wgate,
                                 &a->indexer.wk, &a->indexer.wq_b, &a->indexer.weights_proj};
    p += c->n_heads + c->q_lora_rank + c->head_dim + norm_params(a->comp.norm, c->head_dim) +
         norm_params(a->indexer.k_norm, c->index_head_dim);
    for (size_t i = 0; i < DSV4_ARRAY_LEN(lins); i++) {
        p += lin_params(lins[i]);
        *decode += lin_bytes_active(lins[i]);
    }
    const dsv4_moe_w *m = &L->moe;
    double e = lin_params(&m->experts[0].w1) + lin_params(&m->experts[0].w2) + lin_params(&m->experts[0].w3);
    double eb = lin_bytes_active(&m->experts[0].w1) + lin_bytes_active(&m->experts[0].w2) + lin_bytes_active(&m->experts[0].w3);
    double sh = lin_params(&m->shared.w1) + lin_params(&m->shared.w2) + lin_params(&m->shared.w3);
    p += lin_params(&m->gate) + m->n_experts * (m->bias_vl ? 2.0 : 1.0) + sh;
    *decode += lin_bytes_active(&m->gate) + eb * m->top_k + lin_bytes_active(&m->shared.w1) + lin_bytes_active(&m->shared.w2) +
               lin_bytes_active(&m->shared.w3) + 2.0 * 4.0 * mix * c->hc_mult * c->dim;
    *routed = e * m->n_experts;
    *routed_active = e * m->top_k;
    return p;
}

static void param_stats_v41(const struct dsv4_model *m, dsv4_param_stats *out) {
    const struct dsv4_config *c = &m->cfg;
    double embed = lin_params(&m->embed), head = lin_params(&m->head), decode = 0;
    double total = embed + head + c->dim, active = head + c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        double routed, routed_active;
        double p = block_params_v41(c, &m->layers[l], &routed, &routed_active, &decode);
        total += p + routed;
        active += p + routed_active;
    }
    const dsv4_engram *e = m->engram;
    for (int i = 0; e && i < e->n_layers; i++) {
        const dsv4_engram_w *w = &e->layers[i];
        out->engram_table_params += (double)w->rows * e->head_dim;
        out->engram_proj_params += lin_params(&w->wkv) + 2.0 * c->hc_mult * c->dim;
        decode += lin_bytes_active(&w->wkv);
        out->engram_read_per_token += (double)e->n_cols * dsv4_engram_row_bytes(e);
    }
    out->engram_table_bytes = dsv4_engram_table_bytes(e);
    active += out->engram_proj_params;
    decode += (double)dsv4_linear_bytes(&m->head) + (double)dsv4_linear_bytes(&m->embed) / c->vocab_size;
    if (m->dspark) {
        const dsv4_dspark_w *ds = m->dspark;
        double p = lin_params(&ds->main_proj) + 2.0 * c->dim + lin_params(&ds->markov_embed) + lin_params(&ds->markov_head) +
                   lin_params(&ds->confidence);
        for (int s = 0; s < ds->n_stages; s++) {
            double routed, routed_active, unused = 0;
            p += block_params_v41(c, &ds->stages[s], &routed, &routed_active, &unused) + routed;
        }
        out->mtp_params = p;
    }
    out->total_params = total;
    out->active_params = active;
    out->decode_bytes = decode;
    for (int i = 0; i < dsv4_st_count(m->st); i++) {
        const dsv4_tensor *t = dsv4_st_at(m->st, i);
        if ((int)t->dtype < (int)DSV4_ARRAY_LEN(out->bytes_by_dtype)) out->bytes_by_dtype[t->dtype] += (double)t->nbytes;
        if (!strncmp(t->name, "mtp.", 4)) out->dspark_bytes += (double)t->nbytes;
    }
    double all = 0;
    for (size_t i = 0; i < DSV4_ARRAY_LEN(out->bytes_by_dtype); i++) all += out->bytes_by_dtype[i];
    out->backbone_bytes = all - out->engram_table_bytes - out->dspark_bytes;
}

static void kv_costs_v41(const struct dsv4_model *m, int fmt_choice, dsv4_kv_costs *out) {
    const struct dsv4_config *c = &m->cfg;
    bool exact = fmt_choice == 0;
    double win = (double)dsv4_row_bytes(exact ? DSV4_ROW_F32 : DSV4_ROW_FP8_B32, c->head_dim, c->rope_head_dim);
    out->row_bytes = (double)dsv4_row_bytes(exact ? DSV4_ROW_F32 : DSV4_ROW_FP4_KV16, c->head_dim, c->rope_head_dim);
    out->index_row_bytes = (double)dsv4_row_bytes(exact ? DSV4_ROW_F32 : DSV4_ROW_FP4_IDX, c->index_head_dim, c->rope_head_dim);
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        out->n_window += r == 0;
        if (!dsv4_config_is_kv_source(c, l)) continue;
        out->n_kv_sources++;
        out->compressed_per_token += out->row_bytes / r;
        out->index_per_token += out->index_row_bytes / r;
    }
    out->per_token = out->compressed_per_token + out->index_per_token;
    out->window_bytes = win * c->window_size * (c->n_layers + (m->dspark ? m->dspark->n_stages : 0));
}

void dsv4_model_param_stats(const struct dsv4_model *m, dsv4_param_stats *out) {
    const struct dsv4_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    if (c->family == DSV4_ARCH_V41) {
        param_stats_v41(m, out);
        return;
    }
    double embed = lin_params(&m->embed), head = lin_params(&m->head);
    double total = embed + head + c->dim + (double)c->hc_mult * c->hc_mult * c->dim + 2.0 * c->hc_mult;
    double active = head + c->dim + (double)c->hc_mult * c->hc_mult * c->dim;
    double decode = (double)dsv4_linear_bytes(&m->head) + (double)dsv4_linear_bytes(&m->embed) / c->vocab_size;
    for (int l = 0; l < c->n_layers; l++) {
        double routed, routed_active;
        double p = block_params(c, &m->layers[l], &routed, &routed_active);
        total += p + routed;
        active += p + routed_active;
        decode += block_decode_bytes(c, &m->layers[l]);
    }
    if (m->mtp) {
        double routed, routed_active;
        double p = block_params(c, &m->mtp->block, &routed, &routed_active);
        p += lin_params(&m->mtp->e_proj) + lin_params(&m->mtp->h_proj) + 3.0 * c->dim + (double)c->hc_mult * c->hc_mult * c->dim;
        out->mtp_params = p + routed;
    }
    out->total_params = total;
    out->active_params = active;
    out->decode_bytes = decode;
    for (int i = 0; i < dsv4_st_count(m->st); i++) {
        const dsv4_tensor *t = dsv4_st_at(m->st, i);
        if ((int)t->dtype < (int)DSV4_ARRAY_LEN(out->bytes_by_dtype)) out->bytes_by_dtype[t->dtype] += (double)t->nbytes;
    }
}

void dsv4_model_kv_costs(const struct dsv4_model *m, int fmt_choice, dsv4_kv_costs *out) {
    const struct dsv4_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    if (c->family == DSV4_ARCH_V41) {
        kv_costs_v41(m, fmt_choice, out);
        return;
    }
    dsv4_row_fmt kv = fmt_choice == 0 ? DSV4_ROW_F32 : fmt_choice == 1 ? DSV4_ROW_FP8_KV : DSV4_ROW_FP8_KV_BF16;
    dsv4_row_fmt ix = fmt_choice == 0 ? DSV4_ROW_F32 : DSV4_ROW_FP4_IDX;
    double row = (double)dsv4_row_bytes(kv, c->head_dim, c->rope_head_dim);
    double irow = c->index_head_dim ? (double)dsv4_row_bytes(ix, c->index_head_dim, c->rope_head_dim) : 0;
    out->row_bytes = row;
    out->index_row_bytes = irow;
    for (int l = 0; l < c->n_layers; l++) {
        int r = c->compress_ratios[l];
        out->window_bytes += row * c->window_size;
        if (r == 0) out->n_window++;
        else if (r == 4) {
            out->n_csa++;
            out->csa_per_token = (row + irow) / 4.0;
            out->per_token += (row + irow) / 4.0;
        } else {
            out->n_hca++;
            out->hca_per_token = row / r;
            out->per_token += row / r;
        }
    }
    if (m->mtp) out->window_bytes += row * c->window_size;
}
