/* test_dsml.c: the incremental DSML parser.
 *
 * 1. Round trips against the official code: tests/data/encoding/dsml_roundtrip.jsonl holds
 *    assistant turns, the completion text the official encoder renders for each and what the
 *    official parse_message_from_completion_text reads back. We render the same turn with
 *    dsv4_chat_render (must equal the completion), then parse the completion fed whole, in
 *    two pieces split at every byte, byte by byte and in random pieces, and require the
 *    official result every time.
 * 2. Truncation at every byte: no crash, nothing but a prefix of the final content or
 *    reasoning, calls closed with complete=false, the cut reported.
 * 3. Malformed DSML, one case per repair rule, and text that only looks like markup.
 * Every run also checks the stream invariants of dsml.h (valid UTF-8, no markup in text,
 * START/END pairing, argument deltas adding up to the final arguments). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "text/chat.h"
#include "text/dsml.h"
#include "text/strbuf.h"

#define DSML "｜DSML｜"
#define EOS "<｜end▁of▁sentence｜>"

enum { MAX_CALLS = 16, MAX_ERRORS = 32 };

typedef struct parsed {
    dsv4_strbuf reasoning, content;
    int n_calls;
    char *names[MAX_CALLS];
    dsv4_strbuf args[MAX_CALLS];  /* from CALL_END */
    dsv4_strbuf delta[MAX_CALLS]; /* concatenated CALL_ARGS */
    bool started[MAX_CALLS], ended[MAX_CALLS], complete[MAX_CALLS];
    int n_errors;
    dsv4_dsml_error errors[MAX_ERRORS];
    size_t error_offsets[MAX_ERRORS];
    bool invariant_broken;
} parsed;

static void parsed_free(parsed *r) {
    dsv4_strbuf_free(&r->reasoning);
    dsv4_strbuf_free(&r->content);
    for (int i = 0; i < MAX_CALLS; i++) {
        free(r->names[i]);
        dsv4_strbuf_free(&r->args[i]);
        dsv4_strbuf_free(&r->delta[i]);
    }
    memset(r, 0, sizeof *r);
}

static bool valid_utf8(const char *s, size_t n) {
    json_t *j = json_stringn(s, n); /* jansson checks UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

static void broken(parsed *r, const char *what) {
    if (!r->invariant_broken) CHECK(0, "stream invariant broken: %s", what);
    r->invariant_broken = true;
}

static void take_events(dsv4_dsml *p, parsed *r) {
    dsv4_dsml_event ev;
    while (dsv4_dsml_next(p, &ev)) {
        if (ev.text[ev.len] != 0) broken(r, "text not NUL-terminated");
        if (!valid_utf8(ev.text, ev.len)) broken(r, "text is not valid UTF-8");
        int c = ev.call;
        switch (ev.kind) {
        case DSV4_DSML_REASONING:
        case DSV4_DSML_CONTENT:
            if (!ev.len) broken(r, "empty text delta");
            /* (Reasoning is split only at </think>, as in the official parser: it may quote DSML.) */
            if (ev.kind == DSV4_DSML_CONTENT && (memmem(ev.text, ev.len, "<" DSML, strlen("<" DSML)) ||
                                                 memmem(ev.text, ev.len, "</" DSML, strlen("</" DSML))))
                broken(r, "DSML markup in content");
            dsv4_strbuf_append(ev.kind == DSV4_DSML_REASONING ? &r->reasoning : &r->content, ev.text, ev.len);
            break;
        case DSV4_DSML_CALL_START:
            if (c != r->n_calls || c >= MAX_CALLS) {
                broken(r, "calls out of order");
                break;
            }
            r->started[c] = true;
            r->names[c] = strdup(ev.name);
            r->n_calls++;
            break;
        case DSV4_DSML_CALL_ARGS:
            if (c < 0 || c >= r->n_calls || r->ended[c]) broken(r, "arguments outside a call");
            else dsv4_strbuf_append(&r->delta[c], ev.text, ev.len);
            break;
        case DSV4_DSML_CALL_END:
            if (c < 0 || c >= r->n_calls || r->ended[c] || strcmp(ev.name, r->names[c])) {
                broken(r, "CALL_END without its CALL_START");
                break;
            }
            r->ended[c] = true;
            r->complete[c] = ev.complete;
            dsv4_strbuf_append(&r->args[c], ev.text, ev.len);
            if (r->delta[c].len != ev.len || memcmp(r->delta[c].data, ev.text, ev.len))
                broken(r, "argument deltas do not add up to the arguments");
            if (ev.complete) {
                json_t *j = json_loadb(ev.text, ev.len, JSON_DECODE_INT_AS_REAL, NULL);
                if (!json_is_object(j)) broken(r, "the arguments of a complete call are not a JSON object");
                json_decref(j);
            }
            break;
        case DSV4_DSML_ERROR:
            if (r->n_errors < MAX_ERRORS) {
                r->error_offsets[r->n_errors] = ev.offset;
                r->errors[r->n_errors++] = ev.error;
            }
            break;
        }
    }
}

