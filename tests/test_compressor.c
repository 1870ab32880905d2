/* test_compressor.c: the KV compressor (src/model/compressor.c) on small hand-made states.
 *
 * Three levels:
 *  - dsv4_compressor_pool on states worked by hand: plain softmax-gated pooling, the overlap
 *    window with the previous window's A-halves and the current window's B-halves, and the
 *    w = 0 case where the previous-window slots are empty (a = 0, z = -inf);
 *  - dsv4_compressor_finish: RMSNorm, RoPE on the LAST rope dims at the window's first
 *    position, the Hadamard rotation (indexer) and the storage rounding;
 *  - dsv4_compressor_forward over a session made by the library (so the -inf initial state is
 *    the library's own), against a from-scratch double-precision reimplementation of
 *    v4-model.md 2.4.1 / 3.3, and fed all at once, one token at a time and in uneven chunks,
 *    which must give identical rows and identical pending state. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/state.h"
#include "model/forward.h"
#include "numeric/numeric.h"

static uint64_t rng = 0xda942042e4dd58b5ull;
static double uniform(void) { /* in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 2.0 * (double)(rng >> 11) / 9007199254740992.0 - 1.0;
}

/* ---- pooling by hand ---- */

static void test_pool_by_hand(void) {
    /* Non-overlapping, m = 4, one channel: z = (0, 0, 0, ln 5) gives weights (1, 1, 1, 5) / 8,
     * so a = (8, 16, 24, 32) pools to 1 + 2 + 3 + 20 = 26. */
    dsv4_compressor_w w = {.ratio = 4, .dc = 1, .overlap = false};
    float kv[4] = {8, 16, 24, 32}, score[4] = {0, 0, 0, logf(5)}, out[2];
    dsv4_compressor_pool(&w, kv, score, out);
    CHECK_NEAR(out[0], 26.0, 1e-5, "plain pooling (8,16,24,32) with weights (1,1,1,5)/8");

    /* Overlap, m = 4, dc = 1 (rows of width 2: [A-half, B-half]).
     * w = 0: rows 0-3 (previous window) are empty: a = 0, z = -inf. Rows 4-7 hold the current
     * window; its B-halves a = (2, 4, 6, 8) with z = (0, 0, ln 2, ln 4) -> weights (1,1,2,4)/8
     * -> 0.25 + 0.5 + 1.5 + 4 = 6.25. Its A-halves (a = 1000, z = 50) belong to the next entry
     * and must not take part. */
    dsv4_compressor_w o = {.ratio = 4, .dc = 1, .overlap = true};
    float okv[16], osc[16];
    for (int r = 0; r < 4; r++) okv[2 * r] = okv[2 * r + 1] = 0, osc[2 * r] = osc[2 * r + 1] = -INFINITY;
    static const float bkv[4] = {2, 4, 6, 8}, bz[4] = {0, 0, 0.69314718f, 1.38629436f};
    for (int r = 0; r < 4; r++) {
        okv[2 * (4 + r)] = 1000, osc[2 * (4 + r)] = 50;
        okv[2 * (4 + r) + 1] = bkv[r], osc[2 * (4 + r) + 1] = bz[r];
    }
    dsv4_compressor_pool(&o, okv, osc, out);
    CHECK_NEAR(out[0], 6.25, 1e-5, "overlap w = 0: only the current window's B-halves");

    /* w >= 1: previous window's A-halves a = 10, z = 0 (weight 1 each), current window's
     * B-halves a = 20, z = ln 3 (weight 3 each): (4*10 + 12*20) / 16 = 17.5. The previous
     * window's B-halves (a = -500, z = 40) were used by the entry before and must not be. */
    for (int r = 0; r < 4; r++) {
        okv[2 * r] = 10, osc[2 * r] = 0;
        okv[2 * r + 1] = -500, osc[2 * r + 1] = 40;
        okv[2 * (4 + r)] = 1000, osc[2 * (4 + r)] = 50;
        okv[2 * (4 + r) + 1] = 20, osc[2 * (4 + r) + 1] = logf(3);
    }
    dsv4_compressor_pool(&o, okv, osc, out);
    CHECK_NEAR(out[0], 17.5, 1e-4, "overlap w >= 1: A-halves of the previous window, B-halves of the current");

    /* channels are independent (element-wise gating): dc = 2, channel 1 sees different z */
    dsv4_compressor_w w2 = {.ratio = 2, .dc = 2, .overlap = false};
    float kv2[4] = {1, 1, 3, 5}, sc2[4] = {0, 0, 0, logf(3)};
    dsv4_compressor_pool(&w2, kv2, sc2, out);
    CHECK_NEAR(out[0], 2.0, 1e-6, "channel 0: mean of 1 and 3");
    CHECK_NEAR(out[1], 4.0, 1e-6, "channel 1: (1*1 + 3*5) / 4");
}

