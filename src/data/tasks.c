/* tasks.c: the generator's frame: seeding, the corpus side, the text family, and the small
 * helpers every family uses (task_internal.h). The families themselves are in task_qa.c
 * (arith, table, chat), task_needle.c (needle, recall) and task_tools.c. */
#include <stdio.h>

#include "base/base.h"
#include "data/task_internal.h"

static const char *const family_names[DSV4_N_FAMILIES] = {"arith", "table", "needle", "tools", "text", "chat", "recall"};

const char *dsv4_family_name(dsv4_family f) {
    return (unsigned)f < DSV4_N_FAMILIES ? family_names[f] : "?";
}

int dsv4_family_of(const char *name) {
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        if (!strcmp(name, family_names[f])) return f;
    return -1;
}

/* ---- helpers ---------------------------------------------------------------------------------- */

void draw_distinct(dsv4_rng *r, uint32_t n, uint32_t k, uint32_t *out) {
    uint32_t all[256];
    for (uint32_t i = 0; i < n; i++) all[i] = i;
    for (uint32_t i = 0; i < k; i++) { /* a partial Fisher-Yates shuffle */
        uint32_t j = i + draw(r, n - i);
        uint32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
        out[i] = all[i];
    }
}

char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *fill(const char *t, const char *const *args) {
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    for (const char *p = t; *p; p++) {
        if (p[0] == '{' && p[1] >= '0' && p[1] <= '9' && p[2] == '}') {
            dsv4_strbuf_puts(&b, args[p[1] - '0']);
            p += 2;
        } else {
            dsv4_strbuf_putc(&b, *p);
        }
    }
    return dsv4_strbuf_release(&b, NULL);
}

json_t *msg(const char *role, const char *content) {
    return json_pack("{s:s, s:s}", "role", role, "content", content ? content : "");
}

json_t *msg_own(const char *role, char *content) {
    json_t *m = content ? msg(role, content) : NULL;
    free(content);
    return m;
}

json_t *assistant(const char *content, const char *reasoning) {
    json_t *m = msg("assistant", content);
    if (m && reasoning) json_object_set_new(m, "reasoning_content", json_string(reasoning));
    return m;
}

json_t *assistant_own(char *content, char *reasoning) {
    json_t *m = content ? assistant(content, reasoning) : NULL;
    free(content);
    free(reasoning);
    return m;
}

const char *draw_system(dsv4_rng *r) {
    static const char *const systems[] = {
        "You are a helpful assistant.",
        "You are a friendly assistant.",
        "You are a concise assistant. Answer briefly.",
        "You are a careful assistant. Answer exactly what is asked.",
    };
    return chance(r, 0.5) ? PICK(r, systems) : NULL;
}

void expect_number(dsv4_example *ex, long long v) {
    ex->expect.kind = DSV4_EXPECT_NUMBER;
    ex->expect.number = v;
}

void expect_word(dsv4_example *ex, const char *w) {
    ex->expect.kind = DSV4_EXPECT_WORDS;
    if (!ex->expect.words) ex->expect.words = json_array();
    json_array_append_new(ex->expect.words, json_string(w));
}

void expect_not_word(dsv4_example *ex, const char *w) {
    if (!ex->expect.not_words) ex->expect.not_words = json_array();
    json_array_append_new(ex->expect.not_words, json_string(w));
}

void exchange_free(exchange *x) {
    free(x->user);
    free(x->answer);
    free(x->reasoning);
    memset(x, 0, sizeof *x);
}

void dsv4_example_free(dsv4_example *ex) {
    json_decref(ex->messages);
    free(ex->text);
    json_decref(ex->expect.words);
    json_decref(ex->expect.not_words);
    json_decref(ex->expect.call);
    memset(ex, 0, sizeof *ex);
}

/* ---- the corpus side ---------------------------------------------------------------------------- */

/* Jokes for the chat family are short passages. */
#define SHORT_PASSAGE 240

