/* test_bad_checkpoints.c: broken checkpoints fail cleanly, with a message that names the
 * file and the tensor or key at fault.
 *
 * Every case is built on the fly in a temporary directory. Full-model cases start from the
 * good tiny model (DSV4_SHARED/refvectors/models/tiny_v4flash_fp8): the files a case leaves
 * alone are symlinks to the originals, and the one it breaks is rewritten, a shard by reading
 * its tensor table and writing it back with one change (our own writer below, which can also
 * misplace data), the index and config.json by editing their JSON. Header-level cases use
 * small synthetic files instead, so the test stays fast. Each case checks the status of
 * dsv4_model_open (or of the reader) and that the message contains the expected pieces.
 *
 * Also covered: odd files where a checkpoint file should be (directory, FIFO, symlink loop,
 * empty, sparse 200 MB file with a huge header length), the safetensors writer's refusals,
 * and the seed corpus of the fuzzers (fuzz/corpus): every valid_* seed opens, every bad_*
 * seed fails naming its file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dsv4.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/config.h"

#define TINY DSV4_SHARED "/refvectors/models/tiny_v4flash_fp8"
#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define INDEX "model.safetensors.index.json"

static char tmp_root[256];

/* A path or message built with printf syntax, kept in a small ring of buffers. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    static char ring[8][1024];
    static int next;
    char *b = ring[next++ % 8];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof ring[0], f, ap);
    va_end(ap);
    return b;
}

/* ---- expectations -------------------------------------------------------------------------- */

/* The status must be `want` and the message must contain each of the NULL-terminated pieces. */
static void expect_msg(const char *what, dsv4_status got, dsv4_status want, ...) {
    const char *msg = got ? dsv4_errmsg() : "(no error)";
    CHECK(got == want, "%s: status %s, expected %s (%s)", what, dsv4_status_name(got), dsv4_status_name(want), msg);
    va_list ap;
    va_start(ap, want);
    for (const char *piece; (piece = va_arg(ap, const char *));)
        CHECK(strstr(msg, piece) != NULL, "%s: message \"%s\" lacks \"%s\"", what, msg, piece);
    va_end(ap);
    if (getenv("DSV4_TEST_VERBOSE")) printf("%-34s %-10s %s\n", what, dsv4_status_name(got), msg);
}

#define EXPECT_OPEN(dir, want, ...)                                                     \
    do {                                                                                \
        const char *d_ = (dir);                                                         \
        dsv4_model *m_ = NULL;                                                          \
        dsv4_status rc_ = dsv4_model_open(d_, NULL, &m_);                               \
        expect_msg(d_ + strlen(tmp_root) + 1, rc_, want, __VA_ARGS__, (char *)NULL);    \
        CHECK((rc_ == DSV4_OK) == (m_ != NULL), "model pointer and status disagree");   \
        dsv4_model_close(m_);                                                           \
    } while (0)

/* ---- files --------------------------------------------------------------------------------- */

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

/* A new sparse file of n bytes (no disk space used). */
static int truncate_new(const char *path, off_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = fd >= 0 && ftruncate(fd, n) == 0 ? 0 : -1;
    if (fd >= 0) close(fd);
    return rc;
}

/* A case directory whose four files are symlinks to the good model's. One case is built and
 * opened at a time, so its path lives in one static buffer (not in fmt's ring). */
static char *new_case(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp_root, name);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    const char *files[] = {"config.json", INDEX, SHARD1, SHARD2};
    for (size_t i = 0; i < 4; i++)
        CHECK(symlink(fmt("%s/%s", TINY, files[i]), fmt("%s/%s", dir, files[i])) == 0, "symlink %s", files[i]);
    return dir;
}

/* Replace the symlink `name` in `dir` by nothing (so the caller can put something else). */
static char *unlink_in(const char *dir, const char *name) {
    char *p = fmt("%s/%s", dir, name);
    CHECK(unlink(p) == 0, "unlink %s", p);
    return p;
}

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK(j != NULL, "%s: %s", path, e.text);
    return j;
}

static void save_json(json_t *j, const char *path) {
    CHECK(json_dump_file(j, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER) == 0, "cannot write %s", path);
    json_decref(j);
}

