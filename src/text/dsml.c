/* dsml.c: the incremental parser of reasoning, content and DSML tool calls (see dsml.h).
 *
 * Design. Fed bytes accumulate in `pend`; each step looks at its unconsumed part in the
 * current state, finds the first marker that matters there, passes the text before it on
 * and consumes it (a cursor; the buffer is compacted once per feed, so a long feed with
 * many tags stays linear). What cannot be decided yet stays in `pend`: a tail that is the beginning
 * of some marker ("<｜DS" could become "<｜DSML｜"), a tag whose closing '>' has not come,
 * an incomplete UTF-8 character. So at most a tag's worth of bytes is ever held back, and
 * a step either makes progress or waits for more input.
 *
 *   state       markers looked for                          text before a marker
 *   REASONING   </think>, \n\n<｜DSML｜tool_calls, EOS        reasoning
 *   CONTENT     <｜DSML｜, </｜DSML｜, EOS                     content (minus up to two
 *                                                            newlines before a DSML tag)
 *   BLOCK       <｜DSML｜, </｜DSML｜, EOS                     whitespace, else stray text
 *   INVOKE      same as BLOCK                                same as BLOCK
 *   VALUE       </｜DSML｜parameter>, EOS                     the parameter's value
 *   DONE        -                                            ignored (after EOS)
 *
 * These split points are those of the official parse_message_from_completion_text, which
 * splits at </think> and at "\n\n<｜DSML｜tool_calls"; beyond that reference (which raises
 * on any deviation) we accept any DSML tag in content as the start of markup, so none can
 * leak into the answer, and we repair what we can: a missing </｜DSML｜invoke> closes the
 * call at the next invoke or block end, an invoke outside a block opens one, a nameless
 * invoke or parameter is skipped, a value that should be JSON and is not becomes a string.
 * Each repair is reported as an ERROR event with its byte offset.
 *
 * A tag is recognised whole: from its marker to the first '>' outside double quotes, at
 * most TAG_MAX bytes and with no '<' before it; otherwise the marker and tag name are
 * dropped as a bad tag and parsing resumes after them.
 *
 * Events queue in an array whose texts live in one arena; consumers pop them with
 * dsv4_dsml_next. Consecutive text deltas of one kind within one feed are merged. */
#include "text/dsml.h"

#include <stdarg.h>
#include <stdio.h>

#include "base/base.h"
#include "text/pyjson.h"
#include "text/strbuf.h"

#define DSML "｜DSML｜"

enum { TAG_MAX = 1024 };

typedef struct marker {
    const char *s;
    size_t n;
} marker;

#define MARKER(lit) {lit, sizeof lit - 1}
static const marker m_open = MARKER("<" DSML), m_close = MARKER("</" DSML), m_eos = MARKER("<｜end▁of▁sentence｜>"),
                    m_think_end = MARKER("</think>"), m_calls_start = MARKER("\n\n<" DSML "tool_calls"),
                    m_param_end = MARKER("</" DSML "parameter>");

typedef enum state { S_REASONING, S_CONTENT, S_BLOCK, S_INVOKE, S_VALUE, S_DONE } state;

typedef enum param_kind {
    P_STRING, /* string="true": streamed as a JSON string */
    P_JSON,   /* string="false": buffered, checked, written as is */
    P_AUTO,   /* no valid string attribute: JSON if it parses, else a string */
    P_SKIP,   /* a parameter we could not attach to a call: read and dropped */
} param_kind;

typedef struct queued {
    dsv4_dsml_kind kind;
    size_t text, len; /* in the arena; text[len] is NUL */
    size_t name;      /* in the arena, or SIZE_MAX */
    int call;
    bool complete;
    dsv4_dsml_error error;
    size_t offset;
} queued;

struct dsv4_dsml {
    state state;
    state value_return; /* where a parameter value returns to */
    dsv4_strbuf pend;   /* fed bytes; those from `at` on are not consumed yet */
    size_t at;
    size_t offset;      /* stream offset of pend.data[at] */
    bool finished;
    bool after_block;    /* in CONTENT after a tool_calls block: whitespace is dropped */
    bool stray_reported; /* one report per run of stray text */
    bool end_reported;   /* text after EOS was reported */

    /* the call being read */
    bool in_call, skip_call;
    int n_calls;
    dsv4_strbuf name, args;
    dsv4_strbuf seen_params; /* the parameter names so far, for duplicates */
    int n_params;

