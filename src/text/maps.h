/* maps.h: the two hash maps of the tokenizer.
 *
 * dsv4_strmap maps a byte string (a token's text) to an id: it serves model.vocab while the
 * merges are read, and dsv4_token_id() afterwards. dsv4_pairmap maps a pair of token ids to the
 * merge that joins them (its rank and the id of the result); it is the inner loop of BPE, so its
 * key is one 64-bit word and its probe is a multiply-shift hash into a power-of-two table.
 *
 * Both use open addressing with linear probing, grow at 1/2 load, never delete, and do not own
 * their keys' bytes (the tokenizer keeps token texts in its own arena). Once built they are
 * only read, so any number of threads may look up at once. */
#ifndef DSV4_TEXT_MAPS_H
#define DSV4_TEXT_MAPS_H

#include "base/base.h"

typedef struct dsv4_strmap_slot {
    const char *key; /* NULL: empty slot */
    uint32_t len;
    int32_t value;
} dsv4_strmap_slot;

typedef struct dsv4_strmap {
    dsv4_strmap_slot *slots;
    size_t cap, count; /* cap is a power of two */
} dsv4_strmap;

/* Insert or overwrite; the map keeps the pointer, not a copy, of key. */
dsv4_status dsv4_strmap_put(dsv4_strmap *m, const char *key, size_t len, int32_t value);
/* The value for key, or -1. */
int32_t dsv4_strmap_get(const dsv4_strmap *m, const char *key, size_t len);
void dsv4_strmap_free(dsv4_strmap *m);

typedef struct dsv4_merge {
    uint32_t rank; /* position in model.merges: lower merges first */
    int32_t result; /* id of the joined token */
} dsv4_merge;

typedef struct dsv4_pairmap_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 marks an empty slot */
    dsv4_merge merge;
} dsv4_pairmap_slot;

typedef struct dsv4_pairmap {
    dsv4_pairmap_slot *slots;
    size_t cap, count;
    int shift; /* 64 - log2(cap), for the multiply-shift hash */
} dsv4_pairmap;

dsv4_status dsv4_pairmap_put(dsv4_pairmap *m, int32_t left, int32_t right, dsv4_merge merge);
/* The merge of (left, right), or NULL if the pair never merges. */
static inline const dsv4_merge *dsv4_pairmap_get(const dsv4_pairmap *m, int32_t left, int32_t right) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);; i = (i + 1) & mask) {
        const dsv4_pairmap_slot *s = &m->slots[i];
        if (s->key == key) return &s->merge;
        if (!s->key) return NULL;
    }
}
void dsv4_pairmap_free(dsv4_pairmap *m);

#endif
