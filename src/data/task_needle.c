/* task_needle.c: a fact hidden in a long text, and a question about it at the end.
 *
 *   Read the text below and answer the question at the end.
 *
 *   <fortune> ... <fortune>
 *
 *   The pass code of the blue door is 4821.          <- the needle, at a random depth
 *
 *   <fortune> ... The lucky number of the red kite is 7730.   <- up to 3 distractors
 *
 *   Question: What is the pass code of the blue door?
 *   -> The pass code of the blue door is 4821.
 *
 * Keys are (secret, colour, object) triples; distractors never share the needle's colour and
 * object, so only the needle answers the question, and a model that copies "the 4-digit
 * number it saw" is right only by chance. The text is whole passages of the corpus, drawn at
 * random, until it reaches the length asked for (in tokens of the tokenizer given to the
 * generator; without one, about 4 bytes a token). With a 128-token sliding window, a model
 * can answer only by retrieving from its compressed (CSA/HCA) memory. */
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "data/task_internal.h"

/* Tokens of the prompt that are not passages: intro, question, chat markup; and of one fact. */
#define PROMPT_OVERHEAD 40
#define FACT_TOKENS 16
#define MAX_DISTRACTORS 3

static const char *const intros[] = {
    "Read the text below and answer the question at the end.\n\n",
    "Here is a long text. A question about it follows.\n\n",
    "Read this carefully.\n\n",
    "",
};
static const char *const questions[] = {
    "\n\nQuestion: What is the {0} of the {1} {2}?",
    "\n\nWhat is the {0} of the {1} {2}?",
    "\n\nAnswer from the text above: what is the {0} of the {1} {2}?",
    "\n\nQuestion: Which {0} does the {1} {2} have?",
};

typedef struct fact {
    const char *secret, *color, *object;
    int value;
    size_t at; /* the passage it follows */
} fact;

static char *fact_sentence(const fact *f) {
    return fmt("The %s of the %s %s is %d.", f->secret, f->color, f->object, f->value);
}

/* Passages of the pool drawn until the text is within a few tokens of `haystack` tokens (one
 * that would overshoot is passed over; after 8 of those in a row the text is long enough). */
static dsv4_status draw_passages(dsv4_taskgen *g, dsv4_rng *r, int haystack, size_t **out, size_t *count) {
    size_t n = 0, cap = 64;
    size_t *parts = dsv4_malloc(cap * sizeof *parts, "needle passages");
    if (!parts) return DSV4_ENOMEM;
    for (int have = 0, misses = 0; have < haystack - 16 && misses < 8;) {
        size_t k = draw(r, (uint32_t)g->n_pool);
        if (n && have + g->pool_tokens[k] + 1 > haystack) {
            misses++;
            continue;
        }
        misses = 0;
        if (n == cap) {
            size_t *np = realloc(parts, 2 * cap * sizeof *np);
            if (!np) {
                free(parts);
                return dsv4_error(DSV4_ENOMEM, "out of memory for a needle text");
            }
            parts = np;
            cap *= 2;
        }
        parts[n++] = k;
        have += g->pool_tokens[k] + 1;
    }
    *out = parts;
    *count = n;
    return DSV4_OK;
}

/* n_facts facts with distinct colours, objects and hundreds (the rest of the 4-digit value is
 * random), each placed after a random one of the n passages; with `depth`, the first (the
 * needle) goes at a depth drawn uniformly and returned. At most 14 facts (the colours). */
static void draw_facts(dsv4_rng *r, fact *facts, int n_facts, size_t n, double *depth) {
    uint32_t colors[16], objects[16], values[16];
    draw_distinct(r, (uint32_t)dsv4_words_colors.n, (uint32_t)n_facts, colors);
    draw_distinct(r, (uint32_t)dsv4_words_objects.n, (uint32_t)n_facts, objects);
    draw_distinct(r, 250, (uint32_t)n_facts, values);
    if (depth) *depth = dsv4_rng_uniform(r);
    for (int i = 0; i < n_facts; i++) {
        facts[i].secret = pick_word(r, &dsv4_words_secrets);
        facts[i].color = dsv4_words_colors.w[colors[i]];
        facts[i].object = dsv4_words_objects.w[objects[i]];
        facts[i].value = 1000 + (int)values[i] * 36 + (int)draw(r, 36);
        facts[i].at = depth && i == 0 ? (size_t)lround(*depth * (double)n) : draw(r, (uint32_t)n + 1);
    }
}

