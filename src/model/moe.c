/* moe.c: the mixture-of-experts feed-forward block.
 *
 * Router: logits = gate . u in fp32; scores s = sqrt(softplus(logits)) (V4's scoring
 * function; sigmoid and softmax are accepted for other configs). Selection: in the first
 * num_hash_layers layers the experts are a fixed table of the token id (tid2eid); elsewhere the
 * top-k of s + bias, the bias being the auxiliary-loss-free balancing term that steers
 * selection only. Weights: the chosen scores normalised to sum 1, times routed_scaling_factor.
 *
 * Expert (routed and shared): SwiGLU with the V4 clamp, h = silu(min(g, L)) * clamp(p, -L, L)
 * for g = w1 u, p = w3 u, L = swiglu_limit; a routed expert's h is scaled by its routing weight
 * before w2, as the official code does. Output: routed experts summed in ascending expert
 * order (the official loop order), then the shared expert.
 *
 * V4.1: the router logits are divided by the temperature gate_temp before scoring, DSpark
 * stages route over their own expert count and top-k (dsv4_moe_w.n_experts/top_k), and the
 * FP8 rounding of expert inputs uses the weights' activation block (32; V4: 128). */
#include <math.h>

#include "base/base.h"
#include "model/forward.h"
#include "numeric/numeric.h"

void dsv4_moe_route(const struct dsv4_config *c, const dsv4_moe_w *w, const float *logits, int32_t token, int *idx,
                    float *weight) {
    /* DSpark layers carry their own expert counts; 0 means the config's */
    int E = w->n_experts ? w->n_experts : c->n_routed_experts, K = w->top_k ? w->top_k : c->n_activated_experts;
    float scores[1024], biased[1024];
    float *s = E <= 1024 ? scores : malloc((size_t)E * sizeof(float));
    float *sb = E <= 1024 ? biased : malloc((size_t)E * sizeof(float));
    if (!s || !sb) { /* E > 1024 and no memory: route to the first experts, evenly */
        for (int k = 0; k < K; k++) {
            idx[k] = k;
            weight[k] = c->route_scale / (float)K;
        }
        if (s != scores) free(s);
        if (sb != biased) free(sb);
        return;
    }
    if (w->gate_temp > 0.0f && w->gate_temp != 1.0f) { /* V4.1's router temperature */
        for (int e = 0; e < E; e++) sb[e] = logits[e] / w->gate_temp; /* sb is free until selection */
        logits = sb;
    }
    if (c->score_func == DSV4_SCORE_SOFTMAX) {
        float mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < E; e++) mx = fmaxf(mx, logits[e]);
        for (int e = 0; e < E; e++) sum += (s[e] = expf(logits[e] - mx));
        for (int e = 0; e < E; e++) s[e] /= sum;
    } else if (c->score_func == DSV4_SCORE_SIGMOID) {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-logits[e]));
    } else {
        for (int e = 0; e < E; e++) s[e] = sqrtf(dsv4_softplus(logits[e]));
    }
    if (w->hash) {
        for (int k = 0; k < K; k++) idx[k] = w->tid2eid[(size_t)token * K + k];
    } else {
        for (int e = 0; e < E; e++) sb[e] = w->bias ? s[e] + w->bias[e] : s[e];
        dsv4_topk(sb, E, K, idx);
    }
    float sum = 0.0f;
    for (int k = 0; k < K; k++) sum += (weight[k] = s[idx[k]]);
    for (int k = 0; k < K; k++) {
        if (c->score_func != DSV4_SCORE_SOFTMAX) weight[k] /= sum;
        weight[k] *= c->route_scale;
    }
    if (s != scores) free(s);
    if (sb != biased) free(sb);
}

/* Does this expert's input get rounded to FP8 first (the official act_quant)? */
static bool quantises(const struct dsv4_model *m, const dsv4_linear *L) {
    return m->numerics == DSV4_NUMERICS_DEFAULT && L->act_quant && (L->fmt == DSV4_W_FP8 || L->fmt == DSV4_W_FP4);
}

