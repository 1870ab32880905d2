/* quantize.c: F32 / BF16 checkpoints to the release's FP8 + FP4 storage (see quantize.h).
 *
 * Each output tensor is a generator over the mapped input: the scales of a quantised tensor
 * are computed when it is added (one pass over its values), its codes when the writer asks
 * for a byte range. */
#include "io/quantize.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "numeric/numeric.h"

typedef enum { Q_FP8, Q_FP4, Q_BF16, Q_F32, Q_I64, Q_COPY } qkind;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The storage of a tensor in the release, from its name. */
static qkind kind_of(const char *name) {
    static const char *const fp8[] = {"attn.wq_a.weight", "attn.wq_b.weight", "attn.wkv.weight", "attn.wo_a.weight",
                                      "attn.wo_b.weight", "indexer.wq_b.weight", "shared_experts.w1.weight",
                                      "shared_experts.w2.weight", "shared_experts.w3.weight", "e_proj.weight",
                                      "h_proj.weight"};
    if (ends_with(name, ".tid2eid")) return Q_I64;
    if (strstr(name, ".ffn.experts.") && ends_with(name, ".weight")) return Q_FP4;
    for (size_t i = 0; i < DSV4_ARRAY_LEN(fp8); i++)
        if (ends_with(name, fp8[i])) return Q_FP8;
    if (strstr(name, "hc_") || ends_with(name, "attn_sink") || ends_with(name, ".ape") || ends_with(name, "gate.bias"))
        return Q_F32;
    return Q_BF16;
}

/* ---- one output tensor, made on demand ------------------------------------------------------ */

typedef struct qtensor {
    const dsv4_tensor *src;
    qkind kind;
    int64_t rows, cols;       /* 2-D view of the source (vectors: 1 x n) */
    uint8_t *scale;           /* e8m0 bytes: FP8 [sr, sc], FP4 [rows, cols/32] */
    int64_t sr, sc;
    bool is_scale;            /* this generator writes the scales */
    struct qtensor *owner;    /* the scale tensor's weight (shares `scale`) */
} qtensor;

static float src_at(const dsv4_tensor *t, size_t i) {
    if (t->dtype == DSV4_DT_F32) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
    return dsv4_bf16_to_f32(h);
}

static void qtensor_free(void *p) {
    qtensor *q = p;
    if (!q->is_scale) free(q->scale);
    free(q);
}

static dsv4_status gen(void *ctx, size_t off, void *dst, size_t len) {
    qtensor *q = ctx;
    uint8_t *out = dst;
    if (q->is_scale) {
        memcpy(out, q->owner->scale + off, len);
        return DSV4_OK;
    }
    const dsv4_tensor *t = q->src;
    switch (q->kind) {
    case Q_FP8:
        for (size_t i = 0; i < len; i++) {
            size_t e = off + i;
            int64_t r = (int64_t)e / q->cols, c = (int64_t)e % q->cols;
            float s = dsv4_e8m0_to_f32(q->scale[(r / 128) * q->sc + c / 128]);
            out[i] = dsv4_f32_to_e4m3(fminf(fmaxf(src_at(t, e) / s, -448.0f), 448.0f));
        }
        break;
    case Q_FP4:
        for (size_t i = 0; i < len; i++) {
            size_t b = off + i; /* byte b holds elements 2b (low nibble) and 2b + 1 */
            int64_t r = (int64_t)(2 * b) / q->cols, c = (int64_t)(2 * b) % q->cols;
            float s = dsv4_e8m0_to_f32(q->scale[r * q->sc + c / 32]);
            uint8_t lo = dsv4_f32_to_e2m1(fminf(fmaxf(src_at(t, 2 * b) / s, -6.0f), 6.0f));
            uint8_t hi = dsv4_f32_to_e2m1(fminf(fmaxf(src_at(t, 2 * b + 1) / s, -6.0f), 6.0f));
            out[i] = (uint8_t)(lo | hi << 4);
        }
        break;
    case Q_BF16:
        for (size_t i = 0; i < len / 2; i++) {
            uint16_t h = dsv4_f32_to_bf16(src_at(t, off / 2 + i));
            memcpy(out + 2 * i, &h, 2);
        }
        break;
    case Q_F32:
        for (size_t i = 0; i < len / 4; i++) {
            float v = src_at(t, off / 4 + i);
            memcpy(out + 4 * i, &v, 4);
        }
        break;
    case Q_I64:
        for (size_t i = 0; i < len / 8; i++) {
            int64_t v;
            if (t->dtype == DSV4_DT_I64) memcpy(&v, (const uint8_t *)t->data + 8 * (off / 8 + i), 8);
            else {
                int32_t w;
                memcpy(&w, (const uint8_t *)t->data + 4 * (off / 8 + i), 4);
                v = w;
            }
            memcpy(out + 8 * i, &v, 8);
        }
        break;
    case Q_COPY: memcpy(out, (const uint8_t *)t->data + off, len); break;
    }
    return DSV4_OK;
}

