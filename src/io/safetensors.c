/* safetensors.c: validated, zero-copy reading of safetensors files and shard sets.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
 * data section; offsets are relative to the data section. We map each file once and keep one
 * table of tensors sorted by name for binary search. All checks happen at open time so that
 * later code can trust every pointer and size: the header length against the file (and a
 * 100 MB cap), the JSON, each entry's fields and types, the dtype, the shape (non-negative,
 * element count below 2^63), the byte range (inside the data section, the size dtype and shape
 * imply, overlapping no other tensor), names unique across files, and for a shard set the
 * index against the shards both ways. docs/robustness.md lists the messages.
 *
 * What cannot be checked at open: a file truncated by another process after we mapped it
 * makes later reads fault (SIGBUS), as with any mmap-based loader. */
#include <jansson.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "io/file.h"
#include "io/safetensors.h"

typedef struct st_file {
    char *path;
    const uint8_t *map; /* whole file image */
    size_t size;
    bool owned_map;     /* munmap at close (false for in-memory images) */
    size_t data_start;  /* 8 + header length */
} st_file;

struct dsv4_st {
    st_file *files;
    int n_files;
    dsv4_tensor *tensors;
    int n_tensors, cap_tensors;
    char **names; /* owned name strings */
    char *source; /* what was opened: the index, the single file or the memory label */
};

static const struct {
    const char *name;
    dsv4_dtype t;
    size_t size;
} dtype_table[] = {
    {"F64", DSV4_DT_F64, 8},       {"F32", DSV4_DT_F32, 4},         {"F16", DSV4_DT_F16, 2},
    {"BF16", DSV4_DT_BF16, 2},     {"F8_E4M3", DSV4_DT_F8_E4M3, 1}, {"F8_E5M2", DSV4_DT_F8_E5M2, 1},
    {"F8_E8M0", DSV4_DT_F8_E8M0, 1}, {"I64", DSV4_DT_I64, 8},       {"I32", DSV4_DT_I32, 4},
    {"I16", DSV4_DT_I16, 2},       {"I8", DSV4_DT_I8, 1},           {"U64", DSV4_DT_U64, 8},
    {"U32", DSV4_DT_U32, 4},       {"U16", DSV4_DT_U16, 2},         {"U8", DSV4_DT_U8, 1},
    {"BOOL", DSV4_DT_BOOL, 1},
};

const char *dsv4_dtype_name(dsv4_dtype t) {
    for (size_t i = 0; i < DSV4_ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].t == t) return dtype_table[i].name;
    return "?";
}

dsv4_dtype dsv4_dtype_parse(const char *s) {
    for (size_t i = 0; i < DSV4_ARRAY_LEN(dtype_table); i++)
        if (!strcmp(dtype_table[i].name, s)) return dtype_table[i].t;
    return DSV4_DT_UNKNOWN;
}

size_t dsv4_dtype_size(dsv4_dtype t) {
    for (size_t i = 0; i < DSV4_ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].t == t) return dtype_table[i].size;
    return 0;
}

int64_t dsv4_tensor_numel(const dsv4_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- opening ----------------------------------------------------------------------------- */

/* The reference implementation (the safetensors crate) refuses headers over 100 MB; a real
 * shard's header is about 100 KB. The bound keeps a forged length from making us parse
 * gigabytes of JSON. */
#define ST_MAX_HEADER 100000000ull
/* An index lists every tensor once: a few MB for the largest release. */
#define ST_MAX_INDEX ((size_t)256 << 20)

static dsv4_st *st_new(void) { return dsv4_calloc(1, sizeof(dsv4_st), "safetensors reader"); }

static dsv4_status st_add_file(dsv4_st *st, const char *path, const uint8_t *map, size_t size,
                               bool owned, int *index) {
    st_file *nf = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *nf);
    if (!nf) return dsv4_error(DSV4_ENOMEM, "%s: out of memory opening the file", path);
    st->files = nf;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return dsv4_error(DSV4_ENOMEM, "%s: out of memory opening the file", path);
    f->map = map;
    f->size = size;
    f->owned_map = owned;
    *index = st->n_files++;
    return DSV4_OK;
}

