/* snapshot.c: saving, restoring and copying a sequence's state.
 *
 * A snapshot is everything a session needs to continue from position p: for each layer the
 * window ring, the compressor's pending windows (kv and score buffers), the compressed rows
 * and indexer keys completed so far, plus the MTP block's window. Only the rows in use are
 * written, so a snapshot grows with the sequence (a few KB per token at real widths), not with
 * the session's reserved context. Any position is a valid snapshot point: the pending
 * compressor windows are part of the state.
 *
 * Layout (little-endian, as the machine writes it):
 *   header  "DSV4SNAP" u32 version u32 n_states u64 model fingerprint i32 pos i32 mtp_pos
 *   per state: window rows [min(pos, W) rows in slot order], then for the main compressor and
 *   the indexer compressor (when the layer has them): kv buffer, score buffer, i32 n_rows,
 *   rows. Sizes follow from the model, so a snapshot is only loadable into a session of a model
 *   with the same fingerprint (config, numerics and row formats). */
#include <stdio.h>

#include "base/base.h"
#include "infer/snapshot.h"
#include "infer/state.h"

#define SNAP_MAGIC "DSV4SNAP"
#define SNAP_VERSION 1u

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t dsv4_model_fingerprint(const struct dsv4_model *m) {
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, &m->cfg, sizeof m->cfg);
    h = fnv(h, &m->numerics, sizeof m->numerics);
    h = fnv(h, &m->kv_bf16_rope, sizeof m->kv_bf16_rope);
    /* the weights themselves: names, dtypes, shapes and positions of every tensor */
    for (int i = 0; i < dsv4_st_count(m->st); i++) {
        const dsv4_tensor *t = dsv4_st_at(m->st, i);
        h = fnv(h, t->name, strlen(t->name));
        h = fnv(h, &t->dtype, sizeof t->dtype);
        h = fnv(h, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        h = fnv(h, &t->nbytes, sizeof t->nbytes);
        /* a sample of the data, so a retrained checkpoint with the same layout differs */
        h = fnv(h, t->data, DSV4_MIN(t->nbytes, (size_t)64));
    }
    return h;
}

typedef struct {
    uint8_t *p;   /* NULL: only count */
    size_t n, cap;
    bool overflow;
} writer;

static void put(writer *w, const void *src, size_t n) {
    if (w->p) {
        if (w->n + n > w->cap) w->overflow = true;
        else memcpy(w->p + w->n, src, n);
    }
    w->n += n;
}

typedef struct {
    const uint8_t *p;
    size_t n, len;
    bool short_read;
} reader;

static void get(reader *r, void *dst, size_t n) {
    if (r->n + n > r->len) {
        r->short_read = true;
        return;
    }
    memcpy(dst, r->p + r->n, n);
    r->n += n;
}

static const dsv4_layer_w *state_weights(const struct dsv4_model *m, int i) {
    if (i < m->cfg.n_layers) return &m->layers[i];
    return m->dspark ? &m->dspark->stages[i - m->cfg.n_layers] : &m->mtp->block;
}

static bool is_v41(const struct dsv4_model *m) { return m->cfg.family == DSV4_ARCH_V41; }

/* V4.1: the floats of one of a KV source's compressor buffers. */
static size_t v41_slot_floats(const struct dsv4_model *m, const dsv4_layer_w *lw) {
    return (size_t)dsv4_csa2_slots(lw->attn.ratio) * (size_t)m->cfg.head_dim;
}

static void write_store(writer *w, const dsv4_comp_state *c) {
    int32_t n = c->n_rows;
    put(w, &n, sizeof n);
    put(w, c->rows.data, (size_t)c->n_rows * c->rows.row_bytes);
}