/* The rounding block of L's input: 128 in V4, 32 in V4.1 (act_block 0 reads as 128). */
static int act_block(const dsv4_linear *L) { return L->act_block ? L->act_block : 128; }

/* x[n, cols] <- its FP8 rounding in blocks of `block` (rows in parallel when there are many). */
static void fp8_rows(float *x, int n, int cols, int block) {
#pragma omp parallel for schedule(static) if (n > 8)
    for (int r = 0; r < n; r++) dsv4_fp8_fake_quant(x + (size_t)r * cols, cols, block);
}

/* h = route_w * silu(min(g, L)) * clamp(p, -L, L) over n rows of `inter` (route_w NULL: 1). */
static void swiglu(float *g, const float *p, int n, int inter, float L, const float *route_w) {
#pragma omp parallel for schedule(static) if (n > 8)
    for (int t = 0; t < n; t++) {
        float *gt = g + (size_t)t * inter;
        const float *pt = p + (size_t)t * inter;
        float rw = route_w ? route_w[t] : 1.0f;
        for (int i = 0; i < inter; i++) {
            float gg = gt[i], pp = pt[i];
            if (L > 0) {
                pp = fminf(fmaxf(pp, -L), L);
                gg = fminf(gg, L);
            }
            float h = dsv4_silu(gg) * pp;
            if (route_w) h = rw * h;
            gt[i] = h;
        }
    }
}

/* One expert on its own (the block below batches them): y[n, dim] = w2(h), h as above. */
void dsv4_expert_forward(const struct dsv4_model *m, const dsv4_expert_w *e, const float *x, int n, const float *route_w,
                         float *y, float *xq, float *g, float *p) {
    const struct dsv4_config *c = &m->cfg;
    int dim = c->dim, inter = c->moe_inter_dim;
    const float *in = x;
    if (quantises(m, &e->w1)) { /* w1 and w3 read the same rounded input */
        memcpy(xq, x, (size_t)n * dim * sizeof(float));
        fp8_rows(xq, n, dim, act_block(&e->w1));
        in = xq;
    }
    dsv4_matmul(&e->w1, in, n, g);
    dsv4_matmul(&e->w3, in, n, p);
    swiglu(g, p, n, inter, c->swiglu_limit, route_w);
    if (quantises(m, &e->w2)) fp8_rows(g, n, inter, act_block(&e->w2));
    dsv4_matmul(&e->w2, g, n, y);
}

/* The experts are run a group at a time (every expert of a group in one parallel step), the
 * group bounded by the rows it holds so that a long prefill does not need N*K*inter floats
 * of intermediates at once. */
enum { GROUP_ROWS = 4096 };

