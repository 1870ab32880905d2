/* scheduler.c: the engine thread; see scheduler.h.
 *
 * A slot moves through four states:
 *
 *   FREE --admit--> PREFILL --last chunk--> SAMPLE --token--> DECODE --step--> SAMPLE ...
 *                   (or straight to SAMPLE when the prefix cache held the whole prompt)
 *
 * One iteration of the loop: take new jobs into free slots (restoring cached prefixes), drop
 * cancelled ones, build one batch (every DECODE slot's token, then prompt chunks in order of
 * arrival within the token budget), run it, and sample every slot whose logits are ready.
 * Sampling is where the output rules apply: forced tokens (a scripted reply, or the DSML
 * opening of a required tool call) mask every other logit; a request without tools never
 * samples the DSML token; a slot whose context is full stops with finish reason "length".
 *
 * Only the queue and the counters are shared with other threads (under the mutex); the slots
 * belong to the engine thread alone. */
#include "serve/scheduler.h"

#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "kernels/linear.h"

typedef enum slot_state { SLOT_FREE, SLOT_PREFILL, SLOT_SAMPLE, SLOT_DECODE } slot_state;

typedef struct slot {
    slot_state state;
    dsv4_session *s;
    dsv4_job *job;
    dsv4_gen *gen;
    float *logits;
    int fed;       /* prompt tokens in the session */
    int32_t next;  /* DECODE: the token to feed */
    int32_t *hist; /* every token fed: the prompt, then the output (ctx entries) */
    int n_hist;
    const int32_t *force; /* tokens being forced, and how far */
    int n_force, force_i;
    bool reasoning; /* the output is still in its reasoning part */
    uint64_t order; /* admission order: older prompts are read first */
} slot;

struct dsv4_sched {
    dsv4_model *m;
    const dsv4_tokenizer *tok;
    dsv4_sched_opts o;
    int vocab, tok_vocab;
    int32_t think_end, dsml;
    slot *slots;
    dsv4_batch_item *items;
    int *item_slot;
    uint64_t admitted;

    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    dsv4_job **queue; /* FIFO, q_n waiting */
    int q_n;
    dsv4_sched_stats st;
};

/* ---- events -------------------------------------------------------------------------------- */

