/* word_cache.h: a memo of BPE results, shared by all threads without locks.
 *
 * Text repeats: the same words and spaces-plus-word pieces come back again and again, and BPE
 * on a piece costs several hash lookups per byte. The cache maps a piece's bytes to its ids.
 *
 * Many threads encode with one tokenizer, so the cache must be safe to read and fill at once.
 * It is a fixed table of atomic pointers to immutable entries that is filled once and never
 * evicted: a thread publishes a new entry with a compare-and-swap into an empty slot of the
 * piece's probe window, and a reader that sees a pointer sees a complete entry (release /
 * acquire). Entries are freed only with the tokenizer, so no reader can hold a freed one.
 * When the window is full the piece is simply not cached. The first pieces to arrive are the
 * ones kept, which in practice are the frequent ones. */
#ifndef DSV4_TEXT_WORD_CACHE_H
#define DSV4_TEXT_WORD_CACHE_H

#include "base/base.h"

/* Pieces longer than this are rare and are not cached. */
#define DSV4_WORD_CACHE_MAX_BYTES 64

typedef struct dsv4_word_cache dsv4_word_cache;

dsv4_word_cache *dsv4_word_cache_new(size_t slots); /* slots: a power of two */
void dsv4_word_cache_free(dsv4_word_cache *c);

uint64_t dsv4_word_hash(const uint8_t *s, size_t len);

/* The ids of piece s[0..len) (hash from dsv4_word_hash), or NULL if not cached. */
const int32_t *dsv4_word_cache_get(const dsv4_word_cache *c, const uint8_t *s, size_t len,
                                   uint64_t hash, size_t *n_ids);
/* Remember the ids of a piece; silently does nothing if there is no room. */
void dsv4_word_cache_put(dsv4_word_cache *c, const uint8_t *s, size_t len, uint64_t hash,
                         const int32_t *ids, size_t n_ids);

#endif
