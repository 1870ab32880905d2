/* task_internal.h: helpers shared by the task generators (task_*.c). */
#ifndef DSV4_DATA_TASK_INTERNAL_H
#define DSV4_DATA_TASK_INTERNAL_H

#include <stdarg.h>

#include "data/tasks.h"
#include "data/words.h"
#include "infer/sampler.h"
#include "text/strbuf.h"

/* A uniform integer in [0, n). */
static inline uint32_t draw(dsv4_rng *r, uint32_t n) { return (uint32_t)(dsv4_rng_uniform(r) * n); }
/* A uniform integer in [lo, hi]. */
static inline int draw_in(dsv4_rng *r, int lo, int hi) { return lo + (int)draw(r, (uint32_t)(hi - lo + 1)); }
static inline bool chance(dsv4_rng *r, double p) { return dsv4_rng_uniform(r) < p; }
static inline const char *pick(dsv4_rng *r, const char *const *list, size_t n) { return list[draw(r, (uint32_t)n)]; }
static inline const char *pick_word(dsv4_rng *r, const dsv4_wordlist *l) { return l->w[draw(r, (uint32_t)l->n)]; }
#define PICK(r, arr) pick((r), (arr), sizeof(arr) / sizeof((arr)[0]))

/* k distinct indices of [0, n) in random order (k <= n <= 256). */
void draw_distinct(dsv4_rng *r, uint32_t n, uint32_t k, uint32_t *out);

/* printf into a new string (NULL when out of memory). */
char *fmt(const char *f, ...) DSV4_PRINTF(1, 2);
/* Fill the template t: "{0}" .. "{9}" stand for args[0..9]. */
char *fill(const char *t, const char *const *args);

/* Messages. Each returns a new object; content NULL makes "content": "". */
json_t *msg(const char *role, const char *content);
/* Same, taking ownership of a malloc'd content. */
json_t *msg_own(const char *role, char *content);
json_t *assistant(const char *content, const char *reasoning);
json_t *assistant_own(char *content, char *reasoning);

/* The optional system prompt of a conversation (NULL: none). */
const char *draw_system(dsv4_rng *r);

/* Expectations. */
void expect_number(dsv4_example *ex, long long v);
void expect_word(dsv4_example *ex, const char *w);
void expect_not_word(dsv4_example *ex, const char *w);

/* One question-and-answer exchange of a family, for the builders that combine them:
 * user text, assistant text, reasoning (thinking mode; may be NULL), expectation. */
typedef struct exchange {
    char *user, *answer, *reasoning;
} exchange;
void exchange_free(exchange *x);

/* A table of the table family: schema (people, products or staff), rows, and their cells. */
enum { PEOPLE, PRODUCTS, STAFF, N_SCHEMAS };
typedef struct table_spec {
    int s;
    uint32_t rows, first; /* first: the row the first question asks about */
    uint32_t key[DSV4_TABLE_ROWS_CAP], other[DSV4_TABLE_ROWS_CAP];
    int num[DSV4_TABLE_ROWS_CAP], stock[DSV4_TABLE_ROWS_CAP];
    bool key_right; /* the key column repeated on the right (dsv4_task_opts.table_key_right) */
} table_spec;
void table_draw(dsv4_rng *r, const dsv4_task_opts *o, table_spec *t);
char *table_render(const table_spec *t); /* Markdown */
/* A question about row `target`: x->user is the question alone. */
dsv4_status table_ask(dsv4_rng *r, const dsv4_task_opts *o, const table_spec *t, uint32_t target, bool thinking, exchange *x,
                      dsv4_example *ex);

dsv4_status arith_exchange(dsv4_rng *r, bool thinking, exchange *x, dsv4_example *ex);
dsv4_status table_exchange(dsv4_rng *r, const dsv4_task_opts *o, bool thinking, exchange *x, dsv4_example *ex);
dsv4_status chat_exchange(dsv4_taskgen *g, dsv4_rng *r, exchange *x);

/* The families (task_qa.c, task_needle.c, task_tools.c). */
dsv4_status gen_qa(dsv4_taskgen *g, dsv4_family f, dsv4_rng *r, const dsv4_task_opts *o, bool thinking,
                   dsv4_example *ex);
dsv4_status gen_needle(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex);
dsv4_status gen_recall(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex);
dsv4_status gen_tools(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex);

#endif
