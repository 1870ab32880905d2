/* test_tokenizer.c: the tokenizer against ids from the Hugging Face library.
 *
 * Expected values all come from `tokenizers` 0.23.2 (npm, native binding):
 *   - cases-public.jsonl: 216 strings with their ids (shared/tokenizer, see its README);
 *   - api-prompt-token-counts.jsonl: 5 rendered chat prompts whose length the DeepSeek API
 *     itself reported, with their ids;
 *   - the literal expectations below, produced by running that library on the same inputs
 *     (the byte sequences, the small synthetic tokenizer built by tiny_tokenizer()).
 * Every case is also decoded back (whole and streamed) and must give its text again.
 * tokenizer_oracle.test.sh runs the library itself on a larger corpus. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

#define TOKENIZER DSV4_SHARED "/tokenizer/deepseek-v4-tokenizer.json"

static bool same_ids(const int32_t *a, size_t na, const json_t *expected) {
    if (na != json_array_size(expected)) return false;
    for (size_t i = 0; i < na; i++)
        if (a[i] != json_integer_value(json_array_get(expected, i))) return false;
    return true;
}

/* Decode ids through the stream decoder, one at a time; check no piece splits a character. */
static char *stream_decode(const dsv4_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    dsv4_detok_stream *s;
    if (dsv4_detok_stream_new(t, &s)) return NULL;
    size_t cap = 64, used = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t plen;
        dsv4_status st = i < n ? dsv4_detok_stream_push(s, ids[i], &piece, &plen)
                               : dsv4_detok_stream_finish(s, &piece, &plen);
        CHECK(st == DSV4_OK, "stream decode: %s", dsv4_errmsg());
        CHECK(dsv4_utf8_check((const uint8_t *)piece, plen) == plen, "stream piece %zu is not whole UTF-8", i);
        while (used + plen + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + used, piece, plen);
        used += plen;
    }
    dsv4_detok_stream_free(s);
    out[used] = 0;
    *len = used;
    return out;
}

/* Encode `text`, compare with the expected ids, decode both ways and compare with the text. */
static void check_case(const dsv4_tokenizer *t, const char *text, size_t len, const json_t *ids_exp,
                       const char *what, size_t line) {
    int32_t *ids;
    size_t n;
    dsv4_status st = dsv4_tokenize(t, text, len, &ids, &n);
    CHECK(st == DSV4_OK, "%s line %zu: %s", what, line, dsv4_errmsg());
    if (st) return;
    CHECK(same_ids(ids, n, ids_exp), "%s line %zu: %zu ids, expected %zu", what, line, n, json_array_size(ids_exp));
    char *back;
    size_t blen;
    st = dsv4_detokenize(t, ids, n, &back, &blen);
    CHECK(st == DSV4_OK && blen == len && !memcmp(back, text, len), "%s line %zu: decode differs", what, line);
    free(back);
    char *streamed = stream_decode(t, ids, n, &blen);
    CHECK(streamed && blen == len && !memcmp(streamed, text, len), "%s line %zu: stream decode differs", what, line);
    free(streamed);
    free(ids);
}

static int for_each_line(const char *path, void (*fn)(const dsv4_tokenizer *, const json_t *, size_t),
                         const dsv4_tokenizer *t) {
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return 0;
    char *buf = NULL;
    size_t cap = 0, line = 0;
    int count = 0;
    while (getline(&buf, &cap, f) > 0) {
        line++;
        json_error_t err;
        json_t *obj = json_loads(buf, JSON_ALLOW_NUL, &err);
        CHECK(obj != NULL, "%s line %zu: %s", path, line, err.text);
        if (!obj) continue;
        fn(t, obj, line);
        json_decref(obj);
        count++;
    }
    free(buf);
    fclose(f);
    return count;
}

static void public_case(const dsv4_tokenizer *t, const json_t *obj, size_t line) {
    const json_t *text = json_object_get(obj, "text");
    check_case(t, json_string_value(text), json_string_length(text), json_object_get(obj, "ids"),
               "cases-public", line);
}

