/* scheduler.h: continuous batching of generation jobs on one engine thread.
 *
 * The model runs on one thread. Jobs wait in a bounded queue; up to `parallel` of them hold a
 * slot (a session of `ctx` tokens) at a time. Every step is one dsv4_forward_batch over all
 * active slots: each decoding slot feeds its last token, and prompts being read feed their
 * next chunk, within a token budget per step, so a long prompt is read in pieces between the
 * decode steps of the others instead of stalling them. Jobs join between steps and leave as
 * soon as they finish or are cancelled.
 *
 * With a prefix cache, a new job first restores the longest cached prefix of its prompt, and
 * the scheduler saves snapshots where later requests are likely to pick up: after the last
 * <｜Assistant｜> of the prompt (where a conversation's next prompt diverges from this one in
 * thinking mode), at the end of the prompt (with its logits), every `snapshot_every` prompt
 * tokens, and at the end of the output. */
#ifndef DSV4_SERVE_SCHEDULER_H
#define DSV4_SERVE_SCHEDULER_H

#include "cache/prefix_cache.h"
#include "serve/job.h"
#include "text/tokenizer.h"

typedef struct dsv4_sched_opts {
    int parallel;             /* slots: sequences decoded together */
    int ctx;                  /* tokens per slot (prompt + output) */
    int queue;                /* jobs that may wait when every slot is busy */
    int step_tokens;          /* tokens fed per forward step, all slots together */
    int snapshot_every;       /* prompt tokens between cache snapshots (0: only the fixed points) */
    dsv4_prefix_cache *cache; /* NULL: no context caching */
} dsv4_sched_opts;

typedef struct dsv4_sched_stats {
    int active, waiting, parallel, queue;
    long long steps, prefill_tokens, decode_tokens, jobs_done, jobs_cancelled, jobs_failed;
    long long batch_rows; /* sum over steps of the sequences in the step */
    double forward_s;     /* time spent in forward steps */
    double sample_s;      /* time spent choosing tokens and passing events on */
} dsv4_sched_stats;

typedef struct dsv4_sched dsv4_sched;

dsv4_status dsv4_sched_new(dsv4_model *m, const dsv4_tokenizer *tok, const dsv4_sched_opts *o, dsv4_sched **out);
/* Stops the engine thread (jobs still running finish as cancelled) and frees everything. */
void dsv4_sched_free(dsv4_sched *s);

/* Queue a job (the scheduler takes its own reference). False when parallel + queue jobs are
 * already running or waiting. */
bool dsv4_sched_submit(dsv4_sched *s, dsv4_job *j);

void dsv4_sched_stats_get(dsv4_sched *s, dsv4_sched_stats *out);

#endif
