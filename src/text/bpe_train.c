/* bpe_train.c: learning BPE merges on a corpus (see bpe_train.h).
 *
 * The corpus is reduced at once to its distinct pieces with their counts (a "word" below is
 * such a piece: " the", "ing", "\n\n"), since BPE never merges across pieces. Each word is
 * then a short array of symbol ids, at first its bytes.
 *
 * The loop needs, at every step, the most frequent adjacent pair over all words. Recounting
 * everything per merge would cost the whole corpus times the number of merges, so counts are
 * kept up to date instead (as in Hugging Face's trainer):
 *   - every pair has a record: its two ids, its count, and the list of words it occurs in;
 *   - a merge of (a, b) into z visits only the words on the list of (a, b): each is
 *     uncounted (all its pairs lose the word's count), rewritten (every a b becomes z, left to
 *     right) and counted again; pairs with z that were not there before put the word on
 *     their lists;
 *   - a binary heap orders the pairs by count. It is lazy: a pair's count only falls except
 *     when the pair is new (it contains z), so new pairs are pushed once per merge, and an
 *     entry whose count has fallen since it was pushed is pushed again with the true count
 *     when it reaches the top. An entry is trusted only if its count is the current one.
 * Lists may hold words in which the pair no longer occurs; visiting one changes nothing.
 *
 * Two different merges can spell the same text ("ab"+"c" and "a"+"bc"); as in HF, the second
 * one keeps the first one's id, so the vocab has each text once while both merges are listed. */
#include "text/bpe_train.h"

#include <stdio.h>

#include "base/base.h"
#include "text/bpe.h"
#include "text/maps.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"
#include "text/word_cache.h"

/* ---- the format: DeepSeek-V4's pre-tokenizer and chat tokens ------------------------------- */

/* The three Split regexes of DeepSeek-V4's tokenizer.json, verbatim: digits in runs of at most
 * three; CJK runs; then words, punctuation and spaces. */
static const char *const split_patterns[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

typedef struct added_spec {
    const char *content;
    bool special, normalized; /* DeepSeek-V4's flags for this token */
} added_spec;

/* In model.vocab and added_tokens at ids 0, 1, 2. */
static const added_spec sentence_tokens[] = {
    {"<｜begin▁of▁sentence｜>", true, false},
    {"<｜end▁of▁sentence｜>", true, false},
    {"<｜▁pad▁｜>", true, false},
};

/* After the vocab, in DeepSeek's relative order: every token encoding_dsv4.py writes. */
static const added_spec chat_tokens[DSV4_BPE_N_CHAT_TOKENS] = {
    {"<｜User｜>", false, true},      {"<｜Assistant｜>", false, true},  {"<think>", false, true},
    {"</think>", false, true},        {"｜DSML｜", false, true},         {"<｜latest_reminder｜>", false, true},
    {"<｜action｜>", false, true},    {"<｜query｜>", false, true},       {"<｜authority｜>", false, true},
    {"<｜domain｜>", false, true},    {"<｜title｜>", false, true},      {"<｜read_url｜>", false, true},
};

#define FIRST_BYTE_ID 3
#define FIRST_MERGE_ID (FIRST_BYTE_ID + 256)

static json_t *added_entry(int id, const added_spec *a) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", a->content, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", a->normalized, "special", a->special);
}

static json_t *byte_level_step(bool prefix_space, bool trim_offsets, bool use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", prefix_space,
                     "trim_offsets", trim_offsets, "use_regex", use_regex);
}

/* The byte-level spelling of byte b (one character, 1 or 2 bytes of UTF-8). */
static int byte_spelling(int b, char out[4]) {
    return dsv4_utf8_put(dsv4_byte_level_char((uint8_t)b), (uint8_t *)out);
}

/* The document around a vocab: everything but model.vocab's learned part and the merges.
 * `n_vocab` is the size of model.vocab, which places the chat tokens. */