/* Parse text fed in the pieces given by cut positions (ascending, within the text). */
static void parse_cuts(const char *text, size_t len, bool thinking, const size_t *cuts, int n_cuts, parsed *r,
                       bool finish) {
    memset(r, 0, sizeof *r);
    dsv4_dsml *p;
    if (dsv4_dsml_new(thinking, &p)) {
        CHECK(0, "dsv4_dsml_new failed");
        return;
    }
    size_t at = 0;
    for (int i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        CHECK(dsv4_dsml_feed(p, text + at, end - at) == DSV4_OK, "feed failed");
        take_events(p, r);
        at = end;
    }
    if (finish) {
        CHECK(dsv4_dsml_finish(p) == DSV4_OK, "finish failed");
        take_events(p, r);
        for (int c = 0; c < r->n_calls; c++)
            if (!r->ended[c]) broken(r, "a call never ended");
    }
    dsv4_dsml_free(p);
}

static void parse_whole(const char *text, size_t len, bool thinking, parsed *r) {
    parse_cuts(text, len, thinking, NULL, 0, r, true);
}

static bool has_error(const parsed *r, dsv4_dsml_error e) {
    for (int i = 0; i < r->n_errors; i++)
        if (r->errors[i] == e) return true;
    return false;
}

static bool buf_is(const dsv4_strbuf *b, const char *s, size_t n) {
    return b->len == n && (n == 0 || !memcmp(b->data, s, n));
}

/* Does r equal the official parse (a message with content, reasoning_content, tool_calls)? */
static bool same_as(const parsed *r, const json_t *want, char *why, size_t why_size) {
    const json_t *content = json_object_get(want, "content"), *reasoning = json_object_get(want, "reasoning_content");
    const json_t *calls = json_object_get(want, "tool_calls");
    if (!buf_is(&r->content, json_string_value(content), json_string_length(content)))
        return snprintf(why, why_size, "content \"%.*s\"", (int)r->content.len, r->content.data), false;
    if (!buf_is(&r->reasoning, json_string_value(reasoning), json_string_length(reasoning)))
        return snprintf(why, why_size, "reasoning \"%.*s\"", (int)r->reasoning.len, r->reasoning.data), false;
    if ((size_t)r->n_calls != json_array_size(calls))
        return snprintf(why, why_size, "%d calls instead of %zu", r->n_calls, json_array_size(calls)), false;
    for (int c = 0; c < r->n_calls; c++) {
        const json_t *fn = json_object_get(json_array_get(calls, (size_t)c), "function");
        const json_t *args = json_object_get(fn, "arguments");
        if (strcmp(r->names[c], json_string_value(json_object_get(fn, "name"))))
            return snprintf(why, why_size, "call %d named %s", c, r->names[c]), false;
        if (!buf_is(&r->args[c], json_string_value(args), json_string_length(args)))
            return snprintf(why, why_size, "call %d arguments %.*s", c, (int)r->args[c].len, r->args[c].data), false;
        if (!r->complete[c]) return snprintf(why, why_size, "call %d incomplete", c), false;
    }
    if (r->n_errors) return snprintf(why, why_size, "%d errors, first %s", r->n_errors, dsv4_dsml_error_name(r->errors[0])), false;
    return !r->invariant_broken;
}

/* ---- 1. round trips ------------------------------------------------------------------- */

static void check_splits(const char *name, const char *text, size_t len, bool thinking, const json_t *want) {
    char why[300];
    parsed r;
    parse_whole(text, len, thinking, &r);
    CHECK(same_as(&r, want, why, sizeof why), "%s, fed whole: %s", name, why);
    parsed_free(&r);
    int bad = 0;
    for (size_t cut = 1; cut < len; cut++) {
        parse_cuts(text, len, thinking, &cut, 1, &r, true);
        if (!same_as(&r, want, why, sizeof why) && bad++ < 3) CHECK(0, "%s, split at %zu: %s", name, cut, why);
        parsed_free(&r);
    }
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
    parse_cuts(text, len, thinking, cuts, len > 0 ? (int)len - 1 : 0, &r, true);
    CHECK(same_as(&r, want, why, sizeof why), "%s, byte by byte: %s", name, why);
    parsed_free(&r);
    unsigned seed = 12345;
    for (int trial = 0; trial < 20; trial++) {
        int n = 0;
        for (size_t at = 0;;) {
            seed = seed * 1103515245u + 12345u;
            at += 1 + (seed >> 16) % 9;
            if (at >= len) break;
            cuts[n++] = at;
        }
        parse_cuts(text, len, thinking, cuts, n, &r, true);
        if (!same_as(&r, want, why, sizeof why) && bad++ < 3) CHECK(0, "%s, random pieces: %s", name, why);
        parsed_free(&r);
    }
    free(cuts);
}

