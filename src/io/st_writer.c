/* st_writer.c: writing safetensors files.
 *
 * Tensors are registered first (pointer or generator), then written in one pass. As in the
 * official release files, the data are ordered by element size, largest first, and the
 * header is padded with spaces to a multiple of 8, so each tensor starts at an offset that is
 * a multiple of its element size and can be used in place after mmap. The file is written to
 * a temporary name and renamed, so a crash never leaves a half-written checkpoint behind. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "base/base.h"
#include "io/safetensors.h"

typedef struct wt {
    char *name;
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[DSV4_MAX_DIMS];
    size_t nbytes;
    const void *data;
    dsv4_st_gen gen;
    void *ctx;
    void (*ctx_free)(void *);
    size_t order; /* insertion order, to keep the sort stable */
} wt;

struct dsv4_st_writer {
    wt *t;
    int n, cap;
};

dsv4_st_writer *dsv4_st_writer_new(void) { return dsv4_calloc(1, sizeof(dsv4_st_writer), "safetensors writer"); }

void dsv4_st_writer_free(dsv4_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        if (w->t[i].ctx_free) w->t[i].ctx_free(w->t[i].ctx);
    }
    free(w->t);
    free(w);
}

static dsv4_status add(dsv4_st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, dsv4_st_gen gen, void *ctx,
                       void (*ctx_free)(void *)) {
    if (ndim < 0 || ndim > DSV4_MAX_DIMS) return dsv4_error(DSV4_EINVAL, "tensor %s: %d dimensions", name, ndim);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !dsv4_mul_ok(numel, (size_t)shape[i], &numel))
            return dsv4_error(DSV4_EINVAL, "tensor %s: bad shape", name);
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wt *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return dsv4_error(DSV4_ENOMEM, "out of memory adding tensor %s", name);
        w->t = nt;
        w->cap = cap;
    }
    wt *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return dsv4_error(DSV4_ENOMEM, "out of memory adding tensor %s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = numel * dsv4_dtype_size(dtype);
    t->data = data;
    t->gen = gen;
    t->ctx = ctx;
    t->ctx_free = ctx_free;
    t->order = (size_t)w->n;
    w->n++;
    return DSV4_OK;
}

dsv4_status dsv4_st_writer_add(dsv4_st_writer *w, const char *name, dsv4_dtype dtype, int ndim,
                               const int64_t *shape, const void *data) {
    return add(w, name, dtype, ndim, shape, data, NULL, NULL, NULL);
}

dsv4_status dsv4_st_writer_add_gen(dsv4_st_writer *w, const char *name, dsv4_dtype dtype,
                                   int ndim, const int64_t *shape, dsv4_st_gen gen, void *ctx,
                                   void (*ctx_free)(void *)) {
    dsv4_status rc = add(w, name, dtype, ndim, shape, NULL, gen, ctx, ctx_free);
    if (rc && ctx_free) ctx_free(ctx);
    return rc;
}

static int by_size_then_order(const void *a, const void *b) {
    const wt *x = a, *y = b;
    size_t sx = dsv4_dtype_size(x->dtype), sy = dsv4_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

dsv4_status dsv4_st_writer_write(dsv4_st_writer *w, const char *path) {
    qsort(w->t, (size_t)w->n, sizeof *w->t, by_size_then_order);
    json_t *hdr = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        wt *t = &w->t[i];
        json_t *e = json_object(), *sh = json_array(), *of = json_array();
        json_object_set_new(e, "dtype", json_string(dsv4_dtype_name(t->dtype)));
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(e, "shape", sh);
        json_array_append_new(of, json_integer((json_int_t)off));
        json_array_append_new(of, json_integer((json_int_t)(off + t->nbytes)));
        json_object_set_new(e, "data_offsets", of);
        json_object_set_new(hdr, t->name, e);
        off += t->nbytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    if (!text) return dsv4_error(DSV4_ENOMEM, "out of memory writing %s", path);
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;

    size_t tmplen = strlen(path) + 8;
    char *tmp = malloc(tmplen);
    if (!tmp) {
        free(text);
        return dsv4_error(DSV4_ENOMEM, "out of memory writing %s", path);
    }
    snprintf(tmp, tmplen, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        dsv4_status rc = dsv4_error(DSV4_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        free(text);
        free(tmp);
        return rc;
    }
    dsv4_status rc = DSV4_OK;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if (fwrite(lenb, 1, 8, f) != 8 || fwrite(text, 1, hlen, f) != hlen) rc = DSV4_EIO;
    for (size_t i = hlen; i < padded && !rc; i++)
        if (fputc(' ', f) == EOF) rc = DSV4_EIO;
    free(text);
    enum { CHUNK = 1 << 22 };
    uint8_t *buf = NULL;
    for (int i = 0; i < w->n && !rc; i++) {
        wt *t = &w->t[i];
        if (t->data) {
            if (t->nbytes && fwrite(t->data, 1, t->nbytes, f) != t->nbytes) rc = DSV4_EIO;
            continue;
        }
        if (!buf && !(buf = malloc(CHUNK))) {
            rc = dsv4_error(DSV4_ENOMEM, "out of memory writing %s", path);
            break;
        }
        for (size_t o = 0; o < t->nbytes && !rc; o += CHUNK) {
            size_t len = DSV4_MIN((size_t)CHUNK, t->nbytes - o);
            rc = t->gen(t->ctx, o, buf, len);
            if (rc) {
                dsv4_error_wrap(rc, "%s: generating tensor %s", path, t->name);
                break;
            }
            if (fwrite(buf, 1, len, f) != len) rc = DSV4_EIO;
        }
    }
    free(buf);
    if (fclose(f) != 0 && !rc) rc = DSV4_EIO;
    if (rc == DSV4_EIO) dsv4_error(DSV4_EIO, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = dsv4_error(DSV4_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc) remove(tmp);
    free(tmp);
    return rc;
}
