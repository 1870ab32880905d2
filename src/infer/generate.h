/* generate.h: from logits to what a user sees, one token at a time.
 *
 * A generation owns the output side of one request: the sampler, the streaming detokenizer,
 * the stop-string matcher and the DSML parser that splits the text into reasoning, content
 * and tool calls. It does not run the model: the caller (the CLI loop, or the server's
 * batching scheduler) runs the forward step and hands the logits over, which keeps batching
 * decisions out of here.
 *
 *   dsv4_gen_new(tok, &params, &g);
 *   logits = forward(prompt);
 *   while (dsv4_gen_step(g, logits, vocab, &next) == DSV4_OK && next >= 0) {
 *       while (dsv4_gen_next_event(g, &ev)) show(&ev);
 *       logits = forward(&next, 1);
 *   }
 *   while (dsv4_gen_next_event(g, &ev)) show(&ev);     // the final flush
 *   dsv4_gen_finish_reason(g);
 *
 * Text is released only when it is certain: bytes that could still turn into a stop string
 * or a DSML tag are held back (a few bytes at most). A stop string ends the generation and
 * is not part of the output, as in the OpenAI API. */
#ifndef DSV4_GENERATE_H
#define DSV4_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "infer/sampler.h"
#include "text/dsml.h"
#include "text/tokenizer.h"

typedef enum dsv4_finish {
    DSV4_FINISH_NONE = 0,   /* still generating */
    DSV4_FINISH_STOP,       /* end-of-sentence token or a stop string */
    DSV4_FINISH_LENGTH,     /* max_tokens reached (or the context is full) */
    DSV4_FINISH_TOOL_CALLS, /* ended after emitting tool calls */
    DSV4_FINISH_CANCELLED,  /* the caller stopped it */
} dsv4_finish;

const char *dsv4_finish_name(dsv4_finish f); /* "stop", "length", "tool_calls", ... */

#define DSV4_MAX_STOPS 16
#define DSV4_MAX_TOP_LOGPROBS 20

typedef struct dsv4_gen_params {
    dsv4_sampler_params sampling;
    uint64_t seed;
    int max_tokens;         /* > 0 */
    const char *stop[DSV4_MAX_STOPS];
    int n_stop;
    int top_logprobs;       /* -1: no logprobs; 0..20: the sampled token's plus this many */
    bool in_reasoning;      /* the prompt ended with <think>: the text starts as reasoning */
    int32_t eos_id;         /* <｜end▁of▁sentence｜> */
} dsv4_gen_params;

dsv4_gen_params dsv4_gen_defaults(void);

/* The token chosen by the last step, with its log-probabilities when asked for. */
typedef struct dsv4_gen_token {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_ids[DSV4_MAX_TOP_LOGPROBS];
    float top_logprobs[DSV4_MAX_TOP_LOGPROBS];
} dsv4_gen_token;

typedef struct dsv4_gen dsv4_gen;

dsv4_status dsv4_gen_new(const dsv4_tokenizer *tok, const dsv4_gen_params *p, dsv4_gen **out);
void dsv4_gen_free(dsv4_gen *g);

/* Sample from the logits of the newest position. *next is the token to feed back, or -1 when
 * the generation has finished (the end-of-sentence token is not fed back). */
dsv4_status dsv4_gen_step(dsv4_gen *g, const float *logits, int vocab, int32_t *next);
/* Finish now (client gone, Ctrl-C, context full): flushes the held-back text. */
void dsv4_gen_stop(dsv4_gen *g, dsv4_finish why);

bool dsv4_gen_next_event(dsv4_gen *g, dsv4_dsml_event *ev);
dsv4_finish dsv4_gen_finish_reason(const dsv4_gen *g);
int dsv4_gen_n_tokens(const dsv4_gen *g);     /* tokens sampled, the end-of-sentence included */
const dsv4_gen_token *dsv4_gen_last(const dsv4_gen *g);
int dsv4_gen_n_calls(const dsv4_gen *g);      /* tool calls completed so far */
int dsv4_gen_stop_index(const dsv4_gen *g);   /* which stop string ended the text, or -1 */

#endif
