/* compressor_train.c: the KV compressor over a whole sequence, and its gradient.
 *
 * Forward: a = wkv u, z = wgate u for every token; compressed row w pools window w channel by
 * channel with softmax weights over its slots, exactly as the inference path does when the
 * window completes: the slots are laid out in the state-buffer layout (for overlap, rows
 * [0, m) the A-halves of window w-1, or empty with score -inf for w = 0; rows [m, 2m) the
 * B-halves of window w), score = z + ape[in-window position], and dsv4_compressor_pool and
 * dsv4_compressor_finish (RMSNorm, RoPE at position w*m, Hadamard for indexer keys) run on
 * them unchanged. Tokens after the last complete window are not pooled yet and get no
 * gradient.
 *
 * Backward per row: the finish steps in reverse (Hadamard is its own transpose, the RoPE
 * rotation is undone, RMSNorm's backward gives dnorm), then the pooling: with p the softmax
 * weights of one channel and out = sum_s p_s a_s,
 *   da_s = p_s dout,    dz_s = p_s (a_s - out) dout,
 * scattered back to the tokens (and to ape by in-window position); finally the two linears. */
#include <math.h>

#include "base/base.h"
#include "model/forward.h"
#include "train/train.h"

void dsv4_compressor_pool_backward(const dsv4_compressor_w *w, const float *kv, const float *score, const float *dout,
                                   float *dkv, float *dscore) {
    int m = w->ratio, dc = w->dc, n_slots = (w->overlap ? 2 : 1) * m, width = (w->overlap ? 2 : 1) * dc;
    float e[2 * 256];
    if (n_slots > (int)DSV4_ARRAY_LEN(e)) return; /* ratio > 256: refused when the model is made */
    for (int c = 0; c < dc; c++) {
        /* slot s reads dims [0, dc) of its row, or [dc, 2dc) for the current window (overlap) */
        float mx = -INFINITY, sum = 0.0f;
        for (int s = 0; s < n_slots; s++) {
            size_t i = (size_t)s * width + (w->overlap && s >= m ? dc : 0) + c;
            mx = fmaxf(mx, score[i]);
        }
        for (int s = 0; s < n_slots; s++) {
            size_t i = (size_t)s * width + (w->overlap && s >= m ? dc : 0) + c;
            e[s] = expf(score[i] - mx);
            sum += e[s];
        }
        float out = 0.0f;
        for (int s = 0; s < n_slots; s++) {
            size_t i = (size_t)s * width + (w->overlap && s >= m ? dc : 0) + c;
            e[s] /= sum;
            out += kv[i] * e[s];
        }
        for (int s = 0; s < n_slots; s++) {
            size_t i = (size_t)s * width + (w->overlap && s >= m ? dc : 0) + c;
            dkv[i] += e[s] * dout[c];
            if (e[s] > 0.0f) dscore[i] += e[s] * (kv[i] - out) * dout[c];
        }
    }
}

/* The state buffers of window `win` (kv, score: [coff*m, width]) and the token of each row
 * (-1: empty). */
static void window_slots(const dsv4_compressor_w *w, const float *a, const float *z, int win, float *kv, float *score,
                         int *token) {
    int m = w->ratio, width = (w->overlap ? 2 : 1) * w->dc;
    int n_rows = w->overlap ? 2 * m : m;
    for (int r = 0; r < n_rows; r++) {
        int i = r % m; /* in-window position */
        int p = w->overlap && r < m ? (win - 1) * m + i : win * m + i;
        token[r] = p;
        float *kr = kv + (size_t)r * width, *sr = score + (size_t)r * width;
        if (p < 0) {
            token[r] = -1;
            for (int c = 0; c < width; c++) {
                kr[c] = 0.0f;
                sr[c] = -INFINITY;
            }
            continue;
        }
        const float *ap = a + (size_t)p * width, *zp = z + (size_t)p * width, *ape = w->ape + (size_t)i * width;
        for (int c = 0; c < width; c++) {
            kr[c] = ap[c];
            sr[c] = zp[c] + ape[c];
        }
    }
}