static char *dup_text(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Move the generation's new events to the job. */
static void drain(slot *sl) {
    dsv4_dsml_event e;
    while (dsv4_gen_next_event(sl->gen, &e)) {
        dsv4_event ev = {0};
        switch (e.kind) {
        case DSV4_DSML_REASONING: ev.kind = DSV4_EV_REASONING; break;
        case DSV4_DSML_CONTENT: ev.kind = DSV4_EV_CONTENT; break;
        case DSV4_DSML_CALL_START: ev.kind = DSV4_EV_CALL_START; break;
        case DSV4_DSML_CALL_ARGS: ev.kind = DSV4_EV_CALL_ARGS; break;
        case DSV4_DSML_CALL_END: ev.kind = DSV4_EV_CALL_END; break;
        case DSV4_DSML_ERROR: continue; /* repaired by the parser; nothing to tell the client */
        }
        ev.call = e.call;
        ev.text = dup_text(e.text ? e.text : "", e.text ? e.len : 0);
        ev.len = e.text ? e.len : 0;
        if (e.name) ev.name = strdup(e.name);
        dsv4_job_push(sl->job, &ev);
    }
}

/* ---- slots --------------------------------------------------------------------------------- */

/* Give the slot up: save the end-of-output state for the next turn, finish the job. */
static void release(dsv4_sched *S, slot *sl, dsv4_finish why, const char *error) {
    dsv4_job *j = sl->job;
    if (sl->gen) {
        if (dsv4_gen_finish_reason(sl->gen) == DSV4_FINISH_NONE) dsv4_gen_stop(sl->gen, why);
        drain(sl);
        if (!error && why != DSV4_FINISH_CANCELLED) why = dsv4_gen_finish_reason(sl->gen);
        j->stop_index = dsv4_gen_stop_index(sl->gen);
    }
    if (S->o.cache && !error) {
        if (sl->state == SLOT_PREFILL && sl->fed > j->n_cached) /* a retry will resume here */
            dsv4_prefix_cache_put(S->o.cache, sl->hist, sl->fed, sl->s, NULL);
        else if (sl->state != SLOT_PREFILL && sl->n_hist > j->n_prompt && dsv4_session_pos(sl->s) == sl->n_hist)
            dsv4_prefix_cache_put(S->o.cache, sl->hist, sl->n_hist, sl->s, NULL);
    }
    dsv4_gen_free(sl->gen);
    sl->gen = NULL;
    dsv4_job_finish(j, why, error);
    pthread_mutex_lock(&S->mu);
    S->st.active--;
    if (error)
        S->st.jobs_failed++;
    else if (why == DSV4_FINISH_CANCELLED)
        S->st.jobs_cancelled++;
    else
        S->st.jobs_done++;
    pthread_mutex_unlock(&S->mu);
    dsv4_job_unref(j);
    sl->job = NULL;
    sl->force = NULL;
    sl->state = SLOT_FREE;
}

static void admit(dsv4_sched *S, slot *sl, dsv4_job *j) {
    sl->job = j;
    sl->order = ++S->admitted;
    j->t_start = dsv4_now();
    memcpy(sl->hist, j->prompt, (size_t)j->n_prompt * sizeof *sl->hist);
    sl->n_hist = j->n_prompt;
    sl->fed = 0;
    sl->state = SLOT_PREFILL;
    pthread_mutex_lock(&S->mu);
    S->st.active++;
    pthread_mutex_unlock(&S->mu);
    if (j->n_prompt < 1 || j->n_prompt >= dsv4_session_max_ctx(sl->s)) {
        char msg[128];
        snprintf(msg, sizeof msg, "the prompt has %d tokens; the context holds %d", j->n_prompt,
                 dsv4_session_max_ctx(sl->s));
        release(S, sl, DSV4_FINISH_STOP, msg);
        return;
    }
    if (dsv4_gen_new(S->tok, &j->gen, &sl->gen)) {
        release(S, sl, DSV4_FINISH_STOP, dsv4_errmsg());
        return;
    }
    int cached = 0;
    if (S->o.cache)
        cached = dsv4_prefix_cache_restore(S->o.cache, j->prompt, j->n_prompt, sl->s, sl->logits);
    else
        dsv4_session_reset(sl->s);
    j->n_cached = cached;
    sl->fed = cached;
    sl->reasoning = j->gen.in_reasoning;
    sl->force_i = 0;
    if (j->script) {
        sl->force = j->script;
        sl->n_force = j->n_script;
    } else if (j->forced && !sl->reasoning) {
        sl->force = j->forced;
        sl->n_force = j->n_forced;
    }
    if (cached == j->n_prompt) sl->state = SLOT_SAMPLE;
}

/* Choose the slot's next token from its logits and move it on (or finish it). */
static void sample(dsv4_sched *S, slot *sl) {
    dsv4_job *j = sl->job;
    float *lg = sl->logits;
    if (sl->force && sl->force_i < sl->n_force) {
        int32_t f = sl->force[sl->force_i++];
        for (int v = 0; v < S->vocab; v++)
            if (v != f) lg[v] = -INFINITY;
    } else {
        if (j->ban_dsml && S->dsml >= 0) lg[S->dsml] = -INFINITY;
        for (int v = S->tok_vocab; v < S->vocab; v++) lg[v] = -INFINITY; /* ids without text */
    }
    int32_t next;
    if (dsv4_gen_step(sl->gen, lg, S->vocab, &next)) {
        release(S, sl, DSV4_FINISH_STOP, dsv4_errmsg());
        return;
    }
    const dsv4_gen_token *t = dsv4_gen_last(sl->gen);
    if (!j->n_generated++) j->t_first = dsv4_now();
    if (sl->reasoning) {
        j->n_reasoning++;
        if (t->id == S->think_end) {
            sl->reasoning = false;
            if (!j->script && j->forced) {
                sl->force = j->forced;
                sl->n_force = j->n_forced;
                sl->force_i = 0;
            }
        }
    }
    if (j->want_tokens) {
        dsv4_event ev = {.kind = DSV4_EV_TOKEN, .token = *t};
        dsv4_job_push(j, &ev);
    }
    drain(sl);
    if (next < 0) {
        release(S, sl, dsv4_gen_finish_reason(sl->gen), NULL);
    } else if (dsv4_session_pos(sl->s) >= dsv4_session_max_ctx(sl->s)) {
        release(S, sl, DSV4_FINISH_LENGTH, NULL); /* no room to feed it back */
    } else {
        sl->next = next;
        sl->hist[sl->n_hist++] = next;
        sl->state = SLOT_DECODE;
    }
}

/* Where the prompt chunk starting at `fed` must end: a cache point or the prompt's end. */
static int chunk_end(const dsv4_sched *S, const slot *sl) {
    const dsv4_job *j = sl->job;
    int end = j->n_prompt;
    if (!S->o.cache) return end;
    if (j->user_end > sl->fed && j->user_end < end) end = j->user_end;
    if (S->o.snapshot_every > 0) {
        int k = (sl->fed / S->o.snapshot_every + 1) * S->o.snapshot_every;
        if (k < end) end = k;
    }
    return end;
}

/* One forward step over every slot that has tokens to feed. */
static void step(dsv4_sched *S) {
    int P = S->o.parallel, n = 0, budget = S->o.step_tokens;
    for (int i = 0; i < P; i++) {
        slot *sl = &S->slots[i];
        if (sl->state == SLOT_DECODE) {
            S->items[n] = (dsv4_batch_item){sl->s, &sl->next, 1, DSV4_LOGITS_LAST, sl->logits, NULL};
            S->item_slot[n++] = i;
            budget--;
        }
    }
    long long prefill = 0, decode = n;
    for (;;) { /* prompt chunks, oldest job first */
        int best = -1;
        for (int i = 0; i < P; i++) {
            const slot *sl = &S->slots[i];
            bool taken = false;
            for (int k = 0; k < n && !taken; k++) taken = S->item_slot[k] == i;
            if (sl->state == SLOT_PREFILL && !taken && (best < 0 || sl->order < S->slots[best].order)) best = i;
        }
        if (best < 0 || budget <= 0) break;
        slot *sl = &S->slots[best];
        int len = DSV4_MIN(chunk_end(S, sl) - sl->fed, budget);
        bool last = sl->fed + len == sl->job->n_prompt;
        S->items[n] = (dsv4_batch_item){
            sl->s, sl->job->prompt + sl->fed, len, last ? DSV4_LOGITS_LAST : DSV4_LOGITS_NONE, sl->logits, NULL};
        S->item_slot[n++] = best;
        budget -= len;
        prefill += len;
    }
    if (!n) return;
    double t0 = dsv4_now();
    dsv4_status rc = dsv4_forward_batch(S->m, S->items, n);
    pthread_mutex_lock(&S->mu);
    S->st.forward_s += dsv4_now() - t0;
    S->st.steps++;
    S->st.batch_rows += n;
    S->st.prefill_tokens += prefill;
    S->st.decode_tokens += decode;
    pthread_mutex_unlock(&S->mu);
    for (int k = 0; k < n; k++) {
        slot *sl = &S->slots[S->item_slot[k]];
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "forward step failed: %s", dsv4_errmsg());
            release(S, sl, DSV4_FINISH_STOP, msg);
            dsv4_session_reset(sl->s);
            continue;
        }
        if (sl->state == SLOT_DECODE) {
            sl->state = SLOT_SAMPLE;
            continue;
        }
        sl->fed += S->items[k].n;
        if (sl->fed < sl->job->n_prompt) {
            bool point =
                sl->fed == sl->job->user_end || (S->o.snapshot_every > 0 && sl->fed % S->o.snapshot_every == 0);
            if (S->o.cache && point) dsv4_prefix_cache_put(S->o.cache, sl->job->prompt, sl->fed, sl->s, NULL);
        } else {
            if (S->o.cache) dsv4_prefix_cache_put(S->o.cache, sl->job->prompt, sl->fed, sl->s, sl->logits);
            sl->state = SLOT_SAMPLE;
        }
    }
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void *engine_main(void *arg) {
    dsv4_sched *S = arg;
    int P = S->o.parallel;
    dsv4_job **taken = calloc((size_t)P, sizeof *taken);
    for (;;) {
        int n_taken = 0;
        pthread_mutex_lock(&S->mu);
        for (;;) {
            int w = 0; /* drop jobs cancelled while waiting */
            for (int i = 0; i < S->q_n; i++) {
                dsv4_job *j = S->queue[i];
                if (atomic_load(&j->cancelled)) {
                    dsv4_job_finish(j, DSV4_FINISH_CANCELLED, NULL);
                    dsv4_job_unref(j);
                    S->st.jobs_cancelled++;
                } else {
                    S->queue[w++] = j;
                }
            }
            S->q_n = w;
            int active = 0, free_slots = 0;
            for (int i = 0; i < P; i++) {
                if (S->slots[i].state == SLOT_FREE)
                    free_slots++;
                else
                    active++;
            }
            while (taken && n_taken < free_slots && S->q_n > 0) {
                taken[n_taken++] = S->queue[0];
                memmove(S->queue, S->queue + 1, (size_t)--S->q_n * sizeof *S->queue);
            }
            if (S->stop || active || n_taken) break;
            pthread_cond_wait(&S->cv, &S->mu);
        }
        bool stop = S->stop;
        pthread_mutex_unlock(&S->mu);
        for (int k = 0, i = 0; k < n_taken; k++) {
            while (S->slots[i].state != SLOT_FREE) i++;
            admit(S, &S->slots[i], taken[k]);
        }
        for (int i = 0; i < P; i++) {
            slot *sl = &S->slots[i];
            if (sl->state != SLOT_FREE && (stop || atomic_load(&sl->job->cancelled)))
                release(S, sl, DSV4_FINISH_CANCELLED, NULL);
        }
        if (stop) break;
        for (int i = 0; i < P; i++) /* whole prompts restored from the cache sample at once */
            if (S->slots[i].state == SLOT_SAMPLE) sample(S, &S->slots[i]);
        step(S);
        double t0 = dsv4_now();
        for (int i = 0; i < P; i++)
            if (S->slots[i].state == SLOT_SAMPLE) sample(S, &S->slots[i]);
        pthread_mutex_lock(&S->mu);
        S->st.sample_s += dsv4_now() - t0;
        pthread_mutex_unlock(&S->mu);
    }
    free(taken);
    dsv4_matmul_release_scratch(); /* this thread's (and its team's) scratch would outlive them */
    return NULL;
}

