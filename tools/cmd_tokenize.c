/* cmd_tokenize.c: `dsv4 tokenize`, text to token ids and back, for scripts and tests.
 *
 *   dsv4 tokenize --tokenizer T.json --jsonl IN.jsonl      {"text": ...} lines -> {"ids": [...]}
 *   dsv4 tokenize --tokenizer T.json --decode --jsonl IN   {"ids": [...]} lines -> {"text": ...}
 *   dsv4 tokenize --tokenizer T.json --text "Hello"        one text
 *   dsv4 tokenize --tokenizer T.json --decode --ids 9,17   one id list
 *
 * One output line per input line (blank lines are skipped). No BOS is added. --stream decodes
 * through the stream decoder, one id at a time (the output must not change). --stats prints
 * the bytes, tokens and encode/decode speed to stderr, timing only the library calls. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "text/tokenizer.h"

static const char *cmd = "tokenize";

typedef struct options {
    const char *tokenizer, *jsonl, *text, *ids;
    bool decode, stream, stats;
} options;

typedef struct totals {
    size_t bytes, tokens;
    double seconds;
} totals;

static int usage(FILE *f) {
    fprintf(f, "usage: dsv4 tokenize --tokenizer FILE.json (--jsonl IN.jsonl | --text TEXT)\n"
               "       dsv4 tokenize --tokenizer FILE.json --decode (--jsonl IN.jsonl | --ids 1,2,3) [--stream]\n"
               "  --jsonl FILE  one JSON object per line: {\"text\": ...}, or {\"ids\": [...]} with --decode\n"
               "                (- reads standard input)\n"
               "  --stats       print bytes, tokens and speed to stderr\n");
    return f == stdout ? 0 : 2;
}

static void print_ids(const int32_t *ids, size_t n) {
    fputs("{\"ids\": [", stdout);
    for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    fputs("]}\n", stdout);
}

static void print_text(const char *text, size_t len) {
    json_t *obj = json_pack("{s:s%}", "text", text, len);
    char *line = obj ? json_dumps(obj, 0) : NULL;
    if (line) puts(line);
    free(line);
    json_decref(obj);
}

static int encode_one(const dsv4_tokenizer *t, const char *text, size_t len, totals *tot, long line) {
    int32_t *ids;
    size_t n;
    double t0 = dsv4_now();
    dsv4_status st = dsv4_tokenize(t, text, len, &ids, &n);
    tot->seconds += dsv4_now() - t0;
    if (st) {
        if (line) return cli_fail(cmd, "line %ld: %s", line, dsv4_errmsg());
        return cli_fail_lib(cmd, "--text");
    }
    tot->bytes += len;
    tot->tokens += n;
    print_ids(ids, n);
    free(ids);
    return 0;
}

/* Decode whole, or through the stream decoder one id at a time. */
static dsv4_status decode_ids(const dsv4_tokenizer *t, const int32_t *ids, size_t n, bool stream,
                              char **text, size_t *len) {
    if (!stream) return dsv4_detokenize(t, ids, n, text, len);
    dsv4_detok_stream *s;
    dsv4_status st = dsv4_detok_stream_new(t, &s);
    if (st) return st;
    size_t cap = 64, used = 0;
    char *buf = malloc(cap);
    const char *piece;
    size_t plen;
    for (size_t i = 0; i <= n && buf && !st; i++) {
        st = i < n ? dsv4_detok_stream_push(s, ids[i], &piece, &plen)
                   : dsv4_detok_stream_finish(s, &piece, &plen);
        if (st) break;
        while (used + plen + 1 > cap) buf = realloc(buf, cap *= 2);
        if (buf) memcpy(buf + used, piece, plen);
        used += plen;
    }
    dsv4_detok_stream_free(s);
    if (!buf) return dsv4_error(DSV4_ENOMEM, "out of memory decoding");
    if (st) {
        free(buf);
        return st;
    }
    buf[used] = 0;
    *text = buf;
    *len = used;
    return DSV4_OK;
}

static int decode_one(const dsv4_tokenizer *t, const int32_t *ids, size_t n, const options *o,
                      totals *tot, long line) {
    char *text;
    size_t len;
    double t0 = dsv4_now();
    dsv4_status st = decode_ids(t, ids, n, o->stream, &text, &len);
    tot->seconds += dsv4_now() - t0;
    if (st) {
        if (line) return cli_fail(cmd, "line %ld: %s", line, dsv4_errmsg());
        return cli_fail_lib(cmd, "--ids");
    }
    tot->bytes += len;
    tot->tokens += n;
    print_text(text, len);
    free(text);
    return 0;
}