    /* the parameter being read */
    param_kind param;
    dsv4_strbuf value; /* P_JSON / P_AUTO */
    size_t param_offset;

    /* the event queue */
    queued *q;
    size_t nq, capq, head;
    dsv4_strbuf arena;
    bool nomem;
};

/* ---- UTF-8 ----------------------------------------------------------------------------- */

/* Length of the valid character at s; -1 if valid so far but cut short by n; 0 if invalid,
 * with *bad set to the length of the maximal invalid subpart (the bytes one U+FFFD replaces,
 * as the Unicode standard recommends, so the result does not depend on how text is cut). */
static int utf8_char(const unsigned char *s, size_t n, size_t *bad) {
    unsigned c = s[0];
    *bad = 1;
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) {
            *bad = (size_t)i;
            return 0;
        }
    }
    return len;
}

/* n, less a character cut off at the end (to be completed by the next feed). */
static size_t utf8_whole(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        size_t bad;
        if (c < 0x80) break;
        if (c >= 0xC0) return utf8_char((const unsigned char *)s + n - k, k, &bad) < 0 ? n - k : n;
    }
    return n;
}

/* Append s with every invalid sequence replaced by U+FFFD. */
static void put_valid_utf8(dsv4_strbuf *out, const char *s, size_t n) {
    size_t run = 0, i = 0;
    while (i < n) {
        size_t bad;
        int k = utf8_char((const unsigned char *)s + i, n - i, &bad);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        dsv4_strbuf_append(out, s + run, i - run);
        dsv4_strbuf_puts(out, "\xEF\xBF\xBD");
        run = i = k < 0 ? n : i + bad;
    }
    dsv4_strbuf_append(out, s + run, n - run);
}

/* ---- events ---------------------------------------------------------------------------- */

static queued *push(dsv4_dsml *p, dsv4_dsml_kind kind, int call) {
    if (p->nq == p->capq) {
        size_t cap = p->capq ? p->capq * 2 : 16;
        queued *nq = realloc(p->q, cap * sizeof *nq);
        if (!nq) {
            p->nomem = true;
            return NULL;
        }
        p->q = nq;
        p->capq = cap;
    }
    queued *e = &p->q[p->nq++];
    *e = (queued){.kind = kind, .text = p->arena.len, .name = SIZE_MAX, .call = call};
    return e;
}

/* Put a text delta, merging it into the previous event when that is of the same kind. */
static void emit_text(dsv4_dsml *p, dsv4_dsml_kind kind, int call, const char *s, size_t n) {
    if (!n) return;
    queued *last = p->nq > p->head ? &p->q[p->nq - 1] : NULL;
    if (last && last->kind == kind && last->call == call && last->text + last->len + 1 == p->arena.len) {
        dsv4_strbuf_truncate(&p->arena, p->arena.len - 1); /* its NUL */
    } else if (!(last = push(p, kind, call))) {
        return;
    }
    put_valid_utf8(&p->arena, s, n);
    last->len = p->arena.len - last->text;
    dsv4_strbuf_putc(&p->arena, 0);
}

static void report(dsv4_dsml *p, dsv4_dsml_error code, size_t offset, const char *fmt, ...) DSV4_PRINTF(4, 5);
static void report(dsv4_dsml *p, dsv4_dsml_error code, size_t offset, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    queued *e = push(p, DSV4_DSML_ERROR, -1);
    if (!e) return;
    e->error = code;
    e->offset = offset;
    put_valid_utf8(&p->arena, msg, n < 0 ? 0 : DSV4_MIN((size_t)n, sizeof msg - 1));
    e->len = p->arena.len - e->text;
    dsv4_strbuf_putc(&p->arena, 0);
}

/* ---- calls and parameters ------------------------------------------------------------ */

static void put_args(dsv4_dsml *p, const char *s, size_t n) {
    dsv4_strbuf_append(&p->args, s, n);
    emit_text(p, DSV4_DSML_CALL_ARGS, p->n_calls, s, n);
}