/* ---- the interface ------------------------------------------------------------------------ */

dsv4_status dsv4_sched_new(dsv4_model *m, const dsv4_tokenizer *tok, const dsv4_sched_opts *o, dsv4_sched **out) {
    *out = NULL;
    if (o->parallel < 1 || o->queue < 0 || o->step_tokens < o->parallel + 1 || o->ctx < 2)
        return dsv4_error(DSV4_EINVAL,
                          "scheduler: parallel %d, queue %d, step_tokens %d (must exceed parallel), ctx %d",
                          o->parallel, o->queue, o->step_tokens, o->ctx);
    dsv4_sched *S = dsv4_calloc(1, sizeof *S, "scheduler");
    if (!S) return DSV4_ENOMEM;
    S->m = m;
    S->tok = tok;
    S->o = *o;
    S->vocab = dsv4_model_vocab(m);
    S->tok_vocab = DSV4_MIN(dsv4_tokenizer_vocab_size(tok), S->vocab);
    S->think_end = dsv4_token_id(tok, "</think>");
    S->dsml = dsv4_token_id(tok, "｜DSML｜");
    pthread_mutex_init(&S->mu, NULL);
    pthread_cond_init(&S->cv, NULL);
    S->slots = dsv4_calloc((size_t)o->parallel, sizeof *S->slots, "slots");
    S->items = dsv4_calloc((size_t)o->parallel, sizeof *S->items, "batch items");
    S->item_slot = dsv4_calloc((size_t)o->parallel, sizeof *S->item_slot, "batch items");
    S->queue = dsv4_calloc((size_t)o->queue + (size_t)o->parallel + 1, sizeof *S->queue, "job queue");
    dsv4_status rc = S->slots && S->items && S->item_slot && S->queue ? DSV4_OK : DSV4_ENOMEM;
    for (int i = 0; i < o->parallel && !rc; i++) {
        slot *sl = &S->slots[i];
        rc = dsv4_session_new(m, o->ctx, &sl->s);
        if (!rc) {
            sl->logits = dsv4_malloc((size_t)S->vocab * sizeof(float), "slot logits");
            sl->hist = dsv4_malloc((size_t)o->ctx * sizeof(int32_t), "slot tokens");
            if (!sl->logits || !sl->hist) rc = DSV4_ENOMEM;
        }
    }
    if (!rc && pthread_create(&S->thread, NULL, engine_main, S))
        rc = dsv4_error(DSV4_ENOMEM, "cannot start the engine thread");
    if (rc) {
        dsv4_sched_free(S);
        return rc;
    }
    S->started = true;
    *out = S;
    return DSV4_OK;
}

