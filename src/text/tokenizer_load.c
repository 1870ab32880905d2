/* tokenizer_load.c: reading a Hugging Face tokenizer.json into a dsv4_tokenizer.
 *
 * The file is checked against what this implementation reproduces exactly; every other
 * setting is refused by name (DSV4_EUNSUPPORTED) so that a tokenizer never silently differs
 * from the reference library:
 *   normalizer      null, or an empty Sequence
 *   pre_tokenizer   Split steps (Regex or String pattern, behaviour Isolated, invert false),
 *                   then one ByteLevel (add_prefix_space false; use_regex true adds GPT-2's
 *                   split as a last regex step)
 *   model           BPE without dropout, prefixes or suffixes
 *   decoder         ByteLevel
 *   added_tokens    any number, special or not, normalized or not; lstrip, rstrip and
 *                   single_word must be false (none of DeepSeek's tokens uses them)
 * The post_processor is ignored: encoding here never adds BOS/EOS.
 *
 * Hugging Face does not take the ids of added_tokens from the file: it gives each, in file
 * order, the id of the same text in model.vocab, or else the next id after the vocab and the
 * tokens before it. A file whose ids disagree with that would tokenize differently there, so
 * it is refused, naming the first token that disagrees.
 *
 * Building: token texts go into one arena (NUL-terminated, indexed by id), the decoded bytes
 * of every token into another, text -> id into a hash map, merges into the pair map of BPE,
 * added tokens into two byte tries. */
#include <jansson.h>
#include <stdio.h>

#include "text/tokenizer_internal.h"
#include "text/utf8.h"
#include "text/word_cache.h"

/* Ids above this are refused: they would only make huge, empty tables. */
#define MAX_TOKEN_ID (1 << 26)

/* GPT-2's pre-tokenizer regex, which ByteLevel applies when use_regex is true. */
static const char gpt2_split[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- small JSON helpers -------------------------------------------------------------- */

static const char *type_of(const json_t *obj) {
    const char *s = json_string_value(json_object_get(obj, "type"));
    return s ? s : "(no type)";
}

/* A boolean field that must be false (or absent, or null). */
static bool flag_is_set(const json_t *obj, const char *key) {
    return json_is_true(json_object_get(obj, key));
}

/* A field that must be absent, null, or an empty string. */
static bool field_is_unset(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

/* ---- normalizer, decoder ------------------------------------------------------------- */

static dsv4_status check_normalizer(const json_t *root) {
    const json_t *n = json_object_get(root, "normalizer");
    if (!n || json_is_null(n)) return DSV4_OK;
    if (!strcmp(type_of(n), "Sequence") && json_array_size(json_object_get(n, "normalizers")) == 0)
        return DSV4_OK;
    return dsv4_error(DSV4_EUNSUPPORTED, "normalizer of type %s is not supported (only none)",
                      type_of(n));
}

static dsv4_status check_decoder(const json_t *root) {
    const json_t *d = json_object_get(root, "decoder");
    if (json_is_object(d) && !strcmp(type_of(d), "ByteLevel")) return DSV4_OK;
    return dsv4_error(DSV4_EUNSUPPORTED, "decoder of type %s is not supported (only ByteLevel)",
                      json_is_object(d) ? type_of(d) : "(none)");
}

/* ---- pre-tokenizer --------------------------------------------------------------------- */

static dsv4_status load_split(dsv4_tokenizer *t, const json_t *step, const char *where) {
    const char *behavior = json_string_value(json_object_get(step, "behavior"));
    if (!behavior || strcmp(behavior, "Isolated"))
        return dsv4_error(DSV4_EUNSUPPORTED, "%s: Split behavior %s is not supported (only Isolated)",
                          where, behavior ? behavior : "(none)");
    if (flag_is_set(step, "invert"))
        return dsv4_error(DSV4_EUNSUPPORTED, "%s: Split with invert true is not supported", where);
    const json_t *pat = json_object_get(step, "pattern");
    const json_t *regex = json_object_get(pat, "Regex"), *string = json_object_get(pat, "String");
    const json_t *p = regex ? regex : string;
    if (!json_is_string(p))
        return dsv4_error(DSV4_EFORMAT, "%s: pattern must be {\"Regex\": ...} or {\"String\": ...}", where);
    return dsv4_pretok_add_split(&t->pretok, json_string_value(p), json_string_length(p), !regex, where);
}

static dsv4_status load_pre_tokenizer(dsv4_tokenizer *t, const json_t *root) {
    const json_t *pt = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(pt)) return dsv4_error(DSV4_EUNSUPPORTED, "pre_tokenizer: missing (a ByteLevel step is required)");
    /* A lone step is a sequence of one. */
    const json_t *steps = pt;
    bool sequence = !strcmp(type_of(pt), "Sequence");
    if (sequence) steps = json_object_get(pt, "pretokenizers");
    size_t n = sequence ? json_array_size(steps) : 1;
    bool byte_level = false;
    for (size_t i = 0; i < n; i++) {
        const json_t *step = sequence ? json_array_get(steps, i) : pt;
        char where[64];
        if (sequence) snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%zu]", i);
        else snprintf(where, sizeof where, "pre_tokenizer");
        if (byte_level)
            return dsv4_error(DSV4_EUNSUPPORTED, "%s: steps after ByteLevel are not supported", where);
        const char *type = type_of(step);
        dsv4_status st;
        if (!strcmp(type, "Split")) {
            if ((st = load_split(t, step, where))) return st;
        } else if (!strcmp(type, "ByteLevel")) {
            if (flag_is_set(step, "add_prefix_space"))
                return dsv4_error(DSV4_EUNSUPPORTED, "%s: ByteLevel add_prefix_space true is not supported", where);
            if (flag_is_set(step, "use_regex") &&
                (st = dsv4_pretok_add_split(&t->pretok, gpt2_split, strlen(gpt2_split), false, where)))
                return st;
            byte_level = true;
        } else {
            return dsv4_error(DSV4_EUNSUPPORTED, "%s: pre-tokenizer of type %s is not supported", where, type);
        }
    }
    if (!byte_level)
        return dsv4_error(DSV4_EUNSUPPORTED, "pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)");
    return DSV4_OK;
}