static void call_start(dsv4_dsml *p, const char *name, size_t n) {
    p->in_call = true;
    p->skip_call = false;
    p->n_params = 0;
    dsv4_strbuf_clear(&p->args);
    dsv4_strbuf_clear(&p->seen_params);
    dsv4_strbuf_clear(&p->name);
    put_valid_utf8(&p->name, name, n);
    queued *e = push(p, DSV4_DSML_CALL_START, p->n_calls);
    if (!e) return;
    e->name = p->arena.len;
    dsv4_strbuf_append(&p->arena, p->name.data, p->name.len);
    dsv4_strbuf_putc(&p->arena, 0);
    e->text = p->arena.len - 1; /* no text: point at the name's NUL */
}

static void call_end(dsv4_dsml *p, bool complete) {
    if (p->in_call && !p->skip_call) {
        put_args(p, p->n_params ? "}" : "{}", p->n_params ? 1 : 2);
        queued *e = push(p, DSV4_DSML_CALL_END, p->n_calls);
        if (e) {
            e->complete = complete;
            e->name = p->arena.len;
            dsv4_strbuf_append(&p->arena, p->name.data, p->name.len);
            dsv4_strbuf_putc(&p->arena, 0);
            e->text = p->arena.len;
            dsv4_strbuf_append(&p->arena, p->args.data, p->args.len);
            e->len = p->arena.len - e->text;
            dsv4_strbuf_putc(&p->arena, 0);
        }
        p->n_calls++;
    }
    p->in_call = p->skip_call = false;
}

/* seen_params holds each name as its length (a size_t) followed by its bytes. */
static bool seen_param(const dsv4_dsml *p, const char *key, size_t n) {
    for (size_t at = 0; at < p->seen_params.len;) {
        size_t len;
        memcpy(&len, p->seen_params.data + at, sizeof len);
        at += sizeof len;
        if (len == n && !memcmp(p->seen_params.data + at, key, n)) return true;
        at += len;
    }
    return false;
}

static void note_param(dsv4_dsml *p, const char *key, size_t n) {
    dsv4_strbuf_append(&p->seen_params, &n, sizeof n);
    dsv4_strbuf_append(&p->seen_params, key, n);
}

/* The start of a member of the arguments object: {"key":  or , "key": */
static void put_key(dsv4_dsml *p, const char *key, size_t n) {
    dsv4_strbuf k = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&k, p->n_params ? ", " : "{");
    dsv4_strbuf tmp = DSV4_STRBUF_INIT;
    put_valid_utf8(&tmp, key, n);
    dsv4_pyjson_write_string(&k, tmp.data ? tmp.data : "", tmp.len);
    dsv4_strbuf_puts(&k, ": ");
    if (k.failed || tmp.failed) p->nomem = true;
    else put_args(p, k.data, k.len);
    dsv4_strbuf_free(&k);
    dsv4_strbuf_free(&tmp);
    p->n_params++;
}

static void param_start(dsv4_dsml *p, param_kind kind, const char *key, size_t n) {
    p->param = kind;
    dsv4_strbuf_clear(&p->value);
    if (kind != P_SKIP) {
        note_param(p, key, n);
        put_key(p, key, n);
        if (kind == P_STRING) put_args(p, "\"", 1);
    }
}

/* Escape a piece of a string value into the arguments. */
static void put_string_piece(dsv4_dsml *p, const char *s, size_t n) {
    dsv4_strbuf valid = DSV4_STRBUF_INIT, esc = DSV4_STRBUF_INIT;
    put_valid_utf8(&valid, s, n);
    dsv4_pyjson_write_string_body(&esc, valid.data ? valid.data : "", valid.len);
    if (valid.failed || esc.failed) p->nomem = true;
    else put_args(p, esc.data, esc.len);
    dsv4_strbuf_free(&valid);
    dsv4_strbuf_free(&esc);
}

static void value_piece(dsv4_dsml *p, const char *s, size_t n) {
    if (p->param == P_STRING) put_string_piece(p, s, n);
    else if (p->param != P_SKIP) dsv4_strbuf_append(&p->value, s, n);
}

static void param_end(dsv4_dsml *p) {
    if (p->param == P_STRING) {
        put_args(p, "\"", 1);
    } else if (p->param == P_JSON || p->param == P_AUTO) {
        dsv4_strbuf v = DSV4_STRBUF_INIT;
        put_valid_utf8(&v, p->value.data ? p->value.data : "", p->value.len);
        const char *text = v.data ? v.data : "";
        if (dsv4_pyjson_valid(text, v.len, true)) {
            put_args(p, text, v.len);
        } else {
            if (p->param == P_JSON)
                report(p, DSV4_DSML_E_BAD_JSON, p->param_offset,
                       "call %d: a string=\"false\" parameter is not JSON; kept as a string", p->n_calls);
            put_args(p, "\"", 1);
            put_string_piece(p, text, v.len);
            put_args(p, "\"", 1);
        }
        if (v.failed) p->nomem = true;
        dsv4_strbuf_free(&v);
    }
    p->param = P_SKIP;
}

