/* generate.c: sampling, detokenising, stop strings and DSML parsing for one generation.
 *
 * The text path of every step: token -> bytes (streaming detokenizer, whole characters only)
 * -> stop-string matcher (holds back any tail that could begin a stop string) -> DSML parser
 * (holds back any tail that could begin a tag) -> events. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "infer/generate.h"

struct dsv4_gen {
    dsv4_gen_params p;
    dsv4_sampler *sampler;
    dsv4_detok_stream *detok;
    dsv4_dsml *dsml;
    char *hold; /* text that might still become a stop string */
    size_t hold_len, hold_cap;
    int n_tokens, n_calls;
    int stop_index; /* the stop string that ended the text, or -1 */
    dsv4_finish finish;
    dsv4_gen_token last;
};

const char *dsv4_finish_name(dsv4_finish f) {
    switch (f) {
    case DSV4_FINISH_NONE: return "none";
    case DSV4_FINISH_STOP: return "stop";
    case DSV4_FINISH_LENGTH: return "length";
    case DSV4_FINISH_TOOL_CALLS: return "tool_calls";
    case DSV4_FINISH_CANCELLED: return "cancelled";
    }
    return "?";
}

dsv4_gen_params dsv4_gen_defaults(void) {
    dsv4_gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling = dsv4_sampler_defaults();
    p.max_tokens = 4096;
    p.top_logprobs = -1;
    p.eos_id = 1;
    return p;
}

dsv4_status dsv4_gen_new(const dsv4_tokenizer *tok, const dsv4_gen_params *p, dsv4_gen **out) {
    *out = NULL;
    if (p->max_tokens <= 0) return dsv4_error(DSV4_EINVAL, "max_tokens must be positive (got %d)", p->max_tokens);
    if (p->n_stop < 0 || p->n_stop > DSV4_MAX_STOPS)
        return dsv4_error(DSV4_EINVAL, "at most %d stop strings (got %d)", DSV4_MAX_STOPS, p->n_stop);
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return dsv4_error(DSV4_EINVAL, "stop string %d is empty", i);
    if (p->top_logprobs > DSV4_MAX_TOP_LOGPROBS)
        return dsv4_error(DSV4_EINVAL, "top_logprobs is at most %d (got %d)", DSV4_MAX_TOP_LOGPROBS, p->top_logprobs);
    dsv4_gen *g = dsv4_calloc(1, sizeof *g, "generation");
    if (!g) return DSV4_ENOMEM;
    g->p = *p;
    g->stop_index = -1;
    dsv4_status rc = dsv4_sampler_new(&p->sampling, p->seed, &g->sampler);
    if (!rc) rc = dsv4_detok_stream_new(tok, &g->detok);
    if (!rc) rc = dsv4_dsml_new(p->in_reasoning, &g->dsml);
    if (rc) {
        dsv4_gen_free(g);
        return rc;
    }
    *out = g;
    return DSV4_OK;
}

void dsv4_gen_free(dsv4_gen *g) {
    if (!g) return;
    dsv4_sampler_free(g->sampler);
    dsv4_detok_stream_free(g->detok);
    dsv4_dsml_free(g->dsml);
    free(g->hold);
    free(g);
}

static dsv4_status release(dsv4_gen *g, size_t n) {
    dsv4_status rc = n ? dsv4_dsml_feed(g->dsml, g->hold, n) : DSV4_OK;
    if (g->hold_len > n) memmove(g->hold, g->hold + n, g->hold_len - n);
    g->hold_len -= n;
    return rc;
}

/* Append text; release what can no longer be part of a stop string. Returns true if a stop
 * string was found (the text before it has been released, the rest dropped). */
