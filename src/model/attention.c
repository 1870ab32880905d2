/* attention.c: DeepSeek-V4 hybrid attention for one layer (window, CSA or HCA).
 *
 * Query: q_lat = q_norm(wq_a u); q = wq_b q_lat split into H heads of D dims, each head
 * RMS-normalised without weight, RoPE on its last rope dims. One shared key=value vector per
 * token: kv = kv_norm(wkv u), RoPE, FP8 rounding of the non-rope dims (default numerics).
 *
 * Keys a query at position t sees: the raw window max(0, t-W+1)..t, plus compressed rows:
 * for CSA (ratio 4) the indexer's top-k among rows < (t+1)/4, for HCA all rows < (t+1)/m.
 * Scores are q.k / sqrt(D); a learned per-head sink joins the softmax denominator (its value
 * is zero). The output is de-rotated (RoPE at -t) and projected in G groups: wo_a maps each
 * group of H/G heads to o_lora dims, wo_b maps the concatenation back to the model width.
 *
 * Within a step, a row's window keys at positions of the same step come from this step's kv
 * rows (after the same rounding the ring applies); older positions come from the ring. The
 * ring is updated after attention, so in-step positions never overwrite keys still needed.
 *
 * V4.1 (aw->csa2) differs in three places: q has no per-head normalisation, the window rows
 * are FP8 over all dims (the store's format), and the compressed rows come from csa2.c: the
 * rows its group's index source selected, read from the group's KV source. A DSpark draft
 * block (b->dspark) attends to its stage's window, which holds the main model's
 * states up to that position, plus every row of the block (no causal mask inside it); the
 * block's own rows are not kept. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "model/forward.h"

void dsv4_attend(const float *q, const float *keys, int K, int H, int D, float scale, const float *sink, float *o) {
    float *s = malloc((size_t)(K + 1) * sizeof(float));
    if (!s) { /* cannot happen for sane K; keep the output defined */
        memset(o, 0, (size_t)H * D * sizeof(float));
        return;
    }
    const dsv4_kernel_set *ks = dsv4_kernels(); /* SIMD dot products and y += a x */
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * D;
        float mx = sink[h];
        for (int j = 0; j < K; j++) {
            s[j] = ks->dot_f32(qh, keys + (size_t)j * D, D) * scale;
            mx = fmaxf(mx, s[j]);
        }
        float den = expf(sink[h] - mx);
        for (int j = 0; j < K; j++) {
            s[j] = expf(s[j] - mx);
            den += s[j];
        }
        float *oh = o + (size_t)h * D;
        memset(oh, 0, (size_t)D * sizeof(float));
        for (int j = 0; j < K; j++) ks->axpy_f32(s[j], keys + (size_t)j * D, oh, D);
        float inv = 1.0f / den;
        for (int i = 0; i < D; i++) oh[i] *= inv;
    }
    free(s);
}

/* Collect the keys row r attends to into `keys` [K, D]; returns K. */
static int gather_keys(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b, int r,
                       const float *kv, const int *sel, int n_sel, float *keys) {
    const struct dsv4_config *c = &m->cfg;
    int D = c->head_dim, W = c->window_size;
    const dsv4_fwd_seg *sg = &b->segs[b->seg_of[r]];
    const dsv4_layer_state *ls = dsv4_seg_state(b, sg);
    int t = b->pos[r], K = 0;
    if (b->dspark) { /* the stage's window of main-model states, then the whole block */
        int p = b->dspark_pos;
        for (int j = DSV4_MAX(0, p - W + 1); j <= p; j++, K++) dsv4_rowstore_get(&ls->win, j % W, keys + (size_t)K * D);
        for (int i = 0; i < sg->n; i++, K++)
            memcpy(keys + (size_t)K * D, kv + (size_t)(sg->row0 + i) * D, (size_t)D * sizeof(float));
        return K;
    }
    for (int j = DSV4_MAX(0, t - W + 1); j <= t; j++, K++) {
        if (j >= sg->pos0) memcpy(keys + (size_t)K * D, kv + (size_t)(sg->row0 + j - sg->pos0) * D, (size_t)D * sizeof(float));
        else dsv4_rowstore_get(&ls->win, j % W, keys + (size_t)K * D);
    }
    if (aw->ratio && aw->csa2) { /* the group's shared compressed KV, as its index source selected */
        const dsv4_rowstore *rows = &sg->s->layers[aw->kv_src].comp.rows;
        for (int i = 0; i < n_sel; i++, K++) dsv4_rowstore_get(rows, sel[i], keys + (size_t)K * D);
    } else if (aw->ratio) {
        if (aw->has_indexer) {
            for (int i = 0; i < n_sel; i++, K++) dsv4_rowstore_get(&ls->comp.rows, sel[i], keys + (size_t)K * D);
        } else {
            int visible = DSV4_MIN((t + 1) / aw->ratio, ls->comp.n_rows);
            for (int i = 0; i < visible; i++, K++) dsv4_rowstore_get(&ls->comp.rows, i, keys + (size_t)K * D);
        }
    }
    return K;
}

