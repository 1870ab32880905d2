/* bpe.h: byte-level BPE, the model inside the DeepSeek tokenizer.
 *
 * The ByteLevel step of GPT-2 gives each of the 256 byte values a printable character (the
 * printable Latin-1 bytes stand for themselves, the other 68 are moved to U+0100 onwards), so
 * every vocabulary entry is a string of such characters and every byte string has a spelling.
 * BPE then starts from one token per byte and applies the ranked merges: repeatedly, the
 * adjacent pair with the lowest merge rank (the leftmost among equals) is joined, until no
 * adjacent pair has a merge. The result is the same as Hugging Face's `BPE` model without
 * dropout, whose loop this one mirrors: symbols in a linked list, candidate merges in a binary
 * heap keyed by (rank, position), and stale candidates dropped when popped.
 *
 * A dsv4_bpe is read-only after loading; the scratch space of one encode lives in a
 * dsv4_bpe_work owned by the caller, so threads never share mutable state. */
#ifndef DSV4_TEXT_BPE_H
#define DSV4_TEXT_BPE_H

#include "base/base.h"
#include "text/maps.h"

/* A growing list of token ids. */
typedef struct dsv4_idvec {
    int32_t *v;
    size_t n, cap;
} dsv4_idvec;

dsv4_status dsv4_idvec_reserve(dsv4_idvec *a, size_t more);
static inline dsv4_status dsv4_idvec_push(dsv4_idvec *a, int32_t id) {
    if (a->n == a->cap) {
        dsv4_status st = dsv4_idvec_reserve(a, 1);
        if (st) return st;
    }
    a->v[a->n++] = id;
    return DSV4_OK;
}

/* The GPT-2 byte <-> character table. */
uint32_t dsv4_byte_level_char(uint8_t byte);
/* The byte a character stands for, or -1 if it is not one of the 256. */
int dsv4_byte_level_byte(uint32_t cp);

typedef struct dsv4_bpe {
    dsv4_pairmap merges;      /* (left id, right id) -> rank, result id */
    int32_t byte_token[256];  /* the id of each byte's one-character token */
} dsv4_bpe;

typedef struct dsv4_bpe_symbol {
    int32_t id;         /* -1 once merged into its left neighbour */
    int32_t prev, next; /* neighbours in the list, -1 at the ends */
} dsv4_bpe_symbol;

typedef struct dsv4_bpe_work {
    dsv4_bpe_symbol *sym;
    uint64_t *heap; /* (rank << 32 | position): the smallest value is the next merge */
    size_t cap_sym, cap_heap, n_heap;
} dsv4_bpe_work;

/* Append the tokens of one pre-tokenized piece (its raw bytes) to out. */
dsv4_status dsv4_bpe_encode(const dsv4_bpe *b, const uint8_t *piece, size_t len, dsv4_bpe_work *w,
                            dsv4_idvec *out);
void dsv4_bpe_work_free(dsv4_bpe_work *w);
void dsv4_bpe_free(dsv4_bpe *b);

#endif
