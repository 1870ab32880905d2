/* engram_hash.c: which Engram rows a position reads (see engram.h).
 *
 * Three pieces, each reproducing the official construction exactly because the released
 * tables were trained with it:
 *  - the multipliers come from numpy: default_rng(seed) seeds PCG64 through SeedSequence
 *    (a hash of the seed's 32-bit words into a 4-word pool, then 8 output words), and
 *    Generator.integers(0, high, dtype=int64) draws by Lemire's multiply-and-reject on 64-bit
 *    outputs. Both are re-implemented here (numpy's bit_generator.pyx, pcg64.h and
 *    distributions.c define them);
 *  - the primes come from one walk upward from engram_vocab_size that never reuses a prime;
 *  - the compressed vocabulary maps token ids whose normalised text is equal to one id, in
 *    first-seen order.
 * The hash itself is a rolling XOR over the look-back window: h_n = XOR_{s<n} c[t-s] * m[s],
 * row = offset(n, head) + h_n mod prime(n, head), padding before the sequence start. */
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "io/npy.h"
#include "model/engram.h"
#include "text/normalize.h"
#include "text/tokenizer.h"

/* ---- numpy's SeedSequence and PCG64 ----------------------------------------------------------- */

enum { POOL = 4 };
#define INIT_A 0x43b0d7e5u
#define MULT_A 0x931e8875u
#define INIT_B 0x8b51f9ddu
#define MULT_B 0x58f38dedu
#define MIX_MULT_L 0xca01f9ddu
#define MIX_MULT_R 0x4973f715u

static uint32_t hashmix(uint32_t value, uint32_t *hash_const) {
    value ^= *hash_const;
    *hash_const *= MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static uint32_t mix(uint32_t x, uint32_t y) {
    uint32_t r = MIX_MULT_L * x - MIX_MULT_R * y;
    return r ^ (r >> 16);
}

/* SeedSequence(seed).generate_state(4, uint64). */
static void seed_sequence(uint64_t seed, uint64_t out[4]) {
    uint32_t entropy[2];
    int n_ent = 0;
    do { /* the seed as little-endian 32-bit words (0 is one word) */
        entropy[n_ent++] = (uint32_t)seed;
        seed >>= 32;
    } while (seed);
    uint32_t pool[POOL], hc = INIT_A;
    for (int i = 0; i < POOL; i++) pool[i] = hashmix(i < n_ent ? entropy[i] : 0, &hc);
    for (int s = 0; s < POOL; s++)
        for (int d = 0; d < POOL; d++)
            if (s != d) pool[d] = mix(pool[d], hashmix(pool[s], &hc));
    for (int s = POOL; s < n_ent; s++)
        for (int d = 0; d < POOL; d++) pool[d] = mix(pool[d], hashmix(entropy[s], &hc));
    uint32_t words[8], hb = INIT_B;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % POOL] ^ hb;
        hb *= MULT_B;
        v *= hb;
        words[i] = v ^ (v >> 16);
    }
    for (int i = 0; i < 4; i++) out[i] = (uint64_t)words[2 * i] | (uint64_t)words[2 * i + 1] << 32;
}

typedef unsigned __int128 u128;
typedef struct {
    u128 state, inc;
} pcg64;

static const u128 PCG_MULT = ((u128)2549297995355413924ull << 64) | 4865540595714422341ull;

static void pcg_step(pcg64 *r) { r->state = r->state * PCG_MULT + r->inc; }