/* 2. Cut the text at every byte and finish there. */
static void check_truncations(const char *name, const char *text, size_t len, bool thinking, const json_t *want) {
    const json_t *content = json_object_get(want, "content"), *reasoning = json_object_get(want, "reasoning_content");
    const json_t *calls = json_object_get(want, "tool_calls");
    /* What may precede a cut: the full text, then the beginning of the marker after it. */
    dsv4_strbuf content_bound = DSV4_STRBUF_INIT, reasoning_bound = DSV4_STRBUF_INIT;
    dsv4_strbuf_append(&content_bound, json_string_value(content), json_string_length(content));
    dsv4_strbuf_puts(&content_bound, json_array_size(calls) ? "\n\n<" DSML "tool_calls>" : EOS);
    dsv4_strbuf_append(&reasoning_bound, json_string_value(reasoning), json_string_length(reasoning));
    dsv4_strbuf_puts(&reasoning_bound, "</think>");
    int bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        parsed r;
        parse_cuts(text, cut, thinking, NULL, 0, &r, true);
        /* A cut inside a character leaves a U+FFFD; only the invariants hold there. */
        bool mid_char = cut < len && (text[cut] & 0xC0) == 0x80;
        /* After the block, a cut inside the EOS marker leaves its beginning as text. */
        size_t full = json_string_length(content), eos_part = r.content.len - full;
        bool eos_tail = r.content.len > full && eos_part < strlen(EOS) &&
                        !memcmp(r.content.data, json_string_value(content), full) &&
                        !memcmp(r.content.data + full, EOS, eos_part);
        bool ok = !r.invariant_broken && (mid_char || ((eos_tail || (r.content.len <= content_bound.len &&
                  !memcmp(r.content.data ? r.content.data : "", content_bound.data, r.content.len))) &&
                  r.reasoning.len <= reasoning_bound.len &&
                  !memcmp(r.reasoning.data ? r.reasoning.data : "", reasoning_bound.data, r.reasoning.len))) &&
                  (size_t)r.n_calls <= json_array_size(calls);
        /* Calls closed before the cut are exact; one cut inside is flagged. */
        for (int c = 0; ok && c < r.n_calls; c++) {
            const json_t *fn = json_object_get(json_array_get(calls, (size_t)c), "function");
            const json_t *args = json_object_get(fn, "arguments");
            ok = !strcmp(r.names[c], json_string_value(json_object_get(fn, "name")));
            if (ok && r.complete[c] && !mid_char) ok = buf_is(&r.args[c], json_string_value(args), json_string_length(args));
            if (ok && !r.complete[c]) ok = has_error(&r, DSV4_DSML_E_UNTERMINATED);
        }
        if (!ok && bad++ < 3) CHECK(0, "%s cut at %zu: content \"%.*s\", reasoning \"%.*s\", %d calls", name, cut,
                                    (int)r.content.len, r.content.data, (int)r.reasoning.len, r.reasoning.data,
                                    r.n_calls);
        parsed_free(&r);
    }
    dsv4_strbuf_free(&content_bound);
    dsv4_strbuf_free(&reasoning_bound);
}