/* ---- ids and texts ----------------------------------------------------------------------- */

/* Where each id's text comes from while the tables are built (pointers into the JSON). */
typedef struct source_text {
    const char *s;
    size_t len;
} source_text;

static dsv4_status read_id(const json_t *v, const char *where, const char *text, int32_t *id) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_TOKEN_ID)
        return dsv4_error(DSV4_EFORMAT, "%s: token \"%s\" has no valid id (an integer 0..%d)", where,
                          text, MAX_TOKEN_ID - 1);
    *id = (int32_t)json_integer_value(v);
    return DSV4_OK;
}

static bool utf8_ok(const char *s, size_t len) { return dsv4_utf8_check((const uint8_t *)s, len) == len; }

/* Fill src[] from model.vocab; *n_ids grows to cover the highest id. */
static dsv4_status collect_vocab(const json_t *vocab, source_text *src, uint8_t *flags) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id;
        dsv4_status st = read_id(v, "model.vocab", key, &id);
        if (st) return st;
        if (flags[id] & DSV4_TOK_DEFINED)
            return dsv4_error(DSV4_EFORMAT, "model.vocab: id %d is given to both \"%s\" and \"%s\"",
                              id, src[id].s, key);
        src[id] = (source_text){key, strlen(key)};
        flags[id] = DSV4_TOK_DEFINED | DSV4_TOK_IN_MODEL;
    }
    return DSV4_OK;
}

static int32_t highest_id(const json_t *vocab, const json_t *added) {
    int32_t hi = -1;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (id > hi && id < MAX_TOKEN_ID) hi = (int32_t)id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (id > hi && id < MAX_TOKEN_ID) hi = (int32_t)id;
    }
    return hi;
}

/* ---- added tokens ------------------------------------------------------------------------ */

static dsv4_status trie_insert(dsv4_added_set *set, const char *s, size_t len, int32_t id) {
    if (!set->n_nodes) { /* the root */
        set->nodes = dsv4_malloc(64 * sizeof *set->nodes, "added-token trie");
        if (!set->nodes) return DSV4_ENOMEM;
        set->cap_nodes = 64;
        set->nodes[0] = (dsv4_trie_node){-1, -1, -1, 0};
        set->n_nodes = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = set->nodes[node].child;
        while (c >= 0 && set->nodes[c].byte != b) c = set->nodes[c].sibling;
        if (c < 0) {
            if (set->n_nodes == set->cap_nodes) {
                dsv4_trie_node *nn = realloc(set->nodes, 2 * set->cap_nodes * sizeof *nn);
                if (!nn) return dsv4_error(DSV4_ENOMEM, "out of memory for the added-token trie");
                set->nodes = nn;
                set->cap_nodes *= 2;
            }
            c = (int32_t)set->n_nodes++;
            set->nodes[c] = (dsv4_trie_node){-1, set->nodes[node].child, -1, b};
            set->nodes[node].child = c;
        }
        node = c;
    }
    set->nodes[node].token = id;
    set->starts[(uint8_t)s[0]] = true;
    set->n_tokens++;
    return DSV4_OK;
}

