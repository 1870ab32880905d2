/* sampler.h: choosing the next token from a vector of logits.
 *
 * A sampler carries what must persist across the tokens of one generation: its parameters,
 * its random number generator (seeded, so a run can be repeated exactly) and the counts of the
 * tokens generated so far (for the penalties). The steps, in this order, as vLLM applies them:
 *
 *   logit bias   logit += bias[id] for the listed tokens (OpenAI's logit_bias); a bias of -inf
 *                bans a token (how ignore_eos keeps the end-of-sentence token from being drawn)
 *   penalties    for each token already generated c times:
 *                  logit -= presence_penalty * (c > 0) + frequency_penalty * c   (OpenAI API)
 *                  logit  = logit > 0 ? logit / r : logit * r   (repetition_penalty r, CTRL)
 *   greedy       temperature 0: the highest logit (the lowest id among equals); nothing random
 *   temperature  logits / T
 *   top-k        keep the k highest (ties at the boundary are broken by lower id)
 *   top-p        keep the smallest set of highest-probability tokens whose mass reaches p
 *   min-p        keep tokens whose probability is at least min_p times the highest
 *   draw         one token from what is left, with probability proportional to exp(logit)
 *
 * NaN logits count as -inf; a token with logit -inf is never chosen. Stop strings belong to
 * the text layer, not here. Defaults are the DeepSeek API's: temperature 1, top_p 1, and no
 * other filtering or penalty. */
#ifndef DSV4_INFER_SAMPLER_H
#define DSV4_INFER_SAMPLER_H

#include <stdint.h>

#include "dsv4.h"

/* ---- the random number generator: xoshiro256** (Blackman and Vigna), seeded through
 * splitmix64 as its authors recommend ------------------------------------------------------ */
typedef struct dsv4_rng {
    uint64_t s[4];
} dsv4_rng;

void dsv4_rng_seed(dsv4_rng *r, uint64_t seed);
uint64_t dsv4_rng_next(dsv4_rng *r);
double dsv4_rng_uniform(dsv4_rng *r); /* in [0, 1), 53 random bits */

/* ---- sampling ------------------------------------------------------------------------------ */
typedef struct dsv4_logit_bias {
    int32_t id;
    float value; /* finite, or -inf: never choose this token */
} dsv4_logit_bias;

#define DSV4_MAX_LOGIT_BIAS 1024

typedef struct dsv4_sampler_params {
    float temperature;        /* 0: greedy. Default 1 */
    float top_p;              /* (0, 1]; 1: off. Default 1 */
    int top_k;                /* 0: off */
    float min_p;              /* [0, 1]; 0: off */
    float presence_penalty;   /* [-2, 2] as in the OpenAI API; 0: off */
    float frequency_penalty;  /* [-2, 2]; 0: off */
    float repetition_penalty; /* > 0; 1: off */
    const dsv4_logit_bias *bias; /* [n_bias], copied by dsv4_sampler_new; ids outside the vocabulary
                                  * are ignored (the caller checks them against its model) */
    int n_bias;                  /* 0..DSV4_MAX_LOGIT_BIAS */
} dsv4_sampler_params;

dsv4_sampler_params dsv4_sampler_defaults(void);

typedef struct dsv4_sampler dsv4_sampler;

/* Refuses parameters outside the ranges above with DSV4_EINVAL naming the parameter. */
dsv4_status dsv4_sampler_new(const dsv4_sampler_params *p, uint64_t seed, dsv4_sampler **out);
void dsv4_sampler_free(dsv4_sampler *s);
/* Forget the generated tokens and restart the generator from `seed`. */
void dsv4_sampler_reset(dsv4_sampler *s, uint64_t seed);

/* Choose a token from logits[0..vocab) and count it as generated. Returns -1 only if every
 * logit is -inf or NaN (or on allocation failure; see dsv4_errmsg). */
int32_t dsv4_sample(dsv4_sampler *s, const float *logits, int vocab);
/* Count a token as generated without sampling it (a forced or resumed token). */
void dsv4_sampler_accept(dsv4_sampler *s, int32_t id);

/* ---- log-probabilities of the raw logits (no penalty, no temperature) ------------------------ */
/* The n (<= 20) most likely tokens, most likely first, ties to the lower id; writes ids and
 * their log-softmax values and returns how many were written (fewer if vocab < n). */
int dsv4_logprobs_topn(const float *logits, int vocab, int n, int32_t *ids, float *logprobs);
/* log-softmax of one token. */
float dsv4_logprob(const float *logits, int vocab, int32_t id);

#endif