/* The case's config.json with `key` set to `val` (a JSON text; NULL deletes the key). */
static char *config_case(const char *name, const char *key, const char *val) {
    char *dir = new_case(name);
    char *path = unlink_in(dir, "config.json");
    json_t *c = load_json(TINY "/config.json");
    if (val) json_object_set_new(c, key, json_loads(val, JSON_DECODE_ANY, NULL));
    else json_object_del(c, key);
    save_json(c, path);
    return dir;
}

/* ---- shards: a tensor table read from a good shard, edited, written back -------------------- */

typedef struct {
    char name[160];
    char dtype[16];
    int ndim;
    int64_t shape[DSV4_MAX_DIMS];
    const void *data;
    size_t nbytes;
    size_t align; /* start the data at a multiple of this (0: right after the previous) */
    size_t gap;   /* then this many bytes more: a way to misalign it */
} entry;

typedef struct {
    dsv4_st *src; /* keeps the source mapped while entries point into it */
    entry e[1024];
    int n;
} table;

static int by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return (const char *)x->data < (const char *)y->data ? -1 : (const char *)x->data > (const char *)y->data;
}

static void read_table(table *t, const char *shard) {
    memset(t, 0, sizeof *t);
    dsv4_status rc = dsv4_st_open_file(fmt("%s/%s", TINY, shard), &t->src);
    CHECK(rc == DSV4_OK, "open %s: %s", shard, dsv4_errmsg());
    if (rc) return;
    for (int i = 0; i < dsv4_st_count(t->src) && t->n < 1024; i++) {
        const dsv4_tensor *s = dsv4_st_at(t->src, i);
        entry *e = &t->e[t->n++];
        snprintf(e->name, sizeof e->name, "%s", s->name);
        snprintf(e->dtype, sizeof e->dtype, "%s", dsv4_dtype_name(s->dtype));
        e->ndim = s->ndim;
        memcpy(e->shape, s->shape, sizeof e->shape);
        e->data = s->data;
        e->nbytes = s->nbytes;
    }
    qsort(t->e, (size_t)t->n, sizeof t->e[0], by_offset); /* the release order */
}

static entry *entry_of(table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].name, name)) return &t->e[i];
    CHECK(0, "the tiny model has no tensor %s", name);
    return &t->e[0];
}

static void drop_entry(table *t, const char *name) {
    entry *e = entry_of(t, name);
    memmove(e, e + 1, (size_t)(t->e + t->n - (e + 1)) * sizeof *e);
    t->n--;
}

/* Header with data_offsets as laid out (gaps included), padded to 8 with spaces, then data. */
static void write_table(const table *t, const char *path) {
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{ss}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        size_t pad = e->align ? (e->align - off % e->align) % e->align : 0;
        off += pad + e->gap;
        json_object_set_new(h, e->name, json_pack("{s:s, s:o, s:[I,I]}", "dtype", e->dtype, "shape", shape,
                                                  "data_offsets", (json_int_t)off, (json_int_t)(off + e->nbytes)));
        off += e->nbytes;
    }
    char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fwrite(lenb, 1, 8, f);
    fwrite(text, 1, hlen, f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', f);
    off = 0;
    for (int i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        size_t pad = (e->align ? (e->align - off % e->align) % e->align : 0) + e->gap;
        for (size_t g = 0; g < pad; g++) fputc(0, f);
        fwrite(e->data, 1, e->nbytes, f);
        off += pad + e->nbytes;
    }
    CHECK(fclose(f) == 0, "cannot write %s", path);
    free(text);
}

static void free_table(table *t) { dsv4_st_close(t->src); }

/* Copy the first half of file `from` to `to`. */
static int truncate_copy(const char *from, const char *to) {
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f) / 2;
    rewind(f);
    char *buf = malloc((size_t)n);
    int ok = buf && fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (ok) write_bytes(to, buf, (size_t)n);
    free(buf);
    return ok ? 0 : -1;
}

/* Which shard holds `name`, by the good index. */
static const char *shard_of(const char *name) {
    static json_t *index;
    if (!index) index = load_json(TINY "/" INDEX);
    const char *s = json_string_value(json_object_get(json_object_get(index, "weight_map"), name));
    CHECK(s != NULL, "the index has no %s", name);
    return s ? s : SHARD1;
}

