/* test_quantize.c: `dsv4 quantize` writes the release's formats.
 *
 * 1. DeepSeek's own conversion as the reference: the tiny V4-Flash model of the shared
 *    reference vectors was quantised by the official tooling (FP8 linears, FP4 experts). Its
 *    weights, dequantised exactly to an F32 checkpoint and quantised again by us, must give
 *    every tensor with the release's dtype and shape (scales included, nothing missing or
 *    extra) and exactly the release's values. (Bytes may differ only where a block's largest
 *    code sits at the bottom of its binade, where the same values have two encodings; the
 *    values are compared, after our loader dequantises both files.)
 * 2. A random model of the same shape in F32: quantised, it loads, its FP8 block scales are
 *    2^ceil(log2(amax / 448)) of their blocks and its FP4 scales 2^ceil(log2(amax / 6)) (both
 *    computed here with frexp), every stored value is the definition's (e4m3 / e2m1 / bf16
 *    rounding at those scales, computed here element by element), and its logits in the
 *    default numerics stay close to the F32 model's exact logits (a random network is more
 *    sensitive than a trained one: 13% relative RMS here, 3% on a briefly trained model). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "io/quantize.h"
#include "io/safetensors.h"
#include "numeric/numeric.h"
#include "train/train.h"

static const char *REF = DSV4_SHARED "/refvectors/models/tiny_v4flash_fp8";

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[4096];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
}

static void remove_dir(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    char p[4096];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Write tm as an F32 checkpoint in dir, with the reference's config.json. */
static int write_f32(const dsv4_tmodel *tm, const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", REF);
    char q[4096];
    snprintf(q, sizeof q, "%s/config.json", dir);
    copy_file(p, q);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    return dsv4_tmodel_write(tm, p, false, false) == DSV4_OK ? 0 : -1;
}

static int logits(dsv4_model *m, const int32_t *ids, int T, float *out) {
    dsv4_session *s;
    if (dsv4_session_new(m, T + 1, &s)) return -1;
    int rc = dsv4_forward(s, ids, T, DSV4_LOGITS_ALL, out) ? -1 : 0;
    dsv4_session_free(s);
    return rc;
}

/* 1: quantize(dequantize(release)) == release */
static void test_release_roundtrip(const char *tmp) {
    dsv4_open_opts exact = {.numerics = DSV4_NUMERICS_EXACT};
    dsv4_model *ref;
    if (dsv4_model_open(REF, &exact, &ref)) {
        CHECK(0, "open %s: %s", REF, dsv4_errmsg());
        return;
    }
    dsv4_tmodel *tref;
    CHECK(dsv4_tmodel_from_model(ref, &tref) == DSV4_OK, "dequantising: %s", dsv4_errmsg());
    char f32[4096], q[4096];
    snprintf(f32, sizeof f32, "%s/f32", tmp);
    snprintf(q, sizeof q, "%s/q", tmp);
    CHECK(mkdir(f32, 0700) == 0 && mkdir(q, 0700) == 0, "mkdir");
    CHECK(write_f32(tref, f32) == 0, "writing the F32 checkpoint: %s", dsv4_errmsg());
    dsv4_quantize_report rep;
    CHECK(dsv4_quantize_checkpoint(f32, q, &rep) == DSV4_OK, "quantize: %s", dsv4_errmsg());
    printf("release round trip: %d tensors: %d FP8, %d FP4, %d BF16, %d F32, %d I64\n", rep.tensors, rep.fp8, rep.fp4,
           rep.bf16, rep.f32, rep.index);

    /* the layout: every tensor of the release with its dtype and shape, nothing else */
    dsv4_st *a, *b;
    CHECK(dsv4_st_open_dir(REF, &a) == DSV4_OK && dsv4_st_open_dir(q, &b) == DSV4_OK, "open: %s", dsv4_errmsg());
    int mismatched = 0;
    for (int i = 0; i < dsv4_st_count(a); i++) {
        const dsv4_tensor *x = dsv4_st_at(a, i), *y = dsv4_st_find(b, x->name);
        bool same = y && x->dtype == y->dtype && x->ndim == y->ndim;
        for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
        if (!same) {
            mismatched++;
            CHECK(0, "%s: release %s, ours %s", x->name, dsv4_dtype_name(x->dtype), y ? dsv4_dtype_name(y->dtype) : "missing");
        }
    }
    CHECK(dsv4_st_count(a) == dsv4_st_count(b), "release has %d tensors, ours %d", dsv4_st_count(a), dsv4_st_count(b));
    printf("layout: %d tensors compared with the release, %d differ\n", dsv4_st_count(a), mismatched);
    dsv4_st_close(a);
    dsv4_st_close(b);

    /* the values: both files dequantised by the loader */
    dsv4_model *mq;
    if (dsv4_model_open(q, &exact, &mq) == DSV4_OK) {
        dsv4_tmodel *tq;
        CHECK(dsv4_tmodel_from_model(mq, &tq) == DSV4_OK, "dequantising ours: %s", dsv4_errmsg());
        size_t diff = 0;
        for (size_t i = 0; i < tq->n_floats; i++) diff += memcmp(&tq->params[i], &tref->params[i], 4) != 0;
        printf("values: %zu of %zu differ from the release\n", diff, tq->n_floats);
        CHECK(diff == 0, "%zu values differ from the release", diff);
        dsv4_tmodel_free(tq);
        dsv4_model_close(mq);
    } else {
        CHECK(0, "open the quantised model: %s", dsv4_errmsg());
    }
    remove_dir(f32);
    remove_dir(q);
    dsv4_tmodel_free(tref);
    dsv4_model_close(ref);
}

