/* tasks.h: the generated task families of the training and evaluation data.
 *
 * Every example is an OpenAI-style conversation (the messages dsv4_chat_render takes), with
 * the assistant's answers written out, plus what a correct answer must contain, so that the
 * same generator feeds the data builder (which trains on the answers) and the evaluation
 * (which cuts the conversation before the answer and checks what the model writes):
 *
 *   arith   "What is 37 + 58?" -> "37 + 58 = 95."   (+, - on 0..99, x on 0..12)
 *   table   a small Markdown table, then a question about one cell -> a sentence with it
 *   needle  a long English text (fortunes) with a fact hidden at a random depth,
 *           "The pass code of the blue door is 4821.", and a question about it at the end
 *   tools   a system prompt with tools, a request, the assistant's DSML call, the tool's
 *           result, and an answer that uses the result
 *   text    plain English text from the corpus (no chat format)
 *   chat    greetings, "who are you", thanks, a joke
 *   recall  (training only) a text with several facts, or a table, then several questions
 *           about it, each answered in a turn of its own
 *
 * Examples are addressed by (seed, family, index): each draws from its own random generator
 * seeded from the three, so example 17 is the same whether 100 or 100,000 are made, and the
 * training, validation and evaluation sides differ only by seed. The English text comes from
 * the corpus side that matches (training passages, or held-out passages). Text examples are
 * the exception: they walk the passages in a seeded order, so the k-th one made is the k-th
 * stretch of text, whatever its index.
 *
 * In thinking mode an example carries a short reasoning ("Ones: 7 + 8 = 15, write 5, carry
 * 1. ...") before its answer; its conversation is then a single exchange (so that no earlier
 * reasoning would be dropped by the encoder), except tool calls, whose reasoning the encoder
 * keeps. */
#ifndef DSV4_DATA_TASKS_H
#define DSV4_DATA_TASKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "data/corpus.h"
#include "dsv4.h"
#include "text/tokenizer.h"

typedef enum dsv4_family {
    DSV4_FAMILY_ARITH = 0,
    DSV4_FAMILY_TABLE,
    DSV4_FAMILY_NEEDLE,
    DSV4_FAMILY_TOOLS,
    DSV4_FAMILY_TEXT,
    DSV4_FAMILY_CHAT,
    DSV4_FAMILY_RECALL,
    DSV4_N_FAMILIES
} dsv4_family;

const char *dsv4_family_name(dsv4_family f); /* "arith", "table", ... */
/* The family of a name, or -1. */
int dsv4_family_of(const char *name);

/* What the answer to check must contain. */
typedef enum dsv4_expect_kind {
    DSV4_EXPECT_NONE = 0, /* nothing checkable (text, chat) */
    DSV4_EXPECT_NUMBER,   /* the last integer in the answer is `number` */
    DSV4_EXPECT_WORDS,    /* every entry of `words` occurs in the answer as a whole word */
} dsv4_expect_kind;

typedef struct dsv4_expect {
    dsv4_expect_kind kind;
    long long number;
    json_t *words;     /* array of strings */
    json_t *not_words; /* words that must not occur (tables: the other rows' answers), or NULL */
    /* tools: the call the assistant must make ({"name": ..., "arguments": {...}}), or NULL
     * when the request needs no tool; the tool's reply is the message after the call. */
    json_t *call;
} dsv4_expect;

typedef struct dsv4_example {
    dsv4_family family;
    bool thinking;      /* render in thinking mode */
    json_t *messages;   /* the conversation with its answers; NULL for text */
    char *text;         /* the text of a text example (malloc'd) */
    int ask;            /* index in messages of the assistant turn an evaluation generates first */
    dsv4_expect expect; /* of the last assistant turn (after the tool's result, for tools) */
    int target_tokens;  /* needle: the prompt length aimed at */
    int depth_percent;  /* needle: where the fact sits in the text, 0..100 */
    bool reverse;       /* table: the question goes from a cell to the row's key */
} dsv4_example;

void dsv4_example_free(dsv4_example *ex);

/* A table's rows by default, and at most (the generator's cell arrays). */
#define DSV4_TABLE_ROWS_MIN 3
#define DSV4_TABLE_ROWS_MAX 7
#define DSV4_TABLE_ROWS_CAP 8
/* The layout `dsv4 data build` and `dsv4 eval` draw tables in unless told (table_key_right). */
#define DSV4_TABLE_KEY_RIGHT_DEFAULT true

/* How a generator draws. Zero values give the data builder's defaults. */
typedef struct dsv4_task_opts {
    int thinking;       /* 1: thinking mode; -1: chat mode; 0: thinking with chance think_share */
    double think_share;
    double multi_turn;  /* share of arith, table and chat examples that follow 1 or 2 earlier
                           exchanges; 0: 0.15; negative: none */
    bool single_call;   /* tools: always exactly one call (the shape the evaluation checks) */
    int needle_tokens;  /* needle prompt length; 0: drawn log-uniformly in [needle_min, needle_max] */
    int needle_min, needle_max; /* 0: 256 and 4096 */
    int text_tokens;    /* about how long a text example is; 0: 512 */
    double table_reverse; /* share of table questions that go from a cell to the row's key ("Who
                             lives in Oslo?"); 0: one in three, like each other kind; negative: none */
    int table_rows_min, table_rows_max; /* rows of a table; 0: DSV4_TABLE_ROWS_MIN and _MAX */
    bool table_restate; /* cell-to-key answers name the cell first: "The person in room 293 is Diana." */
    bool table_key_right; /* tables repeat the key column on the right, right after the column a
                             cell-to-key question asks about ("| Name | Age | City | Name |"), as
                             wide printed tables do: that look-up then reads left to right. Zero
                             is the plain layout; the builder's default is
                             DSV4_TABLE_KEY_RIGHT_DEFAULT (set by dsv4_build_defaults) */
} dsv4_task_opts;

/* What the generators share: the corpus side they take English from, and a tokenizer to
 * measure it (needle lengths are in tokens). */
typedef struct dsv4_taskgen {
    const dsv4_corpus *corpus;
    size_t *pool;         /* indices of the passages of this side */
    size_t n_pool;
    int *pool_tokens;     /* tokens of each pool passage */
    size_t *short_pool;   /* pool passages of at most 240 bytes (jokes for the chat family) */
    size_t n_short;
    uint64_t seed;
    size_t text_cursor;   /* text examples walk the pool in a seeded order */
    size_t *text_order;
} dsv4_taskgen;

/* held_out: use the held-out passages (validation, evaluation) instead of the training ones. */
dsv4_status dsv4_taskgen_init(dsv4_taskgen *g, const dsv4_corpus *c, const dsv4_tokenizer *tok, bool held_out,
                              uint64_t seed);
void dsv4_taskgen_free(dsv4_taskgen *g);

/* Example number `index` of a family. */
dsv4_status dsv4_task_generate(dsv4_taskgen *g, dsv4_family f, uint64_t index, const dsv4_task_opts *o,
                               dsv4_example *ex);

#endif