/* Map a file and append it to the reader; the map is released by dsv4_st_close. */
static dsv4_status st_map_file(dsv4_st *st, const char *path, int *index) {
    const uint8_t *map;
    size_t size;
    dsv4_status rc = dsv4_file_map(path, &map, &size);
    if (rc) return rc;
    rc = st_add_file(st, path, map, size, size > 0, index);
    if (rc && size) munmap((void *)map, size);
    return rc;
}

static dsv4_status st_push_tensor(dsv4_st *st, dsv4_tensor *t, const char *name, const char *path) {
    if (st->n_tensors == st->cap_tensors) {
        if (st->cap_tensors > INT32_MAX / 2)
            return dsv4_error(DSV4_EFORMAT, "%s: more than %d tensors", path, st->cap_tensors);
        int cap = st->cap_tensors ? st->cap_tensors * 2 : 256;
        dsv4_tensor *nt = realloc(st->tensors, (size_t)cap * sizeof *nt);
        if (nt) st->tensors = nt;
        char **nn = realloc(st->names, (size_t)cap * sizeof *nn);
        if (nn) st->names = nn;
        if (!nt || !nn) return dsv4_error(DSV4_ENOMEM, "%s: out of memory reading the tensor table", path);
        st->cap_tensors = cap;
    }
    char *copy = strdup(name);
    if (!copy) return dsv4_error(DSV4_ENOMEM, "%s: out of memory reading the tensor table", path);
    t->name = copy;
    st->names[st->n_tensors] = copy;
    st->tensors[st->n_tensors++] = *t;
    return DSV4_OK;
}

/* One header entry, {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, checked
 * against the data section of file `fi` (data_size bytes). */
static dsv4_status parse_entry(const dsv4_st *st, int fi, size_t data_size, const char *key, json_t *val,
                               dsv4_tensor *t) {
    const st_file *f = &st->files[fi];
    const char *path = f->path;
    if (!json_is_object(val)) return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: entry is not an object", path, key);
    json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
           *jo = json_object_get(val, "data_offsets");
    if (!json_is_string(jd)) return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: \"dtype\" is missing or not a string", path, key);
    if (!json_is_array(js)) return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: \"shape\" is missing or not an array", path, key);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: \"data_offsets\" is missing or not an array of two", path, key);
    memset(t, 0, sizeof *t);
    t->dtype = dsv4_dtype_parse(json_string_value(jd));
    if (t->dtype == DSV4_DT_UNKNOWN)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", path, key, json_string_value(jd));

    /* Shape: non-negative integers whose product (zero dimensions aside) fits in int64, so
     * that dsv4_tensor_numel and every size computed from the shape cannot overflow. */
    size_t nd = json_array_size(js);
    if (nd > DSV4_MAX_DIMS)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: %zu dimensions (at most %d)", path, key, nd, DSV4_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1, nonzero = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: shape[%zu] is not a non-negative integer", path, key, i);
        uint64_t v = (uint64_t)json_integer_value(d);
        t->shape[i] = (int64_t)v;
        if (v == 0) numel = 0;
        else if (nonzero > (uint64_t)INT64_MAX / v)
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: shape dimensions multiply past 2^63 - 1", path, key);
        else nonzero *= v;
    }
    if (numel) numel = nonzero;

    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < json_integer_value(jb))
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: data_offsets must be integers 0 <= begin <= end", path, key);
    uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
    if (e > data_size)
        return dsv4_error(DSV4_EFORMAT,
                          "%s: tensor %s: data_offsets [%llu, %llu] out of range: the data section has %zu bytes", path,
                          key, (unsigned long long)b, (unsigned long long)e, data_size);
    /* numel < 2^63 and the element size <= 8, so the product fits in uint64 */
    uint64_t want = numel * dsv4_dtype_size(t->dtype);
    if (want != e - b)
        return dsv4_error(DSV4_EFORMAT, "%s: tensor %s: data_offsets span %llu bytes but %s %s needs %llu", path, key,
                          (unsigned long long)(e - b), dsv4_dtype_name(t->dtype),
                          nd ? "of this shape" : "scalar", (unsigned long long)want);
    t->nbytes = (size_t)(e - b);
    t->offset = f->data_start + (size_t)b;
    t->data = f->map + t->offset;
    t->file = fi;
    return DSV4_OK;
}