/* Edit the case's index: weight_map[name] = file (NULL removes the entry). */
static void index_map(const char *dir, const char *name, const char *file) {
    char *path = fmt("%s/%s", dir, INDEX);
    struct stat sb;
    bool still_link = lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
    if (still_link) unlink(path);
    json_t *j = load_json(still_link ? TINY "/" INDEX : path);
    json_t *wm = json_object_get(j, "weight_map");
    if (file) json_object_set_new(wm, name, json_string(file));
    else json_object_del(wm, name);
    save_json(j, path);
}

/* ---- the cases ------------------------------------------------------------------------------ */

static void good_model(void) {
    dsv4_model *m = NULL;
    dsv4_status rc = dsv4_model_open(TINY, NULL, &m);
    CHECK(rc == DSV4_OK, "the good tiny model does not open: %s", dsv4_errmsg());
    if (m) CHECK(dsv4_model_vocab(m) == 1000 && dsv4_model_has_mtp(m), "tiny model: vocab %d", dsv4_model_vocab(m));
    dsv4_model_close(m);
    m = NULL;
    expect_msg("no_dir", dsv4_model_open(NULL, NULL, &m), DSV4_EINVAL, "no model directory", (char *)NULL);
    expect_msg("empty_dir", dsv4_model_open("", NULL, &m), DSV4_EINVAL, "no model directory", (char *)NULL);
    CHECK(m == NULL, "no model on failure");
    /* and its copy through symlinks, which every other case starts from */
    EXPECT_OPEN(new_case("good"), DSV4_OK, "");
}

static void config_cases(void) {
    EXPECT_OPEN(config_case("cfg_missing_key", "hidden_size", NULL), DSV4_EFORMAT, "config.json",
                "missing the key \"hidden_size\"");
    EXPECT_OPEN(config_case("cfg_wrong_type", "num_attention_heads", "\"4\""), DSV4_EFORMAT, "config.json",
                "\"num_attention_heads\" must be an integer");
    EXPECT_OPEN(config_case("cfg_not_integral", "hidden_size", "256.5"), DSV4_EFORMAT, "config.json",
                "\"hidden_size\" must be an integer");
    EXPECT_OPEN(config_case("cfg_negative", "num_hidden_layers", "-1"), DSV4_EFORMAT, "config.json",
                "\"num_hidden_layers\" = -1 is outside");
    EXPECT_OPEN(config_case("cfg_huge", "vocab_size", "99999999999"), DSV4_EFORMAT, "config.json",
                "\"vocab_size\" = 99999999999 is out of range");
    EXPECT_OPEN(config_case("cfg_ratios", "compress_ratios", "[0, 0, 4]"), DSV4_EFORMAT, "config.json",
                "\"compress_ratios\" has 3 entries, expected 6 (layers) or 7");
    EXPECT_OPEN(config_case("cfg_rope_type", "rope_scaling", "[16]"), DSV4_EFORMAT, "config.json",
                "\"rope_scaling\" must be an object");
    EXPECT_OPEN(config_case("cfg_topk", "num_experts_per_tok", "9"), DSV4_EFORMAT, "config.json",
                "\"num_experts_per_tok\" must be at most n_routed_experts");
    /* a config that parses but disagrees with the checkpoint */
    EXPECT_OPEN(config_case("cfg_vs_weights", "vocab_size", "1001"), DSV4_EFORMAT, SHARD1, "embed.weight",
                "has shape [1000, 256], the config implies [1001, 256]");

    char *dir = new_case("cfg_malformed");
    write_bytes(unlink_in(dir, "config.json"), "{\"vocab_size\": 1000,\n \"hidden_size\": }", 38);
    EXPECT_OPEN(dir, DSV4_EFORMAT, "config.json", "malformed JSON at line 2");
    dir = new_case("cfg_nul");
    write_bytes(unlink_in(dir, "config.json"), "{}\0{\"x\": 1}", 11);
    EXPECT_OPEN(dir, DSV4_EFORMAT, "config.json", "NUL byte at offset 2");
    dir = new_case("cfg_absent");
    unlink_in(dir, "config.json");
    EXPECT_OPEN(dir, DSV4_ENOTFOUND, "config.json");
    dir = new_case("cfg_huge_file"); /* sparse: 32 MB of nothing */
    char *path = unlink_in(dir, "config.json");
    CHECK(truncate_new(path, 32 << 20) == 0, "sparse config.json");
    EXPECT_OPEN(dir, DSV4_EFORMAT, "config.json", "33554432 bytes, over the limit of 16777216");
    dir = new_case("cfg_directory");
    CHECK(mkdir(unlink_in(dir, "config.json"), 0755) == 0, "mkdir");
    EXPECT_OPEN(dir, DSV4_EIO, "config.json", "not a regular file (a directory)");
}