/* ---- a fake one-layer model around one compressor ---- */

typedef struct {
    struct dsv4_model m;
    dsv4_layer_w layer;
    dsv4_compressor_w w;
    dsv4_rope rope;
    float ape[128 * 32], norm[64];
} fake;

static void fake_init(fake *f, int ratio, int dc, int rd) {
    memset(f, 0, sizeof *f);
    f->w.ratio = ratio;
    f->w.dc = dc;
    f->w.overlap = ratio == 4;
    int width = (f->w.overlap ? 2 : 1) * dc;
    for (int i = 0; i < ratio * width; i++) f->ape[i] = (float)(0.5 * uniform());
    for (int i = 0; i < dc; i++) f->norm[i] = (float)(1 + 0.3 * uniform());
    f->w.ape = f->ape;
    f->w.norm = f->norm;
    dsv4_rope_init(&f->rope, rd, 10000.0f, 0, 1.0f, 32.0f, 1.0f);
    f->m.cfg.n_layers = 1;
    f->m.cfg.max_position_embeddings = 4096;
    f->m.cfg.window_size = 8;
    f->m.cfg.head_dim = dc;
    f->m.cfg.rope_head_dim = rd;
    f->m.cfg.norm_eps = 1e-6f;
    f->m.numerics = DSV4_NUMERICS_EXACT; /* rows stored as fp32: no storage rounding */
    f->layer.attn.ratio = ratio;
    f->layer.attn.comp = f->w;
    f->m.layers = &f->layer;
}

/* Feed tokens [0, n) of (a, z) to session s in chunks of the given sizes (cycled). */
static void feed(fake *f, dsv4_session *s, const float *a, const float *z, int n, const int *chunks, int n_chunks) {
    int width = (f->w.overlap ? 2 : 1) * f->w.dc;
    float tmp[256];
    for (int p = 0, c = 0; p < n; c++) {
        int len = chunks[c % n_chunks];
        if (len > n - p) len = n - p;
        dsv4_fwd_seg seg = {.s = s, .row0 = 0, .n = len, .pos0 = p};
        dsv4_fwd_batch b = {.n_rows = len, .n_segs = 1, .segs = &seg, .state = 0};
        dsv4_compressor_forward(&f->m, &f->w, &f->rope, &b, false, a + (size_t)p * width, z + (size_t)p * width, tmp);
        p += len;
    }
}

/* The spec, from scratch, in double: entry w of a stream of tokens (a_p, z_p + ape[p mod m]). */
static void ref_entry(const fake *f, const float *a, const float *z, int wi, double *out) {
    int m = f->w.ratio, dc = f->w.dc, rd = f->rope.rd;
    int width = (f->w.overlap ? 2 : 1) * dc;
    double e[256];
    for (int c = 0; c < dc; c++) {
        /* the slots pooled into channel c: (score z + ape, value a) */
        double zs[256], as[256];
        int ns = 0;
        if (f->w.overlap) {
            for (int i = 0; i < m && wi > 0; i++) { /* A-halves of window w-1 (none for w = 0) */
                int p = (wi - 1) * m + i;
                zs[ns] = (double)z[p * width + c] + f->ape[i * width + c];
                as[ns++] = a[p * width + c];
            }
            for (int i = 0; i < m; i++) { /* B-halves of window w */
                int p = wi * m + i;
                zs[ns] = (double)z[p * width + dc + c] + f->ape[i * width + dc + c];
                as[ns++] = a[p * width + dc + c];
            }
        } else {
            for (int i = 0; i < m; i++) { /* the m tokens of window w */
                int p = wi * m + i;
                zs[ns] = (double)z[p * width + c] + f->ape[i * width + c];
                as[ns++] = a[p * width + c];
            }
        }
        double mx = -INFINITY, sum = 0, acc = 0;
        for (int i = 0; i < ns; i++) mx = fmax(mx, zs[i]);
        for (int i = 0; i < ns; i++) sum += exp(zs[i] - mx), acc += exp(zs[i] - mx) * as[i];
        e[c] = acc / sum;
    }
    double ss = 0;
    for (int c = 0; c < dc; c++) ss += e[c] * e[c];
    double r = 1 / sqrt(ss / dc + 1e-6);
    for (int c = 0; c < dc; c++) out[c] = e[c] * r * f->norm[c];
    /* RoPE on the last rd dims, interleaved pairs, at the window's first position w*m */
    int t = wi * m;
    for (int i = 0; i < rd / 2; i++) {
        double ang = t * pow(10000.0, -2.0 * i / rd);
        double x0 = out[dc - rd + 2 * i], x1 = out[dc - rd + 2 * i + 1];
        out[dc - rd + 2 * i] = x0 * cos(ang) - x1 * sin(ang);
        out[dc - rd + 2 * i + 1] = x0 * sin(ang) + x1 * cos(ang);
    }
}