/* ---- tags ------------------------------------------------------------------------------ */

typedef enum tag_name { TAG_TOOL_CALLS, TAG_INVOKE, TAG_PARAMETER } tag_name;

typedef struct tag {
    bool closing;
    tag_name name;
    size_t len; /* from the marker through '>' */
    const char *attr_name, *attr_string;
    size_t attr_name_len, attr_string_len;
    bool has_name, has_string;
} tag;

typedef enum read_result { READ_MORE, READ_BAD, READ_OK } read_result;

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* Read the tag at buf (which starts with a DSML marker). On READ_BAD, *drop is how many
 * bytes to discard: the whole tag when its end was found, up to a '<' that cut it short,
 * else (too long) the marker and tag name. */
static read_result read_tag(const char *buf, size_t n, tag *t, size_t *drop) {
    *t = (tag){.closing = n >= m_close.n && !memcmp(buf, m_close.s, m_close.n)};
    size_t start = t->closing ? m_close.n : m_open.n, i = start;
    while (i < n && is_name_char(buf[i])) i++;
    size_t name_end = i;
    *drop = name_end;
    /* The extent: up to the first '>' outside quotes, within TAG_MAX, before any '<'. */
    bool quoted = false;
    for (; i < n && i < TAG_MAX; i++) {
        char c = buf[i];
        if (c == '"') quoted = !quoted;
        else if (!quoted && c == '>') break;
        else if (!quoted && c == '<') {
            *drop = i; /* the broken tag ends where the next one may begin */
            return READ_BAD;
        }
    }
    if (i >= TAG_MAX) return READ_BAD;
    if (i >= n) return READ_MORE;
    t->len = i + 1;
    *drop = t->len;

    static const char *const names[] = {"tool_calls", "invoke", "parameter"};
    size_t name_len = name_end - start;
    bool known = false;
    for (int k = 0; k < 3; k++) {
        if (name_len == strlen(names[k]) && !memcmp(buf + start, names[k], name_len)) {
            t->name = (tag_name)k;
            known = true;
        }
    }
    if (!known) return READ_BAD;
    /* Attributes: (space+ key="value")* space* */
    size_t end = i; /* the '>' */
    i = name_end;
    for (;;) {
        size_t ws = i;
        while (i < end && is_space(buf[i])) i++;
        if (i == end) return READ_OK;
        if (i == ws || t->closing) return READ_BAD;
        size_t key = i;
        while (i < end && is_name_char(buf[i])) i++;
        size_t key_len = i - key;
        if (!key_len || i + 1 >= end || buf[i] != '=' || buf[i + 1] != '"') return READ_BAD;
        size_t val = i + 2, close = val;
        while (close < end && buf[close] != '"') close++;
        if (close >= end) return READ_BAD;
        if (key_len == 4 && !memcmp(buf + key, "name", 4)) {
            t->has_name = true, t->attr_name = buf + val, t->attr_name_len = close - val;
        } else if (key_len == 6 && !memcmp(buf + key, "string", 6)) {
            t->has_string = true, t->attr_string = buf + val, t->attr_string_len = close - val;
        }
        i = close + 1;
    }
}

/* Tags that open structure; the newlines before them are the separator, not content. */
static bool opens_structure(const tag *t) { return !t->closing; }

static void start_invoke(dsv4_dsml *p, const tag *t, size_t off) {
    p->state = S_INVOKE;
    if (!t->has_name || !t->attr_name_len) {
        report(p, DSV4_DSML_E_NO_NAME, off, "an invoke without a name; the call is skipped");
        p->in_call = p->skip_call = true;
        return;
    }
    call_start(p, t->attr_name, t->attr_name_len);
}