static void api_case(const dsv4_tokenizer *t, const json_t *obj, size_t line) {
    const json_t *text = json_object_get(obj, "rendered"), *ids = json_object_get(obj, "oracle_ids");
    check_case(t, json_string_value(text), json_string_length(text), ids, "api-prompt-token-counts", line);
    CHECK(json_array_size(ids) == (size_t)json_integer_value(json_object_get(obj, "official_prompt_tokens")),
          "api-prompt-token-counts line %zu: the official count disagrees with the ids", line);
}

static void test_lookups(const dsv4_tokenizer *t) {
    CHECK(dsv4_tokenizer_vocab_size(t) == 129280, "vocab size %d", dsv4_tokenizer_vocab_size(t));
    CHECK(dsv4_token_id(t, "<｜User｜>") == 128803, "User id");
    CHECK(dsv4_token_id(t, "<｜end▁of▁sentence｜>") == 1, "EOS id");
    CHECK(dsv4_token_id(t, "｜DSML｜") == 128825, "DSML id");
    CHECK(dsv4_token_id(t, "<|place_holder_mm_span_0021|>") == 128847, "mm span id");
    CHECK(dsv4_token_id(t, "<｜System｜>") == -1, "V4.1-only token must be absent");
    CHECK(dsv4_token_id(t, "Ġ") == 223, "byte-level space token"); /* "Ġ" in the encoding above */
    const char *s = dsv4_token_text(t, 128804);
    CHECK(s && !strcmp(s, "<｜Assistant｜>"), "text of 128804: %s", s ? s : "(null)");
    CHECK(dsv4_token_text(t, -1) == NULL && dsv4_token_text(t, 129280) == NULL, "out-of-range text");
    CHECK(dsv4_token_is_special(t, 0) && dsv4_token_is_special(t, 129279), "bos, <｜image｜> are special");
    CHECK(!dsv4_token_is_special(t, 128803) && !dsv4_token_is_special(t, 128805) &&
          !dsv4_token_is_special(t, 5000), "User, <|EOT|>, a vocab token are not special");
    size_t n;
    const uint8_t *b = dsv4_token_bytes(t, 223, &n);
    CHECK(b && n == 1 && b[0] == ' ', "bytes of Ġ");
}