dsv4_status dsv4_moe_forward(const struct dsv4_model *m, const dsv4_moe_w *w, const dsv4_fwd_batch *b, const float *u,
                             float *out, dsv4_workspace *ws) {
    const struct dsv4_config *c = &m->cfg;
    /* DSpark stages carry their own expert counts (V4.1); 0 means the config's */
    int N = b->n_rows, dim = c->dim, inter = c->moe_inter_dim;
    int E = w->n_experts ? w->n_experts : c->n_routed_experts, K = w->top_k ? w->top_k : c->n_activated_experts;
    /* rows of one group (a single expert may exceed GROUP_ROWS, but holds at most N rows),
     * plus the shared expert's */
    int cap = DSV4_MIN(N * K, DSV4_MAX((int)GROUP_ROWS, N)) + N;
    float *logits = dsv4_ws_alloc(ws, (size_t)N * E), *wt = dsv4_ws_alloc(ws, (size_t)N * K);
    float *uq = dsv4_ws_alloc(ws, (size_t)N * dim), *xe = dsv4_ws_alloc(ws, (size_t)cap * dim);
    float *g = dsv4_ws_alloc(ws, (size_t)cap * inter), *p = dsv4_ws_alloc(ws, (size_t)cap * inter);
    float *ye = dsv4_ws_alloc(ws, (size_t)cap * dim), *rw = dsv4_ws_alloc(ws, (size_t)cap);
    /* integer tables live in workspace floats (their only use is as int) */
    int *idx = (int *)dsv4_ws_alloc(ws, (size_t)N * K), *rows = (int *)dsv4_ws_alloc(ws, (size_t)N * K);
    int *count = (int *)dsv4_ws_alloc(ws, (size_t)E + 1), *first = (int *)dsv4_ws_alloc(ws, (size_t)E + 1);
    dsv4_matmul_job *jobs = (dsv4_matmul_job *)dsv4_ws_alloc(ws, (size_t)(2 * E + 2) * (sizeof(dsv4_matmul_job) + 3) / 4);
    if (!logits || !wt || !uq || !xe || !g || !p || !ye || !rw || !idx || !rows || !count || !first || !jobs)
        return dsv4_error(DSV4_ENOMEM, "out of memory in the MoE block");

    /* routing, and the rows of each expert in ascending expert order (a counting sort) */
    dsv4_matmul(&w->gate, u, N, logits);
    for (int r = 0; r < N; r++) {
        dsv4_moe_route(c, w, logits + (size_t)r * E, b->ids[r], idx + (size_t)r * K, wt + (size_t)r * K);
        for (int k = 0; k < K; k++) count[idx[(size_t)r * K + k]]++;
    }
    for (int e = 0, acc = 0; e <= E; e++) {
        first[e] = acc;
        if (e < E) acc += count[e];
    }
    for (int e = 0; e < E; e++) count[e] = 0;
    for (int r = 0; r < N; r++)
        for (int k = 0; k < K; k++) {
            int e = idx[(size_t)r * K + k], at = first[e] + count[e]++;
            rows[at] = r * K + k; /* token row and routing slot */
        }
    double t_start = m->perf ? dsv4_now() : 0, c_start = m->perf ? dsv4_cpu_now() : 0;

    /* the inputs: rounded to FP8 once for every expert that rounds them (the shared expert
     * gets its own copy only if its rounding block differed from the routed experts') */
    const dsv4_expert_w *any = &w->experts[0];
    bool q_routed = quantises(m, &any->w1), q_shared = quantises(m, &w->shared.w1);
    int blk_routed = act_block(&any->w1), blk_shared = act_block(&w->shared.w1);
    if (q_routed || q_shared) {
        memcpy(uq, u, (size_t)N * dim * sizeof(float));
        fp8_rows(uq, N, dim, q_routed ? blk_routed : blk_shared);
    }
    const float *in_routed = q_routed ? uq : u, *in_shared = q_shared ? uq : u;
    if (q_routed && q_shared && blk_routed != blk_shared) {
        float *us = dsv4_ws_alloc(ws, (size_t)N * dim);
        if (!us) return DSV4_ENOMEM;
        memcpy(us, u, (size_t)N * dim * sizeof(float));
        fp8_rows(us, N, dim, blk_shared);
        in_shared = us;
    }
    float *ys = dsv4_ws_alloc(ws, (size_t)N * dim);
    if (!ys) return DSV4_ENOMEM;
    memset(out, 0, (size_t)N * dim * sizeof(float));
    double flops = 0, bytes = 0;

    int e0 = 0;
    bool shared_done = false;
    while (e0 < E || !shared_done) {
        /* the next group: experts [e0, e1) holding at most GROUP_ROWS rows (at least one expert) */
        int e1 = e0, n_rows = 0;
        while (e1 < E && (n_rows == 0 || n_rows + count[e1] <= GROUP_ROWS)) n_rows += count[e1++];
        bool with_shared = e1 >= E; /* the shared expert joins the last group */
        int nj = 0, row0 = first[e0];
        /* w1 and w3 of every expert of the group (inputs gathered unless there is one token) */
        for (int e = e0; e < e1; e++) {
            int ne = count[e];
            if (!ne) continue;
            const dsv4_expert_w *x = &w->experts[e];
            int o = first[e] - row0;
            const float *xin = in_routed;
            if (N > 1) {
                for (int i = 0; i < ne; i++)
                    memcpy(xe + (size_t)(o + i) * dim, in_routed + (size_t)(rows[first[e] + i] / K) * dim, (size_t)dim * sizeof(float));
                xin = xe + (size_t)o * dim;
            }
            for (int i = 0; i < ne; i++) rw[o + i] = wt[rows[first[e] + i]];
            jobs[nj++] = (dsv4_matmul_job){&x->w1, xin, ne, g + (size_t)o * inter, inter};
            jobs[nj++] = (dsv4_matmul_job){&x->w3, xin, ne, p + (size_t)o * inter, inter};
            flops += 2.0 * ne * ((double)x->w1.rows * x->w1.cols + (double)x->w3.rows * x->w3.cols + (double)x->w2.rows * x->w2.cols);
            bytes += (double)(dsv4_linear_bytes(&x->w1) + dsv4_linear_bytes(&x->w2) + dsv4_linear_bytes(&x->w3));
        }
        float *gs = g + (size_t)n_rows * inter, *ps = p + (size_t)n_rows * inter;
        if (with_shared) {
            const dsv4_expert_w *x = &w->shared;
            jobs[nj++] = (dsv4_matmul_job){&x->w1, in_shared, N, gs, inter};
            jobs[nj++] = (dsv4_matmul_job){&x->w3, in_shared, N, ps, inter};
            flops += 2.0 * N * ((double)x->w1.rows * x->w1.cols + (double)x->w3.rows * x->w3.cols + (double)x->w2.rows * x->w2.cols);
            bytes += (double)(dsv4_linear_bytes(&x->w1) + dsv4_linear_bytes(&x->w2) + dsv4_linear_bytes(&x->w3));
        }
        dsv4_matmul_jobs(jobs, nj);

        /* h = routing weight * SwiGLU, rounded for w2; then every w2 in one step */
        swiglu(g, p, n_rows, inter, c->swiglu_limit, rw);
        if (q_routed) fp8_rows(g, n_rows, inter, act_block(&any->w2));
        if (with_shared) {
            swiglu(gs, ps, N, inter, c->swiglu_limit, NULL);
            if (quantises(m, &w->shared.w2)) fp8_rows(gs, N, inter, act_block(&w->shared.w2));
        }
        nj = 0;
        for (int e = e0; e < e1; e++) {
            int ne = count[e], o = first[e] - row0;
            if (ne) jobs[nj++] = (dsv4_matmul_job){&w->experts[e].w2, g + (size_t)o * inter, ne, ye + (size_t)o * dim, dim};
        }
        if (with_shared) jobs[nj++] = (dsv4_matmul_job){&w->shared.w2, gs, N, ys, dim};
        dsv4_matmul_jobs(jobs, nj);

        /* sum in ascending expert order, row by row (the official loop order) */
#pragma omp parallel for schedule(static) if ((size_t)n_rows * dim > 65536)
        for (int d0 = 0; d0 < dim; d0 += 256) {
            int d1 = DSV4_MIN(dim, d0 + 256);
            for (int e = e0; e < e1; e++)
                for (int i = 0; i < count[e]; i++) {
                    int at = first[e] + i;
                    float *o = out + (size_t)(rows[at] / K) * dim;
                    const float *y = ye + (size_t)(at - row0) * dim;
                    for (int d = d0; d < d1; d++) o[d] += y[d];
                }
        }
        e0 = e1;
        shared_done = with_shared;
    }
    for (size_t i = 0; i < (size_t)N * dim; i++) out[i] += ys[i];
    if (m->perf) {
        m->perf->expert_s += dsv4_now() - t_start;
        m->perf->expert_cpu_s += dsv4_cpu_now() - c_start;
        m->perf->expert_flops += flops;
        m->perf->expert_bytes += bytes;
    }
    return DSV4_OK;
}
