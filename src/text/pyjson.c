/* pyjson.c: Python's json.dumps / json.loads behaviour in C (see pyjson.h for what differs
 * from ordinary JSON libraries).
 *
 * Writing. Strings and containers are direct; the one subtle part is float repr. Python
 * prints the shortest decimal string that reads back as the same double (David Gay's
 * algorithm, mode 0), then lays it out in fixed notation when the decimal point falls
 * within [-4, 16) digits of the first digit and in exponent notation otherwise. We get the
 * same digits by asking printf for 1, 2, ... 17 significant digits (glibc rounds exactly) and
 * keeping the first string that strtod maps back to the same double. Near a power of two
 * the rounding interval is lopsided, so the correctly rounded p-digit string can miss while
 * its neighbour on the wider side hits; we try that neighbour too, as Gay's search would.
 *
 * Reading. A recursive-descent parser with json.loads' grammar and Python's scanner errors.
 * It does not build a tree: every value is turned straight into its json.dumps text, which
 * is all the encoder ever needs (the arguments of a tool call become DSML parameters, each
 * either a raw string or the dumps text of a non-string value). Objects are collected as
 * member lists first because a repeated key replaces the earlier value in place. */
#include "text/pyjson.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"

/* ---- float repr ----------------------------------------------------------------------- */

/* Does the decimal "0.DIGITS x 10^decpt" read back as x? */
static bool reads_back(const char *digits, int decpt, double x) {
    char buf[64];
    snprintf(buf, sizeof buf, "0.%se%d", digits, decpt);
    return strtod(buf, NULL) == x;
}

/* Add +1 or -1 in the last place of a digit string (same length); false if the result
 * would need another digit or lose its leading one (those lengths were tried already). */
static bool step_last_digit(char *d, int n, int delta) {
    for (int i = n - 1; i >= 0; i--) {
        int v = d[i] - '0' + delta;
        if (v >= 0 && v <= 9) {
            d[i] = (char)('0' + v);
            return d[0] != '0';
        }
        d[i] = delta > 0 ? '0' : '9';
    }
    return false;
}

/* Shortest digits of a positive finite x: x ~= 0.DIGITS x 10^decpt. */
static void shortest_digits(double x, char digits[20], int *ndigits, int *decpt) {
    for (int prec = 1; prec <= 17; prec++) {
        char buf[48];
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x); /* d.ddde[+-]XX */
        int n = 0;
        const char *p = buf;
        for (; *p && *p != 'e'; p++)
            if (*p != '.') digits[n++] = *p;
        digits[n] = 0;
        int dp = (int)strtol(p + 1, NULL, 10) + 1;
        bool ok = reads_back(digits, dp, x);
        for (int delta = -1; !ok && delta <= 1; delta += 2) {
            char alt[20];
            memcpy(alt, digits, (size_t)n + 1);
            if (step_last_digit(alt, n, delta) && reads_back(alt, dp, x)) {
                memcpy(digits, alt, (size_t)n + 1);
                ok = true;
            }
        }
        if (ok || prec == 17) { /* 17 digits always read back */
            while (n > 1 && digits[n - 1] == '0') digits[--n] = 0;
            *ndigits = n;
            *decpt = dp;
            return;
        }
    }
}

