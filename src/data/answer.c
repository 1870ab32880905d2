/* answer.c: literal answer checks (see answer.h). */
#include "data/answer.h"

#include <stdio.h>
#include <string.h>

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c; }

bool dsv4_answer_last_number(const char *text, long long *out) {
    bool found = false;
    for (size_t i = 0; text[i];) {
        if (!is_digit(text[i])) {
            i++;
            continue;
        }
        bool negative = i > 0 && text[i - 1] == '-' && (i < 2 || !is_alnum(text[i - 2]));
        long long v = 0;
        for (; is_digit(text[i]); i++)
            if (v < 100000000000000000LL) v = v * 10 + (text[i] - '0'); /* longer runs: wrong anyway */
        *out = negative ? -v : v;
        found = true;
    }
    return found;
}

/* Whether text[at..at+n) stands alone as the word (see answer.h). */
static bool stands_alone(const char *text, size_t at, size_t n, bool digit_start, bool digit_end) {
    char before = at ? text[at - 1] : 0, after = text[at + n];
    if (is_alnum(before) || is_alnum(after)) return false;
    if (digit_start && (before == '-' || before == '.')) return false;
    if (digit_end && after == '.' && is_digit(text[at + n + 1])) return false;
    return true;
}

bool dsv4_answer_has_word(const char *text, const char *word) {
    size_t n = strlen(word), len = strlen(text);
    if (!n || n > len) return false;
    bool digit_start = is_digit(word[0]), digit_end = is_digit(word[n - 1]);
    for (size_t at = 0; at + n <= len; at++) {
        size_t k = 0;
        while (k < n && lower(text[at + k]) == lower(word[k])) k++;
        if (k == n && stands_alone(text, at, n, digit_start, digit_end)) return true;
    }
    return false;
}

bool dsv4_answer_check(const dsv4_expect *e, const char *content) {
    if (!content) return false;
    switch (e->kind) {
    case DSV4_EXPECT_NUMBER: {
        long long v;
        return dsv4_answer_last_number(content, &v) && v == e->number;
    }
    case DSV4_EXPECT_WORDS: {
        if (!json_array_size(e->words)) return false;
        size_t i;
        const json_t *w;
        json_array_foreach(e->words, i, w) {
            if (!dsv4_answer_has_word(content, json_string_value(w))) return false;
        }
        json_array_foreach(e->not_words, i, w) {
            if (dsv4_answer_has_word(content, json_string_value(w))) return false;
        }
        return true;
    }
    default: return false;
    }
}

static bool say(char *why, size_t size, const char *what) {
    if (why && size) snprintf(why, size, "%s", what);
    return false;
}

bool dsv4_answer_check_call(const json_t *message, const json_t *expected, char *why, size_t why_size) {
    const json_t *calls = json_object_get(message, "tool_calls");
    if (!json_array_size(calls)) return say(why, why_size, "no tool call");
    if (json_array_size(calls) > 1) return say(why, why_size, "more than one tool call");
    const json_t *fn = json_object_get(json_array_get(calls, 0), "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    const char *want = json_string_value(json_object_get(expected, "name"));
    if (!name || !want || strcmp(name, want)) {
        if (why && why_size) snprintf(why, why_size, "called %s, not %s", name ? name : "(no name)", want ? want : "?");
        return false;
    }
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    json_t *got = args ? json_loads(args, JSON_DECODE_ANY, NULL) : NULL;
    bool same = got && json_equal(got, json_object_get(expected, "arguments"));
    json_decref(got);
    if (!same) {
        if (why && why_size) snprintf(why, why_size, "arguments %s", args ? args : "(none)");
        return false;
    }
    return true;
}