static bool same_state(const dsv4_comp_state *x, const dsv4_comp_state *y, size_t n_floats) {
    if (x->n_rows != y->n_rows) return false;
    if (memcmp(x->kv, y->kv, n_floats * sizeof(float)) || memcmp(x->score, y->score, n_floats * sizeof(float)))
        return false;
    return !memcmp(x->rows.data, y->rows.data, (size_t)x->n_rows * x->rows.row_bytes);
}

static void check_stream(int ratio, int dc, int rd, int n_tokens) {
    static fake f;
    fake_init(&f, ratio, dc, rd);
    int width = (f.w.overlap ? 2 : 1) * dc;
    int rows = f.w.overlap ? 2 * ratio : ratio;
    float *a = malloc((size_t)n_tokens * width * sizeof(float)), *z = malloc((size_t)n_tokens * width * sizeof(float));
    for (int i = 0; i < n_tokens * width; i++) a[i] = (float)uniform(), z[i] = (float)(2 * uniform());

    dsv4_session *s_all, *s_one, *s_chunk;
    CHECK(dsv4_session_new(&f.m, 1024, &s_all) == DSV4_OK, "session");
    CHECK(dsv4_session_new(&f.m, 1024, &s_one) == DSV4_OK, "session");
    CHECK(dsv4_session_new(&f.m, 1024, &s_chunk) == DSV4_OK, "session");
    int all[1] = {n_tokens}, one[1] = {1}, uneven[3] = {3, 6, 5};
    feed(&f, s_all, a, z, n_tokens, all, 1);
    feed(&f, s_one, a, z, n_tokens, one, 1);
    feed(&f, s_chunk, a, z, n_tokens, uneven, 3);
    const dsv4_comp_state *st = &s_all->layers[0].comp;
    int n_entries = n_tokens / ratio;
    CHECK(st->n_rows == n_entries, "ratio %d: %d tokens give %d entries, got %d", ratio, n_tokens, n_entries,
          st->n_rows);
    size_t state_floats = (size_t)rows * width;
    CHECK(same_state(st, &s_one->layers[0].comp, state_floats), "ratio %d: all at once and one token at a time differ",
          ratio);
    CHECK(same_state(st, &s_chunk->layers[0].comp, state_floats), "ratio %d: all at once and in chunks differ", ratio);

    for (int wi = 0; wi < st->n_rows; wi++) {
        float got[256];
        double want[256];
        dsv4_rowstore_get(&st->rows, wi, got);
        ref_entry(&f, a, z, wi, want);
        double err = 0;
        for (int c = 0; c < dc; c++) err = fmax(err, fabs(got[c] - want[c]));
        CHECK(err < 1e-5, "ratio %d entry %d vs the spec: max error %.3g", ratio, wi, err);
    }

    /* the pending state: a token p lives in row (overlap ? m : 0) + p mod m, with z + ape; after
     * a completed overlap window rows 0..m-1 hold that window (the shift) */
    int last_full = n_entries * ratio;
    for (int p = last_full; p < n_tokens; p++) {
        int row = (f.w.overlap ? ratio : 0) + p % ratio;
        for (int c = 0; c < width; c++) {
            CHECK(st->kv[row * width + c] == a[p * width + c], "pending token %d kv", p);
            CHECK(st->score[row * width + c] == z[p * width + c] + f.ape[(p % ratio) * width + c],
                  "pending token %d score", p);
        }
    }
    if (f.w.overlap && n_entries > 0)
        for (int i = 0; i < ratio; i++) {
            int p = last_full - ratio + i;
            CHECK(!memcmp(st->kv + i * width, a + p * width, width * sizeof(float)),
                  "after the shift, row %d holds token %d of the completed window", i, p);
            CHECK(st->score[i * width] == z[p * width] + f.ape[i * width], "shifted score row %d", i);
        }

    /* reset restores the empty state: the same stream gives the same rows again */
    dsv4_session_reset(s_one);
    feed(&f, s_one, a, z, n_tokens, one, 1);
    CHECK(same_state(st, &s_one->layers[0].comp, state_floats), "ratio %d: after reset the stream differs", ratio);

    /* two sequences in one step (segments) equal each run alone */
    if (n_tokens >= 9) {
        dsv4_session *s1, *s2, *r1, *r2;
        dsv4_session_new(&f.m, 1024, &s1), dsv4_session_new(&f.m, 1024, &s2);
        dsv4_session_new(&f.m, 1024, &r1), dsv4_session_new(&f.m, 1024, &r2);
        int n1 = 5, n2 = n_tokens - 5; /* sequence 2 is the tail of the stream, from position 0 */
        dsv4_fwd_seg segs[2] = {{.s = s1, .row0 = 0, .n = n1, .pos0 = 0}, {.s = s2, .row0 = n1, .n = n2, .pos0 = 0}};
        dsv4_fwd_batch b = {.n_rows = n_tokens, .n_segs = 2, .segs = segs, .state = 0};
        float tmp[256];
        dsv4_compressor_forward(&f.m, &f.w, &f.rope, &b, false, a, z, tmp);
        feed(&f, r1, a, z, n1, all, 1);
        int rest[1] = {n2};
        feed(&f, r2, a + (size_t)n1 * width, z + (size_t)n1 * width, n2, rest, 1);
        CHECK(same_state(&s1->layers[0].comp, &r1->layers[0].comp, state_floats), "segment 1 differs from alone");
        CHECK(same_state(&s2->layers[0].comp, &r2->layers[0].comp, state_floats), "segment 2 differs from alone");
        dsv4_session_free(s1), dsv4_session_free(s2), dsv4_session_free(r1), dsv4_session_free(r2);
    }
    dsv4_session_free(s_all), dsv4_session_free(s_one), dsv4_session_free(s_chunk);
    free(a), free(z);
}

