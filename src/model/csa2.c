/* csa2.c: CSA2, the compressed half of DeepSeek-V4.1 attention.
 *
 * Layers with a compression ratio come in groups that share their work. Only the group's
 * first layer, its KV source, compresses: a ratio-2 source pools each pair of tokens with a
 * per-channel softmax gate (fp32, no overlap, no position bias), a ratio-1 source is a plain
 * projection, and both normalise the latent. From the latent, before RoPE, the source also
 * derives the group's index keys (wk, k_norm, RoPE, FP4 with power-of-two scales); the latent
 * itself is rotated and stored as FP4 with one e4m3 scale per 16 dims. An index source scores
 * those keys for each query (sum over heads of w_h relu(q_h . k)) and keeps the top-k
 * positions; a candidate source also publishes, per query, its best blocks of positions, and
 * the later index sources ("Reindex" layers) choose only inside them. Every other layer
 * ("Reuse") attends to what its group's sources published, with its own query and window.
 *
 * Two semantics per call, as the official code has them. A step starting at position 0 is a
 * prefill: every source emits its latents at once and every indexer reads its own group's
 * keys. A step at a later position is a decode step, one token at a time in the official code
 * (several here, each row treated as its own step): there the official Indexer republishes
 * the shared index-key slot only when its own compressor emitted, so on a step that leaves a
 * ratio-2 group half full its indexer scores against the slot published last, which is the
 * ratio-1 source's key cache (of the previous step), truncated to (p+1)/2 rows. That stale
 * read is reproduced by default (the reference vectors and DeepSeek's published numbers were
 * measured with it); dsv4_open_opts.index_keys_intended scores against the group's own keys
 * instead, which makes decode agree with prefill. docs/v41.md has the details. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "model/forward.h"
#include "numeric/numeric.h"

static bool emits(int ratio, int p) { return ratio == 1 || (p + 1) % ratio == 0; }

int dsv4_csa2_slot_after(const struct dsv4_model *m, int last, bool prefill, int n) {
    const struct dsv4_config *c = &m->cfg;
    int best = -1;
    for (int i = 0; i < c->n_kv_sources; i++) {
        int l = c->kv_source_layers[i], r = c->compress_ratios[l];
        if ((prefill ? n >= r : emits(r, last)) && l > best) best = l;
    }
    return best;
}

int dsv4_csa2_stale_source(const struct dsv4_model *m, const dsv4_session *s, int layer, int p, int pos0, int *avail) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_attn_w *aw = &m->layers[layer].attn;
    *avail = INT32_MAX;
    if (aw->kv_source && emits(aw->ratio, p)) return -1; /* published its own keys this step */
    int best = -1;
    for (int i = 0; i < c->n_kv_sources; i++) { /* published earlier in this step */
        int l = c->kv_source_layers[i];
        if (l < layer && l > best && emits(c->compress_ratios[l], p)) best = l;
    }
    if (best >= 0) {
        *avail = (p + 1) / c->compress_ratios[best];
        return best;
    }
    for (int q = p - 1; q >= pos0; q--) { /* published by an earlier row of this call */
        int v = dsv4_csa2_slot_after(m, q, false, 0);
        if (v >= 0) {
            *avail = (q + 1) / c->compress_ratios[v];
            return v;
        }
    }
    if (s->idx_slot >= 0) { /* published by an earlier call */
        *avail = pos0 / c->compress_ratios[s->idx_slot];
        return s->idx_slot;
    }
    return -1;
}

/* ---- the KV source: compressor and index keys -------------------------------------------------- */

typedef struct {
    int row, j; /* the step's row that completed the group, the group's index */
} emission;

/* Feed the step's rows through the source's compressor; latents [n_emit, dc] (normalised,
 * before RoPE) of every completed group, in row order. */