size_t dsv4_added_longest(const dsv4_added_set *set, const uint8_t *s, size_t n, int32_t *id) {
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = set->nodes[node].child;
        while (c >= 0 && set->nodes[c].byte != s[i]) c = set->nodes[c].sibling;
        if (c < 0) break;
        node = c;
        if (set->nodes[node].token >= 0) {
            best = i + 1;
            *id = set->nodes[node].token;
        }
    }
    return best;
}

/* Check each added token, and give its text to src[] and the tries. `vocab` answers which
 * texts model.vocab already has. */
static dsv4_status load_added(dsv4_tokenizer *t, const json_t *added, const json_t *vocab,
                              source_text *src, size_t n_vocab) {
    int64_t next_new = (int64_t)n_vocab; /* HF's id for the next text not in model.vocab */
    size_t i;
    const json_t *a;
    json_array_foreach(added, i, a) {
        const json_t *content = json_object_get(a, "content");
        if (!json_is_string(content) || json_string_length(content) == 0)
            return dsv4_error(DSV4_EFORMAT, "added_tokens[%zu]: content must be a non-empty string", i);
        const char *text = json_string_value(content);
        size_t len = json_string_length(content);
        if (len != strlen(text) || !utf8_ok(text, len))
            return dsv4_error(DSV4_EFORMAT, "added_tokens[%zu]: content is not NUL-free UTF-8", i);
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (size_t k = 0; k < DSV4_ARRAY_LEN(unsupported); k++)
            if (flag_is_set(a, unsupported[k]))
                return dsv4_error(DSV4_EUNSUPPORTED, "added_tokens[%zu] \"%s\": %s true is not supported",
                                  i, text, unsupported[k]);
        int32_t id;
        dsv4_status st = read_id(json_object_get(a, "id"), "added_tokens", text, &id);
        if (st) return st;

        const json_t *in_vocab = json_object_get(vocab, text);
        int64_t expected = in_vocab ? json_integer_value(in_vocab) : next_new;
        if (id != expected)
            return dsv4_error(DSV4_EFORMAT,
                              "added_tokens[%zu] \"%s\" has id %d, but Hugging Face would give it %lld "
                              "(the id of the same text in model.vocab, or the next free id)",
                              i, text, id, (long long)expected);
        if (t->flags[id] & DSV4_TOK_ADDED)
            return dsv4_error(DSV4_EFORMAT, "added_tokens[%zu] \"%s\" repeats id %d", i, text, id);
        if (!in_vocab && (t->flags[id] & DSV4_TOK_IN_MODEL))
            return dsv4_error(DSV4_EFORMAT, "added_tokens[%zu] \"%s\": id %d already belongs to \"%s\" in model.vocab",
                              i, text, id, src[id].s);
        if (!in_vocab) next_new = (int64_t)id + 1;

        src[id] = (source_text){text, len};
        t->flags[id] |= DSV4_TOK_DEFINED | DSV4_TOK_ADDED;
        if (json_is_true(json_object_get(a, "special"))) t->flags[id] |= DSV4_TOK_SPECIAL;
        /* HF's default for a missing "normalized" is !special. */
        const json_t *norm = json_object_get(a, "normalized");
        bool normalized = norm ? json_is_true(norm) : !(t->flags[id] & DSV4_TOK_SPECIAL);
        if ((st = trie_insert(&t->added[normalized ? 1 : 0], text, len, id))) return st;
    }
    return DSV4_OK;
}

/* ---- the arenas ---------------------------------------------------------------------------- */

/* What a token decodes to, as HF's ByteLevel decoder does it: if every character of the text
 * is one of the 256 byte characters, the bytes they stand for; otherwise (added tokens such as
 * "<｜User｜>") the text's own UTF-8 bytes. Writes at most len bytes. */
static size_t decoded_bytes(const char *text, size_t len, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = dsv4_utf8_get((const uint8_t *)text + i, len - i, &cp);
        int b = k ? dsv4_byte_level_byte(cp) : -1;
        if (b < 0) {
            memcpy(out, text, len);
            return len;
        }
        out[o++] = (uint8_t)b;
        i += (size_t)k;
    }
    return o;
}