void dsv4_sched_free(dsv4_sched *S) {
    if (!S) return;
    if (S->started) {
        pthread_mutex_lock(&S->mu);
        S->stop = true;
        pthread_cond_signal(&S->cv);
        pthread_mutex_unlock(&S->mu);
        pthread_join(S->thread, NULL);
    }
    for (int i = 0; i < S->q_n; i++) {
        dsv4_job_finish(S->queue[i], DSV4_FINISH_CANCELLED, NULL);
        dsv4_job_unref(S->queue[i]);
    }
    for (int i = 0; S->slots && i < S->o.parallel; i++) {
        dsv4_session_free(S->slots[i].s);
        free(S->slots[i].logits);
        free(S->slots[i].hist);
    }
    free(S->slots);
    free(S->items);
    free(S->item_slot);
    free(S->queue);
    pthread_mutex_destroy(&S->mu);
    pthread_cond_destroy(&S->cv);
    free(S);
}

bool dsv4_sched_submit(dsv4_sched *S, dsv4_job *j) {
    pthread_mutex_lock(&S->mu);
    /* a job counts against the free slots first: they take it at the next step */
    bool ok = !S->stop && S->q_n < S->o.queue + (S->o.parallel - S->st.active);
    if (ok) {
        dsv4_job_ref(j);
        S->queue[S->q_n++] = j;
        pthread_cond_signal(&S->cv);
    }
    pthread_mutex_unlock(&S->mu);
    return ok;
}

void dsv4_sched_stats_get(dsv4_sched *S, dsv4_sched_stats *out) {
    pthread_mutex_lock(&S->mu);
    *out = S->st;
    out->waiting = S->q_n;
    out->parallel = S->o.parallel;
    out->queue = S->o.queue;
    pthread_mutex_unlock(&S->mu);
}
