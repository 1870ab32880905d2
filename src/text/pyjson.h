/* pyjson.h: JSON exactly as Python's json module reads and writes it.
 *
 * The official DeepSeek-V4 encoder writes tool schemas, response formats and non-string tool
 * arguments with json.dumps(value, ensure_ascii=False), and reads tool-call arguments with
 * json.loads. Byte-identical prompts need both behaviours, which differ from jansson's:
 *   - output separators are ", " and ": "; key order is kept; non-ASCII is written raw;
 *     only '"', '\\' and control characters are escaped (\n \r \t \b \f, else \u00XX);
 *   - floats print as Python's repr: shortest round-trip digits, "1.0", "1e-07", "1e+16",
 *     "-0.0", and NaN / Infinity / -Infinity;
 *   - json.loads keeps integers of any length (up to Python's 4300-digit limit), accepts
 *     NaN / Infinity / -Infinity, keeps the last value of a repeated key at the key's first
 *     position, rejects raw control characters in strings, and keeps unpaired surrogate
 *     escapes (we write those as U+FFFD: Python's string cannot be written as UTF-8 either).
 */
#ifndef DSV4_TEXT_PYJSON_H
#define DSV4_TEXT_PYJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "text/strbuf.h"

/* Room for any repr of a double (the longest is 24 bytes, e.g. "-2.2250738585072014e-308"). */
#define DSV4_PYJSON_DOUBLE_MAX 32

/* repr(x) as json.dumps writes it: "0.1", "1e-07", "1e+16", "-0.0", "Infinity", "NaN". */
void dsv4_pyjson_format_double(double x, char out[DSV4_PYJSON_DOUBLE_MAX]);
/* A JSON string literal with quotes, escaped as json.dumps(ensure_ascii=False) does. */
void dsv4_pyjson_write_string(dsv4_strbuf *out, const char *s, size_t n);
/* Only the escaped body, without the surrounding quotes (for streaming a string in pieces). */
void dsv4_pyjson_write_string_body(dsv4_strbuf *out, const char *s, size_t n);
/* json.dumps(v, ensure_ascii=False) of a jansson value. */
void dsv4_pyjson_dump(dsv4_strbuf *out, const json_t *v);
/* Python truthiness of a JSON value: null, false, 0, 0.0, "", [] and {} are false. */
bool dsv4_pyjson_truthy(const json_t *v);

/* ---- json.loads ------------------------------------------------------------------------ */

/* One member of a parsed top-level object. A string value is kept decoded (the raw text of
 * the string), any other value as its json.dumps text. */
typedef struct dsv4_pyjson_member {
    char *key;
    size_t key_len;
    bool is_string;
    char *value;
    size_t value_len;
} dsv4_pyjson_member;

typedef struct dsv4_pyjson_object {
    dsv4_pyjson_member *members;
    size_t count;
} dsv4_pyjson_object;

typedef enum dsv4_pyjson_result {
    DSV4_PYJSON_OBJECT,     /* the text is a JSON object; its members are filled in */
    DSV4_PYJSON_NOT_OBJECT, /* valid JSON, but an array, string, number, ... */
    DSV4_PYJSON_INVALID,    /* json.loads would raise (message in `why`) */
    DSV4_PYJSON_NOMEM,
} dsv4_pyjson_result;

/* Parse text as json.loads does and, when it is an object, return its members in order.
 * `why` (may be NULL) receives a short reason on DSV4_PYJSON_INVALID. */
dsv4_pyjson_result dsv4_pyjson_load_object(const char *text, size_t len, dsv4_pyjson_object *out,
                                           char *why, size_t why_size);
void dsv4_pyjson_object_free(dsv4_pyjson_object *obj);

/* True if `text` is one complete JSON value. strict: RFC 8259 only (no NaN / Infinity), as
 * wanted for arguments handed to API clients; otherwise json.loads' rules. */
bool dsv4_pyjson_valid(const char *text, size_t len, bool strict);

#endif
