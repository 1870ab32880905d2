/* linear.c: the portable matmul for every weight format, and the dispatcher.
 *
 * The portable kernel is the definition the SIMD kernels are tested against: dequantise one
 * weight row to fp32 (exact), then dot it with each token's activations using eight partial
 * sums combined in a fixed order.
 *
 * The dispatcher runs one or several products (jobs) as one parallel step: it checks and
 * packs each distinct input once for the active kernel set, cuts every job's output rows into
 * chunks (multiples of 16 rows, many per thread so that a thread the OS pauses holds back
 * little work) and hands the chunks out dynamically. Which thread computes a chunk never
 * changes how its outputs are summed. Small steps run on the calling thread: a fork/join
 * costs more than a few hundred microseconds of work on a busy machine. Packed inputs,
 * scratch and the job table live in per-thread buffers that only grow, so the decode loop
 * does not allocate once warm. */
#include <math.h>
#include <omp.h>

#include "base/base.h"
#include "kernels/linear.h"
#include "numeric/numeric.h"

const char *dsv4_wfmt_name(dsv4_wfmt f) {
    switch (f) {
    case DSV4_W_F32: return "F32";
    case DSV4_W_BF16: return "BF16";
    case DSV4_W_FP8: return "FP8";
    case DSV4_W_FP4: return "FP4";
    }
    return "?";
}

size_t dsv4_linear_bytes(const dsv4_linear *L) {
    size_t n = (size_t)L->rows * (size_t)L->cols;
    switch (L->fmt) {
    case DSV4_W_F32: return 4 * n;
    case DSV4_W_BF16: return 2 * n;
    case DSV4_W_FP8: {
        size_t sr = (size_t)(L->rows + L->br - 1) / (size_t)L->br;
        return n + sr * (size_t)L->sc * (L->scale_f32 ? 4 : 1);
    }
    case DSV4_W_FP4: return n / 2 + (size_t)L->rows * (size_t)L->sc * (L->scale_f32 ? 4 : 1);
    }
    return 0;
}

dsv4_linear dsv4_linear_rows(const dsv4_linear *L, int r, int n) {
    dsv4_linear v = *L;
    v.rows = n;
    v.r0 = L->r0 + r;
    switch (L->fmt) {
    case DSV4_W_F32: v.w = (const float *)L->w + (size_t)r * (size_t)L->cols; break;
    case DSV4_W_BF16: v.w = (const uint16_t *)L->w + (size_t)r * (size_t)L->cols; break;
    case DSV4_W_FP8: v.w = (const uint8_t *)L->w + (size_t)r * (size_t)L->cols; break;
    case DSV4_W_FP4:
        v.w = (const uint8_t *)L->w + (size_t)r * (size_t)(L->cols / 2);
        /* FP4 scales are per row: move them with the rows, keep r0 for FP8 only */
        if (L->scale_e8m0) v.scale_e8m0 = L->scale_e8m0 + (size_t)r * (size_t)L->sc;
        if (L->scale_f32) v.scale_f32 = L->scale_f32 + (size_t)r * (size_t)L->sc;
        v.r0 = 0;
        break;
    }
    return v;
}

float dsv4_linear_scale(const dsv4_linear *L, int r, int c) {
    size_t idx;
    if (L->fmt == DSV4_W_FP4) idx = (size_t)r * (size_t)L->sc + (size_t)(c / 32);
    else idx = (size_t)((L->r0 + r) / L->br) * (size_t)L->sc + (size_t)(c / L->bc);
    return L->scale_f32 ? L->scale_f32[idx] : dsv4_e8m0_to_f32(L->scale_e8m0[idx]);
}

void dsv4_linear_dequant_row(const dsv4_linear *L, int r, float *out) {
    int cols = L->cols;
    switch (L->fmt) {
    case DSV4_W_F32: memcpy(out, (const float *)L->w + (size_t)r * cols, (size_t)cols * 4); break;
    case DSV4_W_BF16: {
        const uint16_t *w = (const uint16_t *)L->w + (size_t)r * cols;
        for (int c = 0; c < cols; c++) out[c] = dsv4_bf16_to_f32(w[c]);
        break;
    }
    case DSV4_W_FP8: {
        const uint8_t *w = (const uint8_t *)L->w + (size_t)r * cols;
        for (int c0 = 0; c0 < cols; c0 += L->bc) {
            float s = dsv4_linear_scale(L, r, c0);
            int c1 = DSV4_MIN(cols, c0 + L->bc);
            for (int c = c0; c < c1; c++) out[c] = dsv4_e4m3_to_f32(w[c]) * s;
        }
        break;
    }
    case DSV4_W_FP4: {
        const uint8_t *w = (const uint8_t *)L->w + (size_t)r * (cols / 2);
        for (int c0 = 0; c0 < cols; c0 += 32) {
            float s = dsv4_linear_scale(L, r, c0);
            for (int c = c0; c < c0 + 32; c += 2) {
                uint8_t b = w[c / 2];
                out[c] = dsv4_e2m1_to_f32(b & 15) * s;
                out[c + 1] = dsv4_e2m1_to_f32(b >> 4) * s;
            }
        }
        break;
    }
    }
}