/* Tensors of one file are checked for overlap through their byte ranges sorted by start. */
typedef struct {
    size_t begin, end;
    const char *name;
} range;

static int range_cmp(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Any two non-empty ranges sharing a byte. Comparing each range with the one before is not
 * enough ([0,100) [50,50) [60,70): the empty one hides the overlap), so we keep the range that
 * reaches furthest so far. Empty tensors own no bytes and may sit anywhere. */
static dsv4_status check_overlaps(const char *path, range *r, size_t n) {
    qsort(r, n, sizeof *r, range_cmp);
    const range *far = NULL;
    for (size_t i = 0; i < n; i++) {
        if (r[i].begin == r[i].end) continue;
        if (far && r[i].begin < far->end)
            return dsv4_error(DSV4_EFORMAT, "%s: tensors %s [%zu, %zu) and %s [%zu, %zu) overlap", path, far->name,
                              far->begin, far->end, r[i].name, r[i].begin, r[i].end);
        if (!far || r[i].end > far->end) far = &r[i];
    }
    return DSV4_OK;
}

/* Parse and validate one file's header; append its tensors (unsorted). */
static dsv4_status st_parse_file(dsv4_st *st, int fi) {
    st_file *f = &st->files[fi];
    const char *path = f->path;
    if (f->size < 8)
        return dsv4_error(DSV4_EFORMAT, "%s: truncated: %zu bytes, a safetensors file starts with an 8-byte header length",
                          path, f->size);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)f->map[i] << (8 * i);
    if (hlen > f->size - 8)
        return dsv4_error(DSV4_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                          (unsigned long long)hlen, f->size);
    if (hlen > ST_MAX_HEADER)
        return dsv4_error(DSV4_EFORMAT, "%s: header length %llu is over the limit of %llu bytes", path,
                          (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen < 2)
        return dsv4_error(DSV4_EFORMAT, "%s: header of %llu bytes is too short for a JSON object", path,
                          (unsigned long long)hlen);
    f->data_start = 8 + (size_t)hlen;
    size_t data_size = f->size - f->data_start;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON header at byte %d: %s", path, jerr.position + 8, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: header is not a JSON object", path);
    }
    range *ranges = dsv4_calloc(json_object_size(root) + 1, sizeof *ranges, path);
    if (!ranges) {
        json_decref(root);
        return DSV4_ENOMEM;
    }
    dsv4_status rc = DSV4_OK;
    size_t n_ranges = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                rc = dsv4_error(DSV4_EFORMAT, "%s: __metadata__ is not an object", path);
                break;
            }
            continue;
        }
        dsv4_tensor t;
        if ((rc = parse_entry(st, fi, data_size, key, val, &t)) || (rc = st_push_tensor(st, &t, key, path))) break;
        ranges[n_ranges++] = (range){t.offset - f->data_start, t.offset - f->data_start + t.nbytes,
                                     st->tensors[st->n_tensors - 1].name};
    }
    if (!rc) rc = check_overlaps(path, ranges, n_ranges);
    free(ranges);
    json_decref(root);
    return rc;
}

/* Keep the table sorted by name so lookups are a binary search. All files are parsed first
 * and the table sorted once; a name held by two files then sits next to itself. */
