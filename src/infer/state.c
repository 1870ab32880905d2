/* state.c: row stores and the per-sequence session state.
 *
 * A row store is a flat array of fixed-size rows in one of three formats (see state.h).
 * Capacities are fixed when the session is made (ceil(max_ctx / ratio) compressed rows per
 * layer); the memory is calloc'd, so pages the sequence never reaches are never committed,
 * which is what lets a 1M-token context be reserved on a small machine. */
#include <math.h>

#include "base/base.h"
#include "infer/state.h"
#include "numeric/numeric.h"

size_t dsv4_row_bytes(dsv4_row_fmt fmt, int dim, int rd) {
    switch (fmt) {
    case DSV4_ROW_F32: return (size_t)dim * 4;
    case DSV4_ROW_FP8_KV:
    case DSV4_ROW_FP8_KV_BF16: {
        size_t n = (size_t)rd * (fmt == DSV4_ROW_FP8_KV ? 4 : 2) + (size_t)(dim - rd) + (size_t)(dim - rd) / 64;
        return (n + 7) & ~(size_t)7;
    }
    case DSV4_ROW_FP4_IDX: return (size_t)dim / 2 + (size_t)dim / 32;
    case DSV4_ROW_FP8_B32: return (size_t)dim + (size_t)dim / 32;
    case DSV4_ROW_FP4_KV16: return (size_t)dim / 2 + (size_t)dim / 16;
    }
    return 0;
}

dsv4_status dsv4_rowstore_init(dsv4_rowstore *s, dsv4_row_fmt fmt, int dim, int rd, int cap) {
    memset(s, 0, sizeof *s);
    s->fmt = fmt;
    s->dim = dim;
    s->rd = rd;
    s->row_bytes = dsv4_row_bytes(fmt, dim, rd);
    s->cap = cap;
    if (cap > 0) {
        s->data = calloc((size_t)cap, s->row_bytes);
        if (!s->data)
            return dsv4_error(DSV4_ENOMEM, "out of memory reserving %d KV rows of %zu bytes", cap, s->row_bytes);
    }
    return DSV4_OK;
}

void dsv4_rowstore_free(dsv4_rowstore *s) {
    free(s->data);
    s->data = NULL;
}

void dsv4_rowstore_put(dsv4_rowstore *s, int row, const float *v) {
    uint8_t *p = s->data + (size_t)row * s->row_bytes;
    int dim = s->dim, rd = s->rd, nope = dim - rd;
    switch (s->fmt) {
    case DSV4_ROW_F32: memcpy(p, v, (size_t)dim * 4); break;
    case DSV4_ROW_FP8_KV:
        /* layout: rd rope dims, then nope e4m3 codes, then nope/64 e8m0 scales */
        memcpy(p, v + nope, (size_t)rd * 4);
        dsv4_fp8_quant_codes(v, nope, 64, p + 4 * rd, p + 4 * rd + nope);
        break;
    case DSV4_ROW_FP8_KV_BF16:
        for (int i = 0; i < rd; i++) {
            uint16_t h = dsv4_f32_to_bf16(v[nope + i]);
            memcpy(p + 2 * i, &h, 2);
        }
        dsv4_fp8_quant_codes(v, nope, 64, p + 2 * rd, p + 2 * rd + nope);
        break;
    case DSV4_ROW_FP4_IDX: dsv4_fp4_quant_codes(v, dim, 32, p, p + dim / 2); break;
    case DSV4_ROW_FP8_B32: dsv4_fp8_quant_codes(v, dim, 32, p, p + dim); break;
    case DSV4_ROW_FP4_KV16: dsv4_fp4_e4m3s_quant_codes(v, dim, 16, p, p + dim / 2); break;
    }
}

