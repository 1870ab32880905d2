/* dataset.c: one example to text, prompt, and tokens with a loss mask (see dataset.h). */
#include "data/dataset.h"

#include <stdio.h>

#include "base/base.h"
#include "text/chat.h"

void dsv4_sequence_free(dsv4_sequence *s) {
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

static dsv4_status sequence_append(dsv4_sequence *s, const int32_t *ids, size_t n, uint8_t target) {
    if (s->cap - s->n < n) {
        size_t cap = DSV4_MAX(2 * s->cap, s->n + n + 256);
        int32_t *ni = realloc(s->ids, cap * sizeof *ni);
        if (ni) s->ids = ni;
        uint8_t *nm = realloc(s->mask, cap);
        if (nm) s->mask = nm;
        if (!ni || !nm) return dsv4_error(DSV4_ENOMEM, "out of memory for a sequence of %zu tokens", cap);
        s->cap = cap;
    }
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    memset(s->mask + s->n, target, n);
    s->n += n;
    return DSV4_OK;
}

/* Tokenize text[0..len) and append it with every mask byte set to `target`. */
static dsv4_status append_text(const dsv4_tokenizer *tok, const char *text, size_t len, uint8_t target,
                               dsv4_sequence *s) {
    int32_t *ids;
    size_t n;
    dsv4_status st = dsv4_tokenize(tok, text, len, &ids, &n);
    if (st) return st;
    st = sequence_append(s, ids, n, target);
    free(ids);
    return st;
}

/* Render messages[0..upto) (upto may be json_array_size: all of them). */
static dsv4_status render_prefix(const dsv4_example *ex, const json_t *messages, size_t upto, char **text,
                                 size_t *len) {
    json_t *part = json_array();
    if (!part) return dsv4_error(DSV4_ENOMEM, "out of memory rendering an example");
    for (size_t i = 0; i < upto && i < json_array_size(messages); i++)
        json_array_append(part, json_array_get(messages, i));
    dsv4_chat_opts opts = {.thinking_mode = ex->thinking ? DSV4_MODE_THINKING : DSV4_MODE_CHAT};
    dsv4_status st = dsv4_chat_render(part, &opts, text, len);
    json_decref(part);
    return st;
}

dsv4_status dsv4_example_prompt(const dsv4_example *ex, const json_t *messages, size_t upto, char **text,
                                size_t *len) {
    if (!messages) messages = ex->messages;
    if (!messages) return dsv4_error(DSV4_EINVAL, "a %s example has no conversation", dsv4_family_name(ex->family));
    return render_prefix(ex, messages, upto, text, len);
}

dsv4_status dsv4_example_text(const dsv4_example *ex, char **text, size_t *len) {
    if (ex->messages) return render_prefix(ex, ex->messages, json_array_size(ex->messages), text, len);
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&b, DSV4_TOK_BOS);
    dsv4_strbuf_puts(&b, ex->text ? ex->text : "");
    dsv4_strbuf_puts(&b, DSV4_TOK_EOS);
    *text = dsv4_strbuf_release(&b, len);
    return *text ? DSV4_OK : DSV4_ENOMEM;
}

/* The length of the rendering of messages[0..upto), checked to be a prefix of the whole. */
static dsv4_status prefix_length(const dsv4_example *ex, size_t upto, const char *whole, size_t whole_len,
                                 size_t *len) {
    char *part;
    dsv4_status st = render_prefix(ex, ex->messages, upto, &part, len);
    if (st) return st;
    bool prefix = *len <= whole_len && !memcmp(part, whole, *len);
    free(part);
    if (!prefix)
        return dsv4_error(DSV4_EINVAL,
                          "%s example: the conversation cut before message %zu does not render to a prefix "
                          "of the whole (the encoder changed earlier turns)",
                          dsv4_family_name(ex->family), upto);
    return DSV4_OK;
}

dsv4_status dsv4_example_tokenize(const dsv4_tokenizer *tok, const dsv4_example *ex, dsv4_sequence *seq) {
    char *whole;
    size_t len;
    dsv4_status st = dsv4_example_text(ex, &whole, &len);
    if (st) return st;
    if (!ex->messages) { /* plain text: every token but BOS is a target */
        size_t first = seq->n;
        st = append_text(tok, whole, len, 1, seq);
        if (!st && seq->n > first) seq->mask[first] = 0;
        free(whole);
        return st;
    }
    size_t at = 0; /* text before `at` is in seq */
    for (size_t k = 0; k < json_array_size(ex->messages) && !st; k++) {
        const char *role = json_string_value(json_object_get(json_array_get(ex->messages, k), "role"));
        if (!role || strcmp(role, "assistant")) continue;
        size_t start, end;
        if ((st = prefix_length(ex, k, whole, len, &start)) || (st = prefix_length(ex, k + 1, whole, len, &end)))
            break;
        if (start < at || end < start) {
            st = dsv4_error(DSV4_EINVAL, "%s example: assistant message %zu renders out of order",
                            dsv4_family_name(ex->family), k);
            break;
        }
        if (!(st = append_text(tok, whole + at, start - at, 0, seq))) st = append_text(tok, whole + start, end - start, 1, seq);
        at = end;
    }
    if (!st) st = append_text(tok, whole + at, len - at, 0, seq);
    free(whole);
    return st;
}

uint64_t dsv4_side_seed(uint64_t seed, const char *side) {
    uint64_t h = dsv4_fnv1a(side, strlen(side));
    return h ^ (seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
}
