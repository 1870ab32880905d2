/* bench.c: the measurements of `dsv4 bench` (see bench.h).
 *
 * Order of a run: page every weight in (so that the first timed token does not read the
 * disk), measure the memory bandwidth and the FMA peak, time one prefill call, then time
 * decode steps one token at a time. The expert products are timed inside the MoE block
 * through model->perf, which also counts the weight bytes of the experts each step used;
 * the rest of a decoded token's bytes are fixed by the architecture (dsv4_bench_fixed_bytes).
 * Token ids are random: in the hash-routed layers they pick the experts, so a repeated id
 * would let the experts sit in the cache and flatter the bandwidth figure. */
#include <math.h>
#include <sys/resource.h>
#include <omp.h>

#include "base/base.h"
#include "infer/bench.h"
#include "infer/state.h"
#include "kernels/linear.h"
#include "model/model.h"

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- the machine ------------------------------------------------------------------------------ */

dsv4_status dsv4_bench_bandwidth(size_t bytes, int reps, double *copy, double *triad, double *read) {
    size_t n = bytes / 3 / sizeof(float);
    n &= ~(size_t)63;
    float *a = dsv4_alloc_aligned(n * sizeof(float), "bandwidth buffer");
    float *b = dsv4_alloc_aligned(n * sizeof(float), "bandwidth buffer");
    float *c = dsv4_alloc_aligned(n * sizeof(float), "bandwidth buffer");
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return DSV4_ENOMEM;
    }
    const dsv4_kernel_set *k = dsv4_kernels();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        a[i] = 1.0f;
        b[i] = 2.0f;
        c[i] = 0.5f;
    }
    double best_copy = 1e30, best_triad = 1e30, best_read = 1e30;
    volatile float sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = dsv4_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) c[i] = a[i];
        double t1 = dsv4_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5f * c[i];
        double t2 = dsv4_now();
        float total = 0;
#pragma omp parallel reduction(+ : total)
        {
            int nth = omp_get_num_threads(), id = omp_get_thread_num();
            size_t lo = n * (size_t)id / (size_t)nth, hi = n * (size_t)(id + 1) / (size_t)nth;
            total += k->dot_f32(a + lo, a + lo, (int)(hi - lo));
        }
        double t3 = dsv4_now();
        sink += total;
        best_copy = fmin(best_copy, t1 - t0);
        best_triad = fmin(best_triad, t2 - t1);
        best_read = fmin(best_read, t3 - t2);
    }
    (void)sink;
    double fb = (double)n * sizeof(float);
    *copy = 2 * fb / best_copy / 1e9;
    *triad = 3 * fb / best_triad / 1e9;
    *read = fb / best_read / 1e9;
    free(a);
    free(b);
    free(c);
    return DSV4_OK;
}

double dsv4_bench_fma_peak(double seconds, double *per_cpu) {
    const dsv4_kernel_set *k = dsv4_kernels();
    /* calibrate on one thread, then run every thread for about `seconds` */
    long iters = 1 << 16;
    double t0 = dsv4_now();
    k->fma_loop(iters);
    double dt = dsv4_now() - t0;
    if (dt > 0) iters = (long)((double)iters * seconds / dt);
    iters = DSV4_MAX(iters, 1 << 16);
    double flops = 0, c0 = dsv4_cpu_now();
    t0 = dsv4_now();
#pragma omp parallel reduction(+ : flops)
    flops += k->fma_loop(iters);
    if (per_cpu) *per_cpu = flops / (dsv4_cpu_now() - c0) / 1e9;
    return flops / (dsv4_now() - t0) / 1e9;
}

/* ---- what a token reads ----------------------------------------------------------------------- */

static double hc_bytes(const dsv4_hc_w *h) { return (double)h->fn_lin.rows * h->fn_lin.cols * sizeof(float); }

/* The attention blocks' weights of all layers (projections, compressors, indexers). */
static double attn_bytes(const dsv4_model *m) {
    const struct dsv4_config *c = &m->cfg;
    double total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const dsv4_attn_w *a = &m->layers[l].attn;
        total += (double)(dsv4_linear_bytes(&a->wq_a) + dsv4_linear_bytes(&a->wq_b) + dsv4_linear_bytes(&a->wkv) +
                          dsv4_linear_bytes(&a->wo_a) + dsv4_linear_bytes(&a->wo_b));
        total += 4.0 * (c->q_lora_rank + c->head_dim + c->n_heads);
        if (a->ratio) total += (double)(dsv4_linear_bytes(&a->comp.wkv) + dsv4_linear_bytes(&a->comp.wgate));
        if (a->has_indexer) {
            const dsv4_indexer_w *ix = &a->indexer;
            total += (double)(dsv4_linear_bytes(&ix->wq_b) + dsv4_linear_bytes(&ix->weights_proj) +
                              dsv4_linear_bytes(&ix->comp.wkv) + dsv4_linear_bytes(&ix->comp.wgate));
        }
    }
    return total;
}