/* A prompt length in tokens: o's fixed length, or log-uniform in [needle_min, needle_max] (as
 * many short texts as long ones per doubling). */
static int draw_length(dsv4_rng *r, const dsv4_task_opts *o) {
    if (o->needle_tokens > 0) return o->needle_tokens;
    double lo = o->needle_min > 0 ? o->needle_min : 256, hi = o->needle_max > 0 ? o->needle_max : 4096;
    if (hi < lo) hi = lo;
    return (int)exp(log(lo) + dsv4_rng_uniform(r) * (log(hi) - log(lo)));
}

/* The text: intro, passages, with each fact as a paragraph of its own after passage `at`. */
static char *haystack_text(const dsv4_taskgen *g, const char *intro, const size_t *parts, size_t n, const fact *facts,
                           int n_facts) {
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&b, intro);
    for (size_t k = 0; k <= n; k++) {
        for (int i = 0; i < n_facts; i++) {
            if (facts[i].at != k) continue;
            char *s = fact_sentence(&facts[i]);
            if (k) dsv4_strbuf_puts(&b, "\n\n");
            dsv4_strbuf_puts(&b, s ? s : "");
            if (!k) dsv4_strbuf_puts(&b, "\n\n");
            free(s);
        }
        if (k == n) break;
        if (k) dsv4_strbuf_puts(&b, "\n\n");
        dsv4_strbuf_puts(&b, g->corpus->passages[g->pool[parts[k]]]);
    }
    return dsv4_strbuf_release(&b, NULL);
}

dsv4_status gen_needle(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex) {
    int target = draw_length(r, o);
    int n_facts = 1 + (int)draw(r, MAX_DISTRACTORS + 1);
    int haystack = DSV4_MAX(target - PROMPT_OVERHEAD - n_facts * FACT_TOKENS, 16);

    size_t n, *parts;
    dsv4_status st = draw_passages(g, r, haystack, &parts, &n);
    if (st) return st;

    /* the needle and the distractors */
    fact facts[1 + MAX_DISTRACTORS];
    double depth;
    draw_facts(r, facts, n_facts, n, &depth);
    ex->target_tokens = target;
    ex->depth_percent = (int)lround(depth * 100);

    char *text = haystack_text(g, PICK(r, intros), parts, n, facts, n_facts);
    free(parts);
    if (!text) return dsv4_error(DSV4_ENOMEM, "out of memory building a needle text");
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&b, text);
    free(text);
    const fact *needle = &facts[0];
    char *question = fill(PICK(r, questions), (const char *[]){needle->secret, needle->color, needle->object});
    if (question) dsv4_strbuf_puts(&b, question);
    free(question);
    char *user = dsv4_strbuf_release(&b, NULL);

    char *answer = fact_sentence(needle);
    char *why = thinking ? fmt("The text says that the %s of the %s %s is %d.", needle->secret, needle->color,
                               needle->object, needle->value)
                         : NULL;
    bool ok = user && answer && (!thinking || why);
    json_t *m = ex->messages = json_array();
    if (!m) {
        free(user);
        free(answer);
        free(why);
        return dsv4_error(DSV4_ENOMEM, "out of memory building a needle example");
    }
    const char *system = draw_system(r);
    if (system) json_array_append_new(m, msg("system", system));
    json_array_append_new(m, msg_own("user", user));
    json_array_append_new(m, assistant_own(answer, why));
    ex->ask = (int)json_array_size(m) - 1;
    expect_number(ex, needle->value);
    return ok ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory building a needle example");
}

/* ---- recall: several questions about what was given earlier ------------------------------------ */