static int compress(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b, const float *a,
                    const float *z, float *lat, emission *em) {
    const dsv4_compressor_w *w = &aw->comp;
    int r = w->ratio, dc = w->dc, n_emit = 0, slots = dsv4_csa2_slots(r);
    for (int g = 0; g < b->n_segs; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        dsv4_comp_state *st = &dsv4_seg_state(b, sg)->comp;
        for (int t = 0; t < sg->n; t++) {
            int row = sg->row0 + t, pos = sg->pos0 + t;
            float *out = lat + (size_t)n_emit * dc;
            if (r == 1) {
                memcpy(out, a + (size_t)row * dc, (size_t)dc * sizeof(float));
            } else {
                int slot = pos % slots, first = (pos + 1 - r) % slots;
                memcpy(st->kv + (size_t)slot * dc, a + (size_t)row * dc, (size_t)dc * sizeof(float));
                memcpy(st->score + (size_t)slot * dc, z + (size_t)row * dc, (size_t)dc * sizeof(float));
                if ((pos + 1) % r) continue;
                const float *kv = st->kv + (size_t)first * dc, *sc = st->score + (size_t)first * dc;
                for (int ch = 0; ch < dc; ch++) { /* softmax over the group's tokens, per channel */
                    float mx = -INFINITY, sum = 0.0f, acc = 0.0f;
                    for (int i = 0; i < r; i++) mx = fmaxf(mx, sc[(size_t)i * dc + ch]);
                    for (int i = 0; i < r; i++) sum += expf(sc[(size_t)i * dc + ch] - mx);
                    for (int i = 0; i < r; i++) acc += kv[(size_t)i * dc + ch] * (expf(sc[(size_t)i * dc + ch] - mx) / sum);
                    out[ch] = acc;
                }
            }
            dsv4_rmsnorm(out, w->norm, dc, m->cfg.norm_eps, out);
            em[n_emit++] = (emission){row, pos / r};
        }
    }
    return n_emit;
}

/* Index keys of the emitted latents: k = k_norm(wk(latent)), RoPE at the group's first
 * position, stored (FP4 blocks of 32 in the default numerics: the store's format). */
static dsv4_status index_keys(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b,
                              const float *lat, const emission *em, int n_emit, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int ihd = c->index_head_dim, rd = c->rope_head_dim;
    float *k = dsv4_ws_alloc(ws, (size_t)n_emit * ihd);
    if (!k) return DSV4_ENOMEM;
    dsv4_matmul(&aw->indexer.wk, lat, n_emit, k);
    for (int e = 0; e < n_emit; e++) {
        float *ke = k + (size_t)e * ihd;
        dsv4_rmsnorm(ke, aw->indexer.k_norm, ihd, c->norm_eps, ke);
        dsv4_rope_apply(aw->rope, ke + ihd - rd, em[e].j * aw->ratio, false);
        const dsv4_fwd_seg *sg = &b->segs[b->seg_of[em[e].row]];
        dsv4_comp_state *st = &dsv4_seg_state(b, sg)->idx;
        if (em[e].j < st->rows.cap) {
            dsv4_rowstore_put(&st->rows, em[e].j, ke);
            st->n_rows = DSV4_MAX(st->n_rows, em[e].j + 1);
        }
    }
    return DSV4_OK;
}

/* The latents become the group's compressed KV: RoPE at the group's first position, then the
 * store's rounding (FP4 with e4m3 scales per 16 in the default numerics). */
static void store_latents(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b, float *lat,
                          const emission *em, int n_emit) {
    int dc = aw->comp.dc, rd = m->cfg.rope_head_dim;
    for (int e = 0; e < n_emit; e++) {
        float *le = lat + (size_t)e * dc;
        dsv4_rope_apply(aw->rope, le + dc - rd, em[e].j * aw->ratio, false);
        const dsv4_fwd_seg *sg = &b->segs[b->seg_of[em[e].row]];
        dsv4_comp_state *st = &dsv4_seg_state(b, sg)->comp;
        if (em[e].j < st->rows.cap) {
            dsv4_rowstore_put(&st->rows, em[e].j, le);
            st->n_rows = DSV4_MAX(st->n_rows, em[e].j + 1);
        }
    }
}

/* ---- the index source: scores, candidate pool, top-k ------------------------------------------ */

/* Keys of one source layer of one session, dequantised once per step (rows past `avail`
 * did not exist when the official code read them: they score 0, as its zeroed cache does). */
typedef struct {
    int layer, n;
    float *k;
} key_cache;