static void write_v41(const dsv4_session *s, writer *w) {
    const struct dsv4_model *m = s->m;
    for (int i = 0; i < s->n_states; i++) {
        const dsv4_layer_w *lw = state_weights(m, i);
        const dsv4_layer_state *ls = &s->layers[i];
        put(w, ls->win.data, (size_t)DSV4_MIN(s->pos, ls->win.cap) * ls->win.row_bytes);
        if (!lw->attn.kv_source) continue;
        put(w, ls->comp.kv, v41_slot_floats(m, lw) * sizeof(float));
        put(w, ls->comp.score, v41_slot_floats(m, lw) * sizeof(float));
        write_store(w, &ls->comp);
        write_store(w, &ls->idx);
    }
    int32_t slot = s->idx_slot;
    put(w, &slot, sizeof slot);
    if (s->engram_ids) put(w, s->engram_ids, (size_t)s->pos * sizeof(int32_t));
}

static size_t comp_buf_floats(const dsv4_compressor_w *w) {
    int coff = w->overlap ? 2 : 1;
    return (size_t)coff * (size_t)w->ratio * (size_t)coff * (size_t)w->dc;
}

static void write_comp(writer *w, const dsv4_compressor_w *cw, const dsv4_comp_state *c) {
    size_t nf = comp_buf_floats(cw);
    put(w, c->kv, nf * sizeof(float));
    put(w, c->score, nf * sizeof(float));
    int32_t n = c->n_rows;
    put(w, &n, sizeof n);
    put(w, c->rows.data, (size_t)c->n_rows * c->rows.row_bytes);
}

static void write_all(const dsv4_session *s, writer *w) {
    const struct dsv4_model *m = s->m;
    put(w, SNAP_MAGIC, 8);
    uint32_t ver = SNAP_VERSION, n_states = (uint32_t)s->n_states;
    put(w, &ver, 4);
    put(w, &n_states, 4);
    uint64_t fp = dsv4_model_fingerprint(m);
    put(w, &fp, 8);
    int32_t pos = s->pos, mtp_pos = s->mtp_pos;
    put(w, &pos, 4);
    put(w, &mtp_pos, 4);
    if (is_v41(m)) {
        write_v41(s, w);
        return;
    }
    for (int i = 0; i < s->n_states; i++) {
        const dsv4_layer_w *lw = state_weights(m, i);
        const dsv4_layer_state *ls = &s->layers[i];
        int p = i < m->cfg.n_layers ? s->pos : s->mtp_pos;
        int rows = DSV4_MIN(p, ls->win.cap);
        put(w, ls->win.data, (size_t)rows * ls->win.row_bytes);
        if (lw->attn.ratio) write_comp(w, &lw->attn.comp, &ls->comp);
        if (lw->attn.has_indexer) write_comp(w, &lw->attn.indexer.comp, &ls->idx);
    }
}

size_t dsv4_session_snapshot_size(const dsv4_session *s) {
    writer w = {0};
    write_all(s, &w);
    return w.n;
}

dsv4_status dsv4_session_save(const dsv4_session *s, void *buf, size_t cap, size_t *used) {
    writer w = {buf, 0, cap, false};
    write_all(s, &w);
    if (w.overflow) return dsv4_error(DSV4_EINVAL, "snapshot needs %zu bytes, buffer has %zu", w.n, cap);
    if (used) *used = w.n;
    return DSV4_OK;
}

static dsv4_status read_comp(reader *r, const dsv4_compressor_w *cw, dsv4_comp_state *c, int max_rows) {
    size_t nf = comp_buf_floats(cw);
    get(r, c->kv, nf * sizeof(float));
    get(r, c->score, nf * sizeof(float));
    int32_t n = 0;
    get(r, &n, sizeof n);
    if (r->short_read) return dsv4_error(DSV4_EFORMAT, "snapshot truncated");
    if (n < 0 || n > c->rows.cap || n > max_rows)
        return dsv4_error(DSV4_EFORMAT, "snapshot holds %d compressed rows, the session has room for %d", n, c->rows.cap);
    c->n_rows = n;
    get(r, c->rows.data, (size_t)n * c->rows.row_bytes);
    return r->short_read ? dsv4_error(DSV4_EFORMAT, "snapshot truncated") : DSV4_OK;
}