static void test_roundtrips(void) {
    const char *path = DSV4_SOURCE_DIR "/tests/data/encoding/dsml_roundtrip.jsonl";
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    json_t *c;
    int n = 0;
    while ((c = json_loadf(f, JSON_DISABLE_EOF_CHECK, NULL))) {
        char name[32];
        snprintf(name, sizeof name, "round trip %d", n++);
        bool thinking = !strcmp(json_string_value(json_object_get(c, "thinking_mode")), "thinking");
        const json_t *completion = json_object_get(c, "completion"), *want = json_object_get(c, "expected");
        const char *text = json_string_value(completion);
        size_t len = json_string_length(completion);

        /* Our encoder renders the same completion after the same prompt. */
        dsv4_chat_opts opts = {.thinking_mode = thinking ? DSV4_MODE_THINKING : DSV4_MODE_CHAT};
        json_t *msgs = json_object_get(c, "messages"), *first = json_array();
        json_array_append(first, json_array_get(msgs, 0));
        char *full = NULL, *prefix = NULL;
        size_t full_len = 0, prefix_len = 0;
        CHECK(dsv4_chat_render(msgs, &opts, &full, &full_len) == DSV4_OK, "%s: render: %s", name, dsv4_errmsg());
        CHECK(dsv4_chat_render(first, &opts, &prefix, &prefix_len) == DSV4_OK, "%s: render", name);
        CHECK(full && prefix && full_len == prefix_len + len && !memcmp(full, prefix, prefix_len) &&
                  !memcmp(full + prefix_len, text, len),
              "%s: dsv4_chat_render does not produce the official completion", name);
        free(full);
        free(prefix);
        json_decref(first);

        check_splits(name, text, len, thinking, want);
        check_truncations(name, text, len, thinking, want);

        /* The whole-message convenience gives the same message. */
        json_t *msg = NULL, *errors = NULL;
        CHECK(dsv4_dsml_parse_message(text, len, thinking, &msg, &errors) == DSV4_OK, "%s: parse_message", name);
        json_t *tool_calls = json_object_get(want, "tool_calls");
        CHECK(msg && json_equal(json_object_get(msg, "content"), json_object_get(want, "content")) &&
                  json_equal(json_object_get(msg, "reasoning_content"), json_object_get(want, "reasoning_content")) &&
                  json_equal(json_object_get(msg, "tool_calls"), tool_calls) && json_array_size(errors) == 0,
              "%s: dsv4_dsml_parse_message differs from the official parse", name);
        json_decref(msg);
        json_decref(errors);
        json_decref(c);
    }
    fclose(f);
    CHECK(n >= 10, "only %d round-trip cases", n);
}

/* ---- 3. malformed and look-alike text ---------------------------------------------------- */

typedef struct call_want {
    const char *name, *args;
    bool complete;
} call_want;

/* Parse text (whole, split everywhere, byte by byte) and compare with the expectation. */
static void expect(const char *what, bool thinking, const char *text, const char *reasoning, const char *content,
                   const call_want *calls, int n_calls, const dsv4_dsml_error *errors, int n_errors) {
    size_t len = strlen(text);
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
    for (int mode = 0; mode < 3; mode++) {
        size_t max_cut = mode == 1 ? len : 1;
        for (size_t cut = 1; cut <= max_cut && cut <= (len ? len : 1); cut++) {
            parsed r;
            if (mode == 0) parse_whole(text, len, thinking, &r);
            else if (mode == 1) parse_cuts(text, len, thinking, &cut, cut < len ? 1 : 0, &r, true);
            else parse_cuts(text, len, thinking, cuts, len ? (int)len - 1 : 0, &r, true);
            bool ok = !r.invariant_broken && buf_is(&r.content, content, strlen(content)) &&
                      buf_is(&r.reasoning, reasoning, strlen(reasoning)) && r.n_calls == n_calls &&
                      r.n_errors == n_errors;
            for (int c = 0; ok && c < n_calls; c++)
                ok = !strcmp(r.names[c], calls[c].name) && buf_is(&r.args[c], calls[c].args, strlen(calls[c].args)) &&
                     r.complete[c] == calls[c].complete;
            for (int e = 0; ok && e < n_errors; e++) ok = r.errors[e] == errors[e];
            if (!ok) {
                CHECK(0, "%s (%s, cut %zu): content \"%.*s\" reasoning \"%.*s\" %d calls%s%.*s %d errors%s%s", what,
                      mode == 0 ? "whole" : mode == 1 ? "split" : "bytes", cut, (int)r.content.len, r.content.data,
                      (int)r.reasoning.len, r.reasoning.data, r.n_calls, r.n_calls ? " first args " : "",
                      r.n_calls ? (int)r.args[0].len : 0, r.n_calls ? r.args[0].data : "", r.n_errors,
                      r.n_errors ? ", first " : "", r.n_errors ? dsv4_dsml_error_name(r.errors[0]) : "");
                parsed_free(&r);
                mode = 3;
                break;
            }
            parsed_free(&r);
        }
    }
    free(cuts);
}

#define CALLS(...) (const call_want[]){__VA_ARGS__}, (int)(sizeof((const call_want[]){__VA_ARGS__}) / sizeof(call_want))
#define NO_CALLS NULL, 0
#define ERRS(...) (const dsv4_dsml_error[]){__VA_ARGS__}, (int)(sizeof((const dsv4_dsml_error[]){__VA_ARGS__}) / sizeof(dsv4_dsml_error))
#define NO_ERRS NULL, 0