static dsv4_status build_tables(dsv4_tokenizer *t, const source_text *src) {
    size_t total = 0;
    for (int32_t id = 0; id < t->n_ids; id++) total += src[id].len + 1;
    t->texts = dsv4_malloc(total, "token texts");
    t->bytes = dsv4_malloc(total, "token bytes");
    t->text_off = dsv4_malloc((size_t)t->n_ids * sizeof *t->text_off, "token text offsets");
    t->bytes_off = dsv4_malloc(((size_t)t->n_ids + 1) * sizeof *t->bytes_off, "token byte offsets");
    if (!t->texts || !t->bytes || !t->text_off || !t->bytes_off) return DSV4_ENOMEM;
    size_t to = 0, bo = 0;
    for (int32_t id = 0; id < t->n_ids; id++) {
        t->text_off[id] = to;
        t->bytes_off[id] = bo;
        if (!(t->flags[id] & DSV4_TOK_DEFINED)) {
            t->texts[to++] = 0;
            continue;
        }
        if (!utf8_ok(src[id].s, src[id].len))
            return dsv4_error(DSV4_EFORMAT, "token %d is not valid UTF-8", id);
        memcpy(t->texts + to, src[id].s, src[id].len);
        t->longest_text = DSV4_MAX(t->longest_text, src[id].len);
        t->texts[to + src[id].len] = 0;
        bo += decoded_bytes(src[id].s, src[id].len, t->bytes + bo);
        dsv4_status st = dsv4_strmap_put(&t->by_text, t->texts + to, src[id].len, id);
        if (st) return st;
        to += src[id].len + 1;
    }
    t->bytes_off[t->n_ids] = bo;
    return DSV4_OK;
}

/* ---- the BPE model ------------------------------------------------------------------------- */

static dsv4_status check_model(const json_t *model) {
    if (!json_is_object(model)) return dsv4_error(DSV4_EFORMAT, "model: missing");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return dsv4_error(DSV4_EUNSUPPORTED, "model of type %s is not supported (only BPE)", type);
    if (!json_is_object(json_object_get(model, "vocab")) || !json_is_array(json_object_get(model, "merges")))
        return dsv4_error(DSV4_EFORMAT, "model: needs a vocab object and a merges list");
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return dsv4_error(DSV4_EUNSUPPORTED, "model: BPE dropout is not supported");
    static const char *const unset[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t k = 0; k < DSV4_ARRAY_LEN(unset); k++)
        if (!field_is_unset(model, unset[k]))
            return dsv4_error(DSV4_EUNSUPPORTED, "model: %s is not supported", unset[k]);
    return DSV4_OK;
}

/* The id of a vocab text (model entries only). */
static int32_t model_id(const dsv4_tokenizer *t, const char *s, size_t len) {
    int32_t id = dsv4_strmap_get(&t->by_text, s, len);
    return id >= 0 && (t->flags[id] & DSV4_TOK_IN_MODEL) ? id : -1;
}

