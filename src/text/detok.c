/* detok.c: ids back to text, whole or streamed.
 *
 * HF's ByteLevel decoder joins the bytes of all tokens and then reads them as UTF-8 with
 * String::from_utf8_lossy. A token's bytes are precomputed at load time (tokenizer_load.c),
 * so decoding is a concatenation followed by one lossy UTF-8 pass.
 *
 * The stream decoder must give the same text, but as soon as possible and never half a
 * character. Lossy decoding is a left-to-right walk whose decision at each byte depends only on
 * the bytes of the sequence it is in, so the walk can stop before a trailing sequence that is
 * incomplete but still valid so far (at most 3 bytes), keep those bytes, and resume when the
 * next token arrives. Ill-formed bytes become U+FFFD as soon as they are known to be ill
 * formed; at the end, a sequence that never completed becomes one U+FFFD, as in the batch
 * decode. */
#include "text/tokenizer_internal.h"
#include "text/utf8.h"

static dsv4_status bad_id(const dsv4_tokenizer *t, int32_t id, size_t pos) {
    return dsv4_error(DSV4_EINVAL, "token id %d at position %zu is not a token (vocabulary 0..%d)",
                      id, pos, t->n_ids - 1);
}

static const uint8_t *token_bytes(const dsv4_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & DSV4_TOK_DEFINED)) return NULL;
    *len = t->bytes_off[id + 1] - t->bytes_off[id];
    return t->bytes + t->bytes_off[id];
}

dsv4_status dsv4_detokenize(const dsv4_tokenizer *t, const int32_t *ids, size_t n, char **text,
                            size_t *len) {
    *text = NULL;
    *len = 0;
    size_t total = 0, blen;
    for (size_t i = 0; i < n; i++) {
        if (!token_bytes(t, ids[i], &blen)) return bad_id(t, ids[i], i);
        total += blen;
    }
    uint8_t *raw = dsv4_malloc(total, "decoded bytes");
    uint8_t *out = dsv4_malloc(DSV4_UTF8_LOSSY_MAX(total) + 1, "decoded text");
    if (!raw || !out) {
        free(raw);
        free(out);
        return DSV4_ENOMEM;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = token_bytes(t, ids[i], &blen);
        memcpy(raw + o, b, blen);
        o += blen;
    }
    size_t m = dsv4_utf8_lossy(raw, total, true, out, NULL);
    free(raw);
    out[m] = 0;
    *text = (char *)out;
    *len = m;
    return DSV4_OK;
}

struct dsv4_detok_stream {
    const dsv4_tokenizer *t;
    uint8_t held[4]; /* the start of a character whose remaining bytes have not arrived */
    size_t n_held;
    uint8_t *in, *out; /* scratch: held bytes + a token's bytes, and their decoding */
    size_t cap_in, cap_out;
    size_t pushed; /* ids pushed since the last finish, for error messages */
};

dsv4_status dsv4_detok_stream_new(const dsv4_tokenizer *t, dsv4_detok_stream **out) {
    *out = dsv4_calloc(1, sizeof **out, "stream decoder");
    if (!*out) return DSV4_ENOMEM;
    (*out)->t = t;
    return DSV4_OK;
}

void dsv4_detok_stream_free(dsv4_detok_stream *s) {
    if (!s) return;
    free(s->in);
    free(s->out);
    free(s);
}

static dsv4_status reserve(uint8_t **buf, size_t *cap, size_t need) {
    if (*cap >= need) return DSV4_OK;
    size_t c = need < 256 ? 256 : 2 * need;
    uint8_t *nb = realloc(*buf, c);
    if (!nb) return dsv4_error(DSV4_ENOMEM, "out of memory in the stream decoder");
    *buf = nb;
    *cap = c;
    return DSV4_OK;
}

/* Decode the held bytes followed by b[0..n); keep a trailing incomplete character unless
 * `final`. */
static dsv4_status stream_decode(dsv4_detok_stream *s, const uint8_t *b, size_t n, bool final,
                                 const char **text, size_t *len) {
    size_t total = s->n_held + n;
    dsv4_status st = reserve(&s->in, &s->cap_in, total);
    if (!st) st = reserve(&s->out, &s->cap_out, DSV4_UTF8_LOSSY_MAX(total) + 1);
    if (st) return st;
    if (!total) { /* nothing held, nothing new */
        *text = "";
        *len = 0;
        return DSV4_OK;
    }
    memcpy(s->in, s->held, s->n_held);
    if (n) memcpy(s->in + s->n_held, b, n);
    size_t used, m = dsv4_utf8_lossy(s->in, total, final, s->out, &used);
    s->n_held = total - used; /* at most 3: a valid prefix of one character */
    memcpy(s->held, s->in + used, s->n_held);
    s->out[m] = 0;
    *text = (const char *)s->out;
    *len = m;
    return DSV4_OK;
}

dsv4_status dsv4_detok_stream_push(dsv4_detok_stream *s, int32_t id, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    size_t blen;
    const uint8_t *b = token_bytes(s->t, id, &blen);
    if (!b) return bad_id(s->t, id, s->pushed);
    s->pushed++;
    return stream_decode(s, b, blen, false, text, len);
}

dsv4_status dsv4_detok_stream_finish(dsv4_detok_stream *s, const char **text, size_t *len) {
    s->pushed = 0;
    return stream_decode(s, NULL, 0, true, text, len);
}