/* The definition rounds every product, then every sum: C11 (GCC's -std=c11) never fuses
 * s += a * b into one multiply-add, but clang does within an expression unless told not to.
 * The AVX2 and NEON sets reproduce this order bit for bit on CPUs whose base ISA has FMA. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
static float dot_f32_portable(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[i & 7] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void gemm_portable(const dsv4_linear *L, int r_begin, int r_end, const dsv4_gemm_x *gx, float *y, int ldy,
                          float *scratch) {
    int cols = L->cols;
    for (int r = r_begin; r < r_end; r++) {
        dsv4_linear_dequant_row(L, r, scratch);
        for (int t = 0; t < gx->n; t++) y[(size_t)t * ldy + r] = dot_f32_portable(scratch, gx->x + (size_t)t * cols, cols);
    }
}

static void axpy_f32_portable(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* Sixteen independent chains of fused multiply-adds: as fast as scalar code goes. */
static double fma_loop_portable(long iters) {
    float a[16], b = 0.999999f, c = 1e-7f;
    for (int j = 0; j < 16; j++) a[j] = (float)j;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 16; j++) a[j] = fmaf(a[j], b, c);
    volatile float sink = a[0] + a[15];
    (void)sink;
    return 2.0 * 16.0 * (double)iters;
}

const dsv4_kernel_set dsv4_kernels_portable = {
    .name = "portable",
    .gemm = {gemm_portable, gemm_portable, gemm_portable, gemm_portable},
    .dot_f32 = dot_f32_portable,
    .axpy_f32 = axpy_f32_portable,
    .fma_loop = fma_loop_portable,
};

bool dsv4_bf16_exact(const float *x, size_t n) {
    const uint32_t *u = (const uint32_t *)x;
    uint32_t low = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t e = (u[i] >> 23) & 0xff;
        low |= u[i] & 0xffff;
        /* zero, or an exponent that is neither subnormal nor Inf/NaN */
        bad |= (uint32_t)((u[i] & 0x7fffffff) != 0 && (e == 0 || e == 0xff));
    }
    return !low && !bad;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static const dsv4_kernel_set *active;

/* The SIMD sets of x86-64 (linear_x86.c picks what the CPU runs) and of AArch64
 * (linear_arm.c); other targets are portable. */
#if defined(__x86_64__)
const dsv4_kernel_set *dsv4_kernels_x86_best(void);
int dsv4_kernels_x86_list(const dsv4_kernel_set **out, int max);
#else
static const dsv4_kernel_set *dsv4_kernels_x86_best(void) { return NULL; }
static int dsv4_kernels_x86_list(const dsv4_kernel_set **out, int max) { return 0; }
#endif
#if defined(__aarch64__)
const dsv4_kernel_set *dsv4_kernels_arm_best(void);
int dsv4_kernels_arm_list(const dsv4_kernel_set **out, int max);
#else
static const dsv4_kernel_set *dsv4_kernels_arm_best(void) { return NULL; }
static int dsv4_kernels_arm_list(const dsv4_kernel_set **out, int max) { return 0; }
#endif

const dsv4_kernel_set *dsv4_kernels_best(void) {
    const dsv4_kernel_set *k = dsv4_kernels_x86_best();
    if (!k) k = dsv4_kernels_arm_best();
    return k ? k : &dsv4_kernels_portable;
}

int dsv4_kernels_available(const dsv4_kernel_set **out, int max) {
    int n = 0;
    if (n < max) out[n++] = &dsv4_kernels_portable;
    n += dsv4_kernels_x86_list(out + n, max - n);
    return n + dsv4_kernels_arm_list(out + n, max - n);
}

const dsv4_kernel_set *dsv4_kernels(void) {
    const dsv4_kernel_set *k = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (!k) {
        /* DSV4_KERNELS names a set (portable, avx2, avx512, neon, neon-bf16); unknown or absent:
         * the best */
        const char *env = getenv("DSV4_KERNELS");
        const dsv4_kernel_set *sets[8];
        int n = dsv4_kernels_available(sets, 8);
        k = dsv4_kernels_best();
        for (int i = 0; env && i < n; i++)
            if (!strcmp(env, sets[i]->name)) k = sets[i];
        __atomic_store_n(&active, k, __ATOMIC_RELEASE);
    }
    return k;
}

void dsv4_kernels_use(const dsv4_kernel_set *k) { __atomic_store_n(&active, k, __ATOMIC_RELEASE); }