/* The scales of a quantised weight (one pass over it). */
static dsv4_status make_scales(qtensor *q) {
    const dsv4_tensor *t = q->src;
    if (q->kind == Q_FP8) {
        q->sr = (q->rows + 127) / 128, q->sc = (q->cols + 127) / 128;
        float *amax = calloc((size_t)(q->sr * q->sc), sizeof(float));
        q->scale = malloc((size_t)(q->sr * q->sc));
        if (!amax || !q->scale) {
            free(amax);
            return dsv4_error(DSV4_ENOMEM, "out of memory for the scales of %s", t->name);
        }
        for (int64_t r = 0; r < q->rows; r++)
            for (int64_t c = 0; c < q->cols; c++) {
                float *a = &amax[(r / 128) * q->sc + c / 128];
                *a = fmaxf(*a, fabsf(src_at(t, (size_t)(r * q->cols + c))));
            }
        for (int64_t i = 0; i < q->sr * q->sc; i++)
            q->scale[i] = dsv4_f32_to_e8m0(dsv4_pow2_ceil(fmaxf(amax[i], 1e-4f) * (1.0f / 448.0f)));
        free(amax);
    } else {
        q->sr = q->rows, q->sc = q->cols / 32;
        q->scale = malloc((size_t)(q->sr * q->sc) + 1);
        if (!q->scale) return dsv4_error(DSV4_ENOMEM, "out of memory for the scales of %s", t->name);
        for (int64_t r = 0; r < q->rows; r++)
            for (int64_t b = 0; b < q->sc; b++) {
                float amax = 0.0f;
                for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(src_at(t, (size_t)(r * q->cols + b * 32 + i))));
                q->scale[r * q->sc + b] = dsv4_f32_to_e8m0(dsv4_pow2_ceil(fmaxf(amax, 6.0f * 0x1p-126f) * (1.0f / 6.0f)));
            }
    }
    return DSV4_OK;
}