void dsv4_rowstore_get(const dsv4_rowstore *s, int row, float *out) {
    const uint8_t *p = s->data + (size_t)row * s->row_bytes;
    int dim = s->dim, rd = s->rd, nope = dim - rd;
    switch (s->fmt) {
    case DSV4_ROW_F32: memcpy(out, p, (size_t)dim * 4); break;
    case DSV4_ROW_FP8_KV:
    case DSV4_ROW_FP8_KV_BF16: {
        int rb = s->fmt == DSV4_ROW_FP8_KV ? 4 : 2;
        if (rb == 4) memcpy(out + nope, p, (size_t)rd * 4);
        else
            for (int i = 0; i < rd; i++) {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                out[nope + i] = dsv4_bf16_to_f32(h);
            }
        const uint8_t *q = p + rb * rd, *sc = q + nope;
        for (int b = 0; b < nope / 64; b++) {
            float f = dsv4_e8m0_to_f32(sc[b]);
            for (int i = 64 * b; i < 64 * b + 64; i++) out[i] = dsv4_e4m3_to_f32(q[i]) * f;
        }
        break;
    }
    case DSV4_ROW_FP4_IDX: {
        const uint8_t *sc = p + dim / 2;
        for (int i = 0; i < dim; i += 2) {
            float f = dsv4_e8m0_to_f32(sc[i / 32]);
            out[i] = dsv4_e2m1_to_f32(p[i / 2] & 15) * f;
            out[i + 1] = dsv4_e2m1_to_f32(p[i / 2] >> 4) * f;
        }
        break;
    }
    case DSV4_ROW_FP8_B32: {
        const uint8_t *sc = p + dim;
        for (int i = 0; i < dim; i++) out[i] = dsv4_e4m3_to_f32(p[i]) * dsv4_e8m0_to_f32(sc[i / 32]);
        break;
    }
    case DSV4_ROW_FP4_KV16: {
        const uint8_t *sc = p + dim / 2;
        for (int i = 0; i < dim; i += 2) {
            float f = dsv4_e4m3_to_f32(sc[i / 16]);
            out[i] = dsv4_e2m1_to_f32(p[i / 2] & 15) * f;
            out[i + 1] = dsv4_e2m1_to_f32(p[i / 2] >> 4) * f;
        }
        break;
    }
    }
}

void dsv4_row_roundtrip(dsv4_row_fmt fmt, int dim, int rd, float *v) {
    if (fmt == DSV4_ROW_F32) return;
    uint8_t buf[8192];
    dsv4_rowstore s = {fmt, dim, rd, dsv4_row_bytes(fmt, dim, rd), 1, buf};
    if (s.row_bytes > sizeof buf) return;
    dsv4_rowstore_put(&s, 0, v);
    dsv4_rowstore_get(&s, 0, v);
}

/* ---- sessions -------------------------------------------------------------------------------- */

static void comp_reset(dsv4_comp_state *c, int rows, int cols) {
    if (!c->kv) return;
    size_t n = (size_t)rows * (size_t)cols;
    memset(c->kv, 0, n * sizeof(float));
    for (size_t i = 0; i < n; i++) c->score[i] = -INFINITY;
    c->n_rows = 0;
}

static dsv4_status comp_init(dsv4_comp_state *c, const dsv4_compressor_w *w, dsv4_row_fmt fmt, int rd, int max_ctx) {
    int coff = w->overlap ? 2 : 1;
    size_t n = (size_t)coff * (size_t)w->ratio * (size_t)coff * (size_t)w->dc;
    c->kv = dsv4_malloc(n * sizeof(float), "compressor state");
    c->score = dsv4_malloc(n * sizeof(float), "compressor state");
    if (!c->kv || !c->score) return DSV4_ENOMEM;
    comp_reset(c, coff * w->ratio, coff * w->dc);
    return dsv4_rowstore_init(&c->rows, fmt, w->dc, rd, max_ctx / w->ratio + 1);
}

static void comp_free(dsv4_comp_state *c) {
    free(c->kv);
    free(c->score);
    dsv4_rowstore_free(&c->rows);
}

dsv4_layer_state *dsv4_session_layer(dsv4_session *s, int layer_id) { return &s->layers[layer_id]; }

static const dsv4_layer_w *layer_weights(const struct dsv4_model *m, int i) {
    if (i < m->cfg.n_layers) return &m->layers[i];
    return m->dspark ? &m->dspark->stages[i - m->cfg.n_layers] : &m->mtp->block;
}