#define OPEN_BLOCK "\n\n<" DSML "tool_calls>\n"
#define CLOSE_BLOCK "</" DSML "tool_calls>"
#define INVOKE(n) "<" DSML "invoke name=\"" n "\">\n"
#define END_INVOKE "</" DSML "invoke>\n"
#define PARAM(k, s, v) "<" DSML "parameter name=\"" k "\" string=\"" s "\">" v "</" DSML "parameter>\n"

static void test_malformed(void) {
    expect("invoke without a name is skipped", false,
           "ok" OPEN_BLOCK "<" DSML "invoke>\n" PARAM("a", "true", "x") END_INVOKE INVOKE("f") END_INVOKE CLOSE_BLOCK EOS,
           "", "ok", CALLS({"f", "{}", true}), ERRS(DSV4_DSML_E_NO_NAME));
    expect("invoke with an empty name is skipped", false,
           OPEN_BLOCK "<" DSML "invoke name=\"\">\n" END_INVOKE CLOSE_BLOCK, "", "", NO_CALLS, ERRS(DSV4_DSML_E_NO_NAME));
    expect("bad JSON kept as a string", false,
           OPEN_BLOCK INVOKE("f") PARAM("a", "false", "{oops") PARAM("b", "false", "[1, 2]") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"a\": \"{oops\", \"b\": [1, 2]}", true}), ERRS(DSV4_DSML_E_BAD_JSON));
    expect("NaN is not JSON for clients", false,
           OPEN_BLOCK INVOKE("f") PARAM("a", "false", "NaN") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"a\": \"NaN\"}", true}), ERRS(DSV4_DSML_E_BAD_JSON));
    expect("an empty string=\"false\" value", false,
           OPEN_BLOCK INVOKE("f") PARAM("a", "false", "") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"a\": \"\"}", true}), ERRS(DSV4_DSML_E_BAD_JSON));
    expect("missing string attribute: JSON if it parses", false,
           OPEN_BLOCK INVOKE("f") "<" DSML "parameter name=\"n\">5</" DSML "parameter>\n<" DSML
           "parameter name=\"s\" string=\"yes\">abc</" DSML "parameter>\n" END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"n\": 5, \"s\": \"abc\"}", true}), ERRS(DSV4_DSML_E_BAD_STRING_ATTR, DSV4_DSML_E_BAD_STRING_ATTR));
    expect("a parameter without a name", false,
           OPEN_BLOCK INVOKE("f") "<" DSML "parameter string=\"true\">x</" DSML "parameter>\n" PARAM("k", "true", "v")
           END_INVOKE CLOSE_BLOCK, "", "", CALLS({"f", "{\"k\": \"v\"}", true}), ERRS(DSV4_DSML_E_NO_NAME));
    expect("a repeated parameter keeps the first", false,
           OPEN_BLOCK INVOKE("f") PARAM("k", "true", "one") PARAM("k", "true", "two") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"k\": \"one\"}", true}), ERRS(DSV4_DSML_E_DUPLICATE_PARAM));
    expect("unknown tag in content is dropped", false, "a <" DSML "foo bar=\"1\">b", "", "a b", NO_CALLS,
           ERRS(DSV4_DSML_E_BAD_TAG));
    expect("unknown tag inside a block", false,
           OPEN_BLOCK "<" DSML "thing>\n" INVOKE("f") END_INVOKE CLOSE_BLOCK, "", "", CALLS({"f", "{}", true}),
           ERRS(DSV4_DSML_E_BAD_TAG));
    expect("a tag cut by '<' is bad", false, "x <" DSML "invoke name=\"f\" <b>", "", "x <b>", NO_CALLS,
           ERRS(DSV4_DSML_E_BAD_TAG));
    expect("nested tool_calls block", false,
           OPEN_BLOCK "<" DSML "tool_calls>\n" INVOKE("f") END_INVOKE CLOSE_BLOCK, "", "", CALLS({"f", "{}", true}),
           ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("stray closing invoke in content", false, "before</" DSML "invoke>after", "", "beforeafter", NO_CALLS,
           ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("stray closing tags in content keep the newlines", false, "a\n\n</" DSML "tool_calls>b", "", "a\n\nb",
           NO_CALLS, ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("stray closing parameter in a block", false,
           OPEN_BLOCK "</" DSML "parameter>\n" INVOKE("f") END_INVOKE "</" DSML "invoke>\n" CLOSE_BLOCK, "", "",
           CALLS({"f", "{}", true}), ERRS(DSV4_DSML_E_MISPLACED_TAG, DSV4_DSML_E_MISPLACED_TAG));
    expect("an invoke not closed before the next", false,
           OPEN_BLOCK INVOKE("f") PARAM("a", "true", "1") INVOKE("g") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"a\": \"1\"}", true}, {"g", "{}", true}), ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("block closed inside an invoke", false, OPEN_BLOCK INVOKE("f") CLOSE_BLOCK, "", "",
           CALLS({"f", "{}", true}), ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("invoke outside a block", false, "text\n\n" INVOKE("f") PARAM("a", "false", "true") END_INVOKE, "", "text",
           CALLS({"f", "{\"a\": true}", true}), ERRS(DSV4_DSML_E_MISPLACED_TAG, DSV4_DSML_E_UNTERMINATED));
    expect("a parameter outside an invoke is skipped", false,
           "t" OPEN_BLOCK PARAM("a", "true", "x") INVOKE("f") END_INVOKE CLOSE_BLOCK, "", "t", CALLS({"f", "{}", true}),
           ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("a parameter in content is skipped", false, "t " PARAM("a", "true", "x") "u", "", "t \nu", NO_CALLS,
           ERRS(DSV4_DSML_E_MISPLACED_TAG));
    expect("stray text inside a block", false,
           OPEN_BLOCK "junk\n" INVOKE("f") "more junk" END_INVOKE CLOSE_BLOCK, "", "", CALLS({"f", "{}", true}),
           ERRS(DSV4_DSML_E_STRAY_TEXT, DSV4_DSML_E_STRAY_TEXT));
    expect("text after the block becomes content", false,
           "a" OPEN_BLOCK INVOKE("f") END_INVOKE CLOSE_BLOCK "\n  tail", "", "atail", CALLS({"f", "{}", true}),
           ERRS(DSV4_DSML_E_STRAY_TEXT));
    expect("two blocks", false,
           OPEN_BLOCK INVOKE("f") END_INVOKE CLOSE_BLOCK OPEN_BLOCK INVOKE("g") END_INVOKE CLOSE_BLOCK EOS, "", "",
           CALLS({"f", "{}", true}, {"g", "{}", true}), NO_ERRS);
    expect("text after EOS is ignored", false, "answer" EOS "more", "", "answer", NO_CALLS, ERRS(DSV4_DSML_E_AFTER_END));
    expect("tool calls before </think>", true, "thinking" OPEN_BLOCK INVOKE("f") END_INVOKE CLOSE_BLOCK EOS,
           "thinking", "", CALLS({"f", "{}", true}), ERRS(DSV4_DSML_E_NO_THINK_END));
    expect("EOS before </think>", true, "thinking" EOS, "thinking", "", NO_CALLS, ERRS(DSV4_DSML_E_NO_THINK_END));
    expect("text ends in reasoning", true, "still thinking </thi", "still thinking </thi", "", NO_CALLS,
           ERRS(DSV4_DSML_E_NO_THINK_END));
    expect("value that ends the text", false, OPEN_BLOCK INVOKE("f") "<" DSML "parameter name=\"a\" string=\"true\">abc",
           "", "", CALLS({"f", "{\"a\": \"abc\"}", false}), ERRS(DSV4_DSML_E_UNTERMINATED));
    expect("JSON value that ends the text", false,
           OPEN_BLOCK INVOKE("f") PARAM("x", "true", "1") "<" DSML "parameter name=\"a\" string=\"false\">[1, 2", "", "",
           CALLS({"f", "{\"x\": \"1\", \"a\": \"[1, 2\"}", false}),
           ERRS(DSV4_DSML_E_UNTERMINATED, DSV4_DSML_E_BAD_JSON));
    expect("EOS inside a value", false, OPEN_BLOCK INVOKE("f") "<" DSML "parameter name=\"a\" string=\"true\">ab" EOS,
           "", "", CALLS({"f", "{\"a\": \"ab\"}", false}), ERRS(DSV4_DSML_E_UNTERMINATED));
    expect("a tag cut off at the end", false, "answer\n\n<" DSML "tool_calls", "", "answer", NO_CALLS,
           ERRS(DSV4_DSML_E_UNTERMINATED));
    expect("a block cut off at the end", false, "answer" OPEN_BLOCK, "", "answer", NO_CALLS,
           ERRS(DSV4_DSML_E_UNTERMINATED));
    expect("invalid UTF-8 becomes U+FFFD", false, "a\xff\xc3(b\xe2\x82", "", "a\xEF\xBF\xBD\xEF\xBF\xBD(b\xEF\xBF\xBD",
           NO_CALLS, NO_ERRS);
    expect("invalid UTF-8 in a string value", false,
           OPEN_BLOCK INVOKE("f") PARAM("a", "true", "\xc0x\n\"") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"f", "{\"a\": \"\xEF\xBF\xBDx\\n\\\"\"}", true}), NO_ERRS);
    /* A value may contain anything but its own closing tag, markup included (as in the
     * official parser). */
    expect("markup inside a value", false,
           OPEN_BLOCK INVOKE("f") PARAM("a", "true", "<" DSML "invoke name=\"x\"> and </" DSML "tool_calls>") END_INVOKE
           CLOSE_BLOCK, "", "", CALLS({"f", "{\"a\": \"<" DSML "invoke name=\\\"x\\\"> and </" DSML "tool_calls>\"}", true}),
           NO_ERRS);
    expect("quoted '>' in a name", false, OPEN_BLOCK INVOKE("a>b") END_INVOKE CLOSE_BLOCK, "", "",
           CALLS({"a>b", "{}", true}), NO_ERRS);

    /* An over-long tag is dropped without waiting for its end. */
    dsv4_strbuf big = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&big, "x<" DSML "invoke name=\"");
    for (int i = 0; i < 1100; i++) dsv4_strbuf_putc(&big, 'n');
    dsv4_strbuf_puts(&big, "\">y");
    parsed r;
    parse_whole(big.data, big.len, false, &r);
    CHECK(r.n_calls == 0 && has_error(&r, DSV4_DSML_E_BAD_TAG) && r.content.len > 1000 && r.content.data[0] == 'x',
          "an over-long tag is reported and dropped");
    parsed_free(&r);
    dsv4_strbuf_free(&big);
}