/* One shard rewritten with an edit; `edit` changes the table (and may touch the index). */
typedef void (*shard_edit)(table *t, const char *dir);

static char *shard_case(const char *name, const char *shard, shard_edit edit) {
    char *dir = new_case(name);
    table *t = malloc(sizeof *t);
    read_table(t, shard);
    edit(t, dir);
    write_table(t, unlink_in(dir, shard));
    free_table(t);
    free(t);
    return dir;
}

static void edit_dtype(table *t, const char *dir) {
    snprintf(entry_of(t, "layers.0.attn_norm.weight")->dtype, 16, "I16"); /* same size as BF16 */
}
static void edit_shape(table *t, const char *dir) {
    entry *e = entry_of(t, "layers.0.attn.wkv.weight"); /* [128, 256] */
    e->shape[0] = 256;
    e->shape[1] = 128;
}
static void edit_scale_shape(table *t, const char *dir) {
    entry *e = entry_of(t, "layers.0.attn.wq_a.scale"); /* [1, 2] */
    e->shape[0] = 2;
    e->shape[1] = 1;
}
static void edit_drop_scale(table *t, const char *dir) {
    drop_entry(t, "layers.0.attn.wq_b.scale");
    index_map(dir, "layers.0.attn.wq_b.scale", NULL);
}
static void edit_drop(table *t, const char *dir) {
    drop_entry(t, "layers.0.ffn_norm.weight");
    index_map(dir, "layers.0.ffn_norm.weight", NULL);
}
static void edit_drop_keep_index(table *t, const char *dir) { drop_entry(t, "layers.0.ffn_norm.weight"); }

static const float extra_data[4] = {1, 2, 3, 4};
static void add_extra(table *t) {
    entry *e = &t->e[t->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "layers.0.attn.bogus");
    snprintf(e->dtype, sizeof e->dtype, "F32");
    e->ndim = 1;
    e->shape[0] = 4;
    e->data = extra_data;
    e->nbytes = sizeof extra_data;
}
static void edit_extra(table *t, const char *dir) {
    add_extra(t);
    index_map(dir, "layers.0.attn.bogus", SHARD1);
}
static void edit_extra_not_indexed(table *t, const char *dir) { add_extra(t); }

/* tid2eid of layer 0 with token 7's second expert set to 8 (there are 8 experts: 0..7). */
static int64_t tid2eid_bad[1000 * 2];
static void edit_tid2eid(table *t, const char *dir) {
    entry *e = entry_of(t, "layers.0.ffn.gate.tid2eid");
    memcpy(tid2eid_bad, e->data, sizeof tid2eid_bad);
    tid2eid_bad[7 * 2 + 1] = 8;
    e->data = tid2eid_bad;
}

/* The FP8 block scale of wq_a as F32 (which the loader accepts), aligned to 4 bytes, or one
 * byte past that. The header offsets are not 8-aligned here, but the header is padded to 8,
 * so data offset alignment is file offset alignment is memory alignment. */
static const float scale_f32[2] = {1.0f, 0.5f};
static void edit_aligned_f32_scale(table *t, const char *dir) {
    entry *e = entry_of(t, "layers.0.attn.wq_a.scale");
    snprintf(e->dtype, sizeof e->dtype, "F32");
    e->data = scale_f32;
    e->nbytes = sizeof scale_f32;
    e->align = 4;
}
static void edit_unaligned(table *t, const char *dir) {
    edit_aligned_f32_scale(t, dir);
    entry_of(t, "layers.0.attn.wq_a.scale")->gap = 1;
}

