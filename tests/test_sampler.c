/* test_sampler.c: the sampler's properties, each checked against an independent computation.
 *
 * The generator is checked against the published output of the xoshiro256** reference code
 * for the state {1, 2, 3, 4}. Sampling is checked by what must hold whatever the random
 * numbers: greedy is the argmax, top-k = 1 is greedy, filtered-out tokens never appear, and the
 * observed frequencies over many seeded draws match the target distribution (computed here in
 * double precision from the logits) within 5 binomial standard deviations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "infer/sampler.h"

static void test_rng(void) {
    static const uint64_t reference[] = {11520u, 0u, 1509978240u, 1215971899390074240u,
                                         1216172134540287360u, 607988272756665600u,
                                         16172922978634559625u, 8476171486693032832u,
                                         10595114339597558777u, 2904607092377533576u};
    dsv4_rng r = {{1, 2, 3, 4}};
    for (size_t i = 0; i < DSV4_ARRAY_LEN(reference); i++) {
        uint64_t v = dsv4_rng_next(&r);
        CHECK(v == reference[i], "xoshiro256** output %zu: %llu", i, (unsigned long long)v);
    }
    dsv4_rng a, b;
    dsv4_rng_seed(&a, 42);
    dsv4_rng_seed(&b, 42);
    double lo = 1, hi = 0, sum = 0;
    int same = 1;
    for (int i = 0; i < 100000; i++) {
        double u = dsv4_rng_uniform(&a);
        same &= u == dsv4_rng_uniform(&b);
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        sum += u;
    }
    CHECK(same, "same seed, same stream");
    CHECK(lo >= 0 && hi < 1, "uniform in [0, 1): %g..%g", lo, hi);
    CHECK_NEAR(sum / 100000, 0.5, 5 * sqrt(1.0 / 12 / 100000), "uniform mean");
    dsv4_rng_seed(&b, 43);
    dsv4_rng_seed(&a, 42);
    CHECK(dsv4_rng_next(&a) != dsv4_rng_next(&b), "different seeds differ");
}

static dsv4_sampler *make(dsv4_sampler_params p, uint64_t seed) {
    dsv4_sampler *s = NULL;
    dsv4_status st = dsv4_sampler_new(&p, seed, &s);
    CHECK(st == DSV4_OK, "sampler_new: %s", dsv4_errmsg());
    return s;
}

/* Draw `draws` tokens, each from a fresh history (reset with a new seed, then `history`
 * accepted), and compare the frequencies with `expected` (which sums to 1). */
static void check_frequencies(dsv4_sampler_params p, const float *logits, int vocab, const double *expected,
                              const int32_t *history, int n_history, const char *what) {
    enum { draws = 40000 };
    int counts[64] = {0}, bad = 0;
    dsv4_sampler *s = make(p, 1);
    if (!s) return;
    for (int i = 0; i < draws; i++) {
        dsv4_sampler_reset(s, 1000 + (uint64_t)i);
        for (int h = 0; h < n_history; h++) dsv4_sampler_accept(s, history[h]);
        int32_t id = dsv4_sample(s, logits, vocab);
        if (id >= 0 && id < vocab) counts[id]++;
        else bad++;
    }
    CHECK(bad == 0, "%s: %d draws out of range", what, bad);
    for (int i = 0; i < vocab; i++) {
        double e = expected[i] * draws, sd = sqrt(draws * expected[i] * (1 - expected[i]));
        if (expected[i] == 0) CHECK(counts[i] == 0, "%s: token %d drawn %d times, must never be", what, i, counts[i]);
        else CHECK(fabs(counts[i] - e) <= 5 * sd + 1, "%s: token %d drawn %d times, expected %.0f +- %.0f", what, i,
                   counts[i], e, sd);
    }
    dsv4_sampler_free(s);
}

/* softmax(x / t) restricted to `keep` (NULL: all), in double. */
static void softmax(const float *x, int n, double t, const int *keep, double *out) {
    double m = -INFINITY, z = 0;
    for (int i = 0; i < n; i++) m = fmax(m, x[i] / t);
    for (int i = 0; i < n; i++) z += (keep && !keep[i]) ? 0 : exp(x[i] / t - m);
    for (int i = 0; i < n; i++) out[i] = (keep && !keep[i]) ? 0 : exp(x[i] / t - m) / z;
}

/* Sort (weight, id) pairs by weight, highest first. */
static int by_value_desc(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x > y ? -1 : x < y ? 1 : 0;
}