/* V4.1 state: windows everywhere, compressed rows and index keys at the KV sources. */
static dsv4_status session_init_v41(dsv4_session *s) {
    const struct dsv4_model *m = s->m;
    const struct dsv4_config *c = &m->cfg;
    bool exact = m->numerics == DSV4_NUMERICS_EXACT;
    dsv4_row_fmt win_fmt = exact ? DSV4_ROW_F32 : DSV4_ROW_FP8_B32, kv_fmt = exact ? DSV4_ROW_F32 : DSV4_ROW_FP4_KV16;
    dsv4_row_fmt idx_fmt = exact ? DSV4_ROW_F32 : DSV4_ROW_FP4_IDX;
    dsv4_status rc = DSV4_OK;
    s->idx_slot = -1;
    for (int i = 0; i < s->n_states && !rc; i++) {
        const dsv4_layer_w *lw = layer_weights(m, i);
        dsv4_layer_state *ls = &s->layers[i];
        rc = dsv4_rowstore_init(&ls->win, win_fmt, c->head_dim, c->rope_head_dim, c->window_size);
        if (rc || !lw->attn.kv_source) continue;
        int r = lw->attn.ratio, cap = s->max_ctx / r + 1, slots = dsv4_csa2_slots(r);
        ls->comp.kv = dsv4_calloc((size_t)slots * c->head_dim, sizeof(float), "compressor state");
        ls->comp.score = dsv4_calloc((size_t)slots * c->head_dim, sizeof(float), "compressor state");
        if (!ls->comp.kv || !ls->comp.score) rc = DSV4_ENOMEM;
        if (!rc) rc = dsv4_rowstore_init(&ls->comp.rows, kv_fmt, c->head_dim, c->rope_head_dim, cap);
        if (!rc) rc = dsv4_rowstore_init(&ls->idx.rows, idx_fmt, c->index_head_dim, c->rope_head_dim, cap);
    }
    if (!rc && m->engram) {
        s->engram_ids = dsv4_calloc((size_t)s->max_ctx + 1, sizeof(int32_t), "engram history");
        if (!s->engram_ids) rc = DSV4_ENOMEM;
    }
    return rc;
}

dsv4_status dsv4_session_new(dsv4_model *m, int max_ctx, dsv4_session **out) {
    *out = NULL;
    const struct dsv4_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = DSV4_MIN(c->max_position_embeddings, 4096);
    if (max_ctx > c->max_position_embeddings)
        return dsv4_error(DSV4_EINVAL, "context of %d tokens exceeds the model's max_position_embeddings %d", max_ctx,
                          c->max_position_embeddings);
    dsv4_session *s = dsv4_calloc(1, sizeof *s, "session");
    if (!s) return DSV4_ENOMEM;
    s->m = m;
    s->max_ctx = max_ctx;
    s->n_states = c->n_layers + (m->mtp ? 1 : 0) + (m->dspark ? m->dspark->n_stages : 0);
    s->layers = dsv4_calloc((size_t)s->n_states, sizeof *s->layers, "session layers");
    dsv4_status rc = s->layers ? DSV4_OK : DSV4_ENOMEM;
    if (!rc && c->family == DSV4_ARCH_V41) {
        rc = session_init_v41(s);
        if (rc) {
            dsv4_session_free(s);
            return rc;
        }
        *out = s;
        return DSV4_OK;
    }
    bool exact = m->numerics == DSV4_NUMERICS_EXACT;
    dsv4_row_fmt kv_fmt = exact ? DSV4_ROW_F32 : m->kv_bf16_rope ? DSV4_ROW_FP8_KV_BF16 : DSV4_ROW_FP8_KV;
    dsv4_row_fmt idx_fmt = exact ? DSV4_ROW_F32 : DSV4_ROW_FP4_IDX;
    for (int i = 0; i < s->n_states && !rc; i++) {
        const dsv4_layer_w *lw = layer_weights(m, i);
        dsv4_layer_state *ls = &s->layers[i];
        rc = dsv4_rowstore_init(&ls->win, kv_fmt, c->head_dim, c->rope_head_dim, c->window_size);
        if (!rc && lw->attn.ratio) rc = comp_init(&ls->comp, &lw->attn.comp, kv_fmt, c->rope_head_dim, max_ctx);
        if (!rc && lw->attn.has_indexer) rc = comp_init(&ls->idx, &lw->attn.indexer.comp, idx_fmt, c->rope_head_dim, max_ctx);
    }
    if (rc) {
        dsv4_session_free(s);
        return rc;
    }
    *out = s;
    return DSV4_OK;
}