static json_t *document(json_t *vocab, json_t *merges, int n_vocab) {
    json_t *added = json_array();
    for (int i = 0; i < 3; i++) json_array_append_new(added, added_entry(i, &sentence_tokens[i]));
    for (int i = 0; i < DSV4_BPE_N_CHAT_TOKENS; i++)
        json_array_append_new(added, added_entry(n_vocab + i, &chat_tokens[i]));
    json_t *splits = json_array();
    for (size_t i = 0; i < DSV4_ARRAY_LEN(split_patterns); i++)
        json_array_append_new(splits, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                                split_patterns[i], "behavior", "Isolated", "invert", 0));
    json_array_append_new(splits, byte_level_step(false, true, false));
    return json_pack("{s:s, s:n, s:n, s:o, s:{s:s, s:[]}, s:{s:s, s:o}, s:o, s:o, "
                     "s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}}",
                     "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "type",
                     "Sequence", "normalizers", "pre_tokenizer", "type", "Sequence", "pretokenizers", splits,
                     "post_processor", byte_level_step(true, false, true), "decoder",
                     byte_level_step(true, true, true), "model", "type", "BPE", "dropout", "unk_token",
                     "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                     "vocab", vocab, "merges", merges);
}

/* model.vocab's fixed part: the sentence tokens and the bytes. */
static json_t *base_vocab(void) {
    json_t *vocab = json_object();
    for (int i = 0; i < 3; i++) json_object_set_new(vocab, sentence_tokens[i].content, json_integer(i));
    for (int b = 0; b < 256; b++) {
        char s[5] = {0};
        byte_spelling(b, s);
        json_object_set_new(vocab, s, json_integer(FIRST_BYTE_ID + b));
    }
    return vocab;
}

json_t *dsv4_bpe_skeleton(void) { return document(base_vocab(), json_array(), FIRST_MERGE_ID); }

char *dsv4_bpe_tokenizer_dumps(const json_t *doc, size_t *len) {
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s && len) *len = strlen(s);
    return s;
}

/* ---- the trainer's tables ----------------------------------------------------------------------- */

typedef struct word {
    size_t off;        /* bytes at trainer.bytes + off */
    uint32_t len;
    int64_t count;
    uint32_t sym, n_sym; /* symbols at trainer.syms + sym (set by run) */
} word;

typedef struct pair {
    int32_t a, b;
    int64_t count;
    uint32_t *words; /* words the pair occurs (or occurred) in; each at most once */
    uint32_t n_words, cap_words;
} pair;

/* A map from a 64-bit key (never 0) to an index: open addressing, grows at half load. */
typedef struct index_map {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, count;
} index_map;

struct dsv4_bpe_trainer {
    dsv4_tokenizer *cutter; /* the skeleton tokenizer: cuts text into pieces */
    uint8_t *bytes;         /* all distinct pieces, back to back */
    size_t n_bytes, cap_bytes;
    word *words;
    size_t n_words, cap_words;
    index_map word_index; /* word hash -> chain of word indices (collisions probe onward) */
    size_t pieces, piece_bytes;
    int weight; /* of the text being fed */
};

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static dsv4_status map_grow(index_map *m) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    uint64_t *keys = dsv4_calloc(cap, sizeof *keys, "BPE trainer map");
    uint32_t *vals = dsv4_malloc(cap * sizeof *vals, "BPE trainer map");
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return DSV4_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return DSV4_OK;
}