static void shard_cases(void) {
    EXPECT_OPEN(shard_case("wrong_dtype", shard_of("layers.0.attn_norm.weight"), edit_dtype), DSV4_EFORMAT, SHARD1,
                "layers.0.attn_norm.weight has dtype I16, expected F32, BF16 or F16");
    EXPECT_OPEN(shard_case("wrong_shape", shard_of("layers.0.attn.wkv.weight"), edit_shape), DSV4_EFORMAT, SHARD1,
                "layers.0.attn.wkv.weight has shape [256, 128], the config implies [128, 256]");
    EXPECT_OPEN(shard_case("scale_shape", shard_of("layers.0.attn.wq_a.scale"), edit_scale_shape), DSV4_EFORMAT, SHARD1,
                "layers.0.attn.wq_a.scale has shape [2, 1], the config implies [1, 2]");
    EXPECT_OPEN(shard_case("fp8_without_scale", shard_of("layers.0.attn.wq_b.scale"), edit_drop_scale), DSV4_ENOTFOUND,
                SHARD1, "layers.0.attn.wq_b.weight is F8_E4M3 but its scale tensor layers.0.attn.wq_b.scale is missing");
    EXPECT_OPEN(shard_case("missing_tensor", shard_of("layers.0.ffn_norm.weight"), edit_drop), DSV4_ENOTFOUND, INDEX,
                "missing tensor layers.0.ffn_norm.weight");
    EXPECT_OPEN(shard_case("index_names_absent", shard_of("layers.0.ffn_norm.weight"), edit_drop_keep_index),
                DSV4_ENOTFOUND, SHARD1, "has no tensor layers.0.ffn_norm.weight, which ", INDEX " maps to it");
    EXPECT_OPEN(shard_case("extra_tensor", SHARD1, edit_extra), DSV4_EFORMAT, SHARD1,
                "unexpected tensor layers.0.attn.bogus");
    EXPECT_OPEN(shard_case("extra_not_indexed", SHARD1, edit_extra_not_indexed), DSV4_EFORMAT, SHARD1,
                "tensor layers.0.attn.bogus is not listed in ", INDEX);
    EXPECT_OPEN(shard_case("tid2eid_range", shard_of("layers.0.ffn.gate.tid2eid"), edit_tid2eid), DSV4_EFORMAT, SHARD1,
                "layers.0.ffn.gate.tid2eid: token 7 routes to expert 8, outside 0..7");
    EXPECT_OPEN(shard_case("unaligned_f32", shard_of("layers.0.attn.wq_a.scale"), edit_unaligned), DSV4_EFORMAT, SHARD1,
                "layers.0.attn.wq_a.scale (F32) starts at byte", "not a multiple of its element size");
    EXPECT_OPEN(shard_case("aligned_f32_scale", shard_of("layers.0.attn.wq_a.scale"), edit_aligned_f32_scale), DSV4_OK, "");

    /* the second shard cut at half its size: the first tensor past the cut is out of range */
    char *dir = new_case("truncated_shard");
    CHECK(unlink(fmt("%s/%s", dir, SHARD2)) == 0, "unlink");
    CHECK(truncate_copy(TINY "/" SHARD2, fmt("%s/%s", dir, SHARD2)) == 0, "truncated copy");
    EXPECT_OPEN(dir, DSV4_EFORMAT, SHARD2, "out of range: the data section has");
}

