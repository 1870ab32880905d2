/* error.c: per-thread error messages.
 *
 * The library reports failures by status code plus a human message kept in thread-local
 * storage, like errno + strerror but with the context (file, tensor, offset) baked in. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "base/base.h"

#include <omp.h>

static _Thread_local char err_msg[1024];

dsv4_status dsv4_error(dsv4_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return code;
}

dsv4_status dsv4_error_wrap(dsv4_status code, const char *fmt, ...) {
    char prefix[512], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err_msg - 3) n = sizeof err_msg - 3;
    memcpy(err_msg, prefix, n);
    memcpy(err_msg + n, ": ", 2);
    size_t rest = sizeof err_msg - n - 3;
    size_t lo = strnlen(old, rest);
    memcpy(err_msg + n + 2, old, lo);
    err_msg[n + 2 + lo] = 0;
    return code;
}

void dsv4_error_clear(void) { err_msg[0] = 0; }

const char *dsv4_errmsg(void) { return err_msg[0] ? err_msg : "no error"; }

const char *dsv4_status_name(dsv4_status s) {
    switch (s) {
    case DSV4_OK: return "OK";
    case DSV4_EIO: return "EIO";
    case DSV4_EFORMAT: return "EFORMAT";
    case DSV4_ENOTFOUND: return "ENOTFOUND";
    case DSV4_EINVAL: return "EINVAL";
    case DSV4_ENOMEM: return "ENOMEM";
    case DSV4_EUNSUPPORTED: return "EUNSUPPORTED";
    case DSV4_ECANCELLED: return "ECANCELLED";
    }
    return "E?";
}

void *dsv4_malloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) dsv4_error(DSV4_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *dsv4_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) dsv4_error(DSV4_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}

void *dsv4_alloc_aligned(size_t n, const char *what) {
    size_t rounded = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        dsv4_error(DSV4_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

int dsv4_threads(void) { return omp_get_max_threads(); }

void dsv4_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

double dsv4_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double dsv4_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