static void map_free(index_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- feeding --------------------------------------------------------------------------------- */

dsv4_status dsv4_bpe_trainer_new(dsv4_bpe_trainer **out) {
    *out = NULL;
    dsv4_bpe_trainer *t = dsv4_calloc(1, sizeof *t, "BPE trainer");
    if (!t) return DSV4_ENOMEM;
    json_t *skeleton = dsv4_bpe_skeleton();
    dsv4_status st = skeleton ? dsv4_tokenizer_from_json(skeleton, &t->cutter)
                              : dsv4_error(DSV4_ENOMEM, "out of memory building the tokenizer skeleton");
    json_decref(skeleton);
    if (st) {
        dsv4_bpe_trainer_free(t);
        return dsv4_error_wrap(st, "the tokenizer skeleton");
    }
    *out = t;
    return DSV4_OK;
}

void dsv4_bpe_trainer_free(dsv4_bpe_trainer *t) {
    if (!t) return;
    dsv4_tokenizer_free(t->cutter);
    free(t->bytes);
    free(t->words);
    map_free(&t->word_index);
    free(t);
}

/* Count one piece: find its word (hash, then compare bytes along the probe chain) or add it.
 * The map's key is the hash with its top bit set, so that it is never 0. */
static dsv4_status count_piece(void *user, const uint8_t *piece, size_t len) {
    dsv4_bpe_trainer *t = user;
    t->pieces++;
    t->piece_bytes += len;
    if (len > UINT32_MAX) return dsv4_error(DSV4_EINVAL, "a piece of %zu bytes is too long", len);
    index_map *m = &t->word_index;
    if (2 * (m->count + 1) > m->cap) {
        dsv4_status st = map_grow(m);
        if (st) return st;
    }
    uint64_t key = dsv4_word_hash(piece, len) | (1ull << 63);
    size_t j = mix64(key) & (m->cap - 1);
    for (; m->keys[j]; j = (j + 1) & (m->cap - 1)) {
        word *w = &t->words[m->vals[j]];
        if (m->keys[j] == key && w->len == len && !memcmp(t->bytes + w->off, piece, len)) {
            w->count += t->weight;
            return DSV4_OK;
        }
    }
    if (t->n_words == t->cap_words) {
        size_t cap = t->cap_words ? 2 * t->cap_words : 4096;
        word *nw = realloc(t->words, cap * sizeof *nw);
        if (!nw) return dsv4_error(DSV4_ENOMEM, "out of memory for %zu distinct pieces", cap);
        t->words = nw;
        t->cap_words = cap;
    }
    if (t->cap_bytes - t->n_bytes < len) {
        size_t cap = DSV4_MAX(2 * t->cap_bytes, t->n_bytes + len + 65536);
        uint8_t *nb = realloc(t->bytes, cap);
        if (!nb) return dsv4_error(DSV4_ENOMEM, "out of memory for %zu bytes of pieces", cap);
        t->bytes = nb;
        t->cap_bytes = cap;
    }
    memcpy(t->bytes + t->n_bytes, piece, len);
    t->words[t->n_words] = (word){t->n_bytes, (uint32_t)len, t->weight, 0, 0};
    t->n_bytes += len;
    m->keys[j] = key;
    m->vals[j] = (uint32_t)t->n_words++;
    m->count++;
    return DSV4_OK;
}

dsv4_status dsv4_bpe_trainer_feed(dsv4_bpe_trainer *t, const char *text, size_t len, int weight) {
    if (weight < 1) return dsv4_error(DSV4_EINVAL, "BPE trainer: weight %d (must be >= 1)", weight);
    t->weight = weight;
    return dsv4_tokenizer_pieces(t->cutter, text, len, count_piece, t);
}

/* ---- learning ---------------------------------------------------------------------------------- */

typedef struct heap_entry {
    int64_t count;
    uint32_t pair;
} heap_entry;

/* The state of one run. */
typedef struct learner {
    dsv4_bpe_trainer *t;
    int32_t *syms;
    pair *pairs;
    size_t n_pairs, cap_pairs;
    index_map pair_index; /* (a << 32 | b) + 1 -> pair */
    heap_entry *heap;
    size_t n_heap, cap_heap;
    uint32_t *stamp_word; /* merge number that last visited each word, + 1 */
    uint32_t *new_pairs;  /* pairs with the new symbol, found during one merge */
    size_t n_new, cap_new;
    uint32_t *stamp_pair; /* merge number that last listed each pair in new_pairs, + 1 */
    size_t cap_stamp_pair;
} learner;

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

/* Index of pair (a, b), created with count 0 if new; UINT32_MAX when out of memory. */
static uint32_t pair_of(learner *L, int32_t a, int32_t b) {
    index_map *m = &L->pair_index;
    if (2 * (m->count + 1) > m->cap && map_grow(m)) return UINT32_MAX;
    uint64_t key = pair_key(a, b);
    size_t j = mix64(key) & (m->cap - 1);
    for (; m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == key) return m->vals[j];
    if (L->n_pairs == L->cap_pairs) {
        size_t cap = L->cap_pairs ? 2 * L->cap_pairs : 4096;
        pair *np = realloc(L->pairs, cap * sizeof *np);
        if (!np) return UINT32_MAX;
        L->pairs = np;
        L->cap_pairs = cap;
    }
    L->pairs[L->n_pairs] = (pair){a, b, 0, NULL, 0, 0};
    m->keys[j] = key;
    m->vals[j] = (uint32_t)L->n_pairs;
    m->count++;
    return (uint32_t)L->n_pairs++;
}

/* Note that word w contains pair p (words are visited in turn, so a repeat is the last one). */
static bool pair_add_word(pair *p, uint32_t w) {
    if (p->n_words && p->words[p->n_words - 1] == w) return true;
    if (p->n_words == p->cap_words) {
        uint32_t cap = p->cap_words ? 2 * p->cap_words : 4;
        uint32_t *nw = realloc(p->words, cap * sizeof *nw);
        if (!nw) return false;
        p->words = nw;
        p->cap_words = cap;
    }
    p->words[p->n_words++] = w;
    return true;
}

/* Heap order: the larger count first, then the smaller (a, b). */
static bool heap_before(const learner *L, heap_entry x, heap_entry y) {
    if (x.count != y.count) return x.count > y.count;
    const pair *p = &L->pairs[x.pair], *q = &L->pairs[y.pair];
    return p->a != q->a ? p->a < q->a : p->b < q->b;
}

static bool heap_push(learner *L, int64_t count, uint32_t p) {
    if (L->n_heap == L->cap_heap) {
        size_t cap = L->cap_heap ? 2 * L->cap_heap : 4096;
        heap_entry *nh = realloc(L->heap, cap * sizeof *nh);
        if (!nh) return false;
        L->heap = nh;
        L->cap_heap = cap;
    }
    heap_entry e = {count, p};
    size_t i = L->n_heap++;
    while (i > 0 && heap_before(L, e, L->heap[(i - 1) / 2])) {
        L->heap[i] = L->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    L->heap[i] = e;
    return true;
}

static heap_entry heap_pop(learner *L) {
    heap_entry top = L->heap[0], last = L->heap[--L->n_heap];
    size_t n = L->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(L, L->heap[c + 1], L->heap[c])) c++;
        if (!heap_before(L, L->heap[c], last)) break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    if (n) L->heap[i] = last;
    return top;
}

/* Add `sign` times word w's count to each of its pairs. When counting in (sign > 0) and
 * `fresh` >= 0, pairs containing symbol `fresh` note the word and join new_pairs. */
static dsv4_status count_word(learner *L, uint32_t w, int sign, int32_t fresh, uint32_t merge_no) {
    const word *wd = &L->t->words[w];
    const int32_t *s = L->syms + wd->sym;
    for (uint32_t i = 0; i + 1 < wd->n_sym; i++) {
        uint32_t p = pair_of(L, s[i], s[i + 1]);
        if (p == UINT32_MAX) return dsv4_error(DSV4_ENOMEM, "out of memory for BPE pair counts");
        pair *pp = &L->pairs[p];
        pp->count += sign * wd->count;
        if (sign < 0 || (fresh >= 0 && s[i] != fresh && s[i + 1] != fresh)) continue;
        if (!pair_add_word(pp, w)) return dsv4_error(DSV4_ENOMEM, "out of memory for BPE pair lists");
        if (fresh < 0) continue;
        if (p >= L->cap_stamp_pair) {
            size_t cap = DSV4_MAX(2 * L->cap_stamp_pair, (size_t)p + 1024);
            uint32_t *ns = realloc(L->stamp_pair, cap * sizeof *ns);
            if (!ns) return dsv4_error(DSV4_ENOMEM, "out of memory for BPE pair stamps");
            memset(ns + L->cap_stamp_pair, 0, (cap - L->cap_stamp_pair) * sizeof *ns);
            L->stamp_pair = ns;
            L->cap_stamp_pair = cap;
        }
        if (L->stamp_pair[p] == merge_no + 1) continue;
        L->stamp_pair[p] = merge_no + 1;
        if (L->n_new == L->cap_new) {
            size_t cap = L->cap_new ? 2 * L->cap_new : 256;
            uint32_t *nn = realloc(L->new_pairs, cap * sizeof *nn);
            if (!nn) return dsv4_error(DSV4_ENOMEM, "out of memory for BPE new pairs");
            L->new_pairs = nn;
            L->cap_new = cap;
        }
        L->new_pairs[L->n_new++] = p;
    }
    return DSV4_OK;
}

/* Rewrite every (a, b) in word w as z, left to right. */
static void merge_in_word(learner *L, uint32_t w, int32_t a, int32_t b, int32_t z) {
    word *wd = &L->t->words[w];
    int32_t *s = L->syms + wd->sym;
    uint32_t o = 0;
    for (uint32_t i = 0; i < wd->n_sym; i++) {
        if (i + 1 < wd->n_sym && s[i] == a && s[i + 1] == b) {
            s[o++] = z;
            i++;
        } else {
            s[o++] = s[i];
        }
    }
    wd->n_sym = o;
}

/* Apply merge number merge_no of pair p, whose symbols become z. */
static dsv4_status apply_merge(learner *L, uint32_t p, int32_t z, uint32_t merge_no) {
    int32_t a = L->pairs[p].a, b = L->pairs[p].b;
    uint32_t *list = L->pairs[p].words, n = L->pairs[p].n_words;
    L->pairs[p].words = NULL; /* (a, b) can never occur again: its list goes */
    L->pairs[p].n_words = L->pairs[p].cap_words = 0;
    L->n_new = 0;
    dsv4_status st = DSV4_OK;
    for (uint32_t k = 0; k < n && !st; k++) {
        uint32_t w = list[k];
        if (L->stamp_word[w] == merge_no + 1) continue;
        L->stamp_word[w] = merge_no + 1;
        if ((st = count_word(L, w, -1, -1, merge_no))) break;
        merge_in_word(L, w, a, b, z);
        st = count_word(L, w, +1, z, merge_no);
    }
    free(list);
    L->pairs[p].count = 0;
    for (size_t k = 0; k < L->n_new && !st; k++)
        if (L->pairs[L->new_pairs[k]].count > 0 && !heap_push(L, L->pairs[L->new_pairs[k]].count, L->new_pairs[k]))
            st = dsv4_error(DSV4_ENOMEM, "out of memory for the BPE pair queue");
    return st;
}

/* The most frequent pair with a current count, or UINT32_MAX when none is left. */
static dsv4_status best_pair(learner *L, uint32_t *best) {
    while (L->n_heap) {
        heap_entry e = heap_pop(L);
        int64_t now = L->pairs[e.pair].count;
        if (now == e.count) {
            *best = e.pair;
            return DSV4_OK;
        }
        if (now > 0 && now < e.count && !heap_push(L, now, e.pair))
            return dsv4_error(DSV4_ENOMEM, "out of memory for the BPE pair queue");
    }
    *best = UINT32_MAX;
    return DSV4_OK;
}

static void learner_free(learner *L) {
    for (size_t i = 0; i < L->n_pairs; i++) free(L->pairs[i].words);
    free(L->pairs);
    map_free(&L->pair_index);
    free(L->heap);
    free(L->syms);
    free(L->stamp_word);
    free(L->new_pairs);
    free(L->stamp_pair);
}

/* Spellings of tokens (byte-level text), by id from FIRST_BYTE_ID, for the vocab and merges. */
typedef struct spellings {
    char **text; /* [id - FIRST_BYTE_ID] */
    size_t n;
    dsv4_strmap by_text; /* spelling -> id */
} spellings;

static dsv4_status spell_add(spellings *sp, const char *text, size_t len, int32_t id) {
    char *copy = dsv4_malloc(len + 1, "token spelling");
    if (!copy) return DSV4_ENOMEM;
    memcpy(copy, text, len);
    copy[len] = 0;
    sp->text[sp->n++] = copy;
    return dsv4_strmap_put(&sp->by_text, copy, len, id);
}

static void spell_free(spellings *sp) {
    for (size_t i = 0; i < sp->n; i++) free(sp->text[i]);
    free(sp->text);
    dsv4_strmap_free(&sp->by_text);
}

dsv4_status dsv4_bpe_trainer_run(dsv4_bpe_trainer *t, const dsv4_bpe_train_opts *opts, json_t **out,
                                 dsv4_bpe_train_stats *stats) {
    *out = NULL;
    if (opts->vocab_size < DSV4_BPE_MIN_VOCAB)
        return dsv4_error(DSV4_EINVAL, "BPE trainer: vocab size %d is below the %d byte and special tokens",
                          opts->vocab_size, DSV4_BPE_MIN_VOCAB);
    int64_t min_count = opts->min_frequency > 0 ? opts->min_frequency : 2;
    int max_learned = opts->vocab_size - DSV4_BPE_MIN_VOCAB; /* new vocab entries */

    learner L = {.t = t};
    spellings sp = {0};
    json_t *vocab = NULL, *merges = NULL;
    dsv4_status st = DSV4_OK;
    size_t total_syms = 0;
    for (size_t w = 0; w < t->n_words; w++) total_syms += t->words[w].len;
    L.syms = dsv4_malloc(DSV4_MAX(total_syms, 1) * sizeof *L.syms, "BPE symbols");
    L.stamp_word = dsv4_calloc(DSV4_MAX(t->n_words, 1), sizeof *L.stamp_word, "BPE word stamps");
    sp.text = dsv4_malloc(((size_t)256 + (size_t)max_learned) * sizeof *sp.text, "token spellings");
    if (!L.syms || !L.stamp_word || !sp.text) {
        st = DSV4_ENOMEM;
        goto out;
    }

    /* Words as bytes, and the first count of every pair. Runs of digits stay apart. */
    size_t at = 0;
    for (uint32_t w = 0; w < t->n_words && !st; w++) {
        word *wd = &t->words[w];
        const uint8_t *bytes = t->bytes + wd->off;
        wd->sym = (uint32_t)at;
        wd->n_sym = wd->len;
        for (uint32_t i = 0; i < wd->len; i++) L.syms[at++] = FIRST_BYTE_ID + bytes[i];
        if (!opts->merge_digits && bytes[0] >= '0' && bytes[0] <= '9') continue;
        st = count_word(&L, w, +1, -1, 0);
    }
    for (uint32_t p = 0; p < L.n_pairs && !st; p++)
        if (!heap_push(&L, L.pairs[p].count, p)) st = dsv4_error(DSV4_ENOMEM, "out of memory for the BPE pair queue");
    for (int b = 0; b < 256 && !st; b++) {
        char s[4];
        st = spell_add(&sp, s, (size_t)byte_spelling(b, s), FIRST_BYTE_ID + b);
    }

    vocab = base_vocab();
    merges = json_array();
    if (!vocab || !merges) st = dsv4_error(DSV4_ENOMEM, "out of memory building the vocab");
    int learned = 0;
    uint32_t merge_no = 0;
    char *joined = NULL;
    while (!st && learned < max_learned) {
        uint32_t p = UINT32_MAX;
        if ((st = best_pair(&L, &p)) || p == UINT32_MAX || L.pairs[p].count < min_count) break;
        const char *left = sp.text[L.pairs[p].a - FIRST_BYTE_ID], *right = sp.text[L.pairs[p].b - FIRST_BYTE_ID];
        size_t ll = strlen(left), rl = strlen(right);
        char *j = realloc(joined, ll + rl + 1);
        if (!j) {
            st = dsv4_error(DSV4_ENOMEM, "out of memory joining tokens");
            break;
        }
        joined = j;
        memcpy(joined, left, ll);
        memcpy(joined + ll, right, rl + 1);
        int32_t z = dsv4_strmap_get(&sp.by_text, joined, ll + rl);
        if (z < 0) { /* a new token */
            z = FIRST_MERGE_ID + learned++;
            if ((st = spell_add(&sp, joined, ll + rl, z))) break;
            json_object_set_new(vocab, joined, json_integer(z));
        }
        char *merge_text = dsv4_malloc(ll + rl + 2, "merge text");
        if (!merge_text) {
            st = DSV4_ENOMEM;
            break;
        }
        snprintf(merge_text, ll + rl + 2, "%s %s", left, right);
        json_array_append_new(merges, json_string(merge_text));
        free(merge_text);
        st = apply_merge(&L, p, z, merge_no++);
    }
    free(joined);
    if (st) goto out;

    int n_vocab = FIRST_MERGE_ID + learned;
    *out = document(vocab, merges, n_vocab);
    vocab = merges = NULL; /* now owned by the document */
    if (!*out) {
        st = dsv4_error(DSV4_ENOMEM, "out of memory building the tokenizer document");
        goto out;
    }
    if (stats) {
        stats->pieces = t->pieces;
        stats->distinct_pieces = t->n_words;
        stats->bytes = t->piece_bytes;
        stats->merges = (int)merge_no;
        stats->vocab_size = n_vocab + DSV4_BPE_N_CHAT_TOKENS;
    }
out:
    json_decref(vocab);
    json_decref(merges);
    learner_free(&L);
    spell_free(&sp);
    return st;
}
