/* tokenizer.c: encoding text to ids, and looking tokens up.
 *
 * Encoding is a pipeline over ever smaller spans of the input, none of them copied:
 *
 *   text --added tokens, normalized=false--> gaps --added tokens, normalized=true--> gaps
 *        --pre-tokenizer splits--> pieces --bytes, BPE merges--> ids
 *
 * Added tokens are found leftmost-longest (as HF's Aho-Corasick automaton in LeftmostLongest
 * mode does): scanning from the left, at the first position where any token starts, the
 * longest one that starts there is taken, and the scan resumes after it. A byte trie does
 * this directly; a table of possible first bytes skips most positions without a lookup.
 *
 * Pieces seen before are answered from the word cache (word_cache.h), which concurrent calls
 * fill without locks; all other scratch space (regex match data, BPE symbols and heap) belongs
 * to the call, so concurrent calls on one tokenizer share nothing else that changes. */
#include "text/tokenizer_internal.h"
#include "text/utf8.h"
#include "text/word_cache.h"

typedef struct encoder {
    const dsv4_tokenizer *t;
    dsv4_pretok_work *pretok_work;
    dsv4_bpe_work bpe_work;
    dsv4_idvec ids;
    char *spell; /* scratch for ignore_merges */
    size_t cap_spell;
} encoder;

/* ignore_merges: if the piece, spelled in byte-level characters, is a vocab entry, that entry
 * is its one token; *id is -1 otherwise. */
