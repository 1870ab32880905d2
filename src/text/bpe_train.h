/* bpe_train.h: learning a small byte-level BPE tokenizer in DeepSeek-V4's format.
 *
 * The result is a Hugging Face tokenizer.json that tokenizes like DeepSeek-V4's own file in
 * everything but the vocabulary: the same (empty) normalizer, the same three regex splits and
 * ByteLevel step, the same decoder, and the added tokens that the official chat encoding writes
 * (<｜begin▁of▁sentence｜>, <｜User｜>, <think>, ｜DSML｜, the task tokens, ...), with DeepSeek's
 * flags, so dsv4_chat_render's output encodes unchanged. The ids:
 *
 *   0, 1, 2        <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜> (in model.vocab and
 *                  added_tokens, as DeepSeek has them)
 *   3 .. 258       the 256 byte tokens, byte b at id 3 + b
 *   259 ..         one token per learned merge, in merge order
 *   last 12        the chat tokens (added tokens after the vocab, as HF numbers them)
 *
 * Training is the classic algorithm (Sennrich et al.): count the pieces the pre-tokenizer cuts
 * from the corpus (added tokens removed first, exactly as encoding does), start every piece as
 * its bytes, and repeatedly merge the most frequent adjacent pair of symbols, until the vocab
 * is full or no pair occurs min_frequency times. Ties go to the pair of smaller ids, so the
 * same corpus always gives the same file. By default runs of digits are never merged: every
 * digit is its own token, which makes numbers far easier for a small model to copy and add.
 *
 * Use: new, feed the texts (any number of calls), run, free. */
#ifndef DSV4_TEXT_BPE_TRAIN_H
#define DSV4_TEXT_BPE_TRAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "dsv4.h"

typedef struct dsv4_bpe_train_opts {
    int vocab_size;    /* total ids, byte and chat tokens included (>= 271) */
    int min_frequency; /* a pair seen fewer times is never merged; 0 means 2 */
    bool merge_digits; /* allow merges inside runs of digits */
} dsv4_bpe_train_opts;

/* What a run did. */
typedef struct dsv4_bpe_train_stats {
    size_t pieces, distinct_pieces; /* pre-tokenized pieces fed, and how many differ */
    size_t bytes;                   /* bytes in those pieces */
    int merges;                     /* merges learned */
    int vocab_size;                 /* ids in the file (below the request if pairs ran out) */
} dsv4_bpe_train_stats;

/* The number of chat tokens added after the learned vocabulary, and the smallest vocab. */
#define DSV4_BPE_N_CHAT_TOKENS 12
#define DSV4_BPE_MIN_VOCAB (3 + 256 + DSV4_BPE_N_CHAT_TOKENS)

typedef struct dsv4_bpe_trainer dsv4_bpe_trainer;

dsv4_status dsv4_bpe_trainer_new(dsv4_bpe_trainer **out);
void dsv4_bpe_trainer_free(dsv4_bpe_trainer *t);

/* Count the pieces of text[0..len) (UTF-8; special tokens in it are skipped as encoding skips
 * them). `weight` multiplies the counts (1 for ordinary text). */
dsv4_status dsv4_bpe_trainer_feed(dsv4_bpe_trainer *t, const char *text, size_t len, int weight);

/* Learn the merges and build the tokenizer.json document (*out: a new reference). */
dsv4_status dsv4_bpe_trainer_run(dsv4_bpe_trainer *t, const dsv4_bpe_train_opts *opts, json_t **out,
                                 dsv4_bpe_train_stats *stats);

/* A tokenizer document as text, formatted as the HF library saves it (2-space indent, UTF-8,
 * keys in order); malloc'd, NULL on allocation failure. */
char *dsv4_bpe_tokenizer_dumps(const json_t *doc, size_t *len);

/* The empty tokenizer of this format (bytes and chat tokens, no merges): the pre-tokenizer
 * the trainer cuts with, and the skeleton the result is built on. */
json_t *dsv4_bpe_skeleton(void);

#endif