static bool push_text(dsv4_gen *g, const char *s, size_t n, dsv4_status *rc) {
    if (g->hold_len + n > g->hold_cap) {
        size_t cap = DSV4_MAX(g->hold_cap * 2, g->hold_len + n + 64);
        char *h = realloc(g->hold, cap);
        if (!h) {
            *rc = dsv4_error(DSV4_ENOMEM, "out of memory holding generated text");
            return false;
        }
        g->hold = h;
        g->hold_cap = cap;
    }
    memcpy(g->hold + g->hold_len, s, n);
    g->hold_len += n;
    /* the earliest complete stop string */
    size_t best = SIZE_MAX;
    for (int i = 0; i < g->p.n_stop; i++) {
        const char *hit = memmem(g->hold, g->hold_len, g->p.stop[i], strlen(g->p.stop[i]));
        if (hit && (size_t)(hit - g->hold) < best) {
            best = (size_t)(hit - g->hold);
            g->stop_index = i;
        }
    }
    if (best != SIZE_MAX) {
        *rc = release(g, best);
        g->hold_len = 0;
        return true;
    }
    /* keep the longest tail that is a proper prefix of some stop string */
    size_t keep = 0;
    for (int i = 0; i < g->p.n_stop; i++) {
        size_t L = strlen(g->p.stop[i]);
        for (size_t k = DSV4_MIN(L - 1, g->hold_len); k > keep; k--)
            if (!memcmp(g->hold + g->hold_len - k, g->p.stop[i], k)) {
                keep = k;
                break;
            }
    }
    *rc = release(g, g->hold_len - keep);
    return false;
}

static dsv4_status finish(dsv4_gen *g, dsv4_finish why, bool flush_held) {
    if (g->finish != DSV4_FINISH_NONE) return DSV4_OK;
    const char *t;
    size_t n;
    dsv4_status rc = dsv4_detok_stream_finish(g->detok, &t, &n);
    if (!rc && n && flush_held) {
        bool stopped = push_text(g, t, n, &rc);
        if (stopped) {
            why = DSV4_FINISH_STOP;
            flush_held = false;
        }
    }
    if (!rc && flush_held) rc = release(g, g->hold_len);
    g->hold_len = 0;
    if (!rc) rc = dsv4_dsml_finish(g->dsml);
    g->finish = why;
    return rc;
}

void dsv4_gen_stop(dsv4_gen *g, dsv4_finish why) { finish(g, why, true); }

dsv4_status dsv4_gen_step(dsv4_gen *g, const float *logits, int vocab, int32_t *next) {
    *next = -1;
    if (g->finish != DSV4_FINISH_NONE) return DSV4_OK;
    int32_t id = dsv4_sample(g->sampler, logits, vocab);
    if (id < 0) return dsv4_error(DSV4_EINVAL, "no token can be sampled: every logit is -inf or NaN");
    g->n_tokens++;
    g->last.id = id;
    g->last.n_top = 0;
    if (g->p.top_logprobs >= 0) {
        g->last.logprob = dsv4_logprob(logits, vocab, id);
        if (g->p.top_logprobs > 0)
            g->last.n_top = dsv4_logprobs_topn(logits, vocab, g->p.top_logprobs, g->last.top_ids, g->last.top_logprobs);
    }
    dsv4_status rc = DSV4_OK;
    if (id == g->p.eos_id) {
        rc = finish(g, DSV4_FINISH_STOP, true);
    } else {
        const char *t;
        size_t n;
        rc = dsv4_detok_stream_push(g->detok, id, &t, &n);
        if (!rc && n && push_text(g, t, n, &rc)) {
            if (!rc) rc = finish(g, DSV4_FINISH_STOP, false);
        } else if (!rc && g->n_tokens >= g->p.max_tokens) {
            rc = finish(g, DSV4_FINISH_LENGTH, true);
        } else if (!rc) {
            *next = id;
        }
    }
    return rc;
}

bool dsv4_gen_next_event(dsv4_gen *g, dsv4_dsml_event *ev) {
    if (!dsv4_dsml_next(g->dsml, ev)) return false;
    if (ev->kind == DSV4_DSML_CALL_END) {
        g->n_calls++;
        /* a turn that ends after tool calls reports them as its reason */
        if (g->finish == DSV4_FINISH_STOP) g->finish = DSV4_FINISH_TOOL_CALLS;
    }
    return true;
}

dsv4_finish dsv4_gen_finish_reason(const dsv4_gen *g) {
    if (g->finish == DSV4_FINISH_STOP && g->n_calls > 0) return DSV4_FINISH_TOOL_CALLS;
    return g->finish;
}

int dsv4_gen_n_tokens(const dsv4_gen *g) { return g->n_tokens; }
const dsv4_gen_token *dsv4_gen_last(const dsv4_gen *g) { return &g->last; }
int dsv4_gen_n_calls(const dsv4_gen *g) { return g->n_calls; }
int dsv4_gen_stop_index(const dsv4_gen *g) { return g->stop_index; }