static void test_distributions(void) {
    const float logits[6] = {1.0f, 2.5f, -0.5f, 2.0f, 0.0f, -3.0f};
    double expected[6];
    dsv4_sampler_params p = dsv4_sampler_defaults();
    CHECK(p.temperature == 1.0f && p.top_p == 1.0f && p.top_k == 0 && p.min_p == 0 && p.repetition_penalty == 1.0f,
          "defaults are the DeepSeek API's");

    softmax(logits, 6, 1.0, NULL, expected);
    check_frequencies(p, logits, 6, expected, NULL, 0, "temperature 1");
    p.temperature = 0.6f;
    softmax(logits, 6, 0.6, NULL, expected);
    check_frequencies(p, logits, 6, expected, NULL, 0, "temperature 0.6");
    p.temperature = 2.0f;
    softmax(logits, 6, 2.0, NULL, expected);
    check_frequencies(p, logits, 6, expected, NULL, 0, "temperature 2");

    /* top-k 3: the three highest logits (ids 1, 3, 0), renormalised */
    p = dsv4_sampler_defaults();
    p.top_k = 3;
    int keep_k[6] = {1, 1, 0, 1, 0, 0};
    softmax(logits, 6, 1.0, keep_k, expected);
    check_frequencies(p, logits, 6, expected, NULL, 0, "top-k 3");

    /* top-p: probabilities 0.5, 0.25, 0.15, 0.1 -> p=0.7 keeps {0, 1}; p=0.8 keeps {0, 1, 2} */
    const float quarters[4] = {logf(0.5f), logf(0.25f), logf(0.15f), logf(0.1f)};
    p = dsv4_sampler_defaults();
    p.top_p = 0.7f;
    check_frequencies(p, quarters, 4, (double[]){2.0 / 3, 1.0 / 3, 0, 0}, NULL, 0, "top-p 0.7");
    p.top_p = 0.8f;
    check_frequencies(p, quarters, 4, (double[]){0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0}, NULL, 0, "top-p 0.8");
    p.top_k = 2; /* top-k first, then top-p of the renormalised pair: 2/3 >= 0.6 keeps only id 0 */
    p.top_p = 0.6f;
    check_frequencies(p, quarters, 4, (double[]){1, 0, 0, 0}, NULL, 0, "top-k 2 then top-p 0.6");

    /* top-p over 40 tokens (past the sorting cut-off, so through the quickselect): the nucleus
     * found here by sorting */
    float forty[40];
    double w[40][2], e40[40] = {0}, z40 = 0, cum = 0;
    dsv4_rng r;
    dsv4_rng_seed(&r, 40);
    for (int i = 0; i < 40; i++) {
        forty[i] = (float)(dsv4_rng_uniform(&r) * 4);
        w[i][0] = exp((double)forty[i]);
        w[i][1] = i;
        z40 += w[i][0];
    }
    qsort(w, 40, sizeof *w, by_value_desc);
    int in_nucleus = 0;
    while (cum < 0.6 * z40) cum += w[in_nucleus++][0];
    for (int k = 0; k < in_nucleus; k++) e40[(int)w[k][1]] = w[k][0] / cum;
    p = dsv4_sampler_defaults();
    p.top_p = 0.6f;
    check_frequencies(p, forty, 40, e40, NULL, 0, "top-p 0.6 over 40 tokens");

    /* min-p 0.25: keep p >= 0.25 * 0.5, i.e. ids 0, 1, 2 */
    p = dsv4_sampler_defaults();
    p.min_p = 0.25f;
    check_frequencies(p, quarters, 4, (double[]){0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0}, NULL, 0, "min-p 0.25");

    /* presence and frequency penalties, with token 1 generated twice and token 3 once */
    p = dsv4_sampler_defaults();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.3f;
    const int32_t history[] = {1, 3, 1};
    float pen[6];
    memcpy(pen, logits, sizeof pen);
    pen[1] -= 0.5f + 0.3f * 2;
    pen[3] -= 0.5f + 0.3f * 1;
    softmax(pen, 6, 1.0, NULL, expected);
    check_frequencies(p, logits, 6, expected, history, 3, "presence + frequency penalties");

    /* repetition penalty 1.5: positive logits divided, negative multiplied */
    p = dsv4_sampler_defaults();
    p.repetition_penalty = 1.5f;
    const int32_t rep_history[] = {1, 2};
    memcpy(pen, logits, sizeof pen);
    pen[1] /= 1.5f;
    pen[2] *= 1.5f;
    softmax(pen, 6, 1.0, NULL, expected);
    check_frequencies(p, logits, 6, expected, rep_history, 2, "repetition penalty");
}