static void index_cases(void) {
    char *dir = new_case("shard_absent");
    index_map(dir, "norm.weight", "model-00003-of-00002.safetensors");
    EXPECT_OPEN(dir, DSV4_ENOTFOUND, "model-00003-of-00002.safetensors", "shard named in " , "norm.weight",
                "does not exist");
    dir = new_case("index_wrong_shard");
    index_map(dir, "norm.weight", SHARD1);
    EXPECT_OPEN(dir, DSV4_EFORMAT, INDEX, "tensor norm.weight is mapped to " SHARD1 " but found in", SHARD2);
    dir = new_case("index_outside_dir");
    index_map(dir, "norm.weight", "../" SHARD2);
    EXPECT_OPEN(dir, DSV4_EFORMAT, INDEX, "weight_map[\"norm.weight\"] names \"../" SHARD2 "\", not a file in the directory");
    dir = new_case("index_not_string");
    char *path = unlink_in(dir, INDEX);
    write_bytes(path, "{\"weight_map\": {\"norm.weight\": 2}}", 34);
    EXPECT_OPEN(dir, DSV4_EFORMAT, INDEX, "weight_map[\"norm.weight\"] is not a file name");
    dir = new_case("index_malformed");
    write_bytes(unlink_in(dir, INDEX), "{\"weight_map\": {\"a\": ", 21);
    EXPECT_OPEN(dir, DSV4_EFORMAT, INDEX, "malformed JSON at line 1");
    dir = new_case("index_no_map");
    write_bytes(unlink_in(dir, INDEX), "{\"metadata\": {}}", 16);
    EXPECT_OPEN(dir, DSV4_EFORMAT, INDEX, "no \"weight_map\" object");
    dir = new_case("no_weights");
    unlink_in(dir, INDEX);
    EXPECT_OPEN(dir, DSV4_ENOTFOUND, "no model.safetensors or " INDEX);
    /* a tensor held by two shards */
    dir = new_case("duplicate_across_shards");
    table *t = malloc(sizeof *t);
    read_table(t, SHARD2);
    entry *norm = entry_of(t, "norm.weight");
    table *t1 = malloc(sizeof *t1);
    read_table(t1, SHARD1);
    t1->e[t1->n++] = *norm;
    write_table(t1, unlink_in(dir, SHARD1));
    free_table(t1);
    free_table(t);
    free(t1);
    free(t);
    EXPECT_OPEN(dir, DSV4_EFORMAT, "tensor norm.weight is also in", SHARD1, SHARD2);
}

/* Things that are not a regular file where a shard should be: no crash, no hang. */
static void odd_file_cases(void) {
    char *dir = new_case("shard_directory");
    CHECK(mkdir(unlink_in(dir, SHARD2), 0755) == 0, "mkdir");
    EXPECT_OPEN(dir, DSV4_EIO, SHARD2, "not a regular file (a directory)");
    dir = new_case("shard_fifo");
    CHECK(mkfifo(unlink_in(dir, SHARD2), 0644) == 0, "mkfifo");
    EXPECT_OPEN(dir, DSV4_EIO, SHARD2, "not a regular file (a device, FIFO or socket)");
    dir = new_case("shard_symlink_loop");
    char *p = unlink_in(dir, SHARD2);
    CHECK(symlink(SHARD2, p) == 0, "symlink");
    EXPECT_OPEN(dir, DSV4_EIO, SHARD2, "cannot open");
    dir = new_case("shard_dangling");
    p = unlink_in(dir, SHARD2);
    CHECK(symlink("nowhere.safetensors", p) == 0, "symlink");
    EXPECT_OPEN(dir, DSV4_ENOTFOUND, SHARD2, "does not exist");
    dir = new_case("shard_empty");
    write_bytes(unlink_in(dir, SHARD2), "", 0);
    EXPECT_OPEN(dir, DSV4_EFORMAT, SHARD2, "truncated: 0 bytes");
    /* a sparse 200 MB file claiming a 150 MB header: refused before any parsing */
    dir = new_case("shard_huge_header");
    p = unlink_in(dir, SHARD2);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint8_t len[8] = {0x80, 0xd1, 0xf0, 0x08, 0, 0, 0, 0}; /* 150000000 */
    CHECK(fd >= 0 && write(fd, len, 8) == 8 && ftruncate(fd, 200000000) == 0 && close(fd) == 0, "sparse file");
    EXPECT_OPEN(dir, DSV4_EFORMAT, SHARD2, "header length 150000000 is over the limit of 100000000 bytes");
}

/* ---- synthetic single files: the reader alone ----------------------------------------------- */

