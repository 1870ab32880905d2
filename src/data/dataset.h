/* dataset.h: examples to token sequences with loss masks, and the on-disk data set.
 *
 * A conversation is rendered with the official chat encoding (dsv4_chat_render) and
 * tokenized. The loss mask marks the tokens a model is trained to produce: everything the
 * assistant writes after the encoder's generation prompt ("<｜Assistant｜></think>" in chat
 * mode, "<｜Assistant｜><think>" in thinking mode), up to and including its
 * <｜end▁of▁sentence｜>: reasoning, "</think>", content, DSML tool calls. System prompts,
 * user turns, tool results and the chat markup the encoder writes are context only. A text
 * example is "<｜begin▁of▁sentence｜>" + text + "<｜end▁of▁sentence｜>", every token a target
 * but the first.
 *
 * The spans come from the encoder itself: the conversation cut before assistant turn k
 * renders to a prefix of the whole that ends with the generation prompt, and cut after it,
 * to a prefix that ends with its EOS. Both ends are special tokens, which the tokenizer cuts
 * out before anything else, so tokenizing span by span gives exactly the ids of the whole.
 *
 * The data set on disk (docs/training-data.md has the full description), per split
 * (train, valid):
 *   SPLIT.tokens   int32 little-endian token ids, all sequences back to back
 *   SPLIT.mask     uint8, one per token: 1 = a training target
 *   SPLIT.index    "DSV4SEQ1", u32 version 1, u32 record size 16, u64 sequences, u64 tokens,
 *                  then per sequence: u64 first token, u32 length, u16 family, u16 flags
 *                  (bit 0: thinking mode)
 * plus tokenizer.json, manifest.json (sizes per family, options) and README.md. */
#ifndef DSV4_DATA_DATASET_H
#define DSV4_DATA_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include "data/corpus.h"
#include "data/tasks.h"
#include "text/strbuf.h"
#include "text/tokenizer.h"

/* ---- one example -------------------------------------------------------------------------- */

typedef struct dsv4_sequence {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} dsv4_sequence;

void dsv4_sequence_free(dsv4_sequence *s);

/* The whole example as text: the rendered conversation, or BOS + text + EOS. */
dsv4_status dsv4_example_text(const dsv4_example *ex, char **text, size_t *len);

/* The conversation up to (not including) message `upto`, with the generation prompt: what a
 * model is given to write message `upto`. `messages` replaces ex->messages when not NULL. */
dsv4_status dsv4_example_prompt(const dsv4_example *ex, const json_t *messages, size_t upto, char **text,
                                size_t *len);

/* Tokens and loss mask of an example (appended to seq). */
dsv4_status dsv4_example_tokenize(const dsv4_tokenizer *tok, const dsv4_example *ex, dsv4_sequence *seq);

/* ---- the data set ---------------------------------------------------------------------------- */

/* The seed of one side of the data ("train", "valid", "eval"): the side's name is mixed in, so
 * the sides never share examples whatever the seeds. */
uint64_t dsv4_side_seed(uint64_t seed, const char *side);

typedef struct dsv4_build_opts {
    const char *out_dir;
    uint64_t seed;
    long count[DSV4_N_FAMILIES]; /* training sequences per family; text: 0 = one pass over the
                                    training passages */
    double valid_share;          /* validation sequences per training sequence (0.05) */
    dsv4_task_opts task;
    void (*progress)(void *user, const char *what, double fraction);
    void *progress_user;
} dsv4_build_opts;

/* The default sizes (scale 1). */
void dsv4_build_defaults(dsv4_build_opts *o, double scale);

typedef struct dsv4_split_report {
    long sequences[DSV4_N_FAMILIES];
    long long tokens[DSV4_N_FAMILIES], targets[DSV4_N_FAMILIES];
    int longest;
} dsv4_split_report;

typedef struct dsv4_build_report {
    dsv4_split_report train, valid;
} dsv4_build_report;

/* Generate, tokenize and write both splits and the manifest into o->out_dir (which must
 * exist). tokenizer_json: the tokenizer file's bytes, copied into the directory. */
dsv4_status dsv4_data_build(const dsv4_build_opts *o, const dsv4_corpus *c, const dsv4_tokenizer *tok,
                            const char *tokenizer_json, size_t tokenizer_len, dsv4_build_report *report);

/* The text a tokenizer for this data is trained on: the training passages, and a fixed
 * sample of rendered conversations of every family (1,000 each, needles kept short), so that
 * the chat markup, the tool instructions and the task phrasing get tokens of their own. */
dsv4_status dsv4_data_tokenizer_text(const dsv4_corpus *c, uint64_t seed, dsv4_strbuf *out);

#endif