static void test_greedy(void) {
    enum { vocab = 1000 };
    static float logits[vocab];
    dsv4_rng r;
    dsv4_rng_seed(&r, 7);
    dsv4_sampler_params greedy = dsv4_sampler_defaults(), top1 = dsv4_sampler_defaults();
    greedy.temperature = 0;
    top1.top_k = 1;
    for (int trial = 0; trial < 50; trial++) {
        int best = 0;
        for (int i = 0; i < vocab; i++) {
            logits[i] = (float)(dsv4_rng_uniform(&r) * 20 - 10);
            if (logits[i] > logits[best]) best = i;
        }
        dsv4_sampler *g = make(greedy, (uint64_t)trial), *k = make(top1, (uint64_t)trial);
        CHECK(dsv4_sample(g, logits, vocab) == best, "greedy is the argmax (trial %d)", trial);
        CHECK(dsv4_sample(k, logits, vocab) == best, "top-k 1 is greedy (trial %d)", trial);
        dsv4_sampler_free(g);
        dsv4_sampler_free(k);
    }
    /* ties go to the lower id; -inf and NaN are never chosen */
    float ties[5] = {1, 3, -INFINITY, 3, NAN};
    dsv4_sampler *g = make(greedy, 0);
    CHECK(dsv4_sample(g, ties, 5) == 1, "greedy tie to the lower id");
    float none[3] = {-INFINITY, NAN, -INFINITY};
    CHECK(dsv4_sample(g, none, 3) == -1, "nothing possible");
    dsv4_sampler_free(g);
    dsv4_sampler *t = make(dsv4_sampler_defaults(), 3);
    for (int i = 0; i < 1000; i++) {
        int32_t id = dsv4_sample(t, ties, 5);
        CHECK(id == 0 || id == 1 || id == 3, "sampled an impossible token %d", id);
    }
    dsv4_sampler_free(t);

    /* greedy with a frequency penalty, against a simulation in double */
    dsv4_sampler_params fp = greedy;
    fp.frequency_penalty = 0.15f;
    const float three[3] = {1.0f, 0.9f, 0.5f};
    dsv4_sampler *s = make(fp, 0);
    int counts[3] = {0};
    for (int step = 0; step < 12; step++) {
        int want = 0;
        double best = -INFINITY;
        for (int i = 0; i < 3; i++) {
            double v = three[i] - 0.15 * counts[i];
            if (v > best + 1e-9) {
                best = v;
                want = i;
            }
        }
        int32_t got = dsv4_sample(s, three, 3);
        CHECK(got == want, "frequency-penalised greedy step %d: %d, expected %d", step, got, want);
        counts[want]++;
    }
    dsv4_sampler_free(s);
}

static void test_reproducible(void) {
    enum { vocab = 300, steps = 500 };
    static float logits[vocab];
    dsv4_rng r;
    dsv4_rng_seed(&r, 11);
    for (int i = 0; i < vocab; i++) logits[i] = (float)(dsv4_rng_uniform(&r) * 6);
    dsv4_sampler_params p = dsv4_sampler_defaults();
    p.top_p = 0.9f;
    p.presence_penalty = 0.2f;
    dsv4_sampler *a = make(p, 5), *b = make(p, 5), *c = make(p, 6);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < steps; i++) {
        int32_t x = dsv4_sample(a, logits, vocab), y = dsv4_sample(b, logits, vocab), z = dsv4_sample(c, logits, vocab);
        same_ab &= x == y;
        same_ac &= x == z;
    }
    CHECK(same_ab, "same seed, same tokens");
    CHECK(!same_ac, "another seed, other tokens");
    dsv4_sampler_reset(a, 5);
    dsv4_sampler_reset(b, 5);
    CHECK(dsv4_sample(a, logits, vocab) == dsv4_sample(b, logits, vocab), "reset restarts");
    dsv4_sampler_free(a);
    dsv4_sampler_free(b);
    dsv4_sampler_free(c);
}