static void start_param(dsv4_dsml *p, const tag *t, size_t off) {
    p->value_return = p->state;
    p->state = S_VALUE;
    p->param_offset = off;
    if (p->value_return != S_INVOKE) {
        report(p, DSV4_DSML_E_MISPLACED_TAG, off, "a parameter outside an invoke; skipped");
        param_start(p, P_SKIP, NULL, 0);
        return;
    }
    if (p->skip_call) {
        param_start(p, P_SKIP, NULL, 0);
        return;
    }
    if (!t->has_name || !t->attr_name_len) {
        report(p, DSV4_DSML_E_NO_NAME, off, "call %d: a parameter without a name; skipped", p->n_calls);
        param_start(p, P_SKIP, NULL, 0);
        return;
    }
    if (seen_param(p, t->attr_name, t->attr_name_len)) {
        report(p, DSV4_DSML_E_DUPLICATE_PARAM, off, "call %d: parameter \"%.*s\" repeated; skipped", p->n_calls,
               (int)DSV4_MIN(t->attr_name_len, 64), t->attr_name);
        param_start(p, P_SKIP, NULL, 0);
        return;
    }
    param_kind kind = P_AUTO;
    if (t->has_string && t->attr_string_len == 4 && !memcmp(t->attr_string, "true", 4)) kind = P_STRING;
    else if (t->has_string && t->attr_string_len == 5 && !memcmp(t->attr_string, "false", 5)) kind = P_JSON;
    else
        report(p, DSV4_DSML_E_BAD_STRING_ATTR, off, "call %d: parameter \"%.*s\" has no string=\"true|false\"",
               p->n_calls, (int)DSV4_MIN(t->attr_name_len, 64), t->attr_name);
    param_start(p, kind, t->attr_name, t->attr_name_len);
}

/* Act on a complete tag read in state BLOCK, INVOKE or CONTENT. */
static void handle_tag(dsv4_dsml *p, const tag *t, size_t off) {
    state s = p->state;
    if (!t->closing) {
        switch (t->name) {
        case TAG_TOOL_CALLS:
            if (s == S_CONTENT) p->state = S_BLOCK, p->after_block = false;
            else report(p, DSV4_DSML_E_MISPLACED_TAG, off, "a tool_calls block inside another; ignored");
            return;
        case TAG_INVOKE:
            if (s == S_CONTENT) {
                report(p, DSV4_DSML_E_MISPLACED_TAG, off, "an invoke outside a tool_calls block");
                p->after_block = false;
            } else if (s == S_INVOKE) {
                report(p, DSV4_DSML_E_MISPLACED_TAG, off, "an invoke began before the previous one ended");
                call_end(p, true);
            }
            start_invoke(p, t, off);
            return;
        case TAG_PARAMETER: start_param(p, t, off); return;
        }
    }
    switch (t->name) {
    case TAG_TOOL_CALLS:
        if (s == S_INVOKE) {
            report(p, DSV4_DSML_E_MISPLACED_TAG, off, "the tool_calls block ended inside an invoke");
            call_end(p, true);
            s = S_BLOCK;
        }
        if (s == S_BLOCK) p->state = S_CONTENT, p->after_block = true;
        else report(p, DSV4_DSML_E_MISPLACED_TAG, off, "a stray </｜DSML｜tool_calls>; ignored");
        return;
    case TAG_INVOKE:
        if (s == S_INVOKE) {
            call_end(p, true);
            p->state = S_BLOCK;
        } else {
            report(p, DSV4_DSML_E_MISPLACED_TAG, off, "a stray </｜DSML｜invoke>; ignored");
        }
        return;
    case TAG_PARAMETER:
        report(p, DSV4_DSML_E_MISPLACED_TAG, off, "a stray </｜DSML｜parameter>; ignored");
        return;
    }
}

/* ---- the steps ----------------------------------------------------------------------- */

/* The first complete marker in buf (its index in m, position in *at), or -1 with *safe
 * set to how many leading bytes cannot belong to a marker. */
static int find_marker(const char *buf, size_t n, const marker *const *m, int nm, size_t *at, size_t *safe) {
    size_t hold = n; /* where the first marker that the end cuts short begins */
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < nm; k++) {
            if (buf[i] != m[k]->s[0]) continue;
            size_t left = n - i;
            if (left >= m[k]->n) {
                if (!memcmp(buf + i, m[k]->s, m[k]->n)) {
                    *at = i;
                    return k;
                }
            } else if (hold == n && !memcmp(buf + i, m[k]->s, left)) {
                hold = i;
            }
        }
    }
    *at = n;
    *safe = hold;
    return -1;
}

