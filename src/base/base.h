/* base.h: what every file of the library shares.
 *
 * Errors: a failing function calls dsv4_error(code, fmt, ...) which formats the message into
 * a per-thread buffer and returns the code, so the idiom is `return dsv4_error(...)`.
 * Allocation: dsv4_malloc / dsv4_calloc set DSV4_ENOMEM with the size and purpose on failure.
 * Nothing here prints or exits. */
#ifndef DSV4_BASE_H
#define DSV4_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"

#define DSV4_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DSV4_MAX(a, b) ((a) > (b) ? (a) : (b))
#define DSV4_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define DSV4_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DSV4_PRINTF(f, a)
#endif

dsv4_status dsv4_error(dsv4_status code, const char *fmt, ...) DSV4_PRINTF(2, 3);
/* Prefix the current message with more context: "loading X: <old message>". */
dsv4_status dsv4_error_wrap(dsv4_status code, const char *fmt, ...) DSV4_PRINTF(2, 3);
void dsv4_error_clear(void);

void *dsv4_malloc(size_t n, const char *what);
void *dsv4_calloc(size_t count, size_t size, const char *what);
/* 64-byte aligned, zeroed; free with free(). */
void *dsv4_alloc_aligned(size_t n, const char *what);

/* Overflow-checked size arithmetic: returns false if a*b would overflow. */
static inline bool dsv4_mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* Number of threads the library's parallel loops use (OpenMP). */
int dsv4_threads(void);
void dsv4_set_threads(int n);

/* Monotonic wall clock in seconds. */
double dsv4_now(void);
/* CPU time of the whole process (all threads) in seconds, for benchmarks. */
double dsv4_cpu_now(void);

#endif