/* Token ids of single bytes, through the byte-level alphabet. */
static int32_t byte_id(const dsv4_tokenizer *t, uint8_t byte) {
    uint32_t cp = byte;
    if (!((byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174))
        cp = byte <= 32 ? 256u + byte : byte <= 160 ? 256u + 33 + (byte - 127u) : 256u + 67;
    uint8_t s[5] = {0};
    dsv4_utf8_put(cp, s);
    return dsv4_token_id(t, (const char *)s);
}

static void test_byte_decoding(const dsv4_tokenizer *t) {
    /* byte sequences and HF's decode of their single-byte tokens */
    static const struct {
        uint8_t bytes[6];
        int n;
        const char *text;
    } cases[] = {
        {{0xC3, 0xA9}, 2, "é"},
        {{0xF0, 0x9F, 0x98, 0x80}, 4, "😀"},
        {{0xA9}, 1, "\xEF\xBF\xBD"},
        {{0xE4, 0xBD}, 2, "\xEF\xBF\xBD"},
        {{0xE4, 0x61}, 2, "\xEF\xBF\xBD" "a"},
        {{0xF0, 0x9F, 0x98}, 3, "\xEF\xBF\xBD"},
        {{0xC0, 0xAF}, 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {{0xED, 0xA0, 0x80}, 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {{0xF4, 0x90, 0x80, 0x80}, 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {{0x61, 0xE4, 0xBD, 0xA0, 0xE5}, 5, "a你\xEF\xBF\xBD"},
    };
    CHECK(byte_id(t, 0xC3) == 130 && byte_id(t, 0xA9) == 105, "byte token ids");
    for (size_t k = 0; k < DSV4_ARRAY_LEN(cases); k++) {
        int32_t ids[6];
        for (int i = 0; i < cases[k].n; i++) ids[i] = byte_id(t, cases[k].bytes[i]);
        char *text;
        size_t len;
        CHECK(dsv4_detokenize(t, ids, (size_t)cases[k].n, &text, &len) == DSV4_OK, "decode bytes %zu", k);
        CHECK(len == strlen(cases[k].text) && !strcmp(text, cases[k].text), "bytes case %zu: got \"%s\"", k, text);
        free(text);
        char *streamed = stream_decode(t, ids, (size_t)cases[k].n, &len);
        CHECK(streamed && !strcmp(streamed, cases[k].text), "bytes case %zu streamed: got \"%s\"", k, streamed);
        free(streamed);
    }

    /* What each push yields: "naïve 你好 😀!" encodes with the emoji cut after its third byte. */
    static const int32_t ids[] = {2720, 91223, 223, 30594, 53769, 225, 3};
    static const char *const yields[] = {"na", "ïve", " ", "你好", " ", "😀", "!"};
    dsv4_detok_stream *s;
    CHECK(dsv4_detok_stream_new(t, &s) == DSV4_OK, "stream new");
    for (size_t i = 0; i < DSV4_ARRAY_LEN(ids); i++) {
        const char *piece;
        size_t len;
        CHECK(dsv4_detok_stream_push(s, ids[i], &piece, &len) == DSV4_OK, "push %zu", i);
        CHECK(len == strlen(yields[i]) && !memcmp(piece, yields[i], len), "push %zu yields \"%.*s\", expected \"%s\"",
              i, (int)len, piece, yields[i]);
    }
    const char *piece;
    size_t len;
    /* A character left unfinished at the end becomes U+FFFD; then the stream starts afresh. */
    CHECK(dsv4_detok_stream_push(s, byte_id(t, 0xE4), &piece, &len) == DSV4_OK && len == 0, "held byte");
    CHECK(dsv4_detok_stream_finish(s, &piece, &len) == DSV4_OK && len == 3 && !memcmp(piece, "\xEF\xBF\xBD", 3),
          "finish flushes U+FFFD");
    CHECK(dsv4_detok_stream_finish(s, &piece, &len) == DSV4_OK && len == 0, "second finish is empty");
    CHECK(dsv4_detok_stream_push(s, 999999, &piece, &len) == DSV4_EINVAL, "bad id refused");
    dsv4_detok_stream_free(s);

    int32_t bad[] = {5, -1};
    char *text;
    CHECK(dsv4_detokenize(t, bad, 2, &text, &len) == DSV4_EINVAL && strstr(dsv4_errmsg(), "position 1"),
          "detokenize names the bad position: %s", dsv4_errmsg());
    CHECK(dsv4_detokenize(t, NULL, 0, &text, &len) == DSV4_OK && len == 0 && text && !text[0], "empty decode");
    free(text);
}

static void test_invalid_utf8(const dsv4_tokenizer *t) {
    static const struct {
        const char *s;
        size_t len, offset;
    } cases[] = {
        {"abc\xff", 4, 3},          /* a byte that never occurs in UTF-8 */
        {"ab\xe4\xbd", 4, 2},       /* cut short at the end */
        {"\xc0\xaf", 2, 0},         /* overlong */
        {"x\xed\xa0\x80y", 5, 1},   /* a surrogate */
        {"\xf4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
        {"ok \xa9", 4, 3},          /* a lone continuation byte */
    };
    for (size_t k = 0; k < DSV4_ARRAY_LEN(cases); k++) {
        int32_t *ids;
        size_t n;
        char want[64];
        snprintf(want, sizeof want, "offset %zu", cases[k].offset);
        dsv4_status st = dsv4_tokenize(t, cases[k].s, cases[k].len, &ids, &n);
        CHECK(st == DSV4_EINVAL && strstr(dsv4_errmsg(), want), "invalid UTF-8 case %zu: %s", k, dsv4_errmsg());
        CHECK(ids == NULL, "no ids on error");
    }
    int32_t *ids;
    size_t n;
    CHECK(dsv4_tokenize(t, "", 0, &ids, &n) == DSV4_OK && n == 0 && ids, "empty text");
    free(ids);
}

/* A megabyte of spaces: one piece through \s+(?!\S), past PCRE2's default JIT stack. */
static void test_long_runs(const dsv4_tokenizer *t) {
    size_t len = 1 << 20;
    char *text = malloc(len + 1);
    memset(text, ' ', len);
    text[len] = 'x';
    int32_t *ids;
    size_t n;
    dsv4_status st = dsv4_tokenize(t, text, len + 1, &ids, &n);
    CHECK(st == DSV4_OK, "long run: %s", dsv4_errmsg());
    if (!st) {
        char *back;
        size_t blen;
        CHECK(dsv4_detokenize(t, ids, n, &back, &blen) == DSV4_OK && blen == len + 1 && !memcmp(back, text, blen),
              "long run round trip");
        free(back);
        free(ids);
    }
    free(text);
}

/* ---- concurrency: one tokenizer, several threads ------------------------------------------- */

typedef struct job {
    const dsv4_tokenizer *t;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    int failures;
} job;

static void *encode_job(void *arg) {
    job *j = arg;
    for (int rep = 0; rep < 20; rep++) {
        int32_t *ids;
        size_t n;
        if (dsv4_tokenize(j->t, j->text, j->len, &ids, &n) || n != j->n || memcmp(ids, j->ids, n * sizeof *ids))
            j->failures++;
        free(ids);
    }
    return NULL;
}

static void test_threads(const dsv4_tokenizer *t) {
    static const char text[] =
        "Threads share one tokenizer: 你好, мир, 😀, <｜User｜>hi<｜Assistant｜></think> 12345 "
        "words words words and more words, each piece looked up in the shared cache.";
    /* a fresh tokenizer, so the threads race to fill its cache */
    dsv4_tokenizer *fresh;
    CHECK(dsv4_tokenizer_load(TOKENIZER, &fresh) == DSV4_OK, "reload: %s", dsv4_errmsg());
    if (!fresh) return;
    job jobs[4];
    pthread_t th[4];
    int32_t *ref;
    size_t n;
    CHECK(dsv4_tokenize(t, text, sizeof text - 1, &ref, &n) == DSV4_OK, "reference encode");
    for (int k = 0; k < 4; k++) {
        jobs[k] = (job){fresh, text, sizeof text - 1, ref, n, 0};
        pthread_create(&th[k], NULL, encode_job, &jobs[k]);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        CHECK(jobs[k].failures == 0, "thread %d: %d encodes differ", k, jobs[k].failures);
    }
    free(ref);
    dsv4_tokenizer_free(fresh);
}

/* ---- a small tokenizer file, and files that must be refused ---------------------------------- */

static const char tiny_rest[] =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "{\"id\": 259, \"content\": \"<x>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},"
    "{\"id\": 260, \"content\": \"q<x\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false},"
    "{\"id\": 261, \"content\": \"<x>>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false}],"
    "\"normalizer\": null,"
    "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \" ?\\\\p{L}+|\\\\p{N}|\\\\s+|[^\\\\s\\\\p{L}\\\\p{N}]+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},"
    "\"post_processor\": null,"
    "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},"
    "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,"
    "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false,"
    "\"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"], [\"Ġ\", \"a\"]]}}";

/* The tiny tokenizer: every byte as its own token (id = byte value), "ab", "abc", "Ġa", and
 * three added tokens that overlap; `edit` may change it before it is written to a file. */
static char *tiny_tokenizer(void (*edit)(json_t *root)) {
    json_t *root = json_loads(tiny_rest, 0, NULL);
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        uint8_t s[5] = {0};
        uint32_t cp = (uint32_t)b;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174))
            cp = b <= 32 ? 256u + (uint32_t)b : b <= 160 ? 256u + 33 + ((uint32_t)b - 127) : 256u + 67;
        dsv4_utf8_put(cp, s);
        json_object_set_new(vocab, (const char *)s, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(256));
    json_object_set_new(vocab, "abc", json_integer(257));
    json_object_set_new(vocab, "Ġa", json_integer(258));
    json_object_set_new(json_object_get(root, "model"), "vocab", vocab);
    if (edit) edit(root);
    static int serial;
    char *path = malloc(256);
    snprintf(path, 256, "/tmp/dsv4_test_tokenizer_%d_%d.json", (int)getpid(), serial++);
    json_dump_file(root, path, 0);
    json_decref(root);
    return path;
}

static void test_tiny(void) {
    char *path = tiny_tokenizer(NULL);
    dsv4_tokenizer *t;
    CHECK(dsv4_tokenizer_load(path, &t) == DSV4_OK, "tiny: %s", dsv4_errmsg());
    remove(path);
    free(path);
    if (!t) return;
    /* HF matches normalized=false tokens first, so "<x>" beats an earlier "q<x" and a longer "<x>>" */
    static const struct {
        const char *text;
        int32_t ids[8];
        size_t n;
    } cases[] = {
        {"q<x>", {113, 259}, 2},
        {"q<x>>", {113, 259, 62}, 3},
        {"<x>>", {259, 62}, 2},
        {"abcab ab abc", {257, 256, 32, 256, 32, 257}, 6},
        {"x<x>q<x", {120, 259, 260}, 3},
        {"q<x<x>>", {260, 259, 62}, 3},
    };
    for (size_t k = 0; k < DSV4_ARRAY_LEN(cases); k++) {
        int32_t *ids;
        size_t n;
        CHECK(dsv4_tokenize(t, cases[k].text, strlen(cases[k].text), &ids, &n) == DSV4_OK, "tiny encode");
        CHECK(n == cases[k].n && !memcmp(ids, cases[k].ids, n * sizeof *ids), "tiny case \"%s\": %zu ids",
              cases[k].text, n);
        free(ids);
    }
    int32_t ids[] = {259, 97, 260, 195, 169, 195};
    char *text;
    size_t len;
    CHECK(dsv4_detokenize(t, ids, 6, &text, &len) == DSV4_OK && !strcmp(text, "<x>aq<xé\xEF\xBF\xBD"),
          "tiny decode");
    free(text);
    dsv4_tokenizer_free(t);
}

/* "Ġa" (258) replaced by "zq", which no merge makes; with ignore_merges the piece "zq" is it. */
static void edit_zq(json_t *r) {
    json_t *model = json_object_get(r, "model"), *vocab = json_object_get(model, "vocab");
    json_object_del(vocab, "Ġa");
    json_object_set_new(vocab, "zq", json_integer(258));
    json_array_remove(json_object_get(model, "merges"), 2);
}
static void edit_ignore_merges(json_t *r) {
    edit_zq(r);
    json_object_set_new(json_object_get(r, "model"), "ignore_merges", json_true());
}

static void test_ignore_merges(void) {
    static const struct {
        void (*edit)(json_t *);
        const char *text;
        int32_t ids[6];
        size_t n;
    } cases[] = {
        {edit_ignore_merges, "zq", {258}, 1},
        {edit_ignore_merges, "zqa zq", {122, 113, 97, 32, 122, 113}, 6},
        {edit_ignore_merges, "abc", {257}, 1},
        {edit_zq, "zq", {122, 113}, 2},
    };
    for (size_t k = 0; k < DSV4_ARRAY_LEN(cases); k++) {
        char *path = tiny_tokenizer(cases[k].edit);
        dsv4_tokenizer *t;
        CHECK(dsv4_tokenizer_load(path, &t) == DSV4_OK, "ignore_merges tokenizer: %s", dsv4_errmsg());
        remove(path);
        free(path);
        if (!t) continue;
        int32_t *ids;
        size_t n;
        CHECK(dsv4_tokenize(t, cases[k].text, strlen(cases[k].text), &ids, &n) == DSV4_OK, "encode");
        CHECK(n == cases[k].n && !memcmp(ids, cases[k].ids, n * sizeof *ids), "ignore_merges case %zu: %zu ids", k, n);
        free(ids);
        dsv4_tokenizer_free(t);
    }
}

static void edit_normalizer(json_t *r) {
    json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFC"));
}
static void edit_lstrip(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 1), "lstrip", json_true());
}
static void edit_added_id(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 1), "id", json_integer(300));
}
static void edit_merge(json_t *r) {
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_pack("[ss]", "abc", "zz"));
}
static void edit_byte(json_t *r) { /* "A" (byte 0x41) renamed: the vocab keeps its size */
    json_t *vocab = json_object_get(json_object_get(r, "model"), "vocab");
    json_object_del(vocab, "A");
    json_object_set_new(vocab, "not-A", json_integer(65));
}
static void edit_behavior(json_t *r) {
    json_t *steps = json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers");
    json_object_set_new(json_array_get(steps, 0), "behavior", json_string("Removed"));
}
static void edit_regex(json_t *r) {
    json_t *steps = json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers");
    json_object_set_new(json_array_get(steps, 0), "pattern", json_pack("{s:s}", "Regex", "(unclosed"));
}
static void edit_decoder(json_t *r) { json_object_set_new(r, "decoder", json_null()); }

