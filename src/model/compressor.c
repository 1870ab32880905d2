/* compressor.c: KV compression by softmax-gated pooling (CSA ratio 4, HCA ratio 128).
 *
 * Every token p contributes a = wkv.u and z = wgate.u + ape[p mod m] (computed by the caller
 * for all rows at once). A compressed row pools one window of m tokens, channel by channel,
 * with weights softmax(z) over the window. With overlap (m = 4) each token's a and z have two
 * halves: row w pools the A-halves of window w-1 and the B-halves of window w (8 slots). The
 * pending tokens live in the state's kv/score buffers exactly as in the official decode path:
 * rows [0, m) the previous window (overlap), rows [coff*m - m, coff*m) the current one.
 * Pooling happens when a window completes, so prefill, chunks and token-by-token feeding
 * produce identical rows. */
#include <math.h>

#include "base/base.h"
#include "model/forward.h"

void dsv4_compressor_pool(const dsv4_compressor_w *w, const float *kv, const float *score, float *out) {
    int m = w->ratio, dc = w->dc;
    if (w->overlap) {
        int width = 2 * dc; /* row stride of the state buffers */
        for (int c = 0; c < dc; c++) {
            /* slots 0..m-1: A-halves (dims [0,dc)) of the previous window;
             * slots m..2m-1: B-halves (dims [dc,2dc)) of the current one */
            float mx = -INFINITY;
            for (int s = 0; s < 2 * m; s++) {
                float zz = s < m ? score[s * width + c] : score[s * width + dc + c];
                mx = fmaxf(mx, zz);
            }
            float e[16], sum = 0.0f;
            for (int s = 0; s < 2 * m; s++) {
                float zz = s < m ? score[s * width + c] : score[s * width + dc + c];
                e[s] = expf(zz - mx);
                sum += e[s];
            }
            float acc = 0.0f;
            for (int s = 0; s < 2 * m; s++) {
                float aa = s < m ? kv[s * width + c] : kv[s * width + dc + c];
                acc += aa * (e[s] / sum);
            }
            out[c] = acc;
        }
    } else {
        for (int c = 0; c < dc; c++) {
            float mx = -INFINITY;
            for (int s = 0; s < m; s++) mx = fmaxf(mx, score[s * dc + c]);
            float sum = 0.0f;
            for (int s = 0; s < m; s++) sum += expf(score[s * dc + c] - mx);
            float acc = 0.0f;
            for (int s = 0; s < m; s++) acc += kv[s * dc + c] * (expf(score[s * dc + c] - mx) / sum);
            out[c] = acc;
        }
    }
}

void dsv4_compressor_finish(const dsv4_compressor_w *w, const dsv4_rope *rope, float norm_eps, int pos_first,
                            dsv4_row_fmt fmt, int rd, float *entry) {
    int dc = w->dc;
    dsv4_rmsnorm(entry, w->norm, dc, norm_eps, entry);
    dsv4_rope_apply(rope, entry + dc - rd, pos_first, false);
    /* Indexer keys are rotated so the FP4 rounding spreads evenly over the dims; the rotation
     * itself is orthonormal and applied in every numerics mode. */
    if (w->rotate) dsv4_hadamard(entry, dc);
    dsv4_row_roundtrip(fmt, dc, rd, entry);
}

/* Push one token into the state; returns true when its window completed and `entry` holds
 * the pooled (unnormalised) row. */
static bool compressor_push(const dsv4_compressor_w *w, dsv4_comp_state *st, const float *a, const float *z, int pos,
                            float *entry) {
    int m = w->ratio, dc = w->dc, i = pos % m;
    int width = (w->overlap ? 2 : 1) * dc;
    int row = w->overlap ? m + i : i;
    const float *ape = w->ape + (size_t)i * width;
    for (int c = 0; c < width; c++) {
        st->kv[row * width + c] = a[c];
        st->score[row * width + c] = z[c] + ape[c];
    }
    if ((pos + 1) % m) return false;
    dsv4_compressor_pool(w, st->kv, st->score, entry);
    if (w->overlap) { /* the completed window becomes the previous one */
        memcpy(st->kv, st->kv + (size_t)m * width, (size_t)m * width * sizeof(float));
        memcpy(st->score, st->score + (size_t)m * width, (size_t)m * width * sizeof(float));
    }
    return true;
}

void dsv4_compressor_forward(const struct dsv4_model *m, const dsv4_compressor_w *w, const dsv4_rope *rope,
                             const dsv4_fwd_batch *b, bool indexer, const float *a, const float *z, float *tmp) {
    int width = (w->overlap ? 2 : 1) * w->dc;
    int rd = m->cfg.rope_head_dim;
    for (int g = 0; g < b->n_segs; g++) {
        const dsv4_fwd_seg *sg = &b->segs[g];
        dsv4_layer_state *ls = dsv4_seg_state(b, sg);
        dsv4_comp_state *st = indexer ? &ls->idx : &ls->comp;
        for (int t = 0; t < sg->n; t++) {
            int row = sg->row0 + t, pos = sg->pos0 + t;
            if (!compressor_push(w, st, a + (size_t)row * width, z + (size_t)row * width, pos, tmp)) continue;
            dsv4_compressor_finish(w, rope, m->cfg.norm_eps, pos + 1 - w->ratio, st->rows.fmt, rd, tmp);
            if (st->n_rows < st->rows.cap) dsv4_rowstore_put(&st->rows, st->n_rows++, tmp);
        }
    }
}