static const float *keys_of(key_cache *kc, int *n_kc, const dsv4_layer_state *ls, int layer, int ihd, int need) {
    for (int i = 0; i < *n_kc; i++)
        if (kc[i].layer == layer) return kc[i].k;
    int n = DSV4_MIN(need, ls->idx.n_rows);
    float *k = malloc(((size_t)n * ihd + 1) * sizeof(float));
    if (!k) return NULL;
#pragma omp parallel for schedule(static) if (n > 256)
    for (int w = 0; w < n; w++) dsv4_rowstore_get(&ls->idx.rows, w, k + (size_t)w * ihd);
    kc[*n_kc] = (key_cache){layer, n, k};
    (*n_kc)++;
    return k;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Record p in m->first_topk_tie when the top-k boundary of scores[0..width) (sel: the k kept,
 * best first) is a near-tie: the k-th kept and the best dropped score within 1e-6 relative.
 * `mark` is scratch of width floats. A diagnostic for tests; selection never depends on it. */
static void note_tie(dsv4_model *m, const float *scores, int width, const int *sel, int k, float *mark, int p) {
    float kth = scores[sel[k - 1]];
    if (!isfinite(kth)) return;
    for (int w = 0; w < width; w++) mark[w] = scores[w];
    for (int i = 0; i < k; i++) mark[sel[i]] = -INFINITY;
    float best = -INFINITY;
    for (int w = 0; w < width; w++) best = fmaxf(best, mark[w]);
    /* exact ties (rows whose scores are all relu zeros) break to the lower index in every implementation */
    if (isfinite(best) && kth != best && fabsf(kth - best) <= 1e-6f * fmaxf(fabsf(kth), fabsf(best))) {
        int cur = __atomic_load_n(&m->first_topk_tie, __ATOMIC_RELAXED);
        while (p < cur && !__atomic_compare_exchange_n(&m->first_topk_tie, &cur, p, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
    }
}

/* Candidate blocks of one query from its scores[0..width): block score = max of its
 * positions, the block of the newest visible position pinned first, the best topk_blocks that
 * hold any visible position kept. */
static int candidate_blocks(const struct dsv4_config *c, const float *scores, int width, int visible, float *bscore,
                            int *tmp, int *out) {
    int bs = c->candidate_block_size, nb = (width + bs - 1) / bs;
    for (int k = 0; k < nb; k++) {
        float mx = -INFINITY;
        for (int w = k * bs; w < DSV4_MIN(width, (k + 1) * bs); w++) mx = fmaxf(mx, scores[w]);
        bscore[k] = mx;
    }
    if (visible > 0) bscore[(visible - 1) / bs] = INFINITY;
    int n = dsv4_topk(bscore, nb, DSV4_MIN(c->candidate_topk_blocks, nb), tmp), kept = 0;
    for (int i = 0; i < n; i++)
        if (bscore[tmp[i]] > -INFINITY) out[kept++] = tmp[i];
    qsort(out, (size_t)kept, sizeof(int), cmp_int);
    return kept;
}

static bool in_sorted(const int *v, int n, int x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && v[lo] == x;
}

static dsv4_status index_select(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b, const float *u,
                                const float *q_lat, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_indexer_w *ix = &aw->indexer;
    dsv4_csa2_rt *rt = b->csa2;
    int N = b->n_rows, nh = ix->n_heads, ihd = ix->head_dim, rd = c->rope_head_dim, r = aw->ratio, K = ix->topk;
    bool exact = m->numerics == DSV4_NUMERICS_EXACT;
    float *q = dsv4_ws_alloc(ws, (size_t)N * nh * ihd), *wt = dsv4_ws_alloc(ws, (size_t)N * nh);
    float *xq = dsv4_ws_alloc(ws, (size_t)N * DSV4_MAX(c->dim, c->q_lora_rank));
    if (!q || !wt || !xq) return DSV4_ENOMEM;
    dsv4_linear_forward(&ix->wq_b, q_lat, N, q, m->numerics, xq);
    for (int row = 0; row < N; row++)
        for (int h = 0; h < nh; h++) {
            float *qh = q + ((size_t)row * nh + h) * ihd;
            dsv4_rope_apply(aw->rope, qh + ihd - rd, b->pos[row], false);
            if (!exact) dsv4_fp4_fake_quant(qh, ihd, 32);
        }
    dsv4_linear_forward(&ix->weights_proj, u, N, wt, m->numerics, xq);
    float wscale = 1.0f / sqrtf((float)ihd) * (1.0f / sqrtf((float)nh));
    for (size_t i = 0; i < (size_t)N * nh; i++) wt[i] *= wscale;

    dsv4_status rc = DSV4_OK;
    for (int g = 0; g < b->n_segs && !rc; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        dsv4_session *s = sg->s;
        bool prefill = sg->pos0 == 0;
        int end = sg->pos0 + sg->n, width_max = end / r;
        /* which keys each row scores: the group's own, or (official decode) the stale slot */
        int *src = malloc(((size_t)sg->n + 1) * sizeof(int)), *avail = malloc(((size_t)sg->n + 1) * sizeof(int));
        key_cache kc[DSV4_MAX_LAYERS]; /* one per source layer read (at most the KV sources) */
        int n_kc = 0;
        if (!src || !avail) rc = dsv4_error(DSV4_ENOMEM, "out of memory in the CSA2 indexer");
        for (int t = 0; t < sg->n && !rc; t++) {
            int p = sg->pos0 + t, l = -1;
            avail[t] = INT32_MAX;
            if (!prefill && !m->index_keys_intended) l = dsv4_csa2_stale_source(m, s, b->state, p, sg->pos0, &avail[t]);
            src[t] = l >= 0 ? l : aw->kv_src;
            if (!keys_of(kc, &n_kc, &s->layers[src[t]], src[t], ihd, width_max))
                rc = dsv4_error(DSV4_ENOMEM, "out of memory reading CSA2 index keys");
        }
        int nth = omp_get_max_threads(), bs = DSV4_MAX(c->candidate_block_size, 1);
        size_t per = 2 * ((size_t)width_max + 1) + 2 * ((size_t)width_max / bs + 2) + (size_t)K + 8;
        float *scratch = rc ? NULL : malloc((size_t)nth * per * sizeof(float) + 1);
        int *iscratch = rc ? NULL : malloc((size_t)nth * per * sizeof(int) + 1);
        if (!rc && (!scratch || !iscratch)) rc = dsv4_error(DSV4_ENOMEM, "out of memory scoring %d CSA2 positions", width_max);
        int n_rows = rc ? 0 : sg->n;
#pragma omp parallel for schedule(dynamic, 1) if (n_rows > 1)
        for (int t = 0; t < n_rows; t++) {
            int row = sg->row0 + t, p = sg->pos0 + t;
            int visible = (p + 1) / r, width = prefill ? width_max : visible;
            float *scores = scratch + (size_t)omp_get_thread_num() * per, *bscore = scores + width_max + 1;
            int *tmp = iscratch + (size_t)omp_get_thread_num() * per;
            const float *keys = NULL;
            int n_keys = 0;
            for (int i = 0; i < n_kc; i++)
                if (kc[i].layer == src[t]) keys = kc[i].k, n_keys = kc[i].n;
            const float *qr = q + (size_t)row * nh * ihd, *wr = wt + (size_t)row * nh;
            for (int w = 0; w < width; w++) {
                float sc = -INFINITY;
                if (w < visible) {
                    sc = 0.0f;
                    if (w < avail[t] && w < n_keys) {
                        const float *key = keys + (size_t)w * ihd;
                        for (int h = 0; h < nh; h++) {
                            float d = 0.0f;
                            const float *qh = qr + (size_t)h * ihd;
                            for (int i = 0; i < ihd; i++) d += qh[i] * key[i];
                            sc += wr[h] * fmaxf(d, 0.0f);
                        }
                    }
                }
                scores[w] = sc;
            }
            if (aw->candidate_source) {
                rt->n_cand[row] = candidate_blocks(c, scores, width, visible, bscore, tmp, rt->cand + (size_t)row * rt->cand_cap);
            } else if (aw->uses_candidates) {
                const int *cb = rt->cand + (size_t)row * rt->cand_cap;
                for (int w = 0; w < width; w++)
                    if (!in_sorted(cb, rt->n_cand[row], w / c->candidate_block_size)) scores[w] = -INFINITY;
            }
            int *sel = rt->sel + (size_t)row * K;
            int n = dsv4_topk(scores, width, DSV4_MIN(K, width), sel), kept = 0;
            if (n == K && width > K) note_tie((dsv4_model *)m, scores, width, sel, K, scores + per - (width_max + 1), p);
            for (int i = 0; i < n; i++)
                if (sel[i] < visible) sel[kept++] = sel[i];
            qsort(sel, (size_t)kept, sizeof(int), cmp_int);
            rt->n_sel[row] = kept;
        }
        for (int i = 0; i < n_kc; i++) free(kc[i].k);
        free(scratch);
        free(iscratch);
        free(src);
        free(avail);
    }
    return rc;
}

dsv4_status dsv4_csa2_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b, const float *u,
                              const float *q_lat, dsv4_workspace *ws) {
    int N = b->n_rows, dc = aw->comp.dc;
    float *lat = NULL;
    emission *em = NULL;
    int n_emit = 0;
    dsv4_status rc = DSV4_OK;
    if (aw->kv_source) {
        float *a = dsv4_ws_alloc(ws, (size_t)N * dc), *z = aw->ratio > 1 ? dsv4_ws_alloc(ws, (size_t)N * dc) : NULL;
        lat = dsv4_ws_alloc(ws, (size_t)N * dc);
        em = malloc(((size_t)N + 1) * sizeof *em);
        if (!a || !lat || !em || (aw->ratio > 1 && !z)) {
            free(em);
            return dsv4_error(DSV4_ENOMEM, "out of memory in the CSA2 compressor");
        }
        dsv4_matmul(&aw->comp.wkv, u, N, a);
        if (z) dsv4_matmul(&aw->comp.wgate, u, N, z);
        n_emit = compress(m, aw, b, a, z, lat, em);
        if (n_emit) rc = index_keys(m, aw, b, lat, em, n_emit, ws);
    }
    if (!rc && aw->index_source) {
        rc = index_select(m, aw, b, u, q_lat, ws);
        if (!rc) b->csa2->sel_layer = b->state;
    }
    if (!rc && n_emit) store_latents(m, aw, b, lat, em, n_emit);
    free(em);
    return rc;
}