void dsv4_pyjson_format_double(double x, char out[DSV4_PYJSON_DOUBLE_MAX]) {
    if (isnan(x)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(x)) {
        strcpy(out, x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (x == 0) {
        strcpy(out, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char digits[20];
    int n, decpt;
    shortest_digits(fabs(x), digits, &n, &decpt);
    char *o = out;
    if (x < 0) *o++ = '-';
    if (decpt > -4 && decpt <= 16) { /* fixed notation, always with a fractional part */
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            memcpy(o, digits, (size_t)n);
            o += n;
        } else if (decpt >= n) {
            memcpy(o, digits, (size_t)n);
            o += n;
            for (int i = n; i < decpt; i++) *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            memcpy(o, digits, (size_t)decpt);
            o += decpt;
            *o++ = '.';
            memcpy(o, digits + decpt, (size_t)(n - decpt));
            o += n - decpt;
        }
        *o = 0;
    } else { /* d[.ddd]e+XX, at least two exponent digits */
        *o++ = digits[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(n - 1));
            o += n - 1;
        }
        int e = decpt - 1;
        snprintf(o, (size_t)(DSV4_PYJSON_DOUBLE_MAX - (o - out)), "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
}

/* ---- writing -------------------------------------------------------------------------- */

void dsv4_pyjson_write_string_body(dsv4_strbuf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* bytes that need no escape, copied in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        dsv4_strbuf_append(out, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
        }
        dsv4_strbuf_append(out, esc, esc[1] == 'u' ? 6 : 2);
    }
    dsv4_strbuf_append(out, s + run, n - run);
}

void dsv4_pyjson_write_string(dsv4_strbuf *out, const char *s, size_t n) {
    dsv4_strbuf_putc(out, '"');
    dsv4_pyjson_write_string_body(out, s, n);
    dsv4_strbuf_putc(out, '"');
}

void dsv4_pyjson_dump(dsv4_strbuf *out, const json_t *v) {
    char num[DSV4_PYJSON_DOUBLE_MAX];
    switch (json_typeof(v)) {
    case JSON_NULL: dsv4_strbuf_puts(out, "null"); break;
    case JSON_TRUE: dsv4_strbuf_puts(out, "true"); break;
    case JSON_FALSE: dsv4_strbuf_puts(out, "false"); break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        dsv4_strbuf_puts(out, num);
        break;
    case JSON_REAL:
        dsv4_pyjson_format_double(json_real_value(v), num);
        dsv4_strbuf_puts(out, num);
        break;
    case JSON_STRING: dsv4_pyjson_write_string(out, json_string_value(v), json_string_length(v)); break;
    case JSON_ARRAY: {
        dsv4_strbuf_putc(out, '[');
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            if (i) dsv4_strbuf_puts(out, ", ");
            dsv4_pyjson_dump(out, item);
        }
        dsv4_strbuf_putc(out, ']');
        break;
    }
    case JSON_OBJECT: {
        dsv4_strbuf_putc(out, '{');
        const char *key;
        size_t key_len;
        json_t *item;
        bool first = true;
        json_object_keylen_foreach((json_t *)v, key, key_len, item) {
            if (!first) dsv4_strbuf_puts(out, ", ");
            first = false;
            dsv4_pyjson_write_string(out, key, key_len);
            dsv4_strbuf_puts(out, ": ");
            dsv4_pyjson_dump(out, item);
        }
        dsv4_strbuf_putc(out, '}');
        break;
    }
    }
}

bool dsv4_pyjson_truthy(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_NULL:
    case JSON_FALSE: return false;
    case JSON_TRUE: return true;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_OBJECT: return json_object_size(v) > 0;
    }
    return false;
}

/* ---- reading -------------------------------------------------------------------------- */

/* Python's decoder recurses once per nesting level and raises RecursionError near the
 * interpreter's limit of 1000 frames (the exact depth depends on the caller's stack; from
 * the encoder it is about 990). Deeper input counts as invalid, as it does there. */
enum { MAX_DEPTH = 990, MAX_INT_DIGITS = 4300 };

typedef struct parser {
    const char *s;
    size_t n, pos;
    bool strict; /* no NaN / Infinity */
    int depth;
    const char *why; /* the first error */
} parser;

static bool fail(parser *p, const char *why) {
    if (!p->why) p->why = why;
    return false;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static bool at_word(const parser *p, const char *w) {
    size_t k = strlen(w);
    return p->n - p->pos >= k && !memcmp(p->s + p->pos, w, k);
}

static void put_utf8(dsv4_strbuf *out, uint32_t c) {
    char b[4];
    size_t k;
    if (c < 0x80) b[0] = (char)c, k = 1;
    else if (c < 0x800) b[0] = (char)(0xC0 | c >> 6), b[1] = (char)(0x80 | (c & 63)), k = 2;
    else if (c < 0x10000)
        b[0] = (char)(0xE0 | c >> 12), b[1] = (char)(0x80 | (c >> 6 & 63)), b[2] = (char)(0x80 | (c & 63)), k = 3;
    else
        b[0] = (char)(0xF0 | c >> 18), b[1] = (char)(0x80 | (c >> 12 & 63)),
        b[2] = (char)(0x80 | (c >> 6 & 63)), b[3] = (char)(0x80 | (c & 63)), k = 4;
    dsv4_strbuf_append(out, b, k);
}

static bool hex4(parser *p, size_t at, uint32_t *out) {
    if (p->n - at < 4) return false;
    uint32_t v = 0;
    for (size_t i = at; i < at + 4; i++) {
        char c = p->s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                             : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* A string literal at p->pos, decoded into `out` (without quotes). */
static bool parse_string(parser *p, dsv4_strbuf *out) {
    p->pos++; /* the opening quote */
    for (;;) {
        size_t run = p->pos;
        while (p->pos < p->n) {
            unsigned char c = (unsigned char)p->s[p->pos];
            if (c == '"' || c == '\\' || c < 0x20) break;
            p->pos++;
        }
        dsv4_strbuf_append(out, p->s + run, p->pos - run);
        if (p->pos >= p->n) return fail(p, "unterminated string");
        char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            return true;
        }
        if (c != '\\') return fail(p, "invalid control character in a string");
        if (p->pos + 1 >= p->n) return fail(p, "unterminated string");
        char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': dsv4_strbuf_putc(out, '"'); break;
        case '\\': dsv4_strbuf_putc(out, '\\'); break;
        case '/': dsv4_strbuf_putc(out, '/'); break;
        case 'b': dsv4_strbuf_putc(out, '\b'); break;
        case 'f': dsv4_strbuf_putc(out, '\f'); break;
        case 'n': dsv4_strbuf_putc(out, '\n'); break;
        case 'r': dsv4_strbuf_putc(out, '\r'); break;
        case 't': dsv4_strbuf_putc(out, '\t'); break;
        case 'u': {
            uint32_t c1, c2;
            if (!hex4(p, p->pos, &c1)) return fail(p, "invalid \\uXXXX escape");
            p->pos += 4;
            if (c1 >= 0xD800 && c1 <= 0xDBFF && p->n - p->pos >= 6 && p->s[p->pos] == '\\' &&
                p->s[p->pos + 1] == 'u' && hex4(p, p->pos + 2, &c2) && c2 >= 0xDC00 && c2 <= 0xDFFF) {
                p->pos += 6;
                put_utf8(out, 0x10000 + ((c1 - 0xD800) << 10) + (c2 - 0xDC00));
            } else if (c1 >= 0xD800 && c1 <= 0xDFFF) {
                put_utf8(out, 0xFFFD); /* an unpaired surrogate: see pyjson.h */
            } else {
                put_utf8(out, c1);
            }
            break;
        }
        default: return fail(p, "invalid escape in a string");
        }
    }
}

static bool is_digit(const parser *p, size_t at) { return at < p->n && p->s[at] >= '0' && p->s[at] <= '9'; }

/* A number at p->pos, written as Python would print the int or float it becomes. */
static bool parse_number(parser *p, dsv4_strbuf *out) {
    size_t start = p->pos, at = p->pos;
    if (p->s[at] == '-') at++;
    if (at < p->n && p->s[at] == '0') at++;
    else if (is_digit(p, at) && p->s[at] != '0')
        while (is_digit(p, at)) at++;
    else
        return fail(p, "expecting a value");
    size_t int_end = at;
    bool is_float = false;
    if (at < p->n && p->s[at] == '.' && is_digit(p, at + 1)) {
        at++;
        while (is_digit(p, at)) at++;
        is_float = true;
    }
    if (at < p->n && (p->s[at] == 'e' || p->s[at] == 'E')) {
        size_t q = at + 1;
        if (q < p->n && (p->s[q] == '+' || p->s[q] == '-')) q++;
        if (is_digit(p, q)) {
            while (is_digit(p, q)) q++;
            at = q;
            is_float = true;
        }
    }
    p->pos = at;
    if (!is_float) {
        size_t digits = int_end - start - (p->s[start] == '-');
        if (digits > MAX_INT_DIGITS) return fail(p, "integer longer than Python's 4300-digit limit");
        if (int_end - start == 2 && p->s[start] == '-' && p->s[start + 1] == '0')
            dsv4_strbuf_putc(out, '0'); /* int("-0") == 0 */
        else
            dsv4_strbuf_append(out, p->s + start, int_end - start);
        return true;
    }
    char small[64], *lit = small;
    size_t len = at - start;
    if (len >= sizeof small && !(lit = dsv4_malloc(len + 1, "a JSON number"))) return fail(p, "out of memory");
    memcpy(lit, p->s + start, len);
    lit[len] = 0;
    char num[DSV4_PYJSON_DOUBLE_MAX];
    dsv4_pyjson_format_double(strtod(lit, NULL), num); /* overflow gives inf, as in Python */
    if (lit != small) free(lit);
    dsv4_strbuf_puts(out, num);
    return true;
}

static bool parse_value(parser *p, dsv4_strbuf *out);

/* Add or replace a member (a repeated key keeps its first position, takes the last value). */
static bool put_member(dsv4_pyjson_object *obj, size_t *cap, dsv4_strbuf *key, bool is_string,
                       dsv4_strbuf *value) {
    if (key->failed || value->failed) return false;
    for (size_t i = 0; i < obj->count; i++) {
        dsv4_pyjson_member *m = &obj->members[i];
        if (m->key_len == key->len && !memcmp(m->key, key->data ? key->data : "", key->len)) {
            free(m->value);
            m->value = dsv4_strbuf_release(value, &m->value_len);
            m->is_string = is_string;
            dsv4_strbuf_free(key);
            return m->value != NULL;
        }
    }
    if (obj->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        dsv4_pyjson_member *nm = realloc(obj->members, ncap * sizeof *nm);
        if (!nm) return false;
        obj->members = nm;
        *cap = ncap;
    }
    dsv4_pyjson_member *m = &obj->members[obj->count];
    m->key = dsv4_strbuf_release(key, &m->key_len);
    m->value = dsv4_strbuf_release(value, &m->value_len);
    m->is_string = is_string;
    if (!m->key || !m->value) {
        free(m->key);
        free(m->value);
        return false;
    }
    obj->count++;
    return true;
}

/* An object at p->pos, as a member list. */
static bool parse_members(parser *p, dsv4_pyjson_object *obj) {
    size_t cap = 0;
    p->pos++; /* '{' */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
        return true;
    }
    for (;;) {
        if (p->pos >= p->n || p->s[p->pos] != '"') return fail(p, "expecting a property name in double quotes");
        dsv4_strbuf key = DSV4_STRBUF_INIT, value = DSV4_STRBUF_INIT;
        bool ok = parse_string(p, &key);
        if (ok) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') ok = fail(p, "expecting ':' delimiter");
        }
        bool is_string = false;
        if (ok) {
            p->pos++;
            skip_ws(p);
            is_string = p->pos < p->n && p->s[p->pos] == '"';
            ok = is_string ? parse_string(p, &value) : parse_value(p, &value);
        }
        if (ok && !put_member(obj, &cap, &key, is_string, &value)) ok = fail(p, "out of memory");
        dsv4_strbuf_free(&key);
        dsv4_strbuf_free(&value);
        if (!ok) return false;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == '}') {
            p->pos++;
            return true;
        }
        if (p->pos >= p->n || p->s[p->pos] != ',') return fail(p, "expecting ',' delimiter");
        p->pos++;
        skip_ws(p);
    }
}

