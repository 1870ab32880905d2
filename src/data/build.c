/* build.c: writing the data set (see dataset.h and docs/training-data.md).
 *
 * Each split is generated in one pass: the (family, index) pairs of all its examples are put
 * in a seeded random order, so a trainer that streams the files front to back sees the
 * families mixed, and each example is generated, tokenized and appended to the token and mask
 * files as it comes. Only the index (16 bytes a sequence) waits in memory until the end.
 *
 * Everything that reaches the files depends only on the options, the corpus and the
 * tokenizer: no clock, no thread timing, no address. The same command gives the same bytes.
 */
#include <errno.h>
#include <stdio.h>

#include "base/base.h"
#include "data/dataset.h"
#include "infer/sampler.h"

#define INDEX_MAGIC "DSV4SEQ1"
#define INDEX_VERSION 1
#define INDEX_RECORD 16
#define INDEX_HEADER 32

void dsv4_build_defaults(dsv4_build_opts *o, double scale) {
    memset(o, 0, sizeof *o);
    static const long base[DSV4_N_FAMILIES] = {
        [DSV4_FAMILY_ARITH] = 60000, [DSV4_FAMILY_TABLE] = 30000, [DSV4_FAMILY_NEEDLE] = 4000,
        [DSV4_FAMILY_TOOLS] = 12000, [DSV4_FAMILY_TEXT] = 0,      [DSV4_FAMILY_CHAT] = 6000,
        [DSV4_FAMILY_RECALL] = 0, /* asked for by name (--count recall=N) */
    };
    for (int f = 0; f < DSV4_N_FAMILIES; f++) o->count[f] = (long)((double)base[f] * scale + 0.5);
    o->seed = 1;
    o->valid_share = 0.05;
    o->task.think_share = 0.2;
    o->task.needle_min = 256;
    o->task.needle_max = 4096;
    o->task.text_tokens = 512;
    o->task.table_key_right = DSV4_TABLE_KEY_RIGHT_DEFAULT;
}

/* ---- little-endian output ---------------------------------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct out_file {
    FILE *f;
    char path[4096];
} out_file;

static dsv4_status open_out(out_file *o, const char *dir, const char *name) {
    snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    o->f = fopen(o->path, "wb");
    return o->f ? DSV4_OK : dsv4_error(DSV4_EIO, "%s: cannot create: %s", o->path, strerror(errno));
}

static dsv4_status write_out(out_file *o, const void *p, size_t n) {
    return fwrite(p, 1, n, o->f) == n ? DSV4_OK : dsv4_error(DSV4_EIO, "%s: write failed", o->path);
}

static dsv4_status close_out(out_file *o) {
    if (!o->f) return DSV4_OK;
    int rc = fclose(o->f);
    o->f = NULL;
    return rc ? dsv4_error(DSV4_EIO, "%s: write failed", o->path) : DSV4_OK;
}

static dsv4_status write_whole(const char *dir, const char *name, const char *data, size_t len) {
    out_file o;
    dsv4_status st = open_out(&o, dir, name);
    if (!st) st = write_out(&o, data, len);
    dsv4_status st2 = close_out(&o);
    return st ? st : st2;
}

/* ---- one split ---------------------------------------------------------------------------------- */

typedef struct slot {
    uint32_t family, index;
} slot;

/* The sequences of each family in a split. */
static void split_counts(const dsv4_build_opts *o, const dsv4_taskgen *g, bool valid, long *count) {
    for (int f = 0; f < DSV4_N_FAMILIES; f++) {
        if (f == DSV4_FAMILY_TEXT && o->count[f] == 0) { /* one pass over this side's passages */
            long long tokens = 0;
            for (size_t i = 0; i < g->n_pool; i++) tokens += g->pool_tokens[i] + 1;
            int per = o->task.text_tokens > 0 ? o->task.text_tokens : 512;
            count[f] = (long)((tokens + per - 1) / per);
        } else {
            count[f] = valid ? (long)((double)o->count[f] * o->valid_share + 0.999) : o->count[f];
        }
    }
}

