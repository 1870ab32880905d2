/* safetensors.c: validated, zero-copy reading of safetensors files and shard sets.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
 * data section; offsets are relative to the data section. We map each file once and keep one
 * table of tensors sorted by name for binary search. All checks happen at open time so that
 * later code can trust every pointer and size. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
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
    int sorted_n; /* tensors[0..sorted_n) are sorted by name; the rest are being parsed */
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

static dsv4_st *st_new(void) {
    dsv4_st *st = dsv4_calloc(1, sizeof *st, "safetensors reader");
    return st;
}

static dsv4_status st_add_file(dsv4_st *st, const char *path, const uint8_t *map, size_t size,
                               bool owned, int *index) {
    st_file *nf = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *nf);
    if (!nf) return dsv4_error(DSV4_ENOMEM, "out of memory opening %s", path);
    st->files = nf;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return dsv4_error(DSV4_ENOMEM, "out of memory opening %s", path);
    f->map = map;
    f->size = size;
    f->owned_map = owned;
    *index = st->n_files++;
    return DSV4_OK;
}

static dsv4_status map_file(const char *path, const uint8_t **map, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dsv4_error(DSV4_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return dsv4_error(DSV4_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return dsv4_error(DSV4_EIO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return dsv4_error(DSV4_EFORMAT, "%s: truncated: %lld bytes, a safetensors file needs at least 8",
                          path, (long long)sb.st_size);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return dsv4_error(DSV4_EIO, "%s: cannot map: %s", path, strerror(e));
    *map = p;
    *size = (size_t)sb.st_size;
    return DSV4_OK;
}

static dsv4_status st_push_tensor(dsv4_st *st, dsv4_tensor *t, const char *name) {
    if (st->n_tensors == st->cap_tensors) {
        int cap = st->cap_tensors ? st->cap_tensors * 2 : 256;
        dsv4_tensor *nt = realloc(st->tensors, (size_t)cap * sizeof *nt);
        char **nn = realloc(st->names, (size_t)cap * sizeof *nn);
        if (nt) st->tensors = nt;
        if (nn) st->names = nn;
        if (!nt || !nn) return dsv4_error(DSV4_ENOMEM, "out of memory reading tensor table");
        st->cap_tensors = cap;
    }
    char *copy = strdup(name);
    if (!copy) return dsv4_error(DSV4_ENOMEM, "out of memory reading tensor table");
    t->name = copy;
    st->names[st->n_tensors] = copy;
    st->tensors[st->n_tensors++] = *t;
    return DSV4_OK;
}

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

/* Parse and validate one file's header; append its tensors. */
static dsv4_status st_parse_file(dsv4_st *st, int fi) {
    st_file *f = &st->files[fi];
    const char *path = f->path;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)f->map[i] << (8 * i);
    if (hlen > f->size - 8)
        return dsv4_error(DSV4_EFORMAT,
                          "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                          (unsigned long long)hlen, f->size);
    if (hlen < 2) return dsv4_error(DSV4_EFORMAT, "%s: header of %llu bytes is too short", path,
                                    (unsigned long long)hlen);
    f->data_start = 8 + (size_t)hlen;
    size_t data_size = f->size - f->data_start;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON header at byte %d: %s", path,
                          jerr.position + 8, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: header is not a JSON object", path);
    }
    dsv4_status rc = DSV4_OK;
    size_t n_entries = json_object_size(root);
    range *ranges = dsv4_calloc(n_entries + 1, sizeof *ranges, "tensor ranges");
    if (!ranges) {
        json_decref(root);
        return DSV4_ENOMEM;
    }
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
        if (!json_is_object(val)) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: entry is not an object", path, key);
            break;
        }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: needs string dtype, array shape and two data_offsets",
                            path, key);
            break;
        }
        dsv4_tensor t;
        memset(&t, 0, sizeof t);
        t.dtype = dsv4_dtype_parse(json_string_value(jd));
        if (t.dtype == DSV4_DT_UNKNOWN) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: unknown dtype \"%s\"", path, key,
                            json_string_value(jd));
            break;
        }
        size_t nd = json_array_size(js);
        if (nd > DSV4_MAX_DIMS) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: %zu dimensions (at most %d)", path, key, nd,
                            DSV4_MAX_DIMS);
            break;
        }
        t.ndim = (int)nd;
        size_t numel = 1;
        for (size_t i = 0; i < nd && rc == DSV4_OK; i++) {
            json_t *d = json_array_get(js, i);
            if (!json_is_integer(d) || json_integer_value(d) < 0) {
                rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: shape[%zu] is not a non-negative integer",
                                path, key, i);
                break;
            }
            t.shape[i] = json_integer_value(d);
            if (!dsv4_mul_ok(numel, (size_t)t.shape[i], &numel))
                rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: shape overflows", path, key);
        }
        if (rc) break;
        json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
        if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
            json_integer_value(je) < json_integer_value(jb)) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s: data_offsets must be integers 0 <= begin <= end",
                            path, key);
            break;
        }
        uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
        if (e > data_size) {
            rc = dsv4_error(DSV4_EFORMAT,
                            "%s: tensor %s: data_offsets [%llu, %llu] out of range: the data section has %zu bytes",
                            path, key, (unsigned long long)b, (unsigned long long)e, data_size);
            break;
        }
        size_t want;
        if (!dsv4_mul_ok(numel, dsv4_dtype_size(t.dtype), &want) || want != e - b) {
            rc = dsv4_error(DSV4_EFORMAT,
                            "%s: tensor %s: %llu bytes at data_offsets but dtype %s and its shape need %zu",
                            path, key, (unsigned long long)(e - b), dsv4_dtype_name(t.dtype), numel * dsv4_dtype_size(t.dtype));
            break;
        }
        t.nbytes = (size_t)(e - b);
        t.offset = f->data_start + (size_t)b;
        t.data = f->map + t.offset;
        t.file = fi;
        if (dsv4_st_find(st, key)) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s appears twice in the model", path, key);
            break;
        }
        ranges[n_ranges].begin = (size_t)b;
        ranges[n_ranges].end = (size_t)e;
        rc = st_push_tensor(st, &t, key);
        if (rc) break;
        ranges[n_ranges].name = st->tensors[st->n_tensors - 1].name;
        n_ranges++;
    }
    if (rc == DSV4_OK) {
        qsort(ranges, n_ranges, sizeof *ranges, range_cmp);
        for (size_t i = 1; i < n_ranges; i++) {
            if (ranges[i].begin < ranges[i - 1].end && ranges[i].end > ranges[i].begin) {
                rc = dsv4_error(DSV4_EFORMAT, "%s: tensors %s [%zu, %zu) and %s [%zu, %zu) overlap", path,
                                ranges[i - 1].name, ranges[i - 1].begin, ranges[i - 1].end, ranges[i].name,
                                ranges[i].begin, ranges[i].end);
                break;
            }
        }
    }
    free(ranges);
    json_decref(root);
    return rc;
}

