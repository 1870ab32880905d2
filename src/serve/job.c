/* job.c: a request's life between an HTTP thread and the engine; see job.h. */
#include "serve/job.h"

#include <math.h>
#include <time.h>

#include "base/base.h"

void dsv4_event_clear(dsv4_event *ev) {
    free(ev->text);
    free(ev->name);
    ev->text = ev->name = NULL;
}

dsv4_job *dsv4_job_new(void) {
    dsv4_job *j = dsv4_calloc(1, sizeof *j, "job");
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&j->cancelled, false);
    atomic_init(&j->refs, 1);
    j->gen = dsv4_gen_defaults();
    j->stop_index = -1;
    j->t_submit = dsv4_now();
    return j;
}

void dsv4_job_ref(dsv4_job *j) { atomic_fetch_add(&j->refs, 1); }

void dsv4_job_unref(dsv4_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    for (size_t i = 0; i < j->ev_n; i++) dsv4_event_clear(&j->ev[i]);
    free(j->ev);
    for (int i = 0; i < DSV4_MAX_STOPS; i++) free(j->stop_text[i]);
    free(j->prompt);
    free(j->forced);
    free(j->bias);
    free(j->script);
    free(j->error);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

bool dsv4_job_set_stops(dsv4_job *j, const char *const *stops, int n) {
    if (n > DSV4_MAX_STOPS) return false;
    for (int i = 0; i < n; i++) {
        j->stop_text[i] = strdup(stops[i]);
        if (!j->stop_text[i]) return false;
        j->gen.stop[i] = j->stop_text[i];
    }
    j->gen.n_stop = n;
    return true;
}

void dsv4_job_push(dsv4_job *j, dsv4_event *ev) {
    pthread_mutex_lock(&j->mu);
    if (j->ev_n == j->ev_cap) {
        size_t cap = j->ev_cap ? 2 * j->ev_cap : 32;
        dsv4_event *ne = realloc(j->ev, cap * sizeof *ne);
        if (!ne) { /* the event is lost; the text it carried is too */
            pthread_mutex_unlock(&j->mu);
            dsv4_event_clear(ev);
            return;
        }
        j->ev = ne;
        j->ev_cap = cap;
    }
    j->ev[j->ev_n++] = *ev;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void dsv4_job_finish(dsv4_job *j, dsv4_finish finish, const char *error) {
    pthread_mutex_lock(&j->mu);
    j->finish = finish;
    if (error && !j->error) j->error = strdup(error);
    j->t_end = dsv4_now();
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

size_t dsv4_job_take(dsv4_job *j, double timeout_s, dsv4_event **evs, bool *done) {
    pthread_mutex_lock(&j->mu);
    if (!j->ev_n && !j->done && timeout_s > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double whole = floor(timeout_s);
        ts.tv_sec += (time_t)whole;
        ts.tv_nsec += (long)((timeout_s - whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!j->ev_n && !j->done)
            if (pthread_cond_timedwait(&j->cv, &j->mu, &ts)) break;
    }
    size_t n = j->ev_n;
    *evs = j->ev;
    j->ev = NULL;
    j->ev_n = j->ev_cap = 0;
    *done = j->done;
    pthread_mutex_unlock(&j->mu);
    return n;
}

void dsv4_job_cancel(dsv4_job *j) { atomic_store(&j->cancelled, true); }
