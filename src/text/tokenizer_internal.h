/* tokenizer_internal.h: the insides of a dsv4_tokenizer, shared by the files that build it
 * (tokenizer_load.c), encode with it (tokenizer.c) and decode with it (detok.c). */
#ifndef DSV4_TEXT_TOKENIZER_INTERNAL_H
#define DSV4_TEXT_TOKENIZER_INTERNAL_H

#include "base/base.h"
#include "text/bpe.h"
#include "text/maps.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

/* Per-id flags. */
enum {
    DSV4_TOK_DEFINED = 1, /* the id has a token */
    DSV4_TOK_IN_MODEL = 2, /* it is an entry of model.vocab */
    DSV4_TOK_ADDED = 4,   /* it is one of added_tokens */
    DSV4_TOK_SPECIAL = 8, /* an added token with "special": true */
};

/* A byte trie of added-token texts. Node 0 is the root; children hang off `child` as a list
 * linked through `sibling`. */
typedef struct dsv4_trie_node {
    int32_t child, sibling;
    int32_t token; /* id of the token that ends here, or -1 */
    uint8_t byte;
} dsv4_trie_node;

/* One group of added tokens matched together. */
typedef struct dsv4_added_set {
    dsv4_trie_node *nodes;
    size_t n_nodes, cap_nodes;
    bool starts[256]; /* bytes that begin some token: a fast skip over ordinary text */
    int n_tokens;
} dsv4_added_set;

struct dsv4_tokenizer {
    int32_t n_ids; /* highest id + 1 */
    uint8_t *flags; /* [n_ids] DSV4_TOK_* */
    /* Token texts as written in the file, NUL-terminated, at texts + text_off[id]. */
    char *texts;
    size_t *text_off; /* [n_ids] */
    /* What each token decodes to, at bytes + bytes_off[id], bytes_off[id+1] - bytes_off[id] long. */
    uint8_t *bytes;
    size_t *bytes_off; /* [n_ids + 1] */
    dsv4_strmap by_text; /* token text -> id */
    size_t longest_text; /* bytes in the longest token text */

    /* Added tokens are cut out of the text before anything else, in two passes as in HF:
     * first those with "normalized": false, then, in the text between them, those with
     * "normalized": true (the normalizer is empty, so both see the raw text). */
    dsv4_added_set added[2];

    dsv4_pretok pretok;
    dsv4_bpe bpe;
    bool ignore_merges; /* model.ignore_merges: a piece that is itself a vocab entry skips BPE */
    struct dsv4_word_cache *cache; /* piece -> ids, filled as texts are encoded (thread-safe) */
};

/* Match the longest token of `set` that starts at s[0..n); its length (0 if none), id in *id. */
size_t dsv4_added_longest(const dsv4_added_set *set, const uint8_t *s, size_t n, int32_t *id);

/* Cut text (UTF-8) as encoding does, added tokens first, then the pre-tokenizer, and hand each
 * piece that BPE would see to fn (the added tokens themselves are skipped). The input of a BPE
 * trainer, which must see exactly the pieces the finished tokenizer will encode. */
dsv4_status dsv4_tokenizer_pieces(const dsv4_tokenizer *t, const char *text, size_t len, dsv4_piece_fn fn,
                                  void *user);

#endif