/* Keep the table sorted by name so lookups are a binary search. New tensors arrive in
 * batches (one file at a time); we re-sort after each file. */
static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const dsv4_tensor *)a)->name, ((const dsv4_tensor *)b)->name);
}

static void st_sort(dsv4_st *st) { qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, tensor_cmp); }

/* dsv4_st_find must work while a file is being parsed (duplicate check): the newest tensors
 * are not sorted yet, so they are scanned linearly after the binary search. */
const dsv4_tensor *dsv4_st_find(const dsv4_st *st, const char *name) {
    if (!st) return NULL;
    int lo = 0, hi = st->sorted_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (!c) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    for (int i = st->sorted_n; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

static dsv4_status st_parse_sorted(dsv4_st *st, int fi) {
    dsv4_status rc = st_parse_file(st, fi);
    st_sort(st);
    st->sorted_n = st->n_tensors;
    return rc;
}

dsv4_status dsv4_st_open_file(const char *path, dsv4_st **out) {
    *out = NULL;
    dsv4_st *st = st_new();
    if (!st) return DSV4_ENOMEM;
    const uint8_t *map;
    size_t size;
    int fi;
    dsv4_status rc = map_file(path, &map, &size);
    if (!rc) {
        rc = st_add_file(st, path, map, size, true, &fi);
        if (rc) munmap((void *)map, size);
    }
    if (!rc) rc = st_parse_sorted(st, fi);
    if (rc) {
        dsv4_st_close(st);
        return rc;
    }
    *out = st;
    return DSV4_OK;
}

dsv4_status dsv4_st_open_memory(const void *buf, size_t len, const char *label, dsv4_st **out) {
    *out = NULL;
    if (len < 8) return dsv4_error(DSV4_EFORMAT, "%s: truncated: %zu bytes, a safetensors file needs at least 8", label, len);
    dsv4_st *st = st_new();
    if (!st) return DSV4_ENOMEM;
    int fi;
    dsv4_status rc = st_add_file(st, label, buf, len, false, &fi);
    if (!rc) rc = st_parse_sorted(st, fi);
    if (rc) {
        dsv4_st_close(st);
        return rc;
    }
    *out = st;
    return DSV4_OK;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Shards: read the index, open each distinct file once, then check that every name in the
 * weight map is in the file it is mapped to, and that no file holds tensors the index does
 * not list (a stale shard from another model). */
static dsv4_status open_sharded(dsv4_st *st, const char *dir, const char *index_path) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON at line %d: %s", index_path, jerr.line, jerr.text);
    dsv4_status rc = DSV4_OK;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(root);
        return dsv4_error(DSV4_EFORMAT, "%s: no \"weight_map\" object", index_path);
    }
    const char *name;
    json_t *v;
    /* distinct files, in first-seen order */
    json_t *files = json_array();
    json_t *seen = json_object();
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: weight_map[\"%s\"] is not a file name", index_path, name);
            break;
        }
        const char *fn = json_string_value(v);
        if (strchr(fn, '/') || !strcmp(fn, "..") || !fn[0]) {
            rc = dsv4_error(DSV4_EFORMAT, "%s: weight_map[\"%s\"] names \"%s\", not a file in the directory",
                            index_path, name, fn);
            break;
        }
        if (!json_object_get(seen, fn)) {
            json_object_set_new(seen, fn, json_integer((json_int_t)json_array_size(files)));
            json_array_append_new(files, json_string(fn));
        }
    }
    for (size_t i = 0; rc == DSV4_OK && i < json_array_size(files); i++) {
        const char *fn = json_string_value(json_array_get(files, i));
        char *path = path_join(dir, fn);
        if (!path) {
            rc = dsv4_error(DSV4_ENOMEM, "out of memory");
            break;
        }
        if (!file_exists(path)) {
            rc = dsv4_error(DSV4_ENOTFOUND, "%s: shard %s is named in %s but does not exist", dir, fn, index_path);
            free(path);
            break;
        }
        const uint8_t *map;
        size_t size;
        int fi;
        rc = map_file(path, &map, &size);
        if (!rc) {
            rc = st_add_file(st, path, map, size, true, &fi);
            if (rc) munmap((void *)map, size);
        }
        free(path);
        if (!rc) rc = st_parse_sorted(st, fi);
    }
    if (rc == DSV4_OK) {
        json_object_foreach(wm, name, v) {
            const dsv4_tensor *t = dsv4_st_find(st, name);
            const char *fn = json_string_value(v);
            if (!t) {
                rc = dsv4_error(DSV4_ENOTFOUND, "%s: tensor %s is mapped to %s but that file does not hold it",
                                index_path, name, fn);
                break;
            }
            const char *tp = st->files[t->file].path;
            size_t lp = strlen(tp), lf = strlen(fn);
            if (lp < lf || strcmp(tp + lp - lf, fn)) {
                rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s is mapped to %s but found in %s", index_path, name,
                                fn, tp);
                break;
            }
        }
    }
    if (rc == DSV4_OK && (size_t)st->n_tensors != json_object_size(wm)) {
        for (int i = 0; i < st->n_tensors; i++) {
            if (!json_object_get(wm, st->tensors[i].name)) {
                rc = dsv4_error(DSV4_EFORMAT, "%s: tensor %s is not listed in %s", st->files[st->tensors[i].file].path,
                                st->tensors[i].name, index_path);
                break;
            }
        }
    }
    json_decref(files);
    json_decref(seen);
    json_decref(root);
    return rc;
}

