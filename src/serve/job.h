/* job.h: one generation request as the engine sees it, and the events it sends back.
 *
 * An HTTP thread builds a job (the prompt tokens and the generation parameters), submits it
 * to the scheduler and then drains its events, which the engine thread appends as it
 * generates: text deltas of the reasoning and the answer, tool calls, tokens with their
 * log-probabilities; then it marks the job done. The two sides share the job through a
 * reference count; the HTTP side cancels it when its client goes away, and the engine drops
 * it at its next step.
 *
 * Events are handed over in batches (dsv4_job_take), so a thread wakes once for everything
 * that happened since it last looked, not once per token. */
#ifndef DSV4_SERVE_JOB_H
#define DSV4_SERVE_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer/generate.h"

typedef enum dsv4_ev_kind {
    DSV4_EV_REASONING,  /* text: the next piece of the reasoning */
    DSV4_EV_CONTENT,    /* text: the next piece of the answer */
    DSV4_EV_CALL_START, /* call, name: a tool call begins */
    DSV4_EV_CALL_ARGS,  /* call, text: the next piece of its arguments (JSON text) */
    DSV4_EV_CALL_END,   /* call, name, text: its whole arguments */
    DSV4_EV_TOKEN,      /* token: a sampled token with its log-probabilities */
} dsv4_ev_kind;

typedef struct dsv4_event {
    dsv4_ev_kind kind;
    int call;   /* CALL_*: index of the call, from 0 */
    char *text; /* owned, NUL-terminated */
    size_t len;
    char *name; /* owned (CALL_START, CALL_END) */
    dsv4_gen_token token;
} dsv4_event;

void dsv4_event_clear(dsv4_event *ev);

typedef struct dsv4_job {
    /* ---- the request, fixed before submission ---- */
    int32_t *prompt;
    int n_prompt;
    int user_end;        /* prompt position after the last <｜Assistant｜> (a cache point), or 0 */
    dsv4_gen_params gen; /* gen.stop[] point into stop_text */
    char *stop_text[DSV4_MAX_STOPS];
    int32_t *forced; /* tokens forced at the start of the answer (tool_choice), or NULL */
    int n_forced;
    int32_t *script; /* test hook: the whole reply, forced token by token, or NULL */
    int n_script;
    dsv4_logit_bias *bias; /* gen.sampling.bias points here (logit_bias, ignore_eos), or NULL */
    bool ban_dsml;    /* no tool calls: the DSML token is never sampled */
    bool want_tokens; /* send TOKEN events (logprobs) */
    double t_submit;

    /* ---- shared between the engine and the HTTP thread ---- */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dsv4_event *ev;
    size_t ev_n, ev_cap;
    bool done;
    atomic_bool cancelled;
    atomic_int refs;

    /* ---- results, final once done is set ---- */
    dsv4_finish finish;
    int stop_index;                 /* the stop string that ended the text, or -1 */
    int n_cached;                   /* prompt tokens restored from the prefix cache */
    int n_generated;                /* tokens sampled (the end-of-sentence token included) */
    int n_reasoning;                /* of which reasoning (up to and including </think>) */
    char *error;                    /* the engine failed this job: why (owned), else NULL */
    double t_start, t_first, t_end; /* admitted, first token sampled, finished */
} dsv4_job;

/* A job with one reference (the caller's). */
dsv4_job *dsv4_job_new(void);
void dsv4_job_ref(dsv4_job *j);
void dsv4_job_unref(dsv4_job *j);

/* Set the stop strings (copied); false if there are too many. */
bool dsv4_job_set_stops(dsv4_job *j, const char *const *stops, int n);

/* Engine side: append an event (the job takes its strings), or finish. */
void dsv4_job_push(dsv4_job *j, dsv4_event *ev);
void dsv4_job_finish(dsv4_job *j, dsv4_finish finish, const char *error);

/* HTTP side: wait up to timeout_s for events, then move all pending ones to *evs (malloc'd
 * array, the caller clears each and frees it). Returns the number taken; *done tells if the
 * job had finished when they were taken (so no more will come). */
size_t dsv4_job_take(dsv4_job *j, double timeout_s, dsv4_event **evs, bool *done);
void dsv4_job_cancel(dsv4_job *j);

#endif
