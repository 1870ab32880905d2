/* indexer.c: the lightning indexer of CSA layers.
 *
 * A cheap attention-like scorer picks, for each query, the top-k compressed KV rows the real
 * attention will read. Query: qI = wq_b(q_lat) split into n_heads heads of head_dim, RoPE on
 * the last rope dims, Hadamard rotation, FP4 simulation (default numerics). Head weights:
 * w = weights_proj(u) / sqrt(head_dim * n_heads). Keys: the indexer's own compressor output
 * (rotated, FP4). score(row) = sum_h w_h * relu(qI_h . key). The indexer compressor runs before
 * scoring, so a row completed by the current token can be chosen. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "model/forward.h"
#include "numeric/numeric.h"

/* Heap order: a is "worse" than b when its score is lower, or equal with a higher index. */
static inline bool worse(const float *s, int a, int b) { return s[a] < s[b] || (s[a] == s[b] && a > b); }

static void sift_down(const float *s, int *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(s, h[l], h[m])) m = l;
        if (r < n && worse(s, h[r], h[m])) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

int dsv4_topk(const float *s, int n, int k, int *out) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    /* min-heap (by `worse`) of the best k seen so far */
    for (int i = 0; i < k; i++) out[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(s, out, k, i);
    for (int i = k; i < n; i++) {
        if (worse(s, out[0], i)) {
            out[0] = i;
            sift_down(s, out, k, 0);
        }
    }
    /* heap-sort: repeatedly move the worst to the end -> best first */
    for (int end = k - 1; end > 0; end--) {
        int t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(s, out, end, 0);
    }
    return k;
}

void dsv4_indexer_scores(const float *q, const float *w, int nh, int hd, const float *keys, int n_keys,
                         float *scores) {
    for (int k = 0; k < n_keys; k++) {
        const float *key = keys + (size_t)k * hd;
        float s = 0.0f;
        for (int h = 0; h < nh; h++) {
            float d = 0.0f;
            const float *qh = q + (size_t)h * hd;
            for (int i = 0; i < hd; i++) d += qh[i] * key[i];
            s += w[h] * fmaxf(d, 0.0f);
        }
        scores[k] = s;
    }
}

dsv4_status dsv4_indexer_forward(const struct dsv4_model *m, const dsv4_attn_w *aw, const dsv4_fwd_batch *b,
                                 const float *u, const float *q_lat, int *sel, int *n_sel, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    const dsv4_indexer_w *ix = &aw->indexer;
    int N = b->n_rows, nh = ix->n_heads, hd = ix->head_dim, rd = c->rope_head_dim, dim = c->dim;
    bool exact = m->numerics == DSV4_NUMERICS_EXACT;

    /* the indexer's compressor (keys), before scoring */
    int width = 2 * ix->comp.dc;
    float *a = dsv4_ws_alloc(ws, (size_t)N * width), *z = dsv4_ws_alloc(ws, (size_t)N * width);
    float *tmp = dsv4_ws_alloc(ws, (size_t)width);
    float *q = dsv4_ws_alloc(ws, (size_t)N * nh * hd), *w = dsv4_ws_alloc(ws, (size_t)N * nh);
    float *xq = dsv4_ws_alloc(ws, (size_t)N * DSV4_MAX(dim, c->q_lora_rank));
    if (!a || !z || !tmp || !q || !w || !xq) return DSV4_ENOMEM;
    dsv4_matmul_job pair[2] = {{&ix->comp.wkv, u, N, a, ix->comp.wkv.rows}, {&ix->comp.wgate, u, N, z, ix->comp.wgate.rows}};
    dsv4_matmul_jobs(pair, 2);
    dsv4_compressor_forward(m, &ix->comp, aw->rope, b, true, a, z, tmp);

    /* queries and head weights */
    dsv4_linear_forward(&ix->wq_b, q_lat, N, q, m->numerics, xq);
    for (int r = 0; r < N; r++) {
        for (int h = 0; h < nh; h++) {
            float *qh = q + ((size_t)r * nh + h) * hd;
            dsv4_rope_apply(aw->rope, qh + hd - rd, b->pos[r], false);
            dsv4_hadamard(qh, hd);
            if (!exact) dsv4_fp4_fake_quant(qh, hd, 32);
        }
    }
    dsv4_linear_forward(&ix->weights_proj, u, N, w, m->numerics, xq);
    float wscale = 1.0f / sqrtf((float)hd) * (1.0f / sqrtf((float)nh));
    for (size_t i = 0; i < (size_t)N * nh; i++) w[i] *= wscale;

    /* score every visible key, then top-k, per row */
    for (int g = 0; g < b->n_segs; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        const dsv4_comp_state *st = &dsv4_seg_state(b, sg)->idx;
        int n_keys = st->n_rows;
        float *keys = malloc(((size_t)n_keys * hd + 1) * sizeof(float));
        if (!keys) return dsv4_error(DSV4_ENOMEM, "out of memory reading %d indexer keys", n_keys);
#pragma omp parallel for schedule(static) if (n_keys > 256)
        for (int k = 0; k < n_keys; k++) dsv4_rowstore_get(&st->rows, k, keys + (size_t)k * hd);
        int nth = omp_get_max_threads();
        float *scores_all = malloc(((size_t)nth * (size_t)(n_keys + 1)) * sizeof(float));
        /* the head . key dot products of one row, KEY_CHUNK keys at a time, as a product with
         * the keys as an F32 matrix (the matmul kernels: SIMD, and over the threads when one
         * row is scored alone) */
        enum { KEY_CHUNK = 16384 };
        float *dots_all = malloc((size_t)nth * (size_t)nh * KEY_CHUNK * sizeof(float));
        if (!scores_all || !dots_all) {
            free(keys);
            free(scores_all);
            free(dots_all);
            return dsv4_error(DSV4_ENOMEM, "out of memory scoring %d indexer keys", n_keys);
        }
#pragma omp parallel for schedule(dynamic, 1) if (sg->n > 1)
        for (int t = 0; t < sg->n; t++) {
            int r = sg->row0 + t;
            int visible = (b->pos[r] + 1) / 4;
            if (visible > n_keys) visible = n_keys;
            float *scores = scores_all + (size_t)omp_get_thread_num() * (size_t)(n_keys + 1);
            float *dots = dots_all + (size_t)omp_get_thread_num() * (size_t)nh * KEY_CHUNK;
            const float *qr = q + (size_t)r * nh * hd, *wr = w + (size_t)r * nh;
            for (int k0 = 0; k0 < visible; k0 += KEY_CHUNK) {
                int kn = DSV4_MIN((int)KEY_CHUNK, visible - k0);
                dsv4_linear kl = {.fmt = DSV4_W_F32, .rows = kn, .cols = hd, .w = keys + (size_t)k0 * hd, .name = "indexer keys"};
                dsv4_matmul(&kl, qr, nh, dots); /* dots[h * kn + k] */
                for (int k = 0; k < kn; k++) {
                    float s = 0.0f;
                    for (int h = 0; h < nh; h++) s += wr[h] * fmaxf(dots[(size_t)h * kn + k], 0.0f);
                    scores[k0 + k] = s;
                }
            }
            n_sel[r] = dsv4_topk(scores, visible, ix->topk, sel + (size_t)r * ix->topk);
        }
        free(scores_all);
        free(dots_all);
        free(keys);
    }
    return DSV4_OK;
}