static void header_file(const char *name, const char *json, size_t data_len, dsv4_status want, const char *piece) {
    char *path = fmt("%s/%s.safetensors", tmp_root, name);
    size_t hlen = strlen(json);
    uint8_t *img = calloc(1, 8 + hlen + data_len);
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(img + 8, json, hlen);
    write_bytes(path, img, 8 + hlen + data_len);
    free(img);
    dsv4_st *st = NULL;
    dsv4_status rc = dsv4_st_open_file(path, &st);
    expect_msg(name, rc, want, piece, want ? path : "", (char *)NULL);
    dsv4_st_close(st);
}

static void header_cases(void) {
    header_file("h_ok", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DSV4_OK, "");
    header_file("h_malformed", "{\"a\":{\"dtype\":\"F32\",", 0, DSV4_EFORMAT, "malformed JSON header at byte");
    header_file("h_overlap",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[0,6]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                8, DSV4_EFORMAT, "tensors a [0, 6) and b [4, 8) overlap");
    header_file("h_out_of_range", "{\"a\":{\"dtype\":\"U8\",\"shape\":[9],\"data_offsets\":[0,9]}}", 8, DSV4_EFORMAT,
                "tensor a: data_offsets [0, 9] out of range: the data section has 8 bytes");
    header_file("h_size", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, DSV4_EFORMAT,
                "tensor a: data_offsets span 8 bytes but F32 of this shape needs 12");
    header_file("h_dtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[3],\"data_offsets\":[0,3]}}", 8, DSV4_EFORMAT,
                "tensor a: unknown dtype \"Q4\"");
    header_file("h_shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
                DSV4_EFORMAT, "tensor a: shape dimensions multiply past 2^63");
    header_file("h_nul_name", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, DSV4_EFORMAT,
                "malformed JSON header");
    header_file("h_entry", "{\"a\":7}", 0, DSV4_EFORMAT, "tensor a: entry is not an object");

    /* header length past the end, and a file shorter than the length field */
    char *path = fmt("%s/h_past_end.safetensors", tmp_root);
    write_bytes(path, "\xff\x00\x00\x00\x00\x00\x00\x00{}", 10);
    dsv4_st *st = NULL;
    expect_msg("h_past_end", dsv4_st_open_file(path, &st), DSV4_EFORMAT, path,
               "header length 255 runs past the end of the file (10 bytes)", (char *)NULL);
    path = fmt("%s/h_short.safetensors", tmp_root);
    write_bytes(path, "\x02\x00\x00", 3);
    expect_msg("h_short", dsv4_st_open_file(path, &st), DSV4_EFORMAT, path, "truncated: 3 bytes", (char *)NULL);
    expect_msg("h_memory", dsv4_st_open_memory("\x02\x00", 2, "image", &st), DSV4_EFORMAT, "image: truncated",
               (char *)NULL);
}

/* ---- the writer refuses what it cannot write faithfully ------------------------------------- */

static void writer_cases(void) {
    dsv4_st_writer *w = dsv4_st_writer_new();
    const float v[2] = {1, 2};
    int64_t shape[1] = {2}, neg[1] = {-1};
    CHECK(dsv4_st_writer_add(w, "a", DSV4_DT_F32, 1, shape, v) == DSV4_OK, "add: %s", dsv4_errmsg());
    expect_msg("w_metadata", dsv4_st_writer_add(w, "__metadata__", DSV4_DT_F32, 1, shape, v), DSV4_EINVAL,
               "__metadata__", "reserved", (char *)NULL);
    expect_msg("w_dtype", dsv4_st_writer_add(w, "b", DSV4_DT_UNKNOWN, 1, shape, v), DSV4_EINVAL, "tensor b",
               "unknown dtype", (char *)NULL);
    expect_msg("w_shape", dsv4_st_writer_add(w, "c", DSV4_DT_F32, 1, neg, v), DSV4_EINVAL, "tensor c", "shape[0]",
               (char *)NULL);
    expect_msg("w_no_data", dsv4_st_writer_add(w, "d", DSV4_DT_F32, 1, shape, NULL), DSV4_EINVAL, "tensor d",
               "no data", (char *)NULL);
    char *path = fmt("%s/written.safetensors", tmp_root);
    CHECK(dsv4_st_writer_write(w, path) == DSV4_OK, "write: %s", dsv4_errmsg());
    dsv4_st *st = NULL;
    CHECK(dsv4_st_open_file(path, &st) == DSV4_OK && dsv4_st_count(st) == 1, "written file: %s", dsv4_errmsg());
    const dsv4_tensor *t = st ? dsv4_st_find(st, "a") : NULL;
    CHECK(t && t->nbytes == 8 && !memcmp(t->data, v, 8), "written tensor a reads back");
    dsv4_st_close(st);
    CHECK(dsv4_st_writer_add(w, "a", DSV4_DT_F32, 1, shape, v) == DSV4_OK, "add again");
    expect_msg("w_twice", dsv4_st_writer_write(w, path), DSV4_EINVAL, "tensor a is added twice", (char *)NULL);
    dsv4_st_writer_free(w);
}