static dsv4_status read_store(reader *r, dsv4_comp_state *c, int max_rows) {
    int32_t n = 0;
    get(r, &n, sizeof n);
    if (r->short_read) return dsv4_error(DSV4_EFORMAT, "snapshot truncated");
    if (n < 0 || n > c->rows.cap || n > max_rows)
        return dsv4_error(DSV4_EFORMAT, "snapshot holds %d compressed rows, the session has room for %d", n, c->rows.cap);
    c->n_rows = n;
    get(r, c->rows.data, (size_t)n * c->rows.row_bytes);
    return r->short_read ? dsv4_error(DSV4_EFORMAT, "snapshot truncated") : DSV4_OK;
}

static dsv4_status read_v41(dsv4_session *s, reader *r, int pos) {
    const struct dsv4_model *m = s->m;
    dsv4_status rc = DSV4_OK;
    for (int i = 0; i < s->n_states && !rc; i++) {
        const dsv4_layer_w *lw = state_weights(m, i);
        dsv4_layer_state *ls = &s->layers[i];
        get(r, ls->win.data, (size_t)DSV4_MIN(pos, ls->win.cap) * ls->win.row_bytes);
        if (!lw->attn.kv_source) continue;
        get(r, ls->comp.kv, v41_slot_floats(m, lw) * sizeof(float));
        get(r, ls->comp.score, v41_slot_floats(m, lw) * sizeof(float));
        rc = read_store(r, &ls->comp, pos / lw->attn.ratio);
        if (!rc) rc = read_store(r, &ls->idx, pos / lw->attn.ratio);
    }
    int32_t slot = -1;
    get(r, &slot, sizeof slot);
    if (!rc && (slot < -1 || slot >= m->cfg.n_layers || (slot >= 0 && !dsv4_config_is_kv_source(&m->cfg, slot))))
        rc = dsv4_error(DSV4_EFORMAT, "snapshot names layer %d as the index-key slot, not a KV source", slot);
    s->idx_slot = slot;
    if (!rc && s->engram_ids) {
        get(r, s->engram_ids, (size_t)pos * sizeof(int32_t));
        for (int t = 0; t < pos && !r->short_read && !rc; t++)
            if (s->engram_ids[t] < 0 || s->engram_ids[t] >= m->engram->n_compressed)
                rc = dsv4_error(DSV4_EFORMAT, "snapshot: Engram history entry %d is not a compressed id", t);
    }
    if (!rc && r->short_read) rc = dsv4_error(DSV4_EFORMAT, "snapshot truncated");
    return rc;
}

dsv4_status dsv4_session_restore(dsv4_session *s, const void *buf, size_t len) {
    const struct dsv4_model *m = s->m;
    reader r = {buf, 0, len, false};
    char magic[8];
    uint32_t ver = 0, n_states = 0;
    uint64_t fp = 0;
    int32_t pos = 0, mtp_pos = 0;
    get(&r, magic, 8);
    get(&r, &ver, 4);
    get(&r, &n_states, 4);
    get(&r, &fp, 8);
    get(&r, &pos, 4);
    get(&r, &mtp_pos, 4);
    if (r.short_read || memcmp(magic, SNAP_MAGIC, 8)) return dsv4_error(DSV4_EFORMAT, "not a dsv4 session snapshot");
    if (ver != SNAP_VERSION) return dsv4_error(DSV4_EFORMAT, "snapshot version %u, this build reads %u", ver, SNAP_VERSION);
    if (n_states != (uint32_t)s->n_states || fp != dsv4_model_fingerprint(m))
        return dsv4_error(DSV4_EINVAL, "snapshot was made with another model or numerics");
    if (pos < 0 || pos > s->max_ctx || mtp_pos < 0 || mtp_pos > s->max_ctx)
        return dsv4_error(DSV4_EINVAL, "snapshot at position %d does not fit a session of %d tokens", pos, s->max_ctx);
    dsv4_session_reset(s);
    dsv4_status rc = DSV4_OK;
    if (is_v41(m)) rc = read_v41(s, &r, pos);
    for (int i = 0; i < s->n_states && !rc && !is_v41(m); i++) {
        const dsv4_layer_w *lw = state_weights(m, i);
        dsv4_layer_state *ls = &s->layers[i];
        int p = i < m->cfg.n_layers ? pos : mtp_pos;
        int rows = DSV4_MIN(p, ls->win.cap);
        get(&r, ls->win.data, (size_t)rows * ls->win.row_bytes);
        if (r.short_read) rc = dsv4_error(DSV4_EFORMAT, "snapshot truncated");
        if (!rc && lw->attn.ratio) rc = read_comp(&r, &lw->attn.comp, &ls->comp, p / lw->attn.ratio + 1);
        if (!rc && lw->attn.has_indexer) rc = read_comp(&r, &lw->attn.indexer.comp, &ls->idx, p / 4 + 1);
    }
    if (!rc && r.n != len) rc = dsv4_error(DSV4_EFORMAT, "snapshot has %zu trailing bytes", len - r.n);
    if (rc) {
        dsv4_session_reset(s);
        return rc;
    }
    s->pos = pos;
    s->mtp_pos = mtp_pos;
    return DSV4_OK;
}