/* top-p over a vocabulary of DeepSeek's size: every draw inside the nucleus found by a full sort. */
static void test_large_nucleus(void) {
    enum { vocab = 129280 };
    float *logits = malloc(vocab * sizeof *logits);
    double(*pairs)[2] = malloc(vocab * sizeof *pairs);
    char *inside = calloc(vocab, 1);
    dsv4_rng r;
    dsv4_rng_seed(&r, 2024);
    for (int i = 0; i < vocab; i++) { /* a peaked, long-tailed distribution */
        double u = dsv4_rng_uniform(&r);
        logits[i] = (float)(-12 * u * u * u);
    }
    double m = -INFINITY, z = 0;
    for (int i = 0; i < vocab; i++) m = fmax(m, logits[i]);
    for (int i = 0; i < vocab; i++) {
        pairs[i][0] = exp(logits[i] - m);
        pairs[i][1] = i;
        z += pairs[i][0];
    }
    qsort(pairs, vocab, sizeof *pairs, by_value_desc);
    double cum = 0;
    int nucleus = 0;
    while (cum < 0.5 * z) {
        cum += pairs[nucleus][0];
        inside[(int)pairs[nucleus++][1]] = 1;
    }
    dsv4_sampler_params p = dsv4_sampler_defaults();
    p.top_p = 0.5f;
    dsv4_sampler *s = make(p, 9);
    int outside = 0;
    for (int i = 0; i < 200; i++) {
        dsv4_sampler_reset(s, (uint64_t)i);
        int32_t id = dsv4_sample(s, logits, vocab);
        outside += id < 0 || !inside[id];
    }
    CHECK(outside == 0, "%d of 200 draws outside the nucleus of %d tokens", outside, nucleus);
    dsv4_sampler_free(s);
    free(logits);
    free(pairs);
    free(inside);
}

static void test_logprobs(void) {
    const float logits[7] = {0.5f, 3.0f, 3.0f, -1.0f, -INFINITY, 2.0f, 0.5f};
    int32_t ids[20];
    float lp[20];
    int n = dsv4_logprobs_topn(logits, 7, 20, ids, lp);
    CHECK(n == 7, "top-n capped at the vocabulary: %d", n);
    static const int32_t order[7] = {1, 2, 5, 0, 6, 3, 4}; /* by logit, ties to the lower id */
    double m = 3.0, z = 0, total = 0;
    for (int i = 0; i < 7; i++) z += exp((double)logits[i] - m);
    for (int k = 0; k < n; k++) {
        CHECK(ids[k] == order[k], "rank %d: id %d, expected %d", k, ids[k], order[k]);
        double want = (double)logits[ids[k]] - m - log(z);
        if (isinf(want)) CHECK(isinf(lp[k]) && lp[k] < 0, "-inf logprob");
        else CHECK_NEAR(lp[k], want, 1e-6, "logprob");
        float one = dsv4_logprob(logits, 7, ids[k]);
        CHECK(one == lp[k] || fabs(one - lp[k]) <= 1e-6, "dsv4_logprob agrees: %g vs %g", one, lp[k]);
        total += exp(lp[k]);
    }
    CHECK_NEAR(total, 1.0, 1e-6, "probabilities sum to 1");
    CHECK(dsv4_logprobs_topn(logits, 7, 2, ids, lp) == 2 && ids[0] == 1 && ids[1] == 2, "top-2");
    enum { big = 129280 };
    float *x = malloc(big * sizeof *x);
    for (int i = 0; i < big; i++) x[i] = (float)((i * 7919) % 1000) / 100.0f;
    n = dsv4_logprobs_topn(x, big, 20, ids, lp);
    CHECK(n == 20, "20 of a large vocabulary");
    for (int k = 1; k < n; k++)
        CHECK(lp[k - 1] > lp[k] || (lp[k - 1] == lp[k] && ids[k - 1] < ids[k]), "order at rank %d", k);
    free(x);
}