static bool parse_object(parser *p, dsv4_strbuf *out) {
    dsv4_pyjson_object obj = {0};
    bool ok = parse_members(p, &obj);
    if (ok) {
        dsv4_strbuf_putc(out, '{');
        for (size_t i = 0; i < obj.count; i++) {
            const dsv4_pyjson_member *m = &obj.members[i];
            if (i) dsv4_strbuf_puts(out, ", ");
            dsv4_pyjson_write_string(out, m->key, m->key_len);
            dsv4_strbuf_puts(out, ": ");
            if (m->is_string) dsv4_pyjson_write_string(out, m->value, m->value_len);
            else dsv4_strbuf_append(out, m->value, m->value_len);
        }
        dsv4_strbuf_putc(out, '}');
    }
    dsv4_pyjson_object_free(&obj);
    return ok;
}

static bool parse_array(parser *p, dsv4_strbuf *out) {
    p->pos++; /* '[' */
    dsv4_strbuf_putc(out, '[');
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
        dsv4_strbuf_putc(out, ']');
        return true;
    }
    for (bool first = true;; first = false) {
        if (!first) dsv4_strbuf_puts(out, ", ");
        if (!parse_value(p, out)) return false;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ']') {
            p->pos++;
            dsv4_strbuf_putc(out, ']');
            return true;
        }
        if (p->pos >= p->n || p->s[p->pos] != ',') return fail(p, "expecting ',' delimiter");
        p->pos++;
        skip_ws(p);
    }
}