dsv4_status dsv4_session_copy(dsv4_session *dst, const dsv4_session *src) {
    if (dst->m != src->m) return dsv4_error(DSV4_EINVAL, "sessions belong to different models");
    if (src->pos > dst->max_ctx || src->mtp_pos > dst->max_ctx)
        return dsv4_error(DSV4_EINVAL, "a state at position %d does not fit a session of %d tokens", src->pos, dst->max_ctx);
    for (int i = 0; i < src->n_states; i++) {
        const dsv4_layer_w *lw = state_weights(src->m, i);
        const dsv4_layer_state *a = &src->layers[i];
        dsv4_layer_state *b = &dst->layers[i];
        memcpy(b->win.data, a->win.data, (size_t)a->win.cap * a->win.row_bytes);
        if (is_v41(src->m)) {
            if (!lw->attn.kv_source) continue;
            memcpy(b->comp.kv, a->comp.kv, v41_slot_floats(src->m, lw) * sizeof(float));
            memcpy(b->comp.score, a->comp.score, v41_slot_floats(src->m, lw) * sizeof(float));
            b->comp.n_rows = a->comp.n_rows;
            b->idx.n_rows = a->idx.n_rows;
            memcpy(b->comp.rows.data, a->comp.rows.data, (size_t)a->comp.n_rows * a->comp.rows.row_bytes);
            memcpy(b->idx.rows.data, a->idx.rows.data, (size_t)a->idx.n_rows * a->idx.rows.row_bytes);
            continue;
        }
        const dsv4_comp_state *ca[2] = {&a->comp, &a->idx};
        dsv4_comp_state *cb[2] = {&b->comp, &b->idx};
        const dsv4_compressor_w *cw[2] = {lw->attn.ratio ? &lw->attn.comp : NULL, lw->attn.has_indexer ? &lw->attn.indexer.comp : NULL};
        for (int k = 0; k < 2; k++) {
            if (!cw[k]) continue;
            size_t nf = comp_buf_floats(cw[k]);
            memcpy(cb[k]->kv, ca[k]->kv, nf * sizeof(float));
            memcpy(cb[k]->score, ca[k]->score, nf * sizeof(float));
            cb[k]->n_rows = ca[k]->n_rows;
            memcpy(cb[k]->rows.data, ca[k]->rows.data, (size_t)ca[k]->n_rows * ca[k]->rows.row_bytes);
        }
    }
    if (src->engram_ids) memcpy(dst->engram_ids, src->engram_ids, (size_t)src->pos * sizeof(int32_t));
    dst->idx_slot = src->idx_slot;
    dst->pos = src->pos;
    dst->mtp_pos = src->mtp_pos;
    return DSV4_OK;
}