static void test_refused(void) {
    static const struct {
        void (*edit)(json_t *);
        dsv4_status status;
        const char *message;
    } cases[] = {
        {edit_normalizer, DSV4_EUNSUPPORTED, "normalizer of type NFC"},
        {edit_lstrip, DSV4_EUNSUPPORTED, "lstrip true"},
        {edit_added_id, DSV4_EFORMAT, "would give it 260"},
        {edit_merge, DSV4_EFORMAT, "model.merges[3]"},
        {edit_byte, DSV4_EFORMAT, "byte 0x41"},
        {edit_behavior, DSV4_EUNSUPPORTED, "behavior Removed"},
        {edit_regex, DSV4_EFORMAT, "pretokenizers[0]: regex does not compile"},
        {edit_decoder, DSV4_EUNSUPPORTED, "decoder"},
    };
    for (size_t k = 0; k < DSV4_ARRAY_LEN(cases); k++) {
        char *path = tiny_tokenizer(cases[k].edit);
        dsv4_tokenizer *t = NULL;
        dsv4_status st = dsv4_tokenizer_load(path, &t);
        CHECK(st == cases[k].status && t == NULL && strstr(dsv4_errmsg(), cases[k].message) &&
                  strstr(dsv4_errmsg(), path),
              "refusal %zu: %s: %s", k, dsv4_status_name(st), dsv4_errmsg());
        dsv4_tokenizer_free(t);
        remove(path);
        free(path);
    }
    dsv4_tokenizer *t;
    CHECK(dsv4_tokenizer_load("/nonexistent/tokenizer.json", &t) == DSV4_EIO, "missing file");
    char path[] = "/tmp/dsv4_test_tokenizer_badXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "{\"model\": [1, 2,\n", 17) == 17, "temp file");
    close(fd);
    CHECK(dsv4_tokenizer_load(path, &t) == DSV4_EFORMAT && strstr(dsv4_errmsg(), "line"), "bad JSON: %s",
          dsv4_errmsg());
    remove(path);
}

int main(void) {
    dsv4_tokenizer *t;
    dsv4_status st = dsv4_tokenizer_load(TOKENIZER, &t);
    CHECK(st == DSV4_OK, "load: %s", dsv4_errmsg());
    if (st) return check_done("test_tokenizer");
    int cases = for_each_line(DSV4_SHARED "/tokenizer/cases-public.jsonl", public_case, t);
    CHECK(cases == 216, "read %d public cases", cases);
    int prompts = for_each_line(DSV4_SHARED "/tokenizer/api-prompt-token-counts.jsonl", api_case, t);
    CHECK(prompts == 5, "read %d API prompts", prompts);
    test_lookups(t);
    test_byte_decoding(t);
    test_invalid_utf8(t);
    test_long_runs(t);
    test_threads(t);
    dsv4_tokenizer_free(t);
    test_tiny();
    test_ignore_merges();
    test_refused();
    return check_done("test_tokenizer");
}