/* ---- .npy arrays (reference vectors, logits): a forged shape must not size a buffer ------- */

static void npy_file(const char *name, const char *dict, size_t data_floats, const char *piece) {
    char *path = fmt("%s/%s.npy", tmp_root, name);
    char head[128];
    size_t dlen = strlen(dict);
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (char)(dlen & 0xff);
    head[9] = (char)(dlen >> 8);
    memcpy(head + 10, dict, dlen);
    size_t n = 10 + dlen + data_floats * 4;
    char *img = calloc(1, n);
    memcpy(img, head, 10 + dlen);
    write_bytes(path, img, n);
    free(img);
    float *data = NULL;
    int ndim;
    int64_t shape[8];
    dsv4_status rc = dsv4_npy_read_f32(path, &data, &ndim, shape);
    expect_msg(name, rc, piece ? DSV4_EFORMAT : DSV4_OK, piece ? piece : "", (char *)NULL);
    free(data);
}

static void npy_cases(void) {
    npy_file("npy_ok", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 6, NULL);
    npy_file("npy_truncated", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 5,
             "truncated data: the shape needs 6 floats");
    npy_file("npy_huge", "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n", 4,
             "shape overflows");
    npy_file("npy_wrapping", "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387905, ), }\n", 4,
             "shape overflows");
}

/* ---- the fuzzers' seeds: named valid_* or bad_* --------------------------------------------- */

static void corpus_cases(const char *kind) {
    char *dirpath = fmt("%s/fuzz/corpus/%s", DSV4_SOURCE_DIR, kind);
    DIR *d = opendir(dirpath);
    CHECK(d != NULL, "no seed corpus at %s", dirpath);
    if (!d) return;
    int seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        bool valid = !strncmp(e->d_name, "valid_", 6), bad = !strncmp(e->d_name, "bad_", 4);
        if (!valid && !bad) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dirpath, e->d_name);
        dsv4_status rc;
        if (!strcmp(kind, "safetensors")) {
            dsv4_st *st = NULL;
            rc = dsv4_st_open_file(path, &st);
            dsv4_st_close(st);
        } else {
            FILE *f = fopen(path, "rb");
            char text[1 << 16];
            size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
            if (f) fclose(f);
            text[n] = 0;
            struct dsv4_config c;
            rc = dsv4_config_parse(text, path, &c);
        }
        if (valid) CHECK(rc == DSV4_OK, "%s: %s", e->d_name, dsv4_errmsg());
        else CHECK(rc != DSV4_OK && strstr(dsv4_errmsg(), e->d_name), "%s: %s", e->d_name, rc ? dsv4_errmsg() : "opened");
        seen++;
    }
    closedir(d);
    CHECK(seen >= 10, "only %d named seeds in %s", seen, dirpath);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(void) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/dsv4_bad_ckpt.XXXXXX", base);
    if (!mkdtemp(tmp_root)) {
        fprintf(stderr, "cannot create a temporary directory under %s\n", base);
        return 1;
    }
    good_model();
    config_cases();
    shard_cases();
    index_cases();
    odd_file_cases();
    header_cases();
    writer_cases();
    npy_cases();
    corpus_cases("safetensors");
    corpus_cases("config");
    if (!getenv("DSV4_TEST_KEEP")) remove_tree(tmp_root);
    return check_done("test_bad_checkpoints");
}
