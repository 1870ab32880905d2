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

dsv4_status gen_needle(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex) {
    int target = o->needle_tokens;
    if (target <= 0) { /* log-uniform: as many short texts as long ones per doubling */
        double lo = o->needle_min > 0 ? o->needle_min : 256, hi = o->needle_max > 0 ? o->needle_max : 4096;
        if (hi < lo) hi = lo;
        target = (int)exp(log(lo) + dsv4_rng_uniform(r) * (log(hi) - log(lo)));
    }
    int n_facts = 1 + (int)draw(r, MAX_DISTRACTORS + 1);
    int haystack = DSV4_MAX(target - PROMPT_OVERHEAD - n_facts * FACT_TOKENS, 16);

    /* the passages: drawn until the text is within a few tokens of the length (one that would
     * overshoot is passed over; after 8 of those in a row the text is long enough) */
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

    /* the needle and the distractors */
    fact facts[1 + MAX_DISTRACTORS];
    uint32_t colors[1 + MAX_DISTRACTORS], objects[1 + MAX_DISTRACTORS], values[1 + MAX_DISTRACTORS];
    draw_distinct(r, (uint32_t)dsv4_words_colors.n, (uint32_t)n_facts, colors);
    draw_distinct(r, (uint32_t)dsv4_words_objects.n, (uint32_t)n_facts, objects);
    draw_distinct(r, 250, (uint32_t)n_facts, values); /* distinct hundreds; the rest is random */
    double depth = dsv4_rng_uniform(r);
    for (int i = 0; i < n_facts; i++) {
        facts[i].secret = pick_word(r, &dsv4_words_secrets);
        facts[i].color = dsv4_words_colors.w[colors[i]];
        facts[i].object = dsv4_words_objects.w[objects[i]];
        facts[i].value = 1000 + (int)values[i] * 36 + (int)draw(r, 36);
        facts[i].at = i == 0 ? (size_t)lround(depth * (double)n) : draw(r, (uint32_t)n + 1);
    }
    ex->target_tokens = target;
    ex->depth_percent = (int)lround(depth * 100);

    /* the prompt: passages, with each fact as a paragraph of its own after passage `at` */
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_strbuf_puts(&b, PICK(r, intros));
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
    free(parts);
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