static dsv4_status whole_piece(encoder *e, const uint8_t *piece, size_t len, int32_t *id) {
    const dsv4_tokenizer *t = e->t;
    *id = -1;
    if (len > t->longest_text) return DSV4_OK; /* each byte spells as 1 or 2 bytes */
    if (e->cap_spell < 2 * len) {
        char *b = realloc(e->spell, 2 * len);
        if (!b) return dsv4_error(DSV4_ENOMEM, "out of memory spelling a piece of %zu bytes", len);
        e->spell = b;
        e->cap_spell = 2 * len;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += (size_t)dsv4_utf8_put(dsv4_byte_level_char(piece[i]), (uint8_t *)e->spell + n);
    int32_t found = dsv4_strmap_get(&t->by_text, e->spell, n);
    if (found >= 0 && (t->flags[found] & DSV4_TOK_IN_MODEL)) *id = found;
    return DSV4_OK;
}

/* The ids of one pre-tokenized piece: from the cache, or by BPE (then cached). */
static dsv4_status encode_piece(void *user, const uint8_t *piece, size_t len) {
    encoder *e = user;
    const dsv4_tokenizer *t = e->t;
    dsv4_status st;
    if (t->ignore_merges) {
        int32_t id;
        if ((st = whole_piece(e, piece, len, &id))) return st;
        if (id >= 0) return dsv4_idvec_push(&e->ids, id);
    }
    bool cacheable = len > 1 && len <= DSV4_WORD_CACHE_MAX_BYTES;
    uint64_t hash = 0;
    if (cacheable) {
        size_t n;
        hash = dsv4_word_hash(piece, len);
        const int32_t *ids = dsv4_word_cache_get(t->cache, piece, len, hash, &n);
        if (ids) {
            if ((st = dsv4_idvec_reserve(&e->ids, n))) return st;
            memcpy(e->ids.v + e->ids.n, ids, n * sizeof *ids);
            e->ids.n += n;
            return DSV4_OK;
        }
    }
    size_t first = e->ids.n;
    st = dsv4_bpe_encode(&t->bpe, piece, len, &e->bpe_work, &e->ids);
    if (!st && cacheable) dsv4_word_cache_put(t->cache, piece, len, hash, e->ids.v + first, e->ids.n - first);
    return st;
}

/* Text with the added tokens taken out: pre-tokenize it. */
static dsv4_status encode_plain(encoder *e, const uint8_t *s, size_t n) {
    return dsv4_pretok_split(&e->t->pretok, e->pretok_work, s, n, encode_piece, e);
}

/* Cut the tokens of added set `level` out of s[0..n); the gaps go on to the next set. */
static dsv4_status encode_added(encoder *e, int level, const uint8_t *s, size_t n) {
    if (level == 2) return encode_plain(e, s, n);
    const dsv4_added_set *set = &e->t->added[level];
    if (!set->n_tokens) return encode_added(e, level + 1, s, n);
    size_t gap = 0; /* start of the text not yet passed on */
    for (size_t i = 0; i < n;) {
        int32_t id;
        size_t len = set->starts[s[i]] ? dsv4_added_longest(set, s + i, n - i, &id) : 0;
        if (!len) {
            i++;
            continue;
        }
        dsv4_status st = encode_added(e, level + 1, s + gap, i - gap);
        if (!st) st = dsv4_idvec_push(&e->ids, id);
        if (st) return st;
        i += len;
        gap = i;
    }
    return encode_added(e, level + 1, s + gap, n - gap);
}

dsv4_status dsv4_tokenize(const dsv4_tokenizer *t, const char *text, size_t len, int32_t **ids,
                          size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = dsv4_utf8_check(s, len);
    if (bad < len)
        return dsv4_error(DSV4_EINVAL, "text is not valid UTF-8: byte 0x%02X at offset %zu", s[bad], bad);
    encoder e = {.t = t};
    e.pretok_work = dsv4_pretok_work_new();
    dsv4_status st = e.pretok_work ? dsv4_idvec_reserve(&e.ids, len / 3 + 16) : DSV4_ENOMEM;
    if (!st) st = encode_added(&e, 0, s, len);
    dsv4_pretok_work_free(e.pretok_work);
    dsv4_bpe_work_free(&e.bpe_work);
    free(e.spell);
    if (st) {
        free(e.ids.v);
        return st;
    }
    *ids = e.ids.v;
    *n_ids = e.ids.n;
    return DSV4_OK;
}

/* ---- pieces without ids (what a BPE trainer counts) ------------------------------------------ */

typedef struct splitter {
    const dsv4_tokenizer *t;
    dsv4_pretok_work *work;
    dsv4_piece_fn fn;
    void *user;
} splitter;

/* As encode_added, but the added tokens are dropped and the gaps are only pre-tokenized. */
static dsv4_status split_added(splitter *sp, int level, const uint8_t *s, size_t n) {
    if (level == 2) return dsv4_pretok_split(&sp->t->pretok, sp->work, s, n, sp->fn, sp->user);
    const dsv4_added_set *set = &sp->t->added[level];
    size_t gap = 0;
    for (size_t i = 0; set->n_tokens && i < n;) {
        int32_t id;
        size_t len = set->starts[s[i]] ? dsv4_added_longest(set, s + i, n - i, &id) : 0;
        if (!len) {
            i++;
            continue;
        }
        dsv4_status st = split_added(sp, level + 1, s + gap, i - gap);
        if (st) return st;
        i += len;
        gap = i;
    }
    return split_added(sp, level + 1, s + gap, n - gap);
}

dsv4_status dsv4_tokenizer_pieces(const dsv4_tokenizer *t, const char *text, size_t len, dsv4_piece_fn fn,
                                  void *user) {
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = dsv4_utf8_check(s, len);
    if (bad < len)
        return dsv4_error(DSV4_EINVAL, "text is not valid UTF-8: byte 0x%02X at offset %zu", s[bad], bad);
    splitter sp = {t, dsv4_pretok_work_new(), fn, user};
    if (!sp.work) return DSV4_ENOMEM;
    dsv4_status st = split_added(&sp, 0, s, len);
    dsv4_pretok_work_free(sp.work);
    return st;
}

int dsv4_tokenizer_vocab_size(const dsv4_tokenizer *t) { return t->n_ids; }

static bool is_token(const dsv4_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & DSV4_TOK_DEFINED);
}

int32_t dsv4_token_id(const dsv4_tokenizer *t, const char *token) {
    return dsv4_strmap_get(&t->by_text, token, strlen(token));
}

const char *dsv4_token_text(const dsv4_tokenizer *t, int32_t id) {
    return is_token(t, id) ? t->texts + t->text_off[id] : NULL;
}

const uint8_t *dsv4_token_bytes(const dsv4_tokenizer *t, int32_t id, size_t *len) {
    if (!is_token(t, id)) return NULL;
    *len = t->bytes_off[id + 1] - t->bytes_off[id];
    return t->bytes + t->bytes_off[id];
}

bool dsv4_token_is_special(const dsv4_tokenizer *t, int32_t id) {
    return is_token(t, id) && (t->flags[id] & DSV4_TOK_SPECIAL);
}