/* Any value at p->pos (after whitespace), appended to `out` as json.dumps text. */
static bool parse_value(parser *p, dsv4_strbuf *out) {
    if (p->pos >= p->n) return fail(p, "expecting a value");
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        if (++p->depth > MAX_DEPTH) return fail(p, "nested too deeply");
        bool ok = c == '{' ? parse_object(p, out) : parse_array(p, out);
        p->depth--;
        return ok;
    }
    if (c == '"') {
        dsv4_strbuf s = DSV4_STRBUF_INIT;
        bool ok = parse_string(p, &s);
        if (ok) dsv4_pyjson_write_string(out, s.data ? s.data : "", s.len);
        dsv4_strbuf_free(&s);
        return ok;
    }
    static const struct {
        const char *word, *text;
        bool python_only;
    } words[] = {
        {"null", "null", false}, {"true", "true", false}, {"false", "false", false},
        {"NaN", "NaN", true}, {"Infinity", "Infinity", true}, {"-Infinity", "-Infinity", true},
    };
    for (size_t i = 0; i < DSV4_ARRAY_LEN(words); i++) {
        if (at_word(p, words[i].word)) {
            if (words[i].python_only && p->strict) return fail(p, "NaN and Infinity are not JSON");
            p->pos += strlen(words[i].word);
            dsv4_strbuf_puts(out, words[i].text);
            return true;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, out);
    return fail(p, "expecting a value");
}