double dsv4_bench_fixed_bytes(const dsv4_model *m) {
    const struct dsv4_config *c = &m->cfg;
    double d = c->dim, total = attn_bytes(m);
    total += d * (m->embed.fmt == DSV4_W_F32 ? 4 : 2); /* one embedding row */
    total += (double)dsv4_linear_bytes(&m->head) + hc_bytes(&m->hc_head) + d * 4;
    for (int l = 0; l < c->n_layers; l++) {
        const dsv4_layer_w *L = &m->layers[l];
        total += hc_bytes(&L->hc_attn) + hc_bytes(&L->hc_ffn) + 2 * d * 4;
        total += (double)dsv4_linear_bytes(&L->moe.gate) + (L->moe.bias ? 4.0 * c->n_routed_experts : 0);
        /* the experts (routed and shared) are counted as they run, in model->perf */
    }
    return total;
}

/* ---- a session at depth ----------------------------------------------------------------------- */

static void random_row(float *v, int n, uint64_t *rs) {
    for (int i = 0; i < n; i++) {
        uint64_t h = next_rand(rs);
        /* a sum of four uniforms: about normal, unit variance */
        v[i] = ((float)((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48)) / 65535.0f - 2.0f) * 1.7320508f;
    }
}

dsv4_status dsv4_bench_fill_session(dsv4_session *s, int depth, uint64_t seed) {
    const struct dsv4_config *c = &s->m->cfg;
    if (depth + 1 > s->max_ctx)
        return dsv4_error(DSV4_EINVAL, "bench: depth %d does not fit a session of %d tokens", depth, s->max_ctx);
    dsv4_session_reset(s);
    uint64_t rs = seed * 0x9e3779b97f4a7c15ull + 1;
    float *row = dsv4_malloc((size_t)DSV4_MAX(c->head_dim, c->index_head_dim) * sizeof(float), "bench row");
    if (!row) return DSV4_ENOMEM;
    for (int l = 0; l < c->n_layers; l++) {
        dsv4_layer_state *ls = &s->layers[l];
        const dsv4_attn_w *a = &s->m->layers[l].attn;
        for (int j = 0; j < DSV4_MIN(depth, ls->win.cap); j++) {
            random_row(row, ls->win.dim, &rs);
            dsv4_rowstore_put(&ls->win, j, row);
        }
        if (a->ratio) {
            ls->comp.n_rows = DSV4_MIN(depth / a->ratio, ls->comp.rows.cap);
            for (int j = 0; j < ls->comp.n_rows; j++) {
                random_row(row, ls->comp.rows.dim, &rs);
                dsv4_rowstore_put(&ls->comp.rows, j, row);
            }
        }
        if (a->has_indexer) {
            ls->idx.n_rows = DSV4_MIN(depth / 4, ls->idx.rows.cap);
            for (int j = 0; j < ls->idx.n_rows; j++) {
                random_row(row, ls->idx.rows.dim, &rs);
                dsv4_rowstore_put(&ls->idx.rows, j, row);
            }
        }
    }
    free(row);
    s->pos = depth;
    return DSV4_OK;
}

/* ---- the run ---------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Read n floats on every thread (the read kernel of dsv4_bench_bandwidth). */
static void read_burst(const float *a, size_t n) {
    const dsv4_kernel_set *k = dsv4_kernels();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
        int nth = omp_get_num_threads(), id = omp_get_thread_num();
        size_t lo = n * (size_t)id / (size_t)nth, hi = n * (size_t)(id + 1) / (size_t)nth;
        total += k->dot_f32(a + lo, a + lo, (int)(hi - lo));
    }
    volatile float sink = total;
    (void)sink;
}

/* Read one byte of every page of every tensor (after asking the OS to read ahead). */
static double touch_weights(const dsv4_model *m) {
    double t0 = dsv4_now();
    int n = dsv4_st_count(m->st);
    for (int i = 0; i < n; i++) dsv4_st_prefetch(dsv4_st_at(m->st, i));
    unsigned sum = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        const dsv4_tensor *t = dsv4_st_at(m->st, i);
        const volatile uint8_t *p = t->data;
        for (size_t o = 0; o < t->nbytes; o += 4096) sum += p[o];
    }
    (void)sum;
    return dsv4_now() - t0;
}