static dsv4_status build_split(const dsv4_build_opts *o, const dsv4_corpus *c, const dsv4_tokenizer *tok,
                               const char *split, dsv4_split_report *rep) {
    bool valid = !strcmp(split, "valid");
    uint64_t seed = dsv4_side_seed(o->seed, split);
    dsv4_taskgen g;
    dsv4_status st = dsv4_taskgen_init(&g, c, tok, valid, seed);
    if (st) return st;
    long count[DSV4_N_FAMILIES];
    split_counts(o, &g, valid, count);
    size_t n = 0;
    for (int f = 0; f < DSV4_N_FAMILIES; f++) n += (size_t)count[f];
    slot *order = dsv4_malloc(DSV4_MAX(n, 1) * sizeof *order, "example order");
    uint8_t *index = dsv4_malloc(INDEX_HEADER + DSV4_MAX(n, 1) * INDEX_RECORD, "sequence index");
    if (!order || !index) {
        free(order);
        free(index);
        dsv4_taskgen_free(&g);
        return DSV4_ENOMEM;
    }
    size_t k = 0;
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        for (long i = 0; i < count[f]; i++) order[k++] = (slot){(uint32_t)f, (uint32_t)i};
    dsv4_rng r;
    dsv4_rng_seed(&r, seed ^ 0x6f72646572ull); /* "order" */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(dsv4_rng_uniform(&r) * (double)i);
        slot t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }

    out_file tokens_file = {0}, mask_file = {0};
    char name[64];
    snprintf(name, sizeof name, "%s.tokens", split);
    st = open_out(&tokens_file, o->out_dir, name);
    snprintf(name, sizeof name, "%s.mask", split);
    if (!st) st = open_out(&mask_file, o->out_dir, name);

    dsv4_sequence seq = {0};
    uint8_t *buf = NULL;
    size_t cap_buf = 0;
    uint64_t at = 0;
    memset(rep, 0, sizeof *rep);
    for (size_t i = 0; i < n && !st; i++) {
        dsv4_example ex;
        dsv4_family f = (dsv4_family)order[i].family;
        if ((st = dsv4_task_generate(&g, f, order[i].index, &o->task, &ex))) break;
        seq.n = 0;
        st = dsv4_example_tokenize(tok, &ex, &seq);
        bool thinking = ex.thinking;
        dsv4_example_free(&ex);
        if (st) {
            st = dsv4_error_wrap(st, "%s example %u", dsv4_family_name(f), order[i].index);
            break;
        }
        if (cap_buf < 4 * seq.n) {
            free(buf);
            cap_buf = 4 * seq.n + 4096;
            if (!(buf = dsv4_malloc(cap_buf, "token buffer"))) {
                st = DSV4_ENOMEM;
                break;
            }
        }
        long long targets = 0;
        for (size_t t = 0; t < seq.n; t++) {
            put_u32(buf + 4 * t, (uint32_t)seq.ids[t]);
            targets += seq.mask[t];
        }
        if ((st = write_out(&tokens_file, buf, 4 * seq.n)) || (st = write_out(&mask_file, seq.mask, seq.n))) break;
        uint8_t *rec = index + INDEX_HEADER + i * INDEX_RECORD;
        put_u64(rec, at);
        put_u32(rec + 8, (uint32_t)seq.n);
        put_u16(rec + 12, (uint16_t)f);
        put_u16(rec + 14, thinking ? 1 : 0);
        at += seq.n;
        rep->sequences[f]++;
        rep->tokens[f] += (long long)seq.n;
        rep->targets[f] += targets;
        rep->longest = DSV4_MAX(rep->longest, (int)seq.n);
        if (o->progress && (i % 256 == 0 || i + 1 == n)) o->progress(o->progress_user, split, (double)(i + 1) / (double)n);
    }
    free(buf);
    dsv4_sequence_free(&seq);
    dsv4_status st2 = close_out(&tokens_file), st3 = close_out(&mask_file);
    if (!st) st = st2 ? st2 : st3;
    if (!st) {
        memcpy(index, INDEX_MAGIC, 8);
        put_u32(index + 8, INDEX_VERSION);
        put_u32(index + 12, INDEX_RECORD);
        put_u64(index + 16, n);
        put_u64(index + 24, at);
        snprintf(name, sizeof name, "%s.index", split);
        st = write_whole(o->out_dir, name, (const char *)index, INDEX_HEADER + n * INDEX_RECORD);
    }
    free(order);
    free(index);
    dsv4_taskgen_free(&g);
    return st;
}