static uint64_t flop_count;
uint64_t dsv4_matmul_flops(void) { return __atomic_load_n(&flop_count, __ATOMIC_RELAXED); }

/* Per-thread grow-only buffers, so the hot path does not allocate once warm: kernel scratch
 * (every thread) and, on the calling thread, the packed activations and the job table. */
typedef struct grow {
    void *p;
    size_t cap;
} grow;
static _Thread_local grow tl_scratch, tl_pack, tl_plan;

static void *grow_to(grow *g, size_t bytes) {
    if (bytes > g->cap) {
        free(g->p);
        g->p = dsv4_alloc_aligned(bytes, "matmul buffers");
        g->cap = g->p ? bytes : 0;
    }
    return g->p;
}

/* Free this thread's (and its OpenMP team's) buffers: a thread that ends (the server's
 * engine thread) would otherwise leak them. */
void dsv4_matmul_release_scratch(void) {
#pragma omp parallel
    {
        grow *gs[3] = {&tl_scratch, &tl_pack, &tl_plan};
        for (int i = 0; i < 3; i++) {
            free(gs[i]->p);
            gs[i]->p = NULL;
            gs[i]->cap = 0;
        }
    }
}

/* One job as planned: its activations as the kernels see them and how its rows are cut. */
typedef struct plan {
    dsv4_gemm_x gx;
    int share;       /* an earlier job with the same input, whose packed copy this one uses */
    size_t pack_off, pack_bytes;
    int chunk, n_chunks, first_chunk;
} plan;

void dsv4_matmul(const dsv4_linear *L, const float *x, int n, float *y) { dsv4_matmul_ld(L, x, n, y, L->rows); }

void dsv4_matmul_ld(const dsv4_linear *L, const float *x, int n, float *y, int ldy) {
    dsv4_matmul_job j = {L, x, n, y, ldy};
    dsv4_matmul_jobs(&j, 1);
}

/* The job owning chunk c (chunks are numbered job after job). */
static int job_of_chunk(const plan *pl, int n_jobs, int c) {
    int lo = 0, hi = n_jobs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (pl[mid].first_chunk <= c) lo = mid;
        else hi = mid - 1;
    }
    while (pl[lo].n_chunks == 0) lo--; /* empty jobs share their successor's first_chunk */
    return lo;
}