/* ---- post-processing of one entry ---- */

/* FP8 / FP4 block rounding written from the spec (2.9), for the storage check */
static double e4m3_nearest(double a) {
    if (a >= 448) return 448;
    double step = a < 0x1p-6 ? 0x1p-9 : ldexp(1.0, (int)floor(log2(a)) - 3);
    double q = a / step, f = floor(q);
    double r = q - f > 0.5 ? f + 1 : q - f < 0.5 ? f : (fmod(f, 2) == 0 ? f : f + 1);
    return r * step;
}
static double e2m1_nearest(double a) {
    static const double v[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
    int best = 0;
    for (int c = 1; c < 8; c++) {
        double d = fabs(a - v[c]), db = fabs(a - v[best]);
        if (d < db || (d == db && (c & 1) == 0)) best = c;
    }
    return v[best];
}
static void ref_block_quant(const float *x, float *y, int n, int block, bool fp4) {
    for (int b = 0; b < n; b += block) {
        float amax = 0;
        for (int i = b; i < b + block; i++) amax = fmaxf(amax, fabsf(x[i]));
        amax = fp4 ? fmaxf(amax, 6 * 0x1p-126f) : fmaxf(amax, 1e-4f);
        float ratio = amax * (fp4 ? (1.0f / 6.0f) : (1.0f / 448.0f)); /* fp32 product, as the kernels */
        double s = ldexp(1.0, (int)ceil(log2((double)ratio)));
        double lim = fp4 ? 6 : 448;
        for (int i = b; i < b + block; i++) {
            double v = fmin(fmax(x[i] / s, -lim), lim);
            double q = fp4 ? e2m1_nearest(fabs(v)) : e4m3_nearest(fabs(v));
            y[i] = (float)(copysign(q, v) * s);
        }
    }
}

static void test_finish(void) {
    enum { DC = 128, RD = 64 };
    dsv4_compressor_w w = {.ratio = 4, .dc = DC, .overlap = true};
    float norm[DC];
    for (int i = 0; i < DC; i++) norm[i] = (float)(1 + 0.2 * uniform());
    w.norm = norm;
    dsv4_rope rope;
    dsv4_rope_init(&rope, RD, 160000.0f, 65536, 16.0f, 32.0f, 1.0f);
    float x[DC];
    for (int i = 0; i < DC; i++) x[i] = (float)(3 * uniform());
    int pos = 12;

    /* reference: rmsnorm with weight, then the rope rotation of pairs (DC-RD+2i, DC-RD+2i+1) */
    double ss = 0, want[DC];
    for (int i = 0; i < DC; i++) ss += (double)x[i] * x[i];
    double r = 1 / sqrt(ss / DC + 1e-6);
    for (int i = 0; i < DC; i++) want[i] = x[i] * r * norm[i];
    for (int i = 0; i < RD / 2; i++) {
        double ang = (double)((float)pos * rope.freqs[i]);
        double x0 = want[DC - RD + 2 * i], x1 = want[DC - RD + 2 * i + 1];
        want[DC - RD + 2 * i] = x0 * cos(ang) - x1 * sin(ang);
        want[DC - RD + 2 * i + 1] = x0 * sin(ang) + x1 * cos(ang);
    }
    float e[DC];
    memcpy(e, x, sizeof x);
    dsv4_compressor_finish(&w, &rope, 1e-6f, pos, DSV4_ROW_F32, RD, e);
    double err = 0;
    for (int i = 0; i < DC; i++) err = fmax(err, fabs(e[i] - want[i]));
    CHECK(err < 1e-5, "finish (main, fp32 rows): max error %.3g vs norm + rope on the last %d dims", err, RD);

    /* FP8_KV rows: the first DC-RD dims are FP8 in blocks of 64, the rope dims untouched */
    float e8[DC], q8[DC];
    memcpy(e8, x, sizeof x);
    dsv4_compressor_finish(&w, &rope, 1e-6f, pos, DSV4_ROW_FP8_KV, RD, e8);
    ref_block_quant(e, q8, DC - RD, 64, false);
    CHECK(!memcmp(e8, q8, (DC - RD) * sizeof(float)), "FP8 KV rows: the nope dims are the FP8 rounding");
    CHECK(!memcmp(e8 + DC - RD, e + DC - RD, RD * sizeof(float)), "FP8 KV rows: the rope dims stay fp32");

    /* indexer: after the rope, the Hadamard rotation (explicit matrix here), then FP4 blocks of 32 */
    dsv4_compressor_w wi = w;
    wi.rotate = true;
    float ei[DC], fp4[DC];
    memcpy(ei, x, sizeof x);
    dsv4_compressor_finish(&wi, &rope, 1e-6f, pos, DSV4_ROW_F32, RD, ei);
    err = 0;
    for (int i = 0; i < DC; i++) {
        double s = 0;
        for (int j = 0; j < DC; j++) s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * want[j];
        err = fmax(err, fabs(ei[i] - s / sqrt(DC)));
    }
    CHECK(err < 1e-5, "finish (indexer): max error %.3g vs norm, rope, Hadamard", err);
    float eq[DC];
    memcpy(eq, x, sizeof x);
    dsv4_compressor_finish(&wi, &rope, 1e-6f, pos, DSV4_ROW_FP4_IDX, RD, eq);
    ref_block_quant(ei, fp4, DC, 32, true);
    CHECK(!memcmp(eq, fp4, sizeof eq), "FP4 indexer rows are the FP4 rounding of the rotated entry");
}

int main(void) {
    dsv4_numeric_init();
    test_pool_by_hand();
    check_stream(4, 8, 4, 14);    /* CSA-style overlap: 3 entries + 2 pending tokens */
    check_stream(4, 16, 8, 3);    /* no window complete yet */
    check_stream(128, 4, 2, 300); /* HCA: 2 entries + 44 pending */
    test_finish();
    return check_done("test_compressor");
}