static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const dsv4_tensor *)a)->name, ((const dsv4_tensor *)b)->name);
}

static dsv4_status st_finish(dsv4_st *st) {
    if (!st->n_tensors) return DSV4_OK; /* a header with no tensors; the table is NULL */
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, tensor_cmp);
    for (int i = 1; i < st->n_tensors; i++) {
        const dsv4_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (!strcmp(a->name, b->name))
            return dsv4_error(DSV4_EFORMAT, "%s: tensor %s is also in %s", st->files[b->file].path, b->name,
                              st->files[a->file].path);
    }
    return DSV4_OK;
}

const dsv4_tensor *dsv4_st_find(const dsv4_st *st, const char *name) {
    if (!st || !st->n_tensors) return NULL;
    const dsv4_tensor key = {.name = name};
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, tensor_cmp);
}

/* One file: map it (unless it is an image in memory), parse it, sort the table. */
static dsv4_status open_single(dsv4_st *st, const char *path) {
    int fi;
    dsv4_status rc = st_map_file(st, path, &fi);
    if (!rc) rc = st_parse_file(st, fi);
    if (!rc) rc = st_finish(st);
    return rc;
}

/* Hand the reader out, or close it when opening failed, so callers can simply return. */
static dsv4_status st_done(dsv4_st *st, dsv4_status rc, const char *source, dsv4_st **out) {
    if (!rc && !(st->source = strdup(source))) rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory", source);
    if (rc) {
        dsv4_st_close(st);
        return rc;
    }
    *out = st;
    return DSV4_OK;
}

dsv4_status dsv4_st_open_file(const char *path, dsv4_st **out) {
    *out = NULL;
    dsv4_st *st = st_new();
    if (!st) return DSV4_ENOMEM;
    return st_done(st, open_single(st, path), path, out);
}

dsv4_status dsv4_st_open_memory(const void *buf, size_t len, const char *label, dsv4_st **out) {
    *out = NULL;
    dsv4_st *st = st_new();
    if (!st) return DSV4_ENOMEM;
    int fi;
    dsv4_status rc = st_add_file(st, label, buf, len, false, &fi);
    if (!rc) rc = st_parse_file(st, fi);
    if (!rc) rc = st_finish(st);
    return st_done(st, rc, label, out);
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = dsv4_malloc(n, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* A shard name must be a plain file name inside the model directory. */
static bool plain_file_name(const char *fn) {
    return fn[0] && strcmp(fn, ".") && strcmp(fn, "..") && !strchr(fn, '/');
}

/* Shards: read the index, open each distinct file once (file i of the reader is shard i in
 * first-seen order), then check that every name in the weight map is in the file it is
 * mapped to, and that no file holds tensors the index does not list (a stale shard from
 * another model). */
static dsv4_status open_sharded(dsv4_st *st, const char *dir, const char *index_path) {
    char *text;
    size_t len;
    dsv4_status rc = dsv4_file_read(index_path, ST_MAX_INDEX, &text, &len);
    if (rc) return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON at line %d, column %d: %s", index_path, jerr.line,
                          jerr.column, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: no \"weight_map\" object", index_path);
    }
    json_t *shard_of = json_object(); /* file name -> its index in the reader */
    json_t *shards = json_array();    /* [file name, first tensor mapped to it] */
    if (!shard_of || !shards) rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory", index_path);
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (rc) break;
        if (!json_is_string(v)) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: weight_map[\"%s\"] is not a file name", index_path, name);
            break;
        }
        const char *fn = json_string_value(v);
        if (!plain_file_name(fn)) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: weight_map[\"%s\"] names \"%s\", not a file in the directory",
                            index_path, name, fn);
            break;
        }
        if (!json_object_get(shard_of, fn) &&
            (json_object_set_new(shard_of, fn, json_integer((json_int_t)json_array_size(shards))) ||
             json_array_append_new(shards, json_pack("[ss]", fn, name))))
            rc = dsv4_error(DSV4_ENOMEM, "%s: out of memory", index_path);
    }
    for (size_t i = 0; !rc && i < json_array_size(shards); i++) {
        json_t *s = json_array_get(shards, i);
        const char *fn = json_string_value(json_array_get(s, 0));
        char *path = path_join(dir, fn);
        if (!path) {
            rc = DSV4_ENOMEM;
            break;
        }
        int fi;
        rc = dsv4_file_probe(path);
        if (rc == DSV4_ENOTFOUND)
            rc = dsv4_error(DSV4_ENOTFOUND, "%s: shard named in %s (for tensor %s and others) does not exist", path,
                            index_path, json_string_value(json_array_get(s, 1)));
        if (!rc) rc = st_map_file(st, path, &fi);
        if (!rc) rc = st_parse_file(st, fi);
        free(path);
    }
    if (!rc) rc = st_finish(st);
    if (!rc) {
        json_object_foreach(wm, name, v) {
            const dsv4_tensor *t = dsv4_st_find(st, name);
            int want = (int)json_integer_value(json_object_get(shard_of, json_string_value(v)));
            if (!t) {
                rc = dsv4_error(DSV4_ENOTFOUND, "%s: has no tensor %s, which %s maps to it", st->files[want].path, name,
                                index_path);
                break;
            }
            if (t->file != want) {
                rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s is mapped to %s but found in %s", index_path, name,
                                json_string_value(v), st->files[t->file].path);
                break;
            }
        }
    }
    for (int i = 0; !rc && i < st->n_tensors; i++) {
        if (!json_object_get(wm, st->tensors[i].name))
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s is not listed in %s", st->files[st->tensors[i].file].path,
                            st->tensors[i].name, index_path);
    }
    json_decref(shards);
    json_decref(shard_of);
    json_decref(root);
    return rc;
}