void dsv4_matmul_jobs(const dsv4_matmul_job *jobs, int n_jobs) {
    const dsv4_kernel_set *k = dsv4_kernels();
    plan *pl = grow_to(&tl_plan, (size_t)DSV4_MAX(n_jobs, 1) * sizeof(plan));
    if (!pl) return; /* out of memory: there is no error channel here, and no result to give */
    int nth = omp_get_max_threads();

    /* activations: checked and packed once per distinct input (w1 and w3 share theirs) */
    size_t pack_total = 0;
    double work = 0;
    for (int i = 0; i < n_jobs; i++) {
        const dsv4_matmul_job *j = &jobs[i];
        plan *p = &pl[i];
        memset(p, 0, sizeof *p);
        p->gx.x = j->x;
        p->gx.n = j->n;
        p->share = -1;
        if (j->n <= 0 || j->L->rows <= 0) continue;
        work += (double)j->L->rows * j->L->cols * j->n;
        __atomic_fetch_add(&flop_count, (uint64_t)2 * (uint64_t)j->L->rows * (uint64_t)j->L->cols * (uint64_t)j->n,
                           __ATOMIC_RELAXED);
        for (int q = 0; q < i && p->share < 0; q++)
            if (jobs[q].x == j->x && jobs[q].n == j->n && jobs[q].L->fmt == j->L->fmt && jobs[q].L->cols == j->L->cols &&
                jobs[q].L->rows == j->L->rows && jobs[q].L->bc == j->L->bc && pl[q].share < 0)
                p->share = q;
        if (p->share >= 0) continue;
        p->gx.bf16 = k->wants_bf16 && j->L->fmt != DSV4_W_F32 && dsv4_bf16_exact(j->x, (size_t)j->n * j->L->cols);
        p->pack_bytes = k->x_bytes ? k->x_bytes(j->L, j->n, p->gx.bf16) : 0;
        p->pack_off = pack_total;
        pack_total += (p->pack_bytes + 63) & ~(size_t)63;
    }
    uint8_t *pack = pack_total ? grow_to(&tl_pack, pack_total) : NULL;
    if (pack_total && !pack) return;
    for (int i = 0; i < n_jobs; i++) {
        plan *p = &pl[i];
        if (p->share >= 0) {
            p->gx = pl[p->share].gx;
            continue;
        }
        if (!p->pack_bytes) continue;
        const dsv4_matmul_job *j = &jobs[i];
        void *buf = pack + p->pack_off;
        p->gx.p = buf;
        int n = j->n, blocks = (n + 15) / 16;
        if ((size_t)n * j->L->cols < 65536 || nth == 1) {
            k->x_pack(j->L, j->x, n, p->gx.bf16, 0, n, buf);
        } else {
#pragma omp parallel for schedule(static)
            for (int b = 0; b < blocks; b++) k->x_pack(j->L, j->x, n, p->gx.bf16, 16 * b, DSV4_MIN(n, 16 * b + 16), buf);
        }
    }

    /* rows: chunks sized so that every thread gets many (a thread the OS pauses holds back
     * little work), multiples of 16 rows */
    double target = work / ((double)nth * 32.0);
    int n_chunks = 0;
    size_t scratch_floats = 1024;
    for (int i = 0; i < n_jobs; i++) {
        const dsv4_matmul_job *j = &jobs[i];
        plan *p = &pl[i];
        p->first_chunk = n_chunks;
        if (j->n <= 0 || j->L->rows <= 0) continue;
        int chunk = (int)DSV4_MIN(target / ((double)j->L->cols * j->n), 1e9);
        chunk = DSV4_MAX(16, (chunk + 15) & ~15);
        p->chunk = DSV4_MIN(chunk, (j->L->rows + 15) & ~15);
        p->n_chunks = (j->L->rows + p->chunk - 1) / p->chunk;
        n_chunks += p->n_chunks;
        scratch_floats = DSV4_MAX(scratch_floats, (size_t)64 * j->L->cols + 1024);
    }
    if (n_chunks == 0) return;
    /* below about 2M multiply-adds (a few hundred microseconds on one core) a fork/join, which
     * on a busy machine can cost a scheduler time slice, is not worth it */
    if (nth == 1 || n_chunks == 1 || work < 2097152.0) {
        float *s = grow_to(&tl_scratch, scratch_floats * sizeof(float));
        for (int i = 0; i < n_jobs && s; i++)
            if (pl[i].n_chunks) k->gemm[jobs[i].L->fmt](jobs[i].L, 0, jobs[i].L->rows, &pl[i].gx, jobs[i].y, jobs[i].ldy, s);
        return;
    }
#pragma omp parallel
    {
        float *s = grow_to(&tl_scratch, scratch_floats * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < n_chunks; c++) {
            if (!s) continue;
            int i = job_of_chunk(pl, n_jobs, c);
            const dsv4_matmul_job *j = &jobs[i];
            int r0 = (c - pl[i].first_chunk) * pl[i].chunk, r1 = DSV4_MIN(j->L->rows, r0 + pl[i].chunk);
            k->gemm[j->L->fmt](j->L, r0, r1, &pl[i].gx, j->y, j->ldy, s);
        }
    }
}

static bool wants_quant(const dsv4_linear *L, dsv4_numerics mode) {
    return mode == DSV4_NUMERICS_DEFAULT && L->act_quant && (L->fmt == DSV4_W_FP8 || L->fmt == DSV4_W_FP4);
}

/* x rounded to FP8 blocks of L's act_block into xq. */
static void act_quant(const dsv4_linear *L, const float *x, int n, float *xq) {
    size_t cols = (size_t)L->cols;
    memcpy(xq, x, (size_t)n * cols * sizeof(float));
#pragma omp parallel for schedule(static) if (n > 4)
    for (int t = 0; t < n; t++) dsv4_fp8_fake_quant(xq + (size_t)t * cols, (int)cols, L->act_block ? L->act_block : 128);
}

void dsv4_linear_forward(const dsv4_linear *L, const float *x, int n, float *y, dsv4_numerics mode,
                         float *xq) {
    if (wants_quant(L, mode)) {
        act_quant(L, x, n, xq);
        dsv4_matmul(L, xq, n, y);
    } else {
        dsv4_matmul(L, x, n, y);
    }
}

void dsv4_linear_forward2(const dsv4_linear *A, const dsv4_linear *B, const float *x, int n, float *ya, float *yb,
                          dsv4_numerics mode, float *xq) {
    bool qa = wants_quant(A, mode), qb = wants_quant(B, mode);
    int ba = A->act_block ? A->act_block : 128, bb = B->act_block ? B->act_block : 128;
    if (A->cols != B->cols || qa != qb || (qa && ba != bb)) { /* inputs differ: one after the other */
        dsv4_linear_forward(A, x, n, ya, mode, xq);
        dsv4_linear_forward(B, x, n, yb, mode, xq);
        return;
    }
    if (qa) act_quant(A, x, n, xq);
    const float *in = qa ? xq : x;
    dsv4_matmul_job jobs[2] = {{A, in, n, ya, A->rows}, {B, in, n, yb, B->rows}};
    dsv4_matmul_jobs(jobs, 2);
}
