/* tokenizer.h: DeepSeek's tokenizer, text <-> token ids.
 *
 * dsv4_tokenizer_load reads a Hugging Face `tokenizer.json` of the byte-level BPE kind that
 * DeepSeek ships: a BPE model (vocab + ranked merges), an empty normalizer, a pre-tokenizer of
 * regex Split steps ending in ByteLevel, a ByteLevel decoder, and added tokens (the special
 * and protocol tokens like "<｜User｜>"). Anything else in such a file is refused with a
 * message naming the field, rather than tokenized differently from the reference library.
 *
 * Encoding gives the ids Hugging Face `tokenizers` gives with add_special_tokens=false: no BOS
 * is added; a chat template writes "<｜begin▁of▁sentence｜>" into the text itself. Decoding
 * gives HF's decode(ids, skip_special_tokens=false): bytes that do not form UTF-8 become
 * U+FFFD. The stream decoder gives the same text in pieces as ids arrive, never splitting a
 * character.
 *
 * A loaded tokenizer is immutable: any number of threads may encode and decode with it at
 * once. A stream decoder belongs to one thread at a time. */
#ifndef DSV4_TEXT_TOKENIZER_H
#define DSV4_TEXT_TOKENIZER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

typedef struct dsv4_tokenizer dsv4_tokenizer;

dsv4_status dsv4_tokenizer_load(const char *path, dsv4_tokenizer **out);
/* The same from a parsed file (the caller keeps `root`; nothing of it is kept). */
dsv4_status dsv4_tokenizer_from_json(const json_t *root, dsv4_tokenizer **out);
void dsv4_tokenizer_free(dsv4_tokenizer *t);

/* One more than the highest token id (129280 for DeepSeek-V4). */
int dsv4_tokenizer_vocab_size(const dsv4_tokenizer *t);

/* Token ids of text[0..len) (UTF-8; may contain NUL bytes). *ids is malloc'd (free() it), and
 * non-NULL even when *n_ids is 0. Ill-formed UTF-8 is refused with DSV4_EINVAL and a message
 * naming the byte offset. */
dsv4_status dsv4_tokenize(const dsv4_tokenizer *t, const char *text, size_t len, int32_t **ids,
                          size_t *n_ids);

/* The id of a token given its exact text ("<｜User｜>", or a vocab entry in its byte-level
 * spelling such as "Ġthe"); -1 if there is none. Added tokens win over vocab entries. */
int32_t dsv4_token_id(const dsv4_tokenizer *t, const char *token);
/* The raw text of a token as the file spells it, NULL if id is not a token. */
const char *dsv4_token_text(const dsv4_tokenizer *t, int32_t id);
/* The bytes a token decodes to (not NUL-terminated: *len tells); NULL if id is not a token. */
const uint8_t *dsv4_token_bytes(const dsv4_tokenizer *t, int32_t id, size_t *len);
/* Whether id is an added token marked "special" (what HF's skip_special_tokens drops). */
bool dsv4_token_is_special(const dsv4_tokenizer *t, int32_t id);

/* Text of ids[0..n): malloc'd, NUL-terminated (*len excludes the NUL). An id that is not a
 * token is refused with DSV4_EINVAL naming its position. */
dsv4_status dsv4_detokenize(const dsv4_tokenizer *t, const int32_t *ids, size_t n, char **text,
                            size_t *len);

/* Streaming decode: push ids one at a time; each push yields the text that became complete
 * (possibly empty: the bytes of a character cut across tokens are held back until the rest
 * arrives). finish() yields what is left, with an unfinished character as U+FFFD; after it
 * the stream starts afresh. The concatenation of all yields equals dsv4_detokenize of all the
 * ids. Yielded text lives in the stream and stays valid until its next call. */
typedef struct dsv4_detok_stream dsv4_detok_stream;
dsv4_status dsv4_detok_stream_new(const dsv4_tokenizer *t, dsv4_detok_stream **out);
dsv4_status dsv4_detok_stream_push(dsv4_detok_stream *s, int32_t id, const char **text,
                                   size_t *len);
dsv4_status dsv4_detok_stream_finish(dsv4_detok_stream *s, const char **text, size_t *len);
void dsv4_detok_stream_free(dsv4_detok_stream *s);

#endif