static dsv4_status add_tensor(dsv4_st_writer *w, const dsv4_st *st, const dsv4_tensor *t, dsv4_quantize_report *rep) {
    const char *name = t->name;
    size_t nlen = strlen(name);
    if (ends_with(name, ".scale")) { /* the scale of a weight already quantised: goes with it */
        char wname[512];
        if (nlen - 6 + 8 < sizeof wname) {
            snprintf(wname, sizeof wname, "%.*s.weight", (int)(nlen - 6), name);
            const dsv4_tensor *wt = dsv4_st_find(st, wname);
            if (wt && (wt->dtype == DSV4_DT_F8_E4M3 || wt->dtype == DSV4_DT_I8 || wt->dtype == DSV4_DT_U8)) {
                qtensor *q = calloc(1, sizeof *q);
                if (!q) return dsv4_error(DSV4_ENOMEM, "out of memory for %s", name);
                q->src = t, q->kind = Q_COPY;
                rep->tensors++;
                return dsv4_st_writer_add_gen(w, name, t->dtype, t->ndim, t->shape, gen, q, qtensor_free);
            }
        }
    }
    qkind k = kind_of(name);
    qtensor *q = calloc(1, sizeof *q);
    if (!q) return dsv4_error(DSV4_ENOMEM, "out of memory for %s", name);
    q->src = t;
    q->rows = t->ndim == 2 ? t->shape[0] : 1;
    q->cols = t->ndim == 2 ? t->shape[1] : (t->ndim == 1 ? t->shape[0] : 1);
    bool quantised = t->dtype == DSV4_DT_F8_E4M3 || t->dtype == DSV4_DT_I8 || t->dtype == DSV4_DT_U8;
    bool floating = t->dtype == DSV4_DT_F32 || t->dtype == DSV4_DT_BF16;
    if (k == Q_I64 && t->dtype != DSV4_DT_I64 && t->dtype != DSV4_DT_I32) {
        free(q);
        return dsv4_error(DSV4_EFORMAT, "%s: %s is %s, expected I32 or I64", dsv4_st_source(st), name, dsv4_dtype_name(t->dtype));
    }
    if (quantised || (k != Q_I64 && !floating)) {
        if (!quantised && t->dtype != DSV4_DT_I32 && t->dtype != DSV4_DT_I64) {
            free(q);
            return dsv4_error(DSV4_EFORMAT, "%s: %s is %s; quantize reads F32 or BF16 (or FP8 / FP4 copied as is)",
                              dsv4_st_source(st), name, dsv4_dtype_name(t->dtype));
        }
        q->kind = Q_COPY;
        rep->tensors++;
        return dsv4_st_writer_add_gen(w, name, t->dtype, t->ndim, t->shape, gen, q, qtensor_free);
    }
    q->kind = k;
    if ((k == Q_FP8 || k == Q_FP4) && t->ndim != 2) {
        free(q);
        return dsv4_error(DSV4_EFORMAT, "%s: %s should be a matrix to quantise, has %d dimensions", dsv4_st_source(st), name,
                          t->ndim);
    }
    if (k == Q_FP4 && q->cols % 32) {
        long long cols = (long long)q->cols;
        free(q);
        return dsv4_error(DSV4_EFORMAT, "%s: %s has %lld columns; FP4 needs a multiple of 32", dsv4_st_source(st), name, cols);
    }
    dsv4_status rc = DSV4_OK;
    rep->tensors++;
    rep->bytes_in += t->nbytes;
    switch (k) {
    case Q_FP8:
    case Q_FP4: {
        if ((rc = make_scales(q))) {
            qtensor_free(q);
            return rc;
        }
        int64_t shape[2] = {q->rows, k == Q_FP4 ? q->cols / 2 : q->cols}, sshape[2] = {q->sr, q->sc};
        qtensor *s = calloc(1, sizeof *s);
        if (!s) {
            qtensor_free(q);
            return dsv4_error(DSV4_ENOMEM, "out of memory for %s", name);
        }
        *s = *q;
        s->is_scale = true;
        s->owner = q;
        rc = dsv4_st_writer_add_gen(w, name, k == Q_FP8 ? DSV4_DT_F8_E4M3 : DSV4_DT_I8, 2, shape, gen, q, qtensor_free);
        char sname[512];
        snprintf(sname, sizeof sname, "%.*s.scale", (int)(ends_with(name, ".weight") ? nlen - 7 : nlen), name);
        if (!rc) rc = dsv4_st_writer_add_gen(w, sname, DSV4_DT_F8_E8M0, 2, sshape, gen, s, qtensor_free);
        else free(s);
        rep->bytes_out += (size_t)(shape[0] * shape[1] + sshape[0] * sshape[1]);
        if (k == Q_FP8) rep->fp8++;
        else rep->fp4++;
        return rc;
    }
    case Q_BF16:
        rep->bf16++;
        rep->bytes_out += 2 * (t->nbytes / dsv4_dtype_size(t->dtype));
        return dsv4_st_writer_add_gen(w, name, DSV4_DT_BF16, t->ndim, t->shape, gen, q, qtensor_free);
    case Q_F32:
        rep->f32++;
        rep->bytes_out += 4 * (t->nbytes / dsv4_dtype_size(t->dtype));
        return dsv4_st_writer_add_gen(w, name, DSV4_DT_F32, t->ndim, t->shape, gen, q, qtensor_free);
    case Q_I64:
        rep->index++;
        rep->bytes_out += 8 * (t->nbytes / dsv4_dtype_size(t->dtype));
        return dsv4_st_writer_add_gen(w, name, DSV4_DT_I64, t->ndim, t->shape, gen, q, qtensor_free);
    case Q_COPY: break;
    }
    free(q);
    return DSV4_OK;
}