/* logit_bias: added before anything else; -inf bans; the list is the sampler's own copy. */
static void test_bias(void) {
    const float flat[4] = {2.0f, 1.0f, 1.0f, 0.5f};
    dsv4_logit_bias b[2] = {{0, -INFINITY}, {3, 0.75f}};
    dsv4_sampler_params p = dsv4_sampler_defaults();
    p.temperature = 0;
    p.bias = b;
    p.n_bias = 2;
    dsv4_sampler *g = make(p, 0);
    b[1].value = -50; /* changing the caller's list afterwards changes nothing */
    CHECK(dsv4_sample(g, flat, 4) == 3, "greedy: token 0 banned, token 3 lifted to 1.25 wins");
    CHECK(dsv4_sample(g, flat, 2) == 1, "a bias for an id beyond the vocabulary is ignored");
    dsv4_sampler_free(g);
    /* sampling: two equal logits, one raised by log 3, is drawn 3 times as often; the banned
     * one never */
    const float two[3] = {0.0f, 0.0f, 5.0f};
    dsv4_logit_bias lift[2] = {{1, logf(3.0f)}, {2, -INFINITY}};
    p = dsv4_sampler_defaults();
    p.bias = lift;
    p.n_bias = 2;
    dsv4_sampler *s = make(p, 9);
    int n1 = 0, n = 20000;
    for (int i = 0; i < n; i++) {
        int32_t id = dsv4_sample(s, two, 3);
        CHECK(id == 0 || id == 1, "draw %d: token %d", i, id);
        n1 += id == 1;
    }
    CHECK(fabs((double)n1 / n - 0.75) < 0.015, "biased token drawn %.4f of the time, expected 0.75", (double)n1 / n);
    dsv4_sampler_free(s);
    /* everything banned: nothing can be sampled */
    dsv4_logit_bias all[3] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}};
    p.bias = all;
    p.n_bias = 3;
    s = make(p, 1);
    CHECK(dsv4_sample(s, two, 3) == -1, "every token banned");
    dsv4_sampler_free(s);
}

static void test_params(void) {
    static const struct {
        dsv4_sampler_params p;
        const char *name;
    } bad[] = {
        {{.temperature = -1, .top_p = 1, .repetition_penalty = 1}, "temperature"},
        {{.temperature = 1, .top_p = 0, .repetition_penalty = 1}, "top_p"},
        {{.temperature = 1, .top_p = 1.5f, .repetition_penalty = 1}, "top_p"},
        {{.temperature = 1, .top_p = 1, .top_k = -2, .repetition_penalty = 1}, "top_k"},
        {{.temperature = 1, .top_p = 1, .min_p = 2, .repetition_penalty = 1}, "min_p"},
        {{.temperature = 1, .top_p = 1, .presence_penalty = 3, .repetition_penalty = 1}, "presence_penalty"},
        {{.temperature = 1, .top_p = 1, .frequency_penalty = -2.5f, .repetition_penalty = 1}, "frequency_penalty"},
        {{.temperature = 1, .top_p = 1, .repetition_penalty = 0}, "repetition_penalty"},
    };
    for (size_t k = 0; k < DSV4_ARRAY_LEN(bad); k++) {
        dsv4_sampler *s;
        CHECK(dsv4_sampler_new(&bad[k].p, 0, &s) == DSV4_EINVAL && s == NULL && strstr(dsv4_errmsg(), bad[k].name),
              "bad %s refused: %s", bad[k].name, dsv4_errmsg());
    }
    static const dsv4_logit_bias nan_bias = {1, NAN}, neg_id = {-1, 1}, pos_inf = {1, INFINITY};
    const dsv4_logit_bias *biases[] = {&nan_bias, &neg_id, &pos_inf};
    for (size_t k = 0; k < DSV4_ARRAY_LEN(biases); k++) {
        dsv4_sampler_params p = dsv4_sampler_defaults();
        p.bias = biases[k];
        p.n_bias = 1;
        dsv4_sampler *s;
        CHECK(dsv4_sampler_new(&p, 0, &s) == DSV4_EINVAL && s == NULL && strstr(dsv4_errmsg(), "logit bias"),
              "bad logit bias %zu refused: %s", k, dsv4_errmsg());
    }
    dsv4_sampler_params p = dsv4_sampler_defaults();
    p.n_bias = DSV4_MAX_LOGIT_BIAS + 1;
    p.bias = &nan_bias;
    dsv4_sampler *s;
    CHECK(dsv4_sampler_new(&p, 0, &s) == DSV4_EINVAL, "too many logit biases refused");
    p.n_bias = 2;
    p.bias = NULL;
    CHECK(dsv4_sampler_new(&p, 0, &s) == DSV4_EINVAL && s == NULL && strstr(dsv4_errmsg(), "no list"),
          "a count without a list refused: %s", dsv4_errmsg());
}

int main(void) {
    test_rng();
    test_greedy();
    test_distributions();
    test_reproducible();
    test_large_nucleus();
    test_logprobs();
    test_bias();
    test_params();
    return check_done("test_sampler");
}