dsv4_status dsv4_attention_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b,
                                   const float *u, float *out, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    int N = b->n_rows, H = c->n_heads, D = c->head_dim, rd = c->rope_head_dim, W = c->window_size;
    int qr = c->q_lora_rank, G = c->o_groups, olr = c->o_lora_rank, hg = H / G;
    dsv4_numerics mode = m->numerics;
    float eps = c->norm_eps;
    size_t wide = (size_t)DSV4_MAX(DSV4_MAX(c->dim, qr), DSV4_MAX(G * olr, hg * D));
    float *q_lat = dsv4_ws_alloc(ws, (size_t)N * qr), *q = dsv4_ws_alloc(ws, (size_t)N * H * D);
    float *kv = dsv4_ws_alloc(ws, (size_t)N * D), *o = dsv4_ws_alloc(ws, (size_t)N * H * D);
    float *zo = dsv4_ws_alloc(ws, (size_t)N * G * olr), *xq = dsv4_ws_alloc(ws, (size_t)N * wide);
    float *og = dsv4_ws_alloc(ws, (size_t)N * H * D);
    dsv4_linear *wo_views = (dsv4_linear *)dsv4_ws_alloc(ws, (size_t)G * (sizeof(dsv4_linear) + 3) / 4);
    dsv4_matmul_job *wo_jobs = (dsv4_matmul_job *)dsv4_ws_alloc(ws, (size_t)G * (sizeof(dsv4_matmul_job) + 3) / 4);
    if (!q_lat || !q || !kv || !o || !zo || !xq || !og || !wo_views || !wo_jobs) return DSV4_ENOMEM;

    /* query, and the token's own key/value row from the same input (one parallel step) */
    dsv4_linear_forward2(&aw->wq_a, &aw->wkv, u, N, q_lat, kv, mode, xq);
    for (int r = 0; r < N; r++) dsv4_rmsnorm(q_lat + (size_t)r * qr, aw->q_norm, qr, eps, q_lat + (size_t)r * qr);
    dsv4_linear_forward(&aw->wq_b, q_lat, N, q, mode, xq);
