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
    if (!name) return dsv4_error(DSV4_EINVAL, "safetensors writer: tensor without a name");
    if (!strcmp(name, "__metadata__"))
        return dsv4_error(DSV4_EINVAL, "tensor %s: the name is reserved for the header's metadata", name);
    if (!dsv4_dtype_size(dtype)) return dsv4_error(DSV4_EINVAL, "tensor %s: unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > DSV4_MAX_DIMS) return dsv4_error(DSV4_EINVAL, "tensor %s: %d dimensions", name, ndim);
    size_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !dsv4_mul_ok(numel, (size_t)shape[i], &numel))
            return dsv4_error(DSV4_EINVAL, "tensor %s: shape[%d] = %lld is negative or overflows", name, i,
                              (long long)shape[i]);
    }
    if (!dsv4_mul_ok(numel, dsv4_dtype_size(dtype), &nbytes) || nbytes > (size_t)INT64_MAX)
        return dsv4_error(DSV4_EINVAL, "tensor %s: too large", name);
    if (nbytes && !data && !gen) return dsv4_error(DSV4_EINVAL, "tensor %s: no data and no generator", name);
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
    t->nbytes = nbytes;
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

/* The header: {"__metadata__": {"format": "pt"}, name: {dtype, shape, data_offsets}, ...} in
 * data order. A name given twice, or one that is not valid UTF-8, is refused here: JSON
 * cannot hold it faithfully and the file would not read back as written. */
static dsv4_status build_header(dsv4_st_writer *w, const char *path, char **out) {
    json_t *hdr = json_object(), *meta = json_pack("{ss}", "format", "pt");
    dsv4_status rc = hdr && meta && !json_object_set_new(hdr, "__metadata__", meta)
                         ? DSV4_OK
                         : dsv4_error(DSV4_ENOMEM, "%s: out of memory building the header", path);
    size_t off = 0;
    for (int i = 0; i < w->n && !rc; i++) {
        wt *t = &w->t[i];
        if (json_object_get(hdr, t->name)) {
            rc = dsv4_error(DSV4_EINVAL, "%s: tensor %s is added twice", path, t->name);
            break;
        }
        json_t *sh = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
        if (json_array_size(sh) != (size_t)t->ndim) {
            json_decref(sh);
            rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory building the header", path);
            break;
        }
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dsv4_dtype_name(t->dtype), "shape", sh, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + t->nbytes));
        if (!e || json_object_set_new(hdr, t->name, e))
            rc = dsv4_error(DSV4_EINVAL, "%s: tensor %s: cannot be written (is the name valid UTF-8?)", path, t->name);
        off += t->nbytes;
    }
    *out = rc ? NULL : json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    if (!rc && !*out) rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory building the header", path);
    return rc;
}

dsv4_status dsv4_st_writer_write(dsv4_st_writer *w, const char *path) {
    qsort(w->t, (size_t)w->n, sizeof *w->t, by_size_then_order);
    char *text;
    dsv4_status rc = build_header(w, path, &text);
    if (rc) return rc;
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
        rc = dsv4_error(DSV4_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        free(text);
        free(tmp);
        return rc;
    }
    /* a failed fwrite sets io_failed; errors with their own message (a generator's) set rc */
    bool io_failed = false;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if (fwrite(lenb, 1, 8, f) != 8 || fwrite(text, 1, hlen, f) != hlen) io_failed = true;
    for (size_t i = hlen; i < padded && !io_failed; i++)
        if (fputc(' ', f) == EOF) io_failed = true;
    free(text);
    enum { CHUNK = 1 << 22 };
    uint8_t *buf = NULL;
    for (int i = 0; i < w->n && !rc && !io_failed; i++) {
        wt *t = &w->t[i];
        if (!t->nbytes) continue;
        if (t->data) {
            if (fwrite(t->data, 1, t->nbytes, f) != t->nbytes) io_failed = true;
            continue;
        }
        if (!buf && !(buf = malloc(CHUNK))) {
            rc = dsv4_error(DSV4_ENOMEM, "out of memory writing %s", path);
            break;
        }
        for (size_t o = 0; o < t->nbytes && !rc && !io_failed; o += CHUNK) {
            size_t len = DSV4_MIN((size_t)CHUNK, t->nbytes - o);
            if ((rc = t->gen(t->ctx, o, buf, len))) dsv4_error_wrap(rc, "%s: generating tensor %s", path, t->name);
            else if (fwrite(buf, 1, len, f) != len) io_failed = true;
        }
    }
    free(buf);
    if (fclose(f) != 0) io_failed = true;
    if (io_failed && !rc) rc = dsv4_error(DSV4_EIO, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = dsv4_error(DSV4_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc) remove(tmp);
    free(tmp);
    return rc;
}