/* One merge: "left right" or ["left", "right"]. */
static dsv4_status load_merge(dsv4_tokenizer *t, const json_t *m, size_t rank, char **buf, size_t *cap) {
    const char *left, *right;
    size_t llen, rlen;
    if (json_is_string(m)) {
        left = json_string_value(m);
        const char *space = strchr(left, ' ');
        if (!space || strchr(space + 1, ' '))
            return dsv4_error(DSV4_EFORMAT, "model.merges[%zu]: \"%s\" is not two tokens separated by one space",
                              rank, left);
        llen = (size_t)(space - left);
        right = space + 1;
        rlen = strlen(right);
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
        left = json_string_value(json_array_get(m, 0));
        right = json_string_value(json_array_get(m, 1));
        llen = strlen(left);
        rlen = strlen(right);
    } else {
        return dsv4_error(DSV4_EFORMAT, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", rank);
    }
    int32_t a = model_id(t, left, llen), b = model_id(t, right, rlen);
    if (a < 0 || b < 0)
        return dsv4_error(DSV4_EFORMAT, "model.merges[%zu]: \"%.*s\" is not in model.vocab", rank,
                          (int)(a < 0 ? llen : rlen), a < 0 ? left : right);
    if (llen + rlen > *cap) {
        *cap = 2 * (llen + rlen);
        char *nb = realloc(*buf, *cap);
        if (!nb) return dsv4_error(DSV4_ENOMEM, "out of memory reading merges");
        *buf = nb;
    }
    memcpy(*buf, left, llen);
    memcpy(*buf + llen, right, rlen);
    int32_t joined = model_id(t, *buf, llen + rlen);
    if (joined < 0)
        return dsv4_error(DSV4_EFORMAT, "model.merges[%zu]: the result \"%.*s\" is not in model.vocab",
                          rank, (int)(llen + rlen), *buf);
    return dsv4_pairmap_put(&t->bpe.merges, a, b, (dsv4_merge){(uint32_t)rank, joined});
}

static dsv4_status load_merges(dsv4_tokenizer *t, const json_t *merges) {
    char *buf = NULL;
    size_t cap = 0, rank;
    const json_t *m;
    dsv4_status st = DSV4_OK;
    json_array_foreach(merges, rank, m) {
        if ((st = load_merge(t, m, rank, &buf, &cap))) break;
    }
    free(buf);
    if (st) return st;
    /* Every byte must have its one-character token, or some texts could not be spelled. */
    for (int b = 0; b < 256; b++) {
        uint8_t ch[4];
        int n = dsv4_utf8_put(dsv4_byte_level_char((uint8_t)b), ch);
        int32_t id = model_id(t, (const char *)ch, (size_t)n);
        if (id < 0)
            return dsv4_error(DSV4_EFORMAT, "model.vocab lacks \"%.*s\", the byte-level token of byte 0x%02X",
                              n, (const char *)ch, b);
        t->bpe.byte_token[b] = id;
    }
    return DSV4_OK;
}

/* ---- putting it together ------------------------------------------------------------------- */

static dsv4_status load_all(dsv4_tokenizer *t, const json_t *root) {
    if (!json_is_object(root)) return dsv4_error(DSV4_EFORMAT, "not a JSON object");
    const json_t *model = json_object_get(root, "model");
    const json_t *added = json_object_get(root, "added_tokens");
    dsv4_status st;
    if ((st = check_normalizer(root)) || (st = check_decoder(root)) || (st = check_model(model)))
        return st;
    if (added && !json_is_array(added) && !json_is_null(added))
        return dsv4_error(DSV4_EFORMAT, "added_tokens: expected a list");
    if ((st = load_pre_tokenizer(t, root))) return st;
    t->ignore_merges = flag_is_set(model, "ignore_merges");

    const json_t *vocab = json_object_get(model, "vocab");
    int32_t hi = highest_id(vocab, added);
    if (hi < 0) return dsv4_error(DSV4_EFORMAT, "model.vocab: empty");
    t->n_ids = hi + 1;
    t->flags = dsv4_calloc((size_t)t->n_ids, 1, "token flags");
    source_text *src = dsv4_calloc((size_t)t->n_ids, sizeof *src, "token sources");
    if (!t->flags || !src) {
        free(src);
        return DSV4_ENOMEM;
    }
    st = collect_vocab(vocab, src, t->flags);
    if (!st && added) st = load_added(t, added, vocab, src, json_object_size(vocab));
    if (!st) st = build_tables(t, src);
    free(src);
    if (!st) st = load_merges(t, json_object_get(model, "merges"));
    if (!st && !(t->cache = dsv4_word_cache_new(1 << 16))) st = DSV4_ENOMEM;
    return st;
}

dsv4_status dsv4_tokenizer_from_json(const json_t *root, dsv4_tokenizer **out) {
    *out = NULL;
    dsv4_tokenizer *t = dsv4_calloc(1, sizeof *t, "tokenizer");
    dsv4_status st = t ? load_all(t, root) : DSV4_ENOMEM;
    if (st) {
        dsv4_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DSV4_OK;
}

dsv4_status dsv4_tokenizer_load(const char *path, dsv4_tokenizer **out) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_cannot_open_file)
            return dsv4_error(DSV4_EIO, "%s", jerr.text);
        return dsv4_error(DSV4_EFORMAT, "%s: line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
    }
    dsv4_status st = dsv4_tokenizer_from_json(root, out);
    json_decref(root);
    if (st) return dsv4_error_wrap(st, "%s", path);
    return DSV4_OK;
}

void dsv4_tokenizer_free(dsv4_tokenizer *t) {
    if (!t) return;
    free(t->flags);
    free(t->texts);
    free(t->text_off);
    free(t->bytes);
    free(t->bytes_off);
    dsv4_strmap_free(&t->by_text);
    for (int k = 0; k < 2; k++) free(t->added[k].nodes);
    dsv4_pretok_free(&t->pretok);
    dsv4_bpe_free(&t->bpe);
    dsv4_word_cache_free(t->cache);
    free(t);
}