#pragma omp parallel for schedule(static) if (N > 1)
    for (int r = 0; r < N; r++) {
        for (int h = 0; h < H; h++) {
            float *qh = q + ((size_t)r * H + h) * D;
            if (!aw->csa2) dsv4_rmsnorm(qh, NULL, D, eps, qh);
            dsv4_rope_apply(aw->rope, qh + D - rd, b->pos[r], false);
        }
    }

    /* the key/value row normalised, rotated and rounded as the ring will store it */
    dsv4_row_fmt fmt = dsv4_seg_state(b, &b->segs[0])->win.fmt;
    for (int r = 0; r < N; r++) {
        float *k = kv + (size_t)r * D;
        dsv4_rmsnorm(k, aw->kv_norm, D, eps, k);
        dsv4_rope_apply(aw->rope, k + D - rd, b->pos[r], false);
        dsv4_row_roundtrip(fmt, D, rd, k);
    }

    /* compressed rows: the indexer (CSA) chooses, then the main compressor adds this step's rows */
    int topk = aw->has_indexer ? aw->indexer.topk : 0;
    int *sel = NULL, *n_sel = NULL;
    bool own_sel = true; /* V4.1's selections belong to the step (b->csa2) */
    if (aw->csa2) {
        if (aw->ratio) {
            dsv4_status rc = dsv4_csa2_forward(m, aw, b, u, q_lat, ws);
            if (rc) return rc;
            topk = b->csa2->topk;
            sel = b->csa2->sel;
            n_sel = b->csa2->n_sel;
        }
        own_sel = false;
    } else if (aw->has_indexer) {
        sel = malloc((size_t)N * topk * sizeof(int));
        n_sel = malloc((size_t)N * sizeof(int));
        if (!sel || !n_sel) {
            free(sel);
            free(n_sel);
            return dsv4_error(DSV4_ENOMEM, "out of memory for indexer selections");
        }
        dsv4_status rc = dsv4_indexer_forward(m, aw, b, u, q_lat, sel, n_sel, ws);
        if (rc) {
            free(sel);
            free(n_sel);
            return rc;
        }
    }
    if (aw->ratio && !aw->csa2) {
        int width = (aw->comp.overlap ? 2 : 1) * aw->comp.dc;
        float *a = dsv4_ws_alloc(ws, (size_t)N * width), *z = dsv4_ws_alloc(ws, (size_t)N * width);
        float *tmp = dsv4_ws_alloc(ws, (size_t)width);
        if (!a || !z || !tmp) {
            if (own_sel) {
                free(sel);
                free(n_sel);
            }
            return DSV4_ENOMEM;
        }
        dsv4_matmul_job pair[2] = {{&aw->comp.wkv, u, N, a, aw->comp.wkv.rows},
                                   {&aw->comp.wgate, u, N, z, aw->comp.wgate.rows}};
        dsv4_matmul_jobs(pair, 2);
        dsv4_compressor_forward(m, &aw->comp, aw->rope, b, false, a, z, tmp);
    }

    /* attention, row by row (rows in parallel for prefill; heads in parallel for one row) */
    int max_keys = W + topk + (b->dspark ? N : 0);
    if (aw->ratio && !aw->has_indexer && !aw->csa2) {
        int most = 0;
        for (int g = 0; g < b->n_segs; g++) most = DSV4_MAX(most, dsv4_seg_state(b, &b->segs[g])->comp.n_rows);
        max_keys = W + most;
    }
    float scale = 1.0f / sqrtf((float)D);
    int nth = omp_get_max_threads();
    bool rows_parallel = N >= 2;
    int n_bufs = rows_parallel ? nth : 1;
    float *keybuf = malloc((size_t)n_bufs * (size_t)max_keys * D * sizeof(float) + 1);
    if (!keybuf) {
        if (own_sel) {
            free(sel);
            free(n_sel);
        }
        return dsv4_error(DSV4_ENOMEM, "out of memory gathering %d attention keys", max_keys);
    }
    if (rows_parallel) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int r = 0; r < N; r++) {
            float *keys = keybuf + (size_t)omp_get_thread_num() * max_keys * D;
            int K = gather_keys(m, aw, b, r, kv, sel ? sel + (size_t)r * topk : NULL, n_sel ? n_sel[r] : 0, keys);
            dsv4_attend(q + (size_t)r * H * D, keys, K, H, D, scale, aw->sink, o + (size_t)r * H * D);
        }
    } else {
        int K = gather_keys(m, aw, b, 0, kv, sel, n_sel ? n_sel[0] : 0, keybuf);
#pragma omp parallel for schedule(static)
        for (int h = 0; h < H; h++)
            dsv4_attend(q + (size_t)h * D, keybuf, K, 1, D, scale, aw->sink + h, o + (size_t)h * D);
    }
    free(keybuf);
    if (own_sel) {
        free(sel);
        free(n_sel);
    }

    /* the ring keeps the last W positions of each sequence (a draft block's rows are not kept) */
    for (int g = 0; g < b->n_segs && !b->dspark; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        dsv4_layer_state *ls = dsv4_seg_state(b, sg);
        for (int t = DSV4_MAX(0, sg->n - W); t < sg->n; t++)
            dsv4_rowstore_put(&ls->win, (sg->pos0 + t) % W, kv + (size_t)(sg->row0 + t) * D);
    }

    /* de-rotate the rope dims of each head's output at the query position */
    for (int r = 0; r < N; r++)
        for (int h = 0; h < H; h++) dsv4_rope_apply(aw->rope, o + ((size_t)r * H + h) * D + D - rd, b->pos[r], true);

    /* grouped low-rank output projection, the G groups as one parallel step */
    for (int gi = 0; gi < G; gi++) {
        float *ogi = og + (size_t)gi * N * hg * D;
        for (int r = 0; r < N; r++)
            memcpy(ogi + (size_t)r * hg * D, o + (size_t)r * H * D + (size_t)gi * hg * D, (size_t)hg * D * sizeof(float));
        /* wo_a runs on the raw activations: the official code dequantises it to bf16 */
        wo_views[gi] = dsv4_linear_rows(&aw->wo_a, gi * olr, olr);
        wo_jobs[gi] = (dsv4_matmul_job){&wo_views[gi], ogi, N, zo + (size_t)gi * olr, G * olr};
    }
    dsv4_matmul_jobs(wo_jobs, G);
    dsv4_linear_forward(&aw->wo_b, zo, N, out, mode, xq);
    return DSV4_OK;
}