static void test_lookalikes(void) {
    /* Text that only looks like markup passes through untouched, without errors. */
    const char *texts[] = {
        "a < b and c > d",
        "x <｜ y",
        "<｜User｜> and <｜Assistant｜> as text",
        "<｜DSM",
        "｜DSML｜ without the angle bracket",
        "< ｜DSML｜tool_calls>",
        "</ think> and <think>",
        "ends with newlines\n\n",
        "ends with a partial marker \n\n<｜DSML",
        "<<<<>>>>",
        "\n\n\n\n",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        expect(texts[i], false, texts[i], "", texts[i], NO_CALLS, NO_ERRS);
    expect("</think> in chat content is text", false, "a</think>b", "", "a</think>b", NO_CALLS, NO_ERRS);
    expect("</think> ends reasoning once", true, "r</think>a</think>b", "r", "a</think>b", NO_CALLS, NO_ERRS);
    expect("newlines before a block are its separator", false, "a\n\n\n" OPEN_BLOCK CLOSE_BLOCK, "", "a\n\n\n", NO_CALLS,
           NO_ERRS);
}

/* ---- 4. random DSML-ish text: the result must not depend on how the text is cut -------- */

static bool same_parse(const parsed *a, const parsed *b) {
    if (a->invariant_broken || b->invariant_broken) return false;
    if (!buf_is(&a->content, b->content.data, b->content.len) || !buf_is(&a->reasoning, b->reasoning.data, b->reasoning.len))
        return false;
    if (a->n_calls != b->n_calls || a->n_errors != b->n_errors) return false;
    for (int c = 0; c < a->n_calls; c++)
        if (strcmp(a->names[c], b->names[c]) || !buf_is(&a->args[c], b->args[c].data, b->args[c].len) ||
            a->complete[c] != b->complete[c])
            return false;
    for (int e = 0; e < a->n_errors; e++)
        if (a->errors[e] != b->errors[e] || a->error_offsets[e] != b->error_offsets[e]) return false;
    return true;
}

static void test_random_texts(void) {
    static const char *const pieces[] = {
        "<" DSML "tool_calls>", "</" DSML "tool_calls>", "<" DSML "invoke name=\"f\">", "<" DSML "invoke>",
        "</" DSML "invoke>", "<" DSML "parameter name=\"a\" string=\"true\">",
        "<" DSML "parameter name=\"b\" string=\"false\">", "<" DSML "parameter name=\"c\">", "</" DSML "parameter>",
        "\n", "\n\n", "x", " ", "{\"k\": [1, 2.5]}", "</think>", EOS, "<", "｜", "\xe4\xbd\xa0", "\xff", "\xe4\xbd",
        "\"", ">", "<" DSML, "</" DSML, "<｜DS", "<" DSML "nope>", "null",
    };
    unsigned seed = 777;
    int n_texts = 1500, bad = 0;
    for (int t = 0; t < n_texts; t++) {
        char text[512];
        size_t len = 0;
        seed = seed * 1103515245u + 12345u;
        int n = 1 + (int)((seed >> 16) % 24);
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *piece = pieces[(seed >> 16) % (sizeof pieces / sizeof *pieces)];
            size_t k = strlen(piece);
            if (len + k >= sizeof text) break;
            memcpy(text + len, piece, k);
            len += k;
        }
        bool thinking = t % 3 == 0;
        size_t cuts[sizeof text];
        for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
        parsed whole, bytes, halves;
        parse_whole(text, len, thinking, &whole);
        parse_cuts(text, len, thinking, cuts, len ? (int)len - 1 : 0, &bytes, true);
        size_t mid = len / 2;
        parse_cuts(text, len, thinking, &mid, len ? 1 : 0, &halves, true);
        if ((!same_parse(&whole, &bytes) || !same_parse(&whole, &halves)) && bad++ < 5) {
            CHECK(0, "text %d \"%.*s\" parses differently when cut", t, (int)len, text);
            fprintf(stderr, "  whole: content \"%.*s\" reasoning \"%.*s\" %d calls %d errors\n", (int)whole.content.len,
                    whole.content.data, (int)whole.reasoning.len, whole.reasoning.data, whole.n_calls, whole.n_errors);
            fprintf(stderr, "  bytes: content \"%.*s\" reasoning \"%.*s\" %d calls %d errors\n", (int)bytes.content.len,
                    bytes.content.data, (int)bytes.reasoning.len, bytes.reasoning.data, bytes.n_calls, bytes.n_errors);
            for (int e = 0; e < whole.n_errors || e < bytes.n_errors; e++)
                fprintf(stderr, "  error %d: %s@%zu vs %s@%zu\n", e, dsv4_dsml_error_name(whole.errors[e]),
                        whole.error_offsets[e], dsv4_dsml_error_name(bytes.errors[e]), bytes.error_offsets[e]);
        }
        parsed_free(&whole);
        parsed_free(&bytes);
        parsed_free(&halves);
    }
    CHECK(bad == 0, "%d of %d random texts depend on how they are cut", bad, n_texts);
}