/* ---- the manifest and the README ---------------------------------------------------------------- */

static json_t *split_json(const dsv4_split_report *r) {
    json_t *fam = json_object();
    long seqs = 0;
    long long tokens = 0, targets = 0;
    for (int f = 0; f < DSV4_N_FAMILIES; f++) {
        json_object_set_new(fam, dsv4_family_name((dsv4_family)f),
                            json_pack("{s:I, s:I, s:I}", "sequences", (json_int_t)r->sequences[f], "tokens",
                                      (json_int_t)r->tokens[f], "targets", (json_int_t)r->targets[f]));
        seqs += r->sequences[f];
        tokens += r->tokens[f];
        targets += r->targets[f];
    }
    return json_pack("{s:I, s:I, s:I, s:i, s:o}", "sequences", (json_int_t)seqs, "tokens", (json_int_t)tokens,
                     "targets", (json_int_t)targets, "longest", r->longest, "families", fam);
}

static json_t *manifest(const dsv4_build_opts *o, const dsv4_corpus *c, const dsv4_tokenizer *tok,
                        const dsv4_build_report *rep) {
    json_t *files = json_array(), *counts = json_object();
    for (int i = 0; i < c->n_files; i++) json_array_append_new(files, json_string(c->files[i]));
    size_t held_out = 0;
    for (size_t i = 0; i < c->n; i++) held_out += dsv4_corpus_held_out(c, i);
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        json_object_set_new(counts, dsv4_family_name((dsv4_family)f), json_integer(o->count[f]));
    return json_pack(
        "{s:s, s:I, s:{s:s, s:i, s:i, s:i}, s:{s:s, s:o, s:I, s:I, s:I}, "
        "s:{s:o, s:f, s:f, s:f, s:i, s:i, s:i, s:f, s:[i, i], s:b, s:b}, s:{s:o, s:o}}",
        "format", "dsv4-data 1", "seed", (json_int_t)o->seed, "tokenizer", "file", "tokenizer.json", "vocab_size",
        dsv4_tokenizer_vocab_size(tok), "bos", dsv4_token_id(tok, "<｜begin▁of▁sentence｜>"), "eos",
        dsv4_token_id(tok, "<｜end▁of▁sentence｜>"), "corpus", "source", "Debian package fortunes", "files", files,
        "passages", (json_int_t)c->n, "held_out_passages", (json_int_t)held_out, "bytes", (json_int_t)c->bytes,
        "options", "count", counts, "valid_share", o->valid_share, "think_share", o->task.think_share, "multi_turn",
        o->task.multi_turn > 0 ? o->task.multi_turn : o->task.multi_turn < 0 ? 0.0 : 0.15, "needle_min",
        o->task.needle_min, "needle_max", o->task.needle_max, "text_tokens", o->task.text_tokens, "table_reverse",
        o->task.table_reverse > 0 ? o->task.table_reverse : o->task.table_reverse < 0 ? 0.0 : 1.0 / 3, "table_rows",
        o->task.table_rows_min ? o->task.table_rows_min : DSV4_TABLE_ROWS_MIN,
        o->task.table_rows_max ? o->task.table_rows_max : DSV4_TABLE_ROWS_MAX, "table_restate",
        o->task.table_restate, "table_key_right", o->task.table_key_right, "splits", "train",
        split_json(&rep->train), "valid", split_json(&rep->valid));
}