dsv4_status dsv4_st_open_dir(const char *dir, dsv4_st **out) {
    *out = NULL;
    dsv4_st *st = st_new();
    if (!st) return DSV4_ENOMEM;
    char *index = path_join(dir, "model.safetensors.index.json");
    char *single = path_join(dir, "model.safetensors");
    dsv4_status rc;
    if (!index || !single) rc = dsv4_error(DSV4_ENOMEM, "out of memory");
    else if (file_exists(index)) rc = open_sharded(st, dir, index);
    else if (file_exists(single)) {
        const uint8_t *map;
        size_t size;
        int fi;
        rc = map_file(single, &map, &size);
        if (!rc) {
            rc = st_add_file(st, single, map, size, true, &fi);
            if (rc) munmap((void *)map, size);
        }
        if (!rc) rc = st_parse_sorted(st, fi);
    } else {
        rc = dsv4_error(DSV4_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    free(index);
    free(single);
    if (rc) {
        dsv4_st_close(st);
        return rc;
    }
    *out = st;
    return DSV4_OK;
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
    free(st);
}

int dsv4_st_count(const dsv4_st *st) { return st->n_tensors; }
const dsv4_tensor *dsv4_st_at(const dsv4_st *st, int i) { return &st->tensors[i]; }
const char *dsv4_st_file_path(const dsv4_st *st, int file) { return st->files[file].path; }

void dsv4_st_prefetch(const dsv4_tensor *t) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    uintptr_t e = (uintptr_t)t->data + t->nbytes;
    if (t->nbytes) madvise((void *)b, e - b, MADV_WILLNEED);
}