/* {"ids": [...]} -> ids; NULL with a message on a bad line. */
static int32_t *ids_of(const json_t *obj, size_t *n, long line) {
    const json_t *arr = json_object_get(obj, "ids");
    if (!json_is_array(arr)) {
        cli_fail(cmd, "line %ld: expected {\"ids\": [...]}", line);
        return NULL;
    }
    *n = json_array_size(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t k = 0; ids && k < *n; k++) {
        const json_t *v = json_array_get(arr, k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            cli_fail(cmd, "line %ld: ids[%zu] is not a token id", line, k);
            free(ids);
            return NULL;
        }
        ids[k] = (int32_t)json_integer_value(v);
    }
    return ids;
}

static int run_jsonl(const dsv4_tokenizer *t, const options *o, totals *tot) {
    FILE *f = strcmp(o->jsonl, "-") ? fopen(o->jsonl, "rb") : stdin;
    if (!f) return cli_fail(cmd, "cannot open %s: %s", o->jsonl, strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    long line = 0;
    int rc = 0;
    while (!rc && (got = getline(&buf, &cap, f)) >= 0) {
        line++;
        if (strspn(buf, " \t\r\n") == (size_t)got) continue;
        json_error_t err;
        json_t *obj = json_loadb(buf, (size_t)got, JSON_ALLOW_NUL, &err);
        if (!json_is_object(obj)) {
            rc = cli_fail(cmd, "%s line %ld: %s", o->jsonl, line, obj ? "not a JSON object" : err.text);
        } else if (o->decode) {
            size_t n;
            int32_t *ids = ids_of(obj, &n, line);
            rc = ids ? decode_one(t, ids, n, o, tot, line) : 1;
            free(ids);
        } else {
            const json_t *text = json_object_get(obj, "text");
            if (!json_is_string(text))
                rc = cli_fail(cmd, "%s line %ld: expected {\"text\": \"...\"}", o->jsonl, line);
            else
                rc = encode_one(t, json_string_value(text), json_string_length(text), tot, line);
        }
        json_decref(obj);
    }
    if (!rc && ferror(f)) rc = cli_fail(cmd, "error reading %s", o->jsonl);
    free(buf);
    if (f != stdin) fclose(f);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **value = NULL;
        if (cli_is(a, "-h", "--help")) return usage(stdout);
        else if (cli_is(a, NULL, "--tokenizer")) value = &o.tokenizer;
        else if (cli_is(a, NULL, "--jsonl")) value = &o.jsonl;
        else if (cli_is(a, NULL, "--text")) value = &o.text;
        else if (cli_is(a, NULL, "--ids")) value = &o.ids;
        else if (cli_is(a, NULL, "--decode")) o.decode = true;
        else if (cli_is(a, NULL, "--stream")) o.stream = true;
        else if (cli_is(a, NULL, "--stats")) o.stats = true;
        else {
            cli_fail(cmd, "unknown option %s", a);
            return usage(stderr);
        }
        if (value && !(*value = cli_value(argc, argv, &i))) return cli_fail(cmd, "%s needs a value", a);
    }
    if (!o.tokenizer) return cli_fail(cmd, "--tokenizer FILE.json is required");
    int inputs = !!o.jsonl + !!o.text + !!o.ids;
    if (inputs != 1) return cli_fail(cmd, "give exactly one of --jsonl, --text, --ids");
    if (o.text && o.decode) return cli_fail(cmd, "--decode takes --ids or --jsonl, not --text");
    if (o.ids && !o.decode) return cli_fail(cmd, "--ids needs --decode");

    dsv4_tokenizer *t;
    double t0 = dsv4_now();
    if (dsv4_tokenizer_load(o.tokenizer, &t)) return cli_fail_lib(cmd, NULL);
    double load_s = dsv4_now() - t0;

    totals tot = {0};
    int rc;
    if (o.jsonl) {
        rc = run_jsonl(t, &o, &tot);
    } else if (o.text) {
        rc = encode_one(t, o.text, strlen(o.text), &tot, 0);
    } else {
        int *list, n;
        if (!cli_parse_ids(cmd, o.ids, &list, &n)) rc = 1;
        else {
            int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
            for (int k = 0; k < n; k++) ids[k] = list[k];
            rc = decode_one(t, ids, (size_t)n, &o, &tot, 0);
            free(ids);
            free(list);
        }
    }
    if (o.stats && !rc)
        fprintf(stderr, "%s %zu bytes, %zu tokens in %.3f s: %.2f MB/s (load %.3f s)\n",
                o.decode ? "decoded" : "encoded", tot.bytes, tot.tokens, tot.seconds,
                tot.seconds > 0 ? (double)tot.bytes / tot.seconds / 1e6 : 0.0, load_s);
    dsv4_tokenizer_free(t);
    return rc;
}
