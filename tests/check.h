/* check.h: the smallest test harness that reports well.
 *
 * CHECK(cond, fmt, ...) records a failure with its location and keeps going, so one run shows
 * every broken expectation; check_done() prints the tally and gives main's exit status. */
#ifndef DSV4_TEST_CHECK_H
#define DSV4_TEST_CHECK_H
#include <math.h>
#include <stdio.h>

static int check_failures, check_count;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        check_count++;                                                                \
        if (!(cond)) {                                                                \
            check_failures++;                                                         \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol, what)                                                   \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s: %.9g vs %.9g (tol %.3g)", what, \
          (double)(a), (double)(b), (double)(tol))

static inline int check_done(const char *name) {
    if (check_failures)
        fprintf(stderr, "%s: %d of %d checks failed\n", name, check_failures, check_count);
    else
        printf("%s: all %d checks passed\n", name, check_count);
    return check_failures ? 1 : 0;
}
#endif