static uint64_t pcg_next(pcg64 *r) {
    pcg_step(r);
    uint64_t x = (uint64_t)(r->state >> 64) ^ (uint64_t)r->state;
    unsigned rot = (unsigned)(r->state >> 122);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

static void pcg_seed(pcg64 *r, uint64_t seed) {
    uint64_t v[4];
    seed_sequence(seed, v);
    u128 initstate = ((u128)v[0] << 64) | v[1], initseq = ((u128)v[2] << 64) | v[3];
    r->state = 0;
    r->inc = (initseq << 1) | 1;
    pcg_step(r);
    r->state += initstate;
    pcg_step(r);
}

/* numpy's 32-bit draw (pcg64_next32): one 64-bit output serves two draws, low half first. */
typedef struct {
    pcg64 r;
    bool has32;
    uint32_t next32;
} pcg64_32;

static uint32_t pcg_next32(pcg64_32 *g) {
    if (g->has32) {
        g->has32 = false;
        return g->next32;
    }
    uint64_t v = pcg_next(&g->r);
    g->has32 = true;
    g->next32 = (uint32_t)(v >> 32);
    return (uint32_t)v;
}

/* numpy's Generator.integers(0, high, n) (int64, closed range [0, rng], rng = high - 1): Lemire's
 * bounded method on 64-bit draws, or on 32-bit draws when rng fits 32 bits (numpy's
 * random_bounded_uint64_fill: a full 32-bit range takes the draws as they are). */
dsv4_status dsv4_numpy_integers(uint64_t seed, int64_t high, int n, int64_t *out) {
    if (high < 1) return dsv4_error(DSV4_EINVAL, "numpy integers: bound %lld is not positive", (long long)high);
    pcg64_32 g = {0};
    pcg_seed(&g.r, seed);
    uint64_t rng = (uint64_t)high - 1;
    for (int i = 0; i < n; i++) {
        if (rng == 0) {
            out[i] = 0;
        } else if (rng == UINT32_MAX) {
            out[i] = pcg_next32(&g);
        } else if (rng < UINT32_MAX) {
            uint32_t excl = (uint32_t)rng + 1;
            uint64_t m = (uint64_t)pcg_next32(&g) * excl;
            if ((uint32_t)m < excl) {
                uint32_t threshold = (UINT32_MAX - (uint32_t)rng) % excl;
                while ((uint32_t)m < threshold) m = (uint64_t)pcg_next32(&g) * excl;
            }
            out[i] = (int64_t)(m >> 32);
        } else {
            uint64_t excl = rng + 1;
            u128 m = (u128)pcg_next(&g.r) * excl;
            if ((uint64_t)m < excl) {
                uint64_t threshold = (UINT64_MAX - rng) % excl;
                while ((uint64_t)m < threshold) m = (u128)pcg_next(&g.r) * excl;
            }
            out[i] = (int64_t)(m >> 64);
        }
    }
    return DSV4_OK;
}

dsv4_status dsv4_engram_multipliers(int layer_id, int max_ngram, int compressed_vocab, int64_t *out) {
    int64_t bound = (INT64_MAX / compressed_vocab) / 2;
    if (bound < 1) bound = 1;
    dsv4_status rc = dsv4_numpy_integers(10007ull * (uint64_t)layer_id, bound, max_ngram, out);
    if (rc) return rc;
    for (int i = 0; i < max_ngram; i++) out[i] = out[i] * 2 + 1;
    return DSV4_OK;
}

/* ---- primes --------------------------------------------------------------------------------- */

static bool is_prime(int64_t n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (int64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

static bool seen(const int64_t *list, int n, int64_t p) {
    for (int i = 0; i < n; i++)
        if (list[i] == p) return true;
    return false;
}

void dsv4_engram_primes(int n_layers, int max_ngram, int n_heads, int vocab_size, int64_t *primes) {
    int k = 0; /* primes handed out so far: the walk's memory across orders and layers */
    for (int l = 0; l < n_layers; l++)
        for (int order = 2; order <= max_ngram; order++) {
            int64_t cur = vocab_size - 1;
            for (int h = 0; h < n_heads; h++) {
                do cur++;
                while (!is_prime(cur) || seen(primes, k, cur));
                primes[k++] = cur;
            }
        }
}

/* ---- the hash ------------------------------------------------------------------------------- */

void dsv4_engram_hash(const int32_t *c, int pos, int max_ngram, int n_heads, int32_t pad_c, const int64_t *mult,
                      const int64_t *primes, const int64_t *offsets, int64_t *rows) {
    /* products are below 2^63 (multipliers are bounded by INT64_MAX / vocab), so unsigned
     * arithmetic gives numpy's int64 values */
    uint64_t h = 0;
    for (int s = 0; s < max_ngram; s++) {
        int32_t tok = pos - s >= 0 ? c[pos - s] : pad_c;
        h ^= (uint64_t)tok * (uint64_t)mult[s];
        if (s == 0) continue;
        for (int k = 0; k < n_heads; k++) {
            int col = (s - 1) * n_heads + k;
            rows[col] = offsets[col] + (int64_t)(h % (uint64_t)primes[col]);
        }
    }
}

/* ---- the compressed vocabulary ----------------------------------------------------------------- */

/* A string -> first-seen id table (open addressing). */
typedef struct {
    char **keys;
    int *ids;
    size_t cap, n;
} keyset;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* The id of key (taking ownership of it), a new one if unseen. */
static int keyset_id(keyset *ks, char *key) {
    size_t n = strlen(key), i = fnv1a(key, n) & (ks->cap - 1);
    while (ks->keys[i]) {
        if (!strcmp(ks->keys[i], key)) {
            free(key);
            return ks->ids[i];
        }
        i = (i + 1) & (ks->cap - 1);
    }
    ks->keys[i] = key;
    ks->ids[i] = (int)ks->n++;
    return ks->ids[i];
}

static bool has_replacement_char(const uint8_t *b, size_t n) {
    for (size_t i = 0; i + 2 < n; i++)
        if (b[i] == 0xEF && b[i + 1] == 0xBF && b[i + 2] == 0xBD) return true;
    return false;
}

static bool valid_utf8(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = b[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1Fu : len == 3 ? c & 0x0Fu : c & 0x07u;
        for (size_t k = 1; k < len; k++) {
            if ((b[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (b[i + k] & 0x3Fu);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* The key of one token: its decoded text normalised, or (when the text does not decode
 * cleanly, i.e. holds U+FFFD) the raw token spelling. *key is malloc'd. */
static dsv4_status token_key(const uint8_t *bytes, size_t n, const char *raw, char **key) {
    if (!valid_utf8(bytes, n) || has_replacement_char(bytes, n)) {
        *key = strdup(raw ? raw : "");
        return *key ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory building the Engram vocabulary");
    }
    size_t kn;
    dsv4_status rc = dsv4_engram_normalize((const char *)bytes, n, key, &kn);
    if (rc) return rc;
    if (kn == 0) { /* normalised away: keep the text itself */
        free(*key);
        *key = malloc(n + 1);
        if (!*key) return dsv4_error(DSV4_ENOMEM, "out of memory building the Engram vocabulary");
        memcpy(*key, bytes, n);
        (*key)[n] = 0;
    }
    return DSV4_OK;
}

/* The map over `vocab` ids, each given by its decoded bytes and raw spelling. */
typedef void (*token_fn)(void *ctx, int id, const uint8_t **bytes, size_t *n, const char **raw, char *buf, size_t cap);

static dsv4_status build_map(int vocab, token_fn fn, void *ctx, int32_t **out, int *n_compressed) {
    keyset ks = {0};
    ks.cap = 1;
    while (ks.cap < (size_t)vocab * 2 + 2) ks.cap <<= 1;
    ks.keys = calloc(ks.cap, sizeof(char *));
    ks.ids = calloc(ks.cap, sizeof(int));
    int32_t *map = malloc((size_t)vocab * sizeof(int32_t) + 1);
    dsv4_status rc = ks.keys && ks.ids && map ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory building the Engram vocabulary");
    char buf[64];
    for (int id = 0; id < vocab && !rc; id++) {
        const uint8_t *bytes;
        size_t n;
        const char *raw;
        fn(ctx, id, &bytes, &n, &raw, buf, sizeof buf);
        char *key;
        if (!(rc = token_key(bytes, n, raw, &key))) map[id] = keyset_id(&ks, key);
    }
    for (size_t i = 0; ks.keys && i < ks.cap; i++) free(ks.keys[i]);
    free(ks.keys);
    free(ks.ids);
    if (rc) {
        free(map);
        return rc;
    }
    *out = map;
    *n_compressed = (int)ks.n;
    return DSV4_OK;
}

static void tokenizer_token(void *ctx, int id, const uint8_t **bytes, size_t *n, const char **raw, char *buf, size_t cap) {
    (void)buf;
    (void)cap;
    const dsv4_tokenizer *t = ctx;
    *bytes = dsv4_token_bytes(t, id, n);
    *raw = dsv4_token_text(t, id);
    if (!*bytes) { /* not a token: decodes to nothing */
        *bytes = (const uint8_t *)"";
        *n = 0;
    }
}

dsv4_status dsv4_engram_token_map_from_tokenizer(const char *path, int vocab, int32_t **out, int *n_compressed) {
    dsv4_tokenizer *t;
    dsv4_status rc = dsv4_tokenizer_load(path, &t);
    if (rc) return dsv4_error_wrap(rc, "Engram vocabulary from %s", path);
    rc = build_map(vocab, tokenizer_token, t, out, n_compressed);
    dsv4_tokenizer_free(t);
    return rc;
}

/* The tiny reference checkpoints' tokenizer: ids 0-2 are BOS, EOS and pad; id >= 3 with
 * k = (id-3)/3 reads "w{k}", " W{k}" or "W{k}\n". */
static void synthetic_token(void *ctx, int id, const uint8_t **bytes, size_t *n, const char **raw, char *buf, size_t cap) {
    (void)ctx;
    static const char *special[3] = {"<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                     "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                     "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>"};
    if (id < 3) snprintf(buf, cap, "%s", special[id]);
    else {
        int k = (id - 3) / 3, v = (id - 3) % 3;
        snprintf(buf, cap, v == 0 ? "w%d" : v == 1 ? " W%d" : "W%d\n", k);
    }
    *bytes = (const uint8_t *)buf;
    *n = strlen(buf);
    *raw = buf;
}

dsv4_status dsv4_engram_token_map_synthetic(int vocab, int32_t **out, int *n_compressed) {
    return build_map(vocab, synthetic_token, NULL, out, n_compressed);
}

static dsv4_status map_from_npy(const char *path, int vocab, int32_t **out, int *n_compressed) {
    int64_t *v;
    int nd;
    int64_t shape[8];
    dsv4_status rc = dsv4_npy_read_i64(path, &v, &nd, shape);
    if (rc) return rc;
    if (nd != 1 || shape[0] != vocab) {
        free(v);
        return dsv4_error(DSV4_EFORMAT, "%s: expected %d entries (the vocabulary), got shape [%lld%s]", path, vocab,
                          (long long)shape[0], nd > 1 ? ", ..." : "");
    }
    int32_t *map = malloc((size_t)vocab * sizeof(int32_t) + 1);
    if (!map) {
        free(v);
        return dsv4_error(DSV4_ENOMEM, "out of memory reading %s", path);
    }
    int64_t mx = -1;
    for (int i = 0; i < vocab; i++) {
        if (v[i] < 0 || v[i] >= vocab) {
            free(v);
            free(map);
            return dsv4_error(DSV4_EFORMAT, "%s: entry %d = %lld is not a compressed id in 0..%d", path, i, (long long)v[i],
                              vocab - 1);
        }
        map[i] = (int32_t)v[i];
        if (v[i] > mx) mx = v[i];
    }
    free(v);
    *out = map;
    *n_compressed = (int)mx + 1;
    return DSV4_OK;
}

dsv4_status dsv4_engram_token_map(const char *dir, int vocab, int32_t **out, int *n_compressed, const char **source) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        *source = "tokenizer.json";
        return dsv4_engram_token_map_from_tokenizer(path, vocab, out, n_compressed);
    }
    snprintf(path, sizeof path, "%s/engram_token_map.npy", dir);
    f = fopen(path, "rb");
    if (f) {
        fclose(f);
        *source = "engram_token_map.npy";
        return map_from_npy(path, vocab, out, n_compressed);
    }
    *source = "the synthetic tokenizer of the reference checkpoints";
    return dsv4_engram_token_map_synthetic(vocab, out, n_compressed);
}