/* The bytes not consumed yet. */
static const char *unread(const dsv4_dsml *p, size_t *n) {
    *n = p->pend.len - p->at;
    return p->pend.data ? p->pend.data + p->at : "";
}

static void consume(dsv4_dsml *p, size_t n) {
    p->at += n;
    p->offset += n;
}

static void put_content(dsv4_dsml *p, const char *s, size_t n) {
    if (p->after_block) {
        size_t i = 0;
        while (i < n && is_space(s[i])) i++;
        if (i == n) return;
        report(p, DSV4_DSML_E_STRAY_TEXT, p->offset + i, "text after the tool calls");
        p->after_block = false;
        s += i, n -= i;
    }
    emit_text(p, DSV4_DSML_CONTENT, -1, s, n);
}

/* Between elements only whitespace belongs; report the rest once per run. */
static void skip_between(dsv4_dsml *p, size_t n) {
    size_t avail;
    const char *s = unread(p, &avail);
    for (size_t i = 0; i < n; i++) {
        if (is_space(s[i])) continue;
        if (!p->stray_reported)
            report(p, DSV4_DSML_E_STRAY_TEXT, p->offset + i, "text between tool-call elements; dropped");
        p->stray_reported = true;
        break;
    }
    consume(p, n);
}

/* Everything is over: report and close what is still open. */
static void end_message(dsv4_dsml *p) {
    switch (p->state) {
    case S_VALUE:
        report(p, DSV4_DSML_E_UNTERMINATED, p->offset, "the text ended inside a parameter value");
        param_end(p);
        if (p->in_call) call_end(p, false);
        break;
    case S_INVOKE:
        report(p, DSV4_DSML_E_UNTERMINATED, p->offset, "the text ended inside an invoke");
        call_end(p, false);
        break;
    case S_BLOCK:
        report(p, DSV4_DSML_E_UNTERMINATED, p->offset, "the text ended inside a tool_calls block");
        break;
    default: break;
    }
    p->state = S_DONE;
}

static bool step_reasoning(dsv4_dsml *p) {
    static const marker *const ms[] = {&m_think_end, &m_calls_start, &m_eos};
    size_t at, safe, avail;
    const char *s = unread(p, &avail);
    int k = find_marker(s, avail, ms, 3, &at, &safe);
    if (k < 0) {
        size_t n = utf8_whole(s, safe);
        emit_text(p, DSV4_DSML_REASONING, -1, s, n);
        consume(p, n);
        return n > 0;
    }
    emit_text(p, DSV4_DSML_REASONING, -1, s, at);
    consume(p, at);
    p->state = S_CONTENT;
    if (ms[k] == &m_think_end) {
        consume(p, m_think_end.n);
    } else if (ms[k] == &m_calls_start) {
        report(p, DSV4_DSML_E_NO_THINK_END, p->offset, "tool calls began before </think>");
        consume(p, 2); /* the separator; the block is read in CONTENT */
    } else {
        report(p, DSV4_DSML_E_NO_THINK_END, p->offset, "the message ended before </think>");
        consume(p, m_eos.n);
        end_message(p);
    }
    return true;
}

/* CONTENT, BLOCK and INVOKE: text or whitespace up to the next DSML tag. */
static bool step_tags(dsv4_dsml *p) {
    static const marker *const ms[] = {&m_open, &m_close, &m_eos};
    bool content = p->state == S_CONTENT;
    size_t at, safe, avail;
    const char *s = unread(p, &avail);
    int k = find_marker(s, avail, ms, 3, &at, &safe);
    if (k < 0) {
        size_t n = safe;
        if (content) {
            for (int nl = 0; nl < 2 && n > 0 && s[n - 1] == '\n'; nl++) n--;
            n = utf8_whole(s, n);
            put_content(p, s, n);
            consume(p, n);
        } else {
            skip_between(p, n);
        }
        return n > 0;
    }
    size_t nl = 0;
    if (content)
        while (nl < 2 && nl < at && s[at - nl - 1] == '\n') nl++;
    if (at > nl) { /* the text before: the next step starts at the (newlines and) marker */
        if (content) put_content(p, s, at - nl), consume(p, at - nl);
        else skip_between(p, at);
        return true;
    }
    if (ms[k] == &m_eos) {
        if (content) put_content(p, s, nl);
        consume(p, nl + m_eos.n);
        end_message(p);
        return true;
    }
    tag t;
    size_t drop;
    switch (read_tag(s + nl, avail - nl, &t, &drop)) {
    case READ_MORE: return false;
    case READ_BAD:
        if (content) put_content(p, s, nl);
        report(p, DSV4_DSML_E_BAD_TAG, p->offset + nl, "an unknown or malformed DSML tag \"%.*s\"; dropped",
               (int)DSV4_MIN(drop, 48), s + nl);
        p->stray_reported = true; /* the rest of a broken tag is not reported again */
        consume(p, nl + drop);
        return true;
    case READ_OK:
        if (content && !opens_structure(&t)) put_content(p, s, nl);
        handle_tag(p, &t, p->offset + nl);
        p->stray_reported = false;
        consume(p, nl + t.len);
        return true;
    }
    return false;
}