/* A training family of its own. A needle or table example has one answer that needs
 * retrieval; the rest of its targets are the sentence around it. Here the conversation goes
 * on with more questions about the same text or table, each answered in its own turn, so one
 * example teaches several retrievals:
 *
 *   <text with 4..12 facts>  Question: What is the lock code of the red safe?
 *   -> The lock code of the red safe is 2917.
 *   What is the pass code of the blue door?
 *   -> The pass code of the blue door is 4821.
 *
 * Half of the examples hide facts in a long text (lengths as the needle's), half give a table
 * of the table family. In thinking mode an example asks one question (the encoder would drop
 * earlier turns' reasoning). The expectation is that of the last question. */
#define RECALL_MAX_FACTS 12

static dsv4_status recall_facts(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking,
                                dsv4_example *ex) {
    int target = draw_length(r, o), n_facts = draw_in(r, 4, RECALL_MAX_FACTS);
    int haystack = DSV4_MAX(target - PROMPT_OVERHEAD - n_facts * FACT_TOKENS, 16);
    size_t n, *parts;
    dsv4_status st = draw_passages(g, r, haystack, &parts, &n);
    if (st) return st;
    fact facts[RECALL_MAX_FACTS];
    uint32_t asked[RECALL_MAX_FACTS];
    draw_facts(r, facts, n_facts, n, NULL);
    int n_ask = thinking ? 1 : draw_in(r, 2, DSV4_MIN(n_facts, 6));
    draw_distinct(r, (uint32_t)n_facts, (uint32_t)n_ask, asked);
    ex->target_tokens = target;

    json_t *m = ex->messages = json_array();
    char *text = haystack_text(g, PICK(r, intros), parts, n, facts, n_facts);
    free(parts);
    if (!m || !text) {
        free(text);
        return dsv4_error(DSV4_ENOMEM, "out of memory building a recall example");
    }
    const char *system = draw_system(r);
    if (system) json_array_append_new(m, msg("system", system));
    bool ok = true;
    for (int q = 0; q < n_ask; q++) {
        const fact *f = &facts[asked[q]];
        char *question = fill(PICK(r, questions), (const char *[]){f->secret, f->color, f->object});
        /* the first question follows the text; later ones stand alone (without the blank line) */
        char *user = question && q == 0 ? fmt("%s%s", text, question) : question ? fmt("%s", question + 2) : NULL;
        char *answer = fact_sentence(f);
        char *why = thinking ? fmt("The text says that the %s of the %s %s is %d.", f->secret, f->color, f->object,
                                   f->value)
                             : NULL;
        ok = ok && user && answer && (!thinking || why);
        json_array_append_new(m, msg_own("user", user));
        json_array_append_new(m, assistant_own(answer, why));
        free(question);
        if (q == n_ask - 1) expect_number(ex, f->value);
    }
    free(text);
    ex->ask = (int)json_array_size(m) - 1;
    return ok ? DSV4_OK : dsv4_error(DSV4_ENOMEM, "out of memory building a recall example");
}

static dsv4_status recall_table(dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex) {
    table_spec t;
    table_draw(r, o, &t);
    int n_ask = thinking ? 1 : draw_in(r, 2, 5);
    json_t *m = ex->messages = json_array();
    char *table = table_render(&t);
    if (!m || !table) {
        free(table);
        return dsv4_error(DSV4_ENOMEM, "out of memory building a recall example");
    }
    const char *system = draw_system(r);
    if (system) json_array_append_new(m, msg("system", system));
    dsv4_status st = DSV4_OK;
    for (int q = 0; q < n_ask && !st; q++) {
        exchange x = {0};
        uint32_t row = q == 0 ? t.first : draw(r, t.rows);
        st = table_ask(r, o, &t, row, thinking, &x, q == n_ask - 1 ? ex : NULL);
        if (!st && q == 0) {
            char *user = fmt("Here is a table:\n\n%s\n\n%s", table, x.user);
            free(x.user);
            x.user = user;
        }
        if (!st && !x.user) st = DSV4_ENOMEM;
        if (!st) {
            json_array_append_new(m, msg("user", x.user));
            json_array_append_new(m, assistant(x.answer, x.reasoning));
        }
        exchange_free(&x);
    }
    free(table);
    ex->ask = (int)json_array_size(m) - 1;
    return st;
}

dsv4_status gen_recall(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex) {
    return chance(r, 0.5) ? recall_facts(g, r, o, thinking, ex) : recall_table(r, o, thinking, ex);
}