dsv4_status dsv4_compressor_train_forward(const struct dsv4_model *m, const dsv4_compressor_w *w, const dsv4_rope *rope,
                                          const float *u, int T, dsv4_comp_act *act, dsv4_workspace *ws) {
    int dc = w->dc, ratio = w->ratio, width = (w->overlap ? 2 : 1) * dc, n_buf = (w->overlap ? 2 : 1) * ratio;
    int n = T / ratio;
    act->n_rows = n;
    act->a = dsv4_ws_alloc(ws, (size_t)T * width);
    act->z = dsv4_ws_alloc(ws, (size_t)T * width);
    act->pooled = dsv4_ws_alloc(ws, (size_t)n * dc + 1);
    act->rows = dsv4_ws_alloc(ws, (size_t)n * dc + 1);
    float *buf = dsv4_ws_alloc(ws, (size_t)2 * n_buf * width);
    int *token = malloc((size_t)n_buf * sizeof(int));
    if (!act->a || !act->z || !act->pooled || !act->rows || !buf || !token) {
        free(token);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the compressor (%d tokens)", T);
    }
    dsv4_train_matmul(&w->wkv, u, T, act->a);
    dsv4_train_matmul(&w->wgate, u, T, act->z);
    for (int win = 0; win < n; win++) {
        float *kv = buf, *score = buf + (size_t)n_buf * width, *row = act->rows + (size_t)win * dc;
        window_slots(w, act->a, act->z, win, kv, score, token);
        dsv4_compressor_pool(w, kv, score, act->pooled + (size_t)win * dc);
        memcpy(row, act->pooled + (size_t)win * dc, (size_t)dc * sizeof(float));
        dsv4_compressor_finish(w, rope, m->cfg.norm_eps, win * ratio, DSV4_ROW_F32, m->cfg.rope_head_dim, row);
    }
    free(token);
    return DSV4_OK;
}

dsv4_status dsv4_compressor_train_backward(const struct dsv4_model *m, const dsv4_compressor_w *w,
                                           const dsv4_rope *rope, const float *u, int T, const dsv4_comp_act *act,
                                           const float *drows, float *du, const dsv4_compressor_w *gw) {
    int dc = w->dc, ratio = w->ratio, width = (w->overlap ? 2 : 1) * dc, n_buf = (w->overlap ? 2 : 1) * ratio;
    int rd = m->cfg.rope_head_dim, n = act->n_rows;
    float *da = calloc((size_t)T * width + 1, sizeof(float)), *dz = calloc((size_t)T * width + 1, sizeof(float));
    float *buf = malloc(((size_t)4 * n_buf * width + 2 * (size_t)dc) * sizeof(float));
    int *token = malloc((size_t)n_buf * sizeof(int));
    if (!da || !dz || !buf || !token) {
        free(da);
        free(dz);
        free(buf);
        free(token);
        return dsv4_error(DSV4_ENOMEM, "out of memory in the compressor backward (%d tokens)", T);
    }
    float *kv = buf, *score = kv + (size_t)n_buf * width, *dkv = score + (size_t)n_buf * width;
    float *dscore = dkv + (size_t)n_buf * width, *d = dscore + (size_t)n_buf * width, *dpool = d + dc;
    for (int win = 0; win < n; win++) {
        /* the finish steps in reverse */
        memcpy(d, drows + (size_t)win * dc, (size_t)dc * sizeof(float));
        if (w->rotate) dsv4_hadamard(d, dc);
        dsv4_rope_apply_backward(rope, d + dc - rd, win * ratio, false);
        memset(dpool, 0, (size_t)dc * sizeof(float));
        dsv4_rmsnorm_backward(act->pooled + (size_t)win * dc, w->norm, dc, m->cfg.norm_eps, d, dpool, gw->norm);
        /* the pooling */
        window_slots(w, act->a, act->z, win, kv, score, token);
        memset(dkv, 0, (size_t)2 * n_buf * width * sizeof(float));
        dsv4_compressor_pool_backward(w, kv, score, dpool, dkv, dscore);
        for (int r = 0; r < n_buf; r++) {
            if (token[r] < 0) continue;
            const float *gk = dkv + (size_t)r * width, *gs = dscore + (size_t)r * width;
            float *dat = da + (size_t)token[r] * width, *dzt = dz + (size_t)token[r] * width;
            float *dape = gw->ape + (size_t)(r % ratio) * width;
            for (int c = 0; c < width; c++) {
                dat[c] += gk[c];
                dzt[c] += gs[c];
                dape[c] += gs[c];
            }
        }
    }
    dsv4_matmul_backward(&w->wkv, u, T, da, du, &gw->wkv);
    dsv4_matmul_backward(&w->wgate, u, T, dz, du, &gw->wgate);
    free(da);
    free(dz);
    free(buf);
    free(token);
    return DSV4_OK;
}