static bool step_value(dsv4_dsml *p) {
    static const marker *const ms[] = {&m_param_end, &m_eos};
    size_t at, safe, avail;
    const char *s = unread(p, &avail);
    int k = find_marker(s, avail, ms, 2, &at, &safe);
    if (k < 0) {
        size_t n = utf8_whole(s, safe);
        value_piece(p, s, n);
        consume(p, n);
        return n > 0;
    }
    value_piece(p, s, at);
    consume(p, at);
    if (ms[k] == &m_param_end) {
        consume(p, m_param_end.n);
        param_end(p);
        p->state = p->value_return;
    } else {
        consume(p, m_eos.n);
        end_message(p);
    }
    return true;
}

static bool step(dsv4_dsml *p) {
    if (p->nomem || p->pend.failed || p->arena.failed) return false;
    switch (p->state) {
    case S_REASONING: return step_reasoning(p);
    case S_CONTENT:
    case S_BLOCK:
    case S_INVOKE: return step_tags(p);
    case S_VALUE: return step_value(p);
    case S_DONE:
        if (p->at < p->pend.len) {
            if (!p->end_reported)
                report(p, DSV4_DSML_E_AFTER_END, p->offset, "text after the end of the message; ignored");
            p->end_reported = true;
            consume(p, p->pend.len - p->at);
        }
        return false;
    }
    return false;
}

/* ---- the public interface -------------------------------------------------------------- */

static dsv4_status status_of(dsv4_dsml *p) {
    if (p->nomem || p->pend.failed || p->arena.failed || p->args.failed || p->value.failed || p->name.failed ||
        p->seen_params.failed)
        return dsv4_error(DSV4_ENOMEM, "DSML parser: out of memory");
    return DSV4_OK;
}

/* Drop the events already taken, so the arena does not grow without bound. */
static void recycle(dsv4_dsml *p) {
    if (p->head == p->nq) {
        p->head = p->nq = 0;
        dsv4_strbuf_clear(&p->arena);
    }
}

dsv4_status dsv4_dsml_new(bool in_reasoning, dsv4_dsml **out) {
    dsv4_dsml *p = dsv4_calloc(1, sizeof *p, "DSML parser");
    *out = p;
    if (!p) return DSV4_ENOMEM;
    p->state = in_reasoning ? S_REASONING : S_CONTENT;
    p->param = P_SKIP;
    return DSV4_OK;
}

void dsv4_dsml_free(dsv4_dsml *p) {
    if (!p) return;
    dsv4_strbuf *bufs[] = {&p->pend, &p->name, &p->args, &p->seen_params, &p->value, &p->arena};
    for (size_t i = 0; i < DSV4_ARRAY_LEN(bufs); i++) dsv4_strbuf_free(bufs[i]);
    free(p->q);
    free(p);
}

dsv4_status dsv4_dsml_feed(dsv4_dsml *p, const char *text, size_t len) {
    if (p->finished) return dsv4_error(DSV4_EINVAL, "DSML parser: feed after finish");
    recycle(p);
    dsv4_strbuf_append(&p->pend, text, len);
    while (step(p)) {
    }
    dsv4_strbuf_consume(&p->pend, p->at); /* keep only what is undecided */
    p->at = 0;
    return status_of(p);
}