static const char readme[] =
    "# dsv4 training data\n"
    "\n"
    "Built by `dsv4 data build`; `manifest.json` records the options, the corpus and the sizes.\n"
    "The format is described in full in docs/training-data.md of the dsv4 sources.\n"
    "\n"
    "Per split (`train`, `valid`):\n"
    "\n"
    "| file | contents |\n"
    "| --- | --- |\n"
    "| `SPLIT.tokens` | int32 little-endian token ids, all sequences back to back |\n"
    "| `SPLIT.mask` | uint8 per token: 1 = a training target (the model learns to produce it), 0 = context |\n"
    "| `SPLIT.index` | 32-byte header (\"DSV4SEQ1\", u32 version 1, u32 record size 16, u64 sequences, u64 "
    "tokens), then per sequence: u64 first token, u32 length, u16 family, u16 flags |\n"
    "\n"
    "Families: 0 arith, 1 table, 2 needle, 3 tools, 4 text, 5 chat. Flags: bit 0 = thinking mode.\n"
    "Every sequence starts with <｜begin▁of▁sentence｜> (id 0). Conversations follow DeepSeek-V4's chat\n"
    "encoding; targets are the assistant's output up to and including <｜end▁of▁sentence｜> (id 1). Text\n"
    "sequences are BOS + text + EOS with every token but BOS a target.\n"
    "\n"
    "`tokenizer.json` is the tokenizer the ids belong to.\n";

dsv4_status dsv4_data_build(const dsv4_build_opts *o, const dsv4_corpus *c, const dsv4_tokenizer *tok,
                            const char *tokenizer_json, size_t tokenizer_len, dsv4_build_report *report) {
    dsv4_build_report rep;
    dsv4_status st = build_split(o, c, tok, "train", &rep.train);
    if (!st) st = build_split(o, c, tok, "valid", &rep.valid);
    if (!st) st = write_whole(o->out_dir, "tokenizer.json", tokenizer_json, tokenizer_len);
    if (!st) st = write_whole(o->out_dir, "README.md", readme, sizeof readme - 1);
    if (st) return st;
    json_t *m = manifest(o, c, tok, &rep);
    char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(m);
    if (!text) return dsv4_error(DSV4_ENOMEM, "out of memory writing the manifest");
    size_t len = strlen(text);
    char *line = realloc(text, len + 2); /* end the file with a newline */
    if (!line) {
        free(text);
        return dsv4_error(DSV4_ENOMEM, "out of memory writing the manifest");
    }
    line[len] = '\n';
    line[len + 1] = 0;
    st = write_whole(o->out_dir, "manifest.json", line, len + 1);
    free(line);
    if (!st && report) *report = rep;
    return st;
}

/* ---- the tokenizer's training text ------------------------------------------------------------------ */

#define TOKENIZER_SAMPLE 1000

dsv4_status dsv4_data_tokenizer_text(const dsv4_corpus *c, uint64_t seed, dsv4_strbuf *out) {
    for (size_t i = 0; i < c->n; i++) {
        if (dsv4_corpus_held_out(c, i)) continue;
        dsv4_strbuf_puts(out, c->passages[i]);
        dsv4_strbuf_puts(out, "\n\n");
    }
    dsv4_taskgen g;
    dsv4_status st = dsv4_taskgen_init(&g, c, NULL, false, dsv4_side_seed(seed, "tokenizer"));
    if (st) return st;
    /* plain tables (table_key_right 0), as before that layout existed: the tokenizer stays what
     * it was, so the embedded model's data of every stage share one */
    dsv4_task_opts o = {.think_share = 0.2, .needle_tokens = 300};
    for (int f = 0; f < DSV4_N_FAMILIES && !st; f++) {
        /* recall repeats the needle's and table's words; leaving it out keeps the tokenizer
         * what it was before the family was added */
        if (f == DSV4_FAMILY_TEXT || f == DSV4_FAMILY_RECALL) continue;
        for (int i = 0; i < TOKENIZER_SAMPLE && !st; i++) {
            dsv4_example ex;
            if ((st = dsv4_task_generate(&g, (dsv4_family)f, (uint64_t)i, &o, &ex))) break;
            char *text;
            size_t len;
            if (!(st = dsv4_example_text(&ex, &text, &len))) {
                dsv4_strbuf_append(out, text, len);
                dsv4_strbuf_putc(out, '\n');
                free(text);
            }
            dsv4_example_free(&ex);
        }
    }
    dsv4_taskgen_free(&g);
    return st ? st : dsv4_strbuf_status(out);
}