/* The e8m0 byte of 2^ceil(log2(v)), by frexp: v = f 2^e with f in [0.5, 1). */
static uint8_t e8m0_of_ceil_pow2(double v) {
    int e;
    double f = frexp(v, &e);
    int k = f == 0.5 ? e - 1 : e;
    return (uint8_t)(k + 127);
}

/* 2: a random F32 model */
static void test_random(const char *tmp) {
    struct dsv4_config cfg;
    dsv4_model *ref;
    dsv4_open_opts exact = {.numerics = DSV4_NUMERICS_EXACT}, deflt = {.numerics = DSV4_NUMERICS_DEFAULT};
    if (dsv4_model_open(REF, &exact, &ref)) {
        CHECK(0, "open %s: %s", REF, dsv4_errmsg());
        return;
    }
    dsv4_tmodel *tref, *tm;
    CHECK(dsv4_tmodel_from_model(ref, &tref) == DSV4_OK, "%s", dsv4_errmsg());
    cfg = tref->model.cfg;
    CHECK(dsv4_tmodel_new(&cfg, &tm) == DSV4_OK, "%s", dsv4_errmsg());
    dsv4_tmodel_init(tm, 7, 0.02f);
    for (int h = 0; h < tm->n_tid2eid; h++) /* the release's hash tables */
        memcpy(tm->tid2eid[h], tref->tid2eid[h], (size_t)cfg.vocab_size * cfg.n_activated_experts * sizeof(int32_t));
    dsv4_tmodel_free(tref);
    dsv4_model_close(ref);

    char f32[4096], q[4096];
    snprintf(f32, sizeof f32, "%s/rf32", tmp);
    snprintf(q, sizeof q, "%s/rq", tmp);
    CHECK(mkdir(f32, 0700) == 0 && mkdir(q, 0700) == 0, "mkdir");
    CHECK(write_f32(tm, f32) == 0, "writing: %s", dsv4_errmsg());
    CHECK(dsv4_quantize_checkpoint(f32, q, NULL) == DSV4_OK, "quantize: %s", dsv4_errmsg());

    /* the scales of one FP8 and one FP4 tensor against their definition */
    dsv4_st *st;
    if (dsv4_st_open_dir(q, &st) == DSV4_OK) {
        const dsv4_tparam *p = dsv4_tmodel_find(tm, "layers.2.attn.wq_b.weight");
        const dsv4_tensor *s = dsv4_st_find(st, "layers.2.attn.wq_b.scale");
        int bad = 0;
        if (p && s && s->dtype == DSV4_DT_F8_E8M0) {
            int64_t rows = p->shape[0], cols = p->shape[1], sc = (cols + 127) / 128;
            for (int64_t br = 0; br < (rows + 127) / 128; br++)
                for (int64_t bc = 0; bc < sc; bc++) {
                    double amax = 0;
                    for (int64_t r = br * 128; r < DSV4_MIN(rows, br * 128 + 128); r++)
                        for (int64_t c = bc * 128; c < DSV4_MIN(cols, bc * 128 + 128); c++)
                            amax = fmax(amax, fabs(tm->params[p->off + r * cols + c]));
                    bad += ((const uint8_t *)s->data)[br * sc + bc] != e8m0_of_ceil_pow2(amax / 448.0);
                }
        } else {
            bad++;
        }
        p = dsv4_tmodel_find(tm, "layers.3.ffn.experts.1.w2.weight");
        s = dsv4_st_find(st, "layers.3.ffn.experts.1.w2.scale");
        if (p && s && s->dtype == DSV4_DT_F8_E8M0) {
            int64_t rows = p->shape[0], cols = p->shape[1];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t b = 0; b < cols / 32; b++) {
                    double amax = 0;
                    for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(tm->params[p->off + r * cols + b * 32 + i]));
                    bad += ((const uint8_t *)s->data)[r * (cols / 32) + b] != e8m0_of_ceil_pow2(amax / 6.0);
                }
        } else {
            bad++;
        }
        CHECK(bad == 0, "%d block scales are not 2^ceil(log2(amax / max code))", bad);
        dsv4_st_close(st);
    } else {
        CHECK(0, "open %s: %s", q, dsv4_errmsg());
    }

    /* every value: what the definitions above give, computed here tensor by tensor */
    dsv4_model *mq0;
    if (dsv4_model_open(q, &exact, &mq0) == DSV4_OK) {
        dsv4_tmodel *tq;
        CHECK(dsv4_tmodel_from_model(mq0, &tq) == DSV4_OK, "%s", dsv4_errmsg());
        size_t diff = 0;
        for (int i = 0; i < tm->n_table; i++) {
            const dsv4_tparam *p = &tm->table[i];
            const float *w = tm->params + p->off, *got = tq->params + p->off;
            bool fp4 = strstr(p->name, ".ffn.experts.") != NULL;
            bool fp8 = !fp4 && (strstr(p->name, "attn.w") || strstr(p->name, "indexer.wq_b") || strstr(p->name, "shared_experts") ||
                                strstr(p->name, "_proj.weight")) && !strstr(p->name, "weights_proj") && !strstr(p->name, "compressor");
            bool keep32 = strstr(p->name, "hc_") || strstr(p->name, "attn_sink") || strstr(p->name, ".ape") || strstr(p->name, "gate.bias");
            int64_t rows = p->ndim == 2 ? p->shape[0] : 1, cols = p->ndim == 2 ? p->shape[1] : p->shape[0];
            int64_t bh = fp8 ? 128 : 1, bw = fp8 ? 128 : 32, sr = (rows + bh - 1) / bh, sc = (cols + bw - 1) / bw;
            double *amax = calloc((size_t)(sr * sc) + 1, sizeof(double));
            if (fp8 || fp4)
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t c = 0; c < cols; c++)
                        amax[r / bh * sc + c / bw] = fmax(amax[r / bh * sc + c / bw], fabs(w[r * cols + c]));
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    double want = w[r * cols + c];
                    if (fp8 || fp4) {
                        double a = amax[r / bh * sc + c / bw];
                        double scl = ldexp(1.0, e8m0_of_ceil_pow2(fp8 ? fmax(a, 1e-4) / 448.0 : a / 6.0) - 127);
                        want = fp8 ? dsv4_e4m3_round((float)(want / scl)) * scl : dsv4_e2m1_round((float)(want / scl)) * scl;
                    } else if (!keep32) {
                        want = dsv4_bf16_round((float)want);
                    }
                    diff += (float)want != got[r * cols + c];
                }
            free(amax);
        }
        printf("random model: %zu of %zu stored values differ from their definition\n", diff, tq->n_floats);
        CHECK(diff == 0, "%zu stored values differ from the FP8 / FP4 / BF16 definitions", diff);
        dsv4_tmodel_free(tq);
        dsv4_model_close(mq0);
    } else {
        CHECK(0, "open %s: %s", q, dsv4_errmsg());
    }

    /* logits: F32 exact vs quantised in the default numerics */
    enum { T = 24 };
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 7919 + 13) % cfg.vocab_size);
    int V = cfg.vocab_size;
    float *a = malloc((size_t)T * V * sizeof(float)), *b = malloc((size_t)T * V * sizeof(float));
    dsv4_model *mf, *mq;
    if (dsv4_model_open(f32, &exact, &mf) == DSV4_OK && dsv4_model_open(q, &deflt, &mq) == DSV4_OK) {
        CHECK(logits(mf, ids, T, a) == 0 && logits(mq, ids, T, b) == 0, "forward: %s", dsv4_errmsg());
        double num = 0, den = 0;
        int agree = 0;
        for (int t = 0; t < T; t++) {
            const float *x = a + (size_t)t * V, *y = b + (size_t)t * V;
            double mx = 0, my = 0;
            for (int v = 0; v < V; v++) mx += x[v] / V, my += y[v] / V;
            int ax = 0, ay = 0;
            for (int v = 0; v < V; v++) {
                num += ((y[v] - my) - (x[v] - mx)) * ((y[v] - my) - (x[v] - mx));
                den += (x[v] - mx) * (x[v] - mx);
                if (x[v] > x[ax]) ax = v;
                if (y[v] > y[ay]) ay = v;
            }
            agree += ax == ay;
        }
        double rel = sqrt(num / den);
        printf("random model: quantised logits vs F32: relative RMS error %.4f, argmax agrees at %d of %d\n", rel, agree, T);
        CHECK(rel < 0.25, "quantised logits are %.3f away from the F32 model's (relative RMS)", rel);
        CHECK(agree >= T * 2 / 3, "the argmax agrees at only %d of %d positions", agree, T);
        dsv4_model_close(mf);
        dsv4_model_close(mq);
    } else {
        CHECK(0, "open: %s", dsv4_errmsg());
    }
    free(a), free(b);
    remove_dir(f32);
    remove_dir(q);
    dsv4_tmodel_free(tm);
}

int main(void) {
    char tmp[] = "/tmp/dsv4_quantize_XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return check_done("test_quantize");
    }
    test_release_roundtrip(tmp);
    test_random(tmp);
    rmdir(tmp);
    return check_done("test_quantize");
}