static void test_api(void) {
    dsv4_dsml *p;
    CHECK(dsv4_dsml_new(false, &p) == DSV4_OK, "new");
    CHECK(dsv4_dsml_feed(p, "hi", 2) == DSV4_OK, "feed");
    CHECK(dsv4_dsml_finish(p) == DSV4_OK, "finish");
    CHECK(dsv4_dsml_feed(p, "x", 1) == DSV4_EINVAL, "feed after finish is refused");
    CHECK(dsv4_dsml_finish(p) == DSV4_EINVAL, "finish twice is refused");
    dsv4_dsml_event ev;
    CHECK(dsv4_dsml_next(p, &ev) && ev.kind == DSV4_DSML_CONTENT && !strcmp(ev.text, "hi"), "content event");
    CHECK(!dsv4_dsml_next(p, &ev), "no more events");
    dsv4_dsml_free(p);
    dsv4_dsml_free(NULL);

    /* Streaming a long string value yields argument deltas as it goes, not at the end. */
    CHECK(dsv4_dsml_new(false, &p) == DSV4_OK, "new");
    const char *head = OPEN_BLOCK INVOKE("write") "<" DSML "parameter name=\"text\" string=\"true\">";
    dsv4_dsml_feed(p, head, strlen(head));
    int starts = 0;
    while (dsv4_dsml_next(p, &ev)) starts += ev.kind == DSV4_DSML_CALL_START && !strcmp(ev.name, "write");
    CHECK(starts == 1, "CALL_START as soon as the invoke tag is complete");
    dsv4_dsml_feed(p, "hello \"world\"", 13);
    bool got = false;
    while (dsv4_dsml_next(p, &ev)) got |= ev.kind == DSV4_DSML_CALL_ARGS && strstr(ev.text, "hello \\\"world") != NULL;
    CHECK(got, "string value streamed before its closing tag");
    dsv4_dsml_free(p);

    json_t *msg = NULL, *errors = NULL;
    const char *bad = "x" OPEN_BLOCK INVOKE("f") PARAM("a", "false", "{") END_INVOKE CLOSE_BLOCK;
    CHECK(dsv4_dsml_parse_message(bad, strlen(bad), false, &msg, &errors) == DSV4_OK, "parse_message");
    CHECK(json_array_size(errors) == 1 &&
              !strcmp(json_string_value(json_object_get(json_array_get(errors, 0), "error")), "bad_json"),
          "parse_message reports errors");
    json_decref(msg);
    json_decref(errors);
}

int main(void) {
    test_roundtrips();
    test_malformed();
    test_lookalikes();
    test_random_texts();
    test_api();
    return check_done("test_dsml");
}
