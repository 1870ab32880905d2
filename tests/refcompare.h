/* refcompare.h: how the reference-vector tests measure logits against DeepSeek's.
 *
 * For each position: the largest |ours - reference| over the vocabulary, and whether the two
 * agree on the top token. Reported: the largest over all positions, the median over positions,
 * the share of positions whose top token agrees, and the first position over 1e-3 (where a
 * divergence starts). A position may be a group of rows (a DSpark draft step is `block`
 * rows): its difference is the largest of its rows. Shared by test_refvectors (V4) and
 * test_refvectors_v41, whose rules then differ. */
#ifndef DSV4_TESTS_REFCOMPARE_H
#define DSV4_TESTS_REFCOMPARE_H
#include <math.h>
#include <stdlib.h>

typedef struct {
    double max_abs, median, top1;
    int first_over; /* first position with max |d| > 1e-3, -1 if none */
} metrics;

static inline int ref_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* rows of V logits, `group` rows to a position */
static inline metrics compare_grouped(const float *got, const float *ref, int rows, int V, int group) {
    metrics m = {0, 0, 0, -1};
    int npos = rows / group, agree = 0;
    double *pm = calloc((size_t)npos + 1, sizeof(double));
    if (!pm) return (metrics){INFINITY, INFINITY, 0, 0}; /* fails every rule */
    for (int r = 0; r < rows; r++) {
        double mx = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, fabs((double)got[(size_t)r * V + j] - ref[(size_t)r * V + j]));
        pm[r / group] = fmax(pm[r / group], mx);
        if (mx > m.max_abs) m.max_abs = mx;
        if (mx > 1e-3 && m.first_over < 0) m.first_over = r / group;
        agree += argmax(got + (size_t)r * V, V) == argmax(ref + (size_t)r * V, V);
    }
    qsort(pm, (size_t)npos, sizeof(double), ref_cmp_double);
    m.median = npos % 2 ? pm[npos / 2] : 0.5 * (pm[npos / 2 - 1] + pm[npos / 2]);
    m.top1 = (double)agree / rows;
    free(pm);
    return m;
}

#endif
