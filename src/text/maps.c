/* maps.c: open-addressing hash maps for token texts and merge pairs (see maps.h). */
#include "text/maps.h"

/* FNV-1a: plenty for token texts, which are short and not chosen by an adversary (the map is
 * built from the tokenizer file; lookups with user strings only read). */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static dsv4_status strmap_grow(dsv4_strmap *m) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    dsv4_strmap_slot *slots = dsv4_calloc(cap, sizeof *slots, "token text map");
    if (!slots) return DSV4_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        dsv4_strmap_slot *s = &m->slots[i];
        if (!s->key) continue;
        size_t j = (size_t)hash_bytes(s->key, s->len) & (cap - 1);
        while (slots[j].key) j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return DSV4_OK;
}

dsv4_status dsv4_strmap_put(dsv4_strmap *m, const char *key, size_t len, int32_t value) {
    if (len > UINT32_MAX) return dsv4_error(DSV4_EINVAL, "token text of %zu bytes is too long", len);
    if (2 * (m->count + 1) > m->cap) {
        dsv4_status st = strmap_grow(m);
        if (st) return st;
    }
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        dsv4_strmap_slot *s = &m->slots[i];
        if (!s->key) {
            *s = (dsv4_strmap_slot){key, (uint32_t)len, value};
            m->count++;
            return DSV4_OK;
        }
        if (s->len == len && !memcmp(s->key, key, len)) {
            s->value = value;
            return DSV4_OK;
        }
    }
}

int32_t dsv4_strmap_get(const dsv4_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        const dsv4_strmap_slot *s = &m->slots[i];
        if (!s->key) return -1;
        if (s->len == len && !memcmp(s->key, key, len)) return s->value;
    }
}

void dsv4_strmap_free(dsv4_strmap *m) {
    free(m->slots);
    *m = (dsv4_strmap){0};
}

static dsv4_status pairmap_grow(dsv4_pairmap *m) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    int shift = 64;
    for (size_t c = cap; c > 1; c >>= 1) shift--;
    dsv4_pairmap_slot *slots = dsv4_calloc(cap, sizeof *slots, "merge map");
    if (!slots) return DSV4_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        dsv4_pairmap_slot *s = &m->slots[i];
        if (!s->key) continue;
        size_t j = (size_t)((s->key * 0x9E3779B97F4A7C15ull) >> shift);
        while (slots[j].key) j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->shift = shift;
    return DSV4_OK;
}

dsv4_status dsv4_pairmap_put(dsv4_pairmap *m, int32_t left, int32_t right, dsv4_merge merge) {
    if (2 * (m->count + 1) > m->cap) {
        dsv4_status st = pairmap_grow(m);
        if (st) return st;
    }
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);; i = (i + 1) & mask) {
        dsv4_pairmap_slot *s = &m->slots[i];
        if (!s->key) {
            *s = (dsv4_pairmap_slot){key, merge};
            m->count++;
            return DSV4_OK;
        }
        if (s->key == key) { /* a repeated merge: the later line wins, as in HF's map */
            s->merge = merge;
            return DSV4_OK;
        }
    }
}

void dsv4_pairmap_free(dsv4_pairmap *m) {
    free(m->slots);
    *m = (dsv4_pairmap){0};
}