void dsv4_session_reset(dsv4_session *s) {
    s->pos = 0;
    s->mtp_pos = 0;
    s->idx_slot = -1;
    s->dspark_rows = 0;
    if (s->m->cfg.family == DSV4_ARCH_V41) { /* the compressor slots are rewritten before use */
        for (int i = 0; i < s->n_states; i++) s->layers[i].comp.n_rows = s->layers[i].idx.n_rows = 0;
        return;
    }
    for (int i = 0; i < s->n_states; i++) {
        const dsv4_layer_w *lw = layer_weights(s->m, i);
        dsv4_layer_state *ls = &s->layers[i];
        if (lw->attn.ratio) {
            int coff = lw->attn.comp.overlap ? 2 : 1;
            comp_reset(&ls->comp, coff * lw->attn.comp.ratio, coff * lw->attn.comp.dc);
        }
        if (lw->attn.has_indexer) comp_reset(&ls->idx, 2 * 4, 2 * lw->attn.indexer.comp.dc);
    }
}

void dsv4_session_free(dsv4_session *s) {
    if (!s) return;
    for (int i = 0; s->layers && i < s->n_states; i++) {
        dsv4_rowstore_free(&s->layers[i].win);
        comp_free(&s->layers[i].comp);
        comp_free(&s->layers[i].idx);
    }
    free(s->layers);
    free(s->engram_ids);
    free(s->dspark_hidden);
    free(s);
}

int dsv4_session_pos(const dsv4_session *s) { return s->pos; }
int dsv4_session_max_ctx(const dsv4_session *s) { return s->max_ctx; }

size_t dsv4_session_bytes(const dsv4_session *s) {
    size_t total = 0;
    if (s->m->cfg.family == DSV4_ARCH_V41) {
        for (int i = 0; i < s->n_states; i++) {
            const dsv4_layer_state *ls = &s->layers[i];
            total += (size_t)DSV4_MIN(s->pos, ls->win.cap) * ls->win.row_bytes;
            total += (size_t)ls->comp.n_rows * ls->comp.rows.row_bytes + (size_t)ls->idx.n_rows * ls->idx.rows.row_bytes;
            if (ls->comp.kv)
                total += 2 * sizeof(float) * (size_t)dsv4_csa2_slots(layer_weights(s->m, i)->attn.ratio) * (size_t)s->m->cfg.head_dim;
        }
        return total + (s->engram_ids ? (size_t)s->pos * sizeof(int32_t) : 0);
    }
    for (int i = 0; i < s->n_states; i++) {
        const dsv4_layer_w *lw = layer_weights(s->m, i);
        const dsv4_layer_state *ls = &s->layers[i];
        total += (size_t)DSV4_MIN(s->pos, ls->win.cap) * ls->win.row_bytes;
        if (lw->attn.ratio) {
            int coff = lw->attn.comp.overlap ? 2 : 1;
            total += 2 * sizeof(float) * (size_t)(coff * lw->attn.comp.ratio) * (size_t)(coff * lw->attn.comp.dc);
            total += (size_t)ls->comp.n_rows * ls->comp.rows.row_bytes;
        }
        if (lw->attn.has_indexer) {
            total += 2 * sizeof(float) * 8 * (size_t)(2 * lw->attn.indexer.comp.dc);
            total += (size_t)ls->idx.n_rows * ls->idx.rows.row_bytes;
        }
    }
    return total;
}