/* ---- the files ---------------------------------------------------------------------------- */

static dsv4_status write_config(const char *in_dir, const char *out_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    json_error_t err;
    json_t *c = json_load_file(path, JSON_PRESERVE_ORDER, &err);
    if (!json_is_object(c)) {
        json_decref(c);
        return dsv4_error(DSV4_EFORMAT, "%s: cannot read a JSON object: %s", path, err.text);
    }
    json_t *q = json_pack("{s:s, s:s, s:s, s:s, s:[i,i]}", "activation_scheme", "dynamic", "fmt", "e4m3", "quant_method",
                          "fp8", "scale_fmt", "ue8m0", "weight_block_size", 128, 128);
    json_object_set_new(c, "quantization_config", q);
    json_object_set_new(c, "expert_dtype", json_string("fp4"));
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    int bad = json_dump_file(c, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    return bad ? dsv4_error(DSV4_EIO, "%s: cannot write", path) : DSV4_OK;
}

static dsv4_status copy_if_present(const char *in_dir, const char *out_dir, const char *file) {
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/%s", in_dir, file);
    snprintf(to, sizeof to, "%s/%s", out_dir, file);
    if (dsv4_file_probe(from) == DSV4_ENOTFOUND) return DSV4_OK;
    char *text;
    size_t len;
    dsv4_status rc = dsv4_file_read(from, (size_t)1 << 30, &text, &len);
    if (rc) return rc;
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(text, 1, len, f) == len;
    if (f) ok &= fclose(f) == 0;
    free(text);
    return ok ? DSV4_OK : dsv4_error(DSV4_EIO, "%s: cannot write: %s", to, strerror(errno));
}

dsv4_status dsv4_quantize_checkpoint(const char *in_dir, const char *out_dir, dsv4_quantize_report *rep) {
    dsv4_quantize_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    dsv4_st *st;
    dsv4_status rc = dsv4_st_open_dir(in_dir, &st);
    if (rc) return rc;
    dsv4_st_writer *w = dsv4_st_writer_new();
    if (!w) rc = dsv4_error(DSV4_ENOMEM, "out of memory writing %s", out_dir);
    for (int i = 0; i < dsv4_st_count(st) && !rc; i++) {
        const dsv4_tensor *t = dsv4_st_at(st, i);
        if (ends_with(t->name, ".scale")) {
            char wname[512];
            snprintf(wname, sizeof wname, "%.*s.weight", (int)strlen(t->name) - 6, t->name);
            const dsv4_tensor *wt = dsv4_st_find(st, wname);
            if (wt && wt->dtype != DSV4_DT_F8_E4M3 && wt->dtype != DSV4_DT_I8 && wt->dtype != DSV4_DT_U8) continue;
        }
        rc = add_tensor(w, st, t, rep);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    if (!rc) rc = dsv4_st_writer_write(w, path);
    dsv4_st_writer_free(w);
    dsv4_st_close(st);
    if (!rc) rc = write_config(in_dir, out_dir);
    if (!rc) rc = copy_if_present(in_dir, out_dir, "tokenizer.json");
    if (!rc) rc = copy_if_present(in_dir, out_dir, "tokenizer_config.json");
    if (!rc) rc = copy_if_present(in_dir, out_dir, "generation_config.json");
    return rc;
}