static void progress(const dsv4_bench_opts *o, const char *what, double f) {
    if (o->progress) o->progress(o->progress_user, what, f);
}

dsv4_status dsv4_bench_run(dsv4_model *m, const dsv4_bench_opts *o, dsv4_bench_result *r) {
    memset(r, 0, sizeof *r);
    const struct dsv4_config *c = &m->cfg;
    r->kernels = dsv4_kernels()->name;
    r->threads = omp_get_max_threads();
    uint64_t rs = o->seed * 0x9e3779b97f4a7c15ull + 0x1234567;
    int P = DSV4_MAX(o->prefill, 0), D = DSV4_MAX(o->decode, 1), warm = 2;
    int V = c->vocab_size;
    dsv4_status rc = DSV4_OK;
    dsv4_session *s = NULL;
    dsv4_perf perf = {0};
    float *burst_buf = NULL;
    float *logits = dsv4_malloc((size_t)V * sizeof(float), "bench logits");
    int32_t *ids = dsv4_malloc((size_t)(P + D + warm + 1) * sizeof(int32_t), "bench ids");
    if (!logits || !ids) {
        free(logits);
        free(ids);
        return DSV4_ENOMEM;
    }
    for (int i = 0; i < P + D + warm + 1; i++) ids[i] = (int32_t)(next_rand(&rs) % (uint64_t)V);

    progress(o, "paging weights in", 0.0);
    r->touch_s = touch_weights(m);
    progress(o, "memory bandwidth", 0.1);
    rc = dsv4_bench_bandwidth(o->bw_bytes ? o->bw_bytes : (size_t)3 << 29, 5, &r->bw_copy_gb_s, &r->bw_triad_gb_s, &r->bw_read_gb_s);
    if (rc) goto out;
    progress(o, "FMA peak", 0.2);
    r->fma_peak_gflops = dsv4_bench_fma_peak(0.3, &r->fma_peak_gflops_cpu);

    m->perf = &perf;
    int depth = o->depth > 0 ? o->depth : P;
    if ((rc = dsv4_session_new(m, DSV4_MAX(depth, P) + D + warm + 2, &s))) goto out;

    /* prefill: one call, or chunks of o->chunk tokens */
    if (P > 0) {
        progress(o, "prefill", 0.3);
        uint64_t f0 = dsv4_matmul_flops();
        double t0 = dsv4_now(), c0 = dsv4_cpu_now();
        int C = o->chunk > 0 ? o->chunk : P;
        for (int i = 0; i < P && !rc; i += C) {
            rc = dsv4_forward(s, ids + i, DSV4_MIN(C, P - i), DSV4_LOGITS_LAST, logits);
            if (P > C) progress(o, "prefill", 0.3 + 0.3 * DSV4_MIN(i + C, P) / P);
        }
        if (rc) goto out;
        r->prefill_s = dsv4_now() - t0;
        double prefill_cpu = dsv4_cpu_now() - c0;
        /* the peak again, right after: the larger of the two is the (conservative) reference */
        double again_cpu;
        r->fma_peak_gflops = fmax(r->fma_peak_gflops, dsv4_bench_fma_peak(0.3, &again_cpu));
        r->fma_peak_gflops_cpu = fmax(r->fma_peak_gflops_cpu, again_cpu);
        r->prefill_gflops_cpu = (double)(dsv4_matmul_flops() - f0) / prefill_cpu / 1e9;
        r->expert_gflops_cpu = perf.expert_cpu_s > 0 ? perf.expert_flops / perf.expert_cpu_s / 1e9 : 0;
        r->prefill_tokens = P;
        r->prefill_tok_s = P / r->prefill_s;
        r->prefill_gflops = (double)(dsv4_matmul_flops() - f0) / r->prefill_s / 1e9;
        r->expert_gflops = perf.expert_s > 0 ? perf.expert_flops / perf.expert_s / 1e9 : 0;
        r->expert_share = perf.expert_s / r->prefill_s;
    }

    /* decode: after the prefill, or at a synthetic depth */
    if (o->depth > 0) {
        progress(o, "filling the session", 0.6);
        if ((rc = dsv4_bench_fill_session(s, o->depth, o->seed))) goto out;
        r->depth_synthetic = true;
    }
    r->depth = s->pos;
    progress(o, "decode", 0.7);
    for (int i = 0; i < warm; i++)
        if ((rc = dsv4_forward(s, ids + P + i, 1, DSV4_LOGITS_LAST, logits))) goto out;
    /* Each timed step is followed by a burst of reading (all threads) through a buffer far
     * larger than the caches: on a shared machine the bandwidth available changes from one
     * second to the next, so each step is compared with the bandwidth measured right after it
     * and the ratio reported is the median over the steps. */
    size_t burst = (o->bw_bytes ? o->bw_bytes : (size_t)3 << 29) / 3 / sizeof(float) & ~(size_t)63;
    burst_buf = dsv4_alloc_aligned(burst * sizeof(float), "bandwidth buffer");
    double *ratio = dsv4_malloc((size_t)D * 5 * sizeof(double), "bench");
    if (!burst_buf || !ratio) {
        free(ratio);
        rc = DSV4_ENOMEM;
        goto out;
    }
    read_burst(burst_buf, burst); /* first touch */
    double fixed = dsv4_bench_fixed_bytes(m), steps_s = 0, expert_bytes = 0, head_s = 0, expert_s = 0, attn_s = 0;
    /* per step: ratio, bandwidth, and the same per CPU-second (step, burst, ratio) */
    double *bw = ratio + D, *step_cpu = ratio + 2 * D, *bw_cpu = ratio + 3 * D, *ratio_cpu = ratio + 4 * D;
    for (int i = 0; i < D && !rc; i++) {
        memset(&perf, 0, sizeof perf);
        double t0 = dsv4_now(), c0 = dsv4_cpu_now();
        rc = dsv4_forward(s, ids + P + warm + i, 1, DSV4_LOGITS_LAST, logits);
        double t1 = dsv4_now(), c1 = dsv4_cpu_now();
        read_burst(burst_buf, burst);
        double t2 = dsv4_now(), c2 = dsv4_cpu_now();
        double bytes = fixed + perf.expert_bytes, burst_bytes = (double)burst * sizeof(float);
        steps_s += t1 - t0;
        expert_bytes += perf.expert_bytes;
        head_s += perf.head_s;
        attn_s += perf.attn_s;
        expert_s += perf.expert_s;
        bw[i] = burst_bytes / (t2 - t1) / 1e9;
        ratio[i] = bytes / (t1 - t0) / 1e9 / bw[i];
        /* per CPU-second (all threads together) */
        step_cpu[i] = bytes / (c1 - c0) / 1e9;
        bw_cpu[i] = burst_bytes / (c2 - c1) / 1e9;
        ratio_cpu[i] = step_cpu[i] / bw_cpu[i];
        progress(o, "decode", 0.7 + 0.3 * (i + 1) / D);
    }
    if (!rc) {
        r->decode_s = steps_s;
        r->decode_tokens = D;
        r->decode_tok_s = D / steps_s;
        r->decode_expert_bytes_per_token = expert_bytes / D;
        r->decode_bytes_per_token = fixed + r->decode_expert_bytes_per_token;
        r->decode_head_gb_s = head_s > 0 ? (double)dsv4_linear_bytes(&m->head) * D / head_s / 1e9 : 0;
        r->decode_expert_gb_s = expert_s > 0 ? expert_bytes / expert_s / 1e9 : 0;
        r->decode_other_share = steps_s > 0 ? (steps_s - head_s - expert_s) / steps_s : 0;
        r->decode_attn_share = steps_s > 0 ? attn_s / steps_s : 0;
        r->decode_attn_gb_s = attn_s > 0 ? attn_bytes(m) * D / attn_s / 1e9 : 0;
        r->bandwidth_gb_s = median(bw, D);
        r->decode_bw_ratio = median(ratio, D);
        double start = fmax(r->bw_copy_gb_s, fmax(r->bw_triad_gb_s, r->bw_read_gb_s));
        r->decode_bw_ratio_start = r->decode_bytes_per_token * r->decode_tok_s / (start * 1e9);
        r->decode_gb_s_cpu = median(step_cpu, D);
        r->bw_read_gb_s_cpu = median(bw_cpu, D);
        r->decode_bw_ratio_cpu = median(ratio_cpu, D);
    }
    free(ratio);
    if (rc) goto out;
    r->kv_bytes = (double)dsv4_session_bytes(s);
    r->kv_bytes_per_token = r->kv_bytes / dsv4_session_pos(s);
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru)) r->max_rss_bytes = (double)ru.ru_maxrss * 1024.0;
    r->prefill_peak_ratio = r->prefill_gflops / r->fma_peak_gflops;
    r->expert_peak_ratio = r->expert_gflops / r->fma_peak_gflops;
    r->prefill_peak_ratio_cpu = r->prefill_gflops_cpu / r->fma_peak_gflops_cpu;
    r->expert_peak_ratio_cpu = r->expert_gflops_cpu / r->fma_peak_gflops_cpu;
    progress(o, "done", 1.0);
out:
    m->perf = NULL;
    free(burst_buf);
    dsv4_session_free(s);
    free(logits);
    free(ids);
    return rc;
}