dsv4_status dsv4_dsml_finish(dsv4_dsml *p) {
    if (p->finished) return dsv4_error(DSV4_EINVAL, "DSML parser: finish called twice");
    recycle(p);
    p->finished = true;
    size_t n;
    const char *s = unread(p, &n);
    switch (p->state) {
    case S_REASONING:
        emit_text(p, DSV4_DSML_REASONING, -1, s, n);
        report(p, DSV4_DSML_E_NO_THINK_END, p->offset + n, "the text ended before </think>");
        break;
    case S_CONTENT: {
        /* A whole marker here begins a tag that never got its '>': drop it. */
        const char *open = memmem(s, n, m_open.s, m_open.n), *close = memmem(s, n, m_close.s, m_close.n);
        const char *cut = open && (!close || open < close) ? open : close;
        size_t before = cut ? (size_t)(cut - s) : n;
        for (int nl = 0; cut && nl < 2 && before > 0 && s[before - 1] == '\n'; nl++) before--;
        put_content(p, s, before);
        if (cut) report(p, DSV4_DSML_E_UNTERMINATED, p->offset + (size_t)(cut - s), "the text ended inside a DSML tag");
        break;
    }
    case S_VALUE: value_piece(p, s, n); break;
    default: break;
    }
    consume(p, n);
    end_message(p);
    return status_of(p);
}

bool dsv4_dsml_next(dsv4_dsml *p, dsv4_dsml_event *ev) {
    if (p->head >= p->nq) return false;
    const queued *q = &p->q[p->head++];
    const char *base = p->arena.data;
    *ev = (dsv4_dsml_event){
        .kind = q->kind,
        .text = base + q->text,
        .len = q->len,
        .call = q->call,
        .name = q->name == SIZE_MAX ? NULL : base + q->name,
        .complete = q->complete,
        .error = q->error,
        .offset = q->offset,
    };
    return true;
}

const char *dsv4_dsml_error_name(dsv4_dsml_error e) {
    static const char *const names[] = {"ok", "no_think_end", "unterminated", "bad_tag", "misplaced_tag", "no_name",
                                        "duplicate_param", "bad_json", "bad_string_attr", "stray_text", "after_end"};
    return (size_t)e < DSV4_ARRAY_LEN(names) ? names[e] : "unknown";
}

dsv4_status dsv4_dsml_parse_message(const char *text, size_t len, bool in_reasoning, json_t **message,
                                    json_t **errors) {
    *message = NULL;
    if (errors) *errors = NULL;
    dsv4_dsml *p;
    dsv4_status st = dsv4_dsml_new(in_reasoning, &p);
    if (st) return st;
    dsv4_strbuf reasoning = DSV4_STRBUF_INIT, content = DSV4_STRBUF_INIT;
    json_t *calls = json_array(), *errs = json_array();
    st = dsv4_dsml_feed(p, text, len);
    if (!st) st = dsv4_dsml_finish(p);
    dsv4_dsml_event ev;
    while (!st && dsv4_dsml_next(p, &ev)) {
        if (ev.kind == DSV4_DSML_REASONING) dsv4_strbuf_append(&reasoning, ev.text, ev.len);
        else if (ev.kind == DSV4_DSML_CONTENT) dsv4_strbuf_append(&content, ev.text, ev.len);
        else if (ev.kind == DSV4_DSML_CALL_END)
            json_array_append_new(calls, json_pack("{s:s, s:{s:s, s:s%}}", "type", "function", "function", "name",
                                                   ev.name, "arguments", ev.text, ev.len));
        else if (ev.kind == DSV4_DSML_ERROR)
            json_array_append_new(errs, json_pack("{s:s, s:I, s:s%}", "error", dsv4_dsml_error_name(ev.error),
                                                  "offset", (json_int_t)ev.offset, "message", ev.text, ev.len));
    }
    if (!st && (reasoning.failed || content.failed || !calls || !errs))
        st = dsv4_error(DSV4_ENOMEM, "DSML parser: out of memory");
    if (!st) {
        *message = json_pack("{s:s, s:s%, s:s%, s:o}", "role", "assistant", "content",
                             content.data ? content.data : "", content.len, "reasoning_content",
                             reasoning.data ? reasoning.data : "", reasoning.len, "tool_calls", calls);
        calls = NULL; /* the message owns it (or json_pack freed it) */
        if (!*message) st = dsv4_error(DSV4_ENOMEM, "DSML parser: out of memory building the message");
    }
    if (!st && errors) {
        *errors = errs;
        errs = NULL;
    }
    json_decref(calls);
    json_decref(errs);
    dsv4_strbuf_free(&reasoning);
    dsv4_strbuf_free(&content);
    dsv4_dsml_free(p);
    return st;
}