dsv4_status dsv4_taskgen_init(dsv4_taskgen *g, const dsv4_corpus *c, const dsv4_tokenizer *tok, bool held_out,
                              uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->corpus = c;
    g->seed = seed;
    size_t n = c->n ? c->n : 1;
    g->pool = dsv4_malloc(n * sizeof *g->pool, "passage pool");
    g->pool_tokens = dsv4_malloc(n * sizeof *g->pool_tokens, "passage lengths");
    g->short_pool = dsv4_malloc(n * sizeof *g->short_pool, "short passages");
    g->text_order = dsv4_malloc(n * sizeof *g->text_order, "text order");
    if (!g->pool || !g->pool_tokens || !g->short_pool || !g->text_order) {
        dsv4_taskgen_free(g);
        return DSV4_ENOMEM;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (dsv4_corpus_held_out(c, i) != held_out) continue;
        size_t len = strlen(c->passages[i]);
        int tokens = (int)(len / 4 + 1); /* without a tokenizer: about 4 bytes a token */
        if (tok) {
            int32_t *ids;
            size_t k;
            dsv4_status st = dsv4_tokenize(tok, c->passages[i], len, &ids, &k);
            if (st) {
                dsv4_taskgen_free(g);
                return dsv4_error_wrap(st, "corpus passage %zu", i);
            }
            free(ids);
            tokens = (int)k;
        }
        if (len <= SHORT_PASSAGE) g->short_pool[g->n_short++] = g->n_pool;
        g->pool_tokens[g->n_pool] = tokens;
        g->pool[g->n_pool++] = i;
    }
    if (!g->n_pool || !g->n_short) {
        dsv4_taskgen_free(g);
        return dsv4_error(DSV4_EINVAL, "the corpus has no %s passages (%zu passages in all)",
                          held_out ? "held-out" : "training", c->n);
    }
    /* the order in which text examples walk the pool */
    dsv4_rng r;
    dsv4_rng_seed(&r, seed ^ 0x7465787400000000ull);
    for (size_t i = 0; i < g->n_pool; i++) g->text_order[i] = i;
    for (size_t i = g->n_pool - 1; i > 0; i--) {
        size_t j = (size_t)(dsv4_rng_uniform(&r) * (double)(i + 1));
        size_t t = g->text_order[i];
        g->text_order[i] = g->text_order[j];
        g->text_order[j] = t;
    }
    return DSV4_OK;
}

void dsv4_taskgen_free(dsv4_taskgen *g) {
    free(g->pool);
    free(g->pool_tokens);
    free(g->short_pool);
    free(g->text_order);
    memset(g, 0, sizeof *g);
}

/* ---- the text family ------------------------------------------------------------------------------ */

/* The next passages of the pool, in the seeded order, up to about `tokens` tokens. */
static dsv4_status gen_text(dsv4_taskgen *g, int tokens, dsv4_example *ex) {
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    int have = 0;
    do {
        size_t k = g->text_order[g->text_cursor++ % g->n_pool];
        if (b.len) dsv4_strbuf_puts(&b, "\n\n");
        dsv4_strbuf_puts(&b, g->corpus->passages[g->pool[k]]);
        have += g->pool_tokens[k] + 1;
    } while (have < tokens);
    ex->text = dsv4_strbuf_release(&b, NULL);
    return ex->text ? DSV4_OK : DSV4_ENOMEM;
}

/* ---- dispatch ---------------------------------------------------------------------------------------- */

dsv4_status dsv4_task_generate(dsv4_taskgen *g, dsv4_family f, uint64_t index, const dsv4_task_opts *o,
                               dsv4_example *ex) {
    static const dsv4_task_opts defaults = {0};
    if (!o) o = &defaults;
    memset(ex, 0, sizeof *ex);
    ex->family = f;
    ex->ask = -1;
    dsv4_rng r;
    dsv4_rng_seed(&r, g->seed ^ ((uint64_t)(f + 1) << 56) ^ (index * 0x9E3779B97F4A7C15ull));
    bool thinking = o->thinking > 0 || (o->thinking == 0 && chance(&r, o->think_share));
    dsv4_status st;
    switch (f) {
    case DSV4_FAMILY_ARITH:
    case DSV4_FAMILY_TABLE:
    case DSV4_FAMILY_CHAT: st = gen_qa(g, f, &r, o, thinking, ex); break;
    case DSV4_FAMILY_NEEDLE: st = gen_needle(g, &r, o, thinking, ex); break;
    case DSV4_FAMILY_TOOLS: st = gen_tools(g, &r, o, thinking, ex); break;
    case DSV4_FAMILY_RECALL: st = gen_recall(g, &r, o, thinking, ex); break;
    case DSV4_FAMILY_TEXT: st = gen_text(g, o->text_tokens > 0 ? o->text_tokens : 512, ex); break;
    default: return dsv4_error(DSV4_EINVAL, "no task family %d", (int)f);
    }
    if (!st && f != DSV4_FAMILY_TEXT && !ex->messages)
        st = dsv4_error(DSV4_ENOMEM, "out of memory generating a %s example", dsv4_family_name(f));
    if (st) {
        dsv4_example_free(ex);
        return st;
    }
    if (f != DSV4_FAMILY_TEXT) ex->thinking = thinking;
    return DSV4_OK;
}
