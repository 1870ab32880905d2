/* word_cache.c: a lock-free, fill-once cache of BPE results (see word_cache.h). */
#include <stdatomic.h>

#include "text/word_cache.h"

typedef struct entry {
    uint64_t hash;
    uint32_t len, n_ids;
    int32_t *ids;  /* points into the same allocation, after the bytes */
    uint8_t bytes[]; /* len bytes, then padding, then n_ids ids */
} entry;

/* Slots a lookup may probe: a short window keeps misses cheap. */
#define PROBES 4

struct dsv4_word_cache {
    size_t mask;
    _Atomic(entry *) *slots;
};

dsv4_word_cache *dsv4_word_cache_new(size_t slots) {
    dsv4_word_cache *c = dsv4_calloc(1, sizeof *c, "word cache");
    if (!c) return NULL;
    c->slots = dsv4_calloc(slots, sizeof *c->slots, "word cache slots");
    if (!c->slots) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < slots; i++) atomic_init(&c->slots[i], NULL);
    c->mask = slots - 1;
    return c;
}

void dsv4_word_cache_free(dsv4_word_cache *c) {
    if (!c) return;
    for (size_t i = 0; i <= c->mask; i++) free(atomic_load_explicit(&c->slots[i], memory_order_relaxed));
    free(c->slots);
    free(c);
}

/* 8 bytes at a time, each word mixed in with a multiply; the final avalanche spreads the high
 * bits down to the low ones that index the table. */
uint64_t dsv4_word_hash(const uint8_t *s, size_t len) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, len - i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static bool matches(const entry *e, const uint8_t *s, size_t len, uint64_t hash) {
    return e->hash == hash && e->len == len && !memcmp(e->bytes, s, len);
}

const int32_t *dsv4_word_cache_get(const dsv4_word_cache *c, const uint8_t *s, size_t len,
                                   uint64_t hash, size_t *n_ids) {
    for (size_t k = 0; k < PROBES; k++) {
        entry *e = atomic_load_explicit(&c->slots[(hash + k) & c->mask], memory_order_acquire);
        if (!e) return NULL; /* slots fill in probe order, so the piece is not further on */
        if (matches(e, s, len, hash)) {
            *n_ids = e->n_ids;
            return e->ids;
        }
    }
    return NULL;
}

void dsv4_word_cache_put(dsv4_word_cache *c, const uint8_t *s, size_t len, uint64_t hash,
                         const int32_t *ids, size_t n_ids) {
    if (len > DSV4_WORD_CACHE_MAX_BYTES) return;
    size_t ids_at = (sizeof(entry) + len + 3) & ~(size_t)3;
    entry *e = malloc(ids_at + n_ids * sizeof *ids);
    if (!e) return; /* a cache may forget */
    e->hash = hash;
    e->len = (uint32_t)len;
    e->n_ids = (uint32_t)n_ids;
    e->ids = (int32_t *)((char *)e + ids_at);
    memcpy(e->bytes, s, len);
    memcpy(e->ids, ids, n_ids * sizeof *ids);
    for (size_t k = 0; k < PROBES; k++) {
        _Atomic(entry *) *slot = &c->slots[(hash + k) & c->mask];
        entry *seen = NULL;
        if (atomic_compare_exchange_strong_explicit(slot, &seen, e, memory_order_release,
                                                    memory_order_acquire))
            return;
        if (matches(seen, s, len, hash)) break; /* another thread cached it first */
    }
    free(e);
}