dsv4_pyjson_result dsv4_pyjson_load_object(const char *text, size_t len, dsv4_pyjson_object *out,
                                           char *why, size_t why_size) {
    *out = (dsv4_pyjson_object){0};
    parser p = {.s = text, .n = len};
    skip_ws(&p);
    bool ok, is_object = p.pos < p.n && text[p.pos] == '{';
    if (is_object) {
        ok = parse_members(&p, out);
    } else {
        dsv4_strbuf sink = DSV4_STRBUF_INIT;
        ok = parse_value(&p, &sink);
        if (ok && sink.failed) ok = fail(&p, "out of memory");
        dsv4_strbuf_free(&sink);
    }
    if (ok) {
        skip_ws(&p);
        if (p.pos != p.n) ok = fail(&p, "extra data after the value");
    }
    if (!ok) {
        dsv4_pyjson_object_free(out);
        if (p.why && !strcmp(p.why, "out of memory")) return DSV4_PYJSON_NOMEM;
        if (why && why_size) snprintf(why, why_size, "%s at offset %zu", p.why, p.pos);
        return DSV4_PYJSON_INVALID;
    }
    return is_object ? DSV4_PYJSON_OBJECT : DSV4_PYJSON_NOT_OBJECT;
}

void dsv4_pyjson_object_free(dsv4_pyjson_object *obj) {
    for (size_t i = 0; i < obj->count; i++) {
        free(obj->members[i].key);
        free(obj->members[i].value);
    }
    free(obj->members);
    *obj = (dsv4_pyjson_object){0};
}

bool dsv4_pyjson_valid(const char *text, size_t len, bool strict) {
    parser p = {.s = text, .n = len, .strict = strict};
    dsv4_strbuf sink = DSV4_STRBUF_INIT;
    skip_ws(&p);
    bool ok = parse_value(&p, &sink) && !sink.failed;
    skip_ws(&p);
    dsv4_strbuf_free(&sink);
    return ok && p.pos == p.n;
}