dsv4_status dsv4_st_open_dir(const char *dir, dsv4_st **out) {
    *out = NULL;
    dsv4_st *st = st_new();
    if (!st) return DSV4_ENOMEM;
    char *index = path_join(dir, "model.safetensors.index.json");
    char *single = path_join(dir, "model.safetensors");
    dsv4_status rc = index && single ? DSV4_OK : DSV4_ENOMEM;
    /* the index wins when both exist, as in Hugging Face's loaders; a probe error other than
     * "does not exist" (permissions, a symlink loop) is reported, not skipped */
    bool sharded = false;
    if (!rc) {
        rc = dsv4_file_probe(index);
        sharded = rc == DSV4_OK;
        if (sharded) {
            rc = open_sharded(st, dir, index);
        } else if (rc == DSV4_ENOTFOUND) {
            rc = dsv4_file_probe(single);
            if (rc == DSV4_OK) rc = open_single(st, single);
            else if (rc == DSV4_ENOTFOUND)
                rc = dsv4_error(DSV4_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
        }
    }
    rc = st_done(st, rc, sharded ? index : single, out);
    free(index);
    free(single);
    return rc;
}

void dsv4_st_close(dsv4_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].owned_map && st->files[i].map) munmap((void *)st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (int i = 0; i < st->n_tensors; i++) free(st->names[i]);
    free(st->names);
    free(st->files);
    free(st->tensors);
    free(st->source);
    free(st);
}

int dsv4_st_count(const dsv4_st *st) { return st->n_tensors; }
const dsv4_tensor *dsv4_st_at(const dsv4_st *st, int i) { return &st->tensors[i]; }
const char *dsv4_st_file_path(const dsv4_st *st, int file) { return st->files[file].path; }
const char *dsv4_st_source(const dsv4_st *st) { return st->source; }

void dsv4_st_prefetch(const dsv4_tensor *t) {
    if (!t->nbytes) return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    uintptr_t e = (uintptr_t)t->data + t->nbytes;
    madvise((void *)b, e - b, MADV_WILLNEED);
}
