/* sampler.c: penalties, temperature, top-k / top-p / min-p, and the draw (see sampler.h).
 *
 * The sampler works on a private copy of the logits. Filtering is expressed on a candidate
 * list of tokens: all of them at first; top-k cuts it to the k best with a bounded heap;
 * top-p finds the boundary of the nucleus by quickselect rather than sorting the vocabulary,
 * which for a flat distribution over 129k tokens would dominate the step.
 *
 * The counts for the penalties are a dense array indexed by id (allocated on first use) plus
 * the list of ids seen, so applying penalties costs O(distinct tokens), not O(vocab). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "infer/sampler.h"

/* ---- xoshiro256** --------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void dsv4_rng_seed(dsv4_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t dsv4_rng_next(dsv4_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double dsv4_rng_uniform(dsv4_rng *r) { return (double)(dsv4_rng_next(r) >> 11) * 0x1.0p-53; }

/* ---- the sampler ------------------------------------------------------------------------------ */

typedef struct cand {
    float logit;
    int32_t id;
    double w; /* exp(logit - max logit): the unnormalised probability */
} cand;

struct dsv4_sampler {
    dsv4_sampler_params p;
    dsv4_rng rng;
    int32_t *count; /* [cap_count] times each id was generated */
    int32_t *seen;  /* distinct ids with count > 0 */
    size_t n_seen, cap_seen, cap_count;
    dsv4_logit_bias *bias; /* p.bias points here */
    float *work;       /* [cap] penalised, tempered logits */
    struct cand *cand; /* [cap] the tokens still in the running */
    size_t cap;
};

dsv4_sampler_params dsv4_sampler_defaults(void) {
    return (dsv4_sampler_params){.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .min_p = 0.0f,
                                 .presence_penalty = 0.0f, .frequency_penalty = 0.0f,
                                 .repetition_penalty = 1.0f};
}

static dsv4_status check_params(const dsv4_sampler_params *p) {
    if (!(p->temperature >= 0 && isfinite(p->temperature)))
        return dsv4_error(DSV4_EINVAL, "sampler: temperature %g must be >= 0", p->temperature);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return dsv4_error(DSV4_EINVAL, "sampler: top_p %g must be in (0, 1]", p->top_p);
    if (p->top_k < 0) return dsv4_error(DSV4_EINVAL, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return dsv4_error(DSV4_EINVAL, "sampler: min_p %g must be in [0, 1]", p->min_p);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return dsv4_error(DSV4_EINVAL, "sampler: presence_penalty %g must be in [-2, 2]", p->presence_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return dsv4_error(DSV4_EINVAL, "sampler: frequency_penalty %g must be in [-2, 2]", p->frequency_penalty);
    if (!(p->repetition_penalty > 0 && isfinite(p->repetition_penalty)))
        return dsv4_error(DSV4_EINVAL, "sampler: repetition_penalty %g must be > 0", p->repetition_penalty);
    if (p->n_bias < 0 || p->n_bias > DSV4_MAX_LOGIT_BIAS)
        return dsv4_error(DSV4_EINVAL, "sampler: %d logit biases (at most %d)", p->n_bias, DSV4_MAX_LOGIT_BIAS);
    if (p->n_bias && !p->bias) return dsv4_error(DSV4_EINVAL, "sampler: %d logit biases but no list", p->n_bias);
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias[i].id < 0 || !(isfinite(p->bias[i].value) || p->bias[i].value == -INFINITY))
            return dsv4_error(DSV4_EINVAL, "sampler: logit bias %g for token %d", p->bias[i].value,
                              (int)p->bias[i].id);
    return DSV4_OK;
}

dsv4_status dsv4_sampler_new(const dsv4_sampler_params *p, uint64_t seed, dsv4_sampler **out) {
    *out = NULL;
    dsv4_status st = check_params(p);
    if (st) return st;
    dsv4_sampler *s = dsv4_calloc(1, sizeof *s, "sampler");
    if (!s) return DSV4_ENOMEM;
    s->p = *p;
    if (p->n_bias) {
        s->bias = dsv4_calloc((size_t)p->n_bias, sizeof *s->bias, "sampler logit bias");
        if (!s->bias) {
            free(s);
            return DSV4_ENOMEM;
        }
        memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    }
    s->p.bias = s->bias;
    dsv4_rng_seed(&s->rng, seed);
    *out = s;
    return DSV4_OK;
}

void dsv4_sampler_free(dsv4_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->count);
    free(s->seen);
    free(s->work);
    free(s->cand);
    free(s);
}

void dsv4_sampler_reset(dsv4_sampler *s, uint64_t seed) {
    for (size_t i = 0; i < s->n_seen; i++) s->count[s->seen[i]] = 0;
    s->n_seen = 0;
    dsv4_rng_seed(&s->rng, seed);
}

void dsv4_sampler_accept(dsv4_sampler *s, int32_t id) {
    if (id < 0) return;
    if ((size_t)id >= s->cap_count) {
        size_t cap = DSV4_MAX((size_t)id + 1, 2 * s->cap_count);
        int32_t *c = realloc(s->count, cap * sizeof *c);
        if (!c) return; /* a count lost to lack of memory only weakens a penalty */
        memset(c + s->cap_count, 0, (cap - s->cap_count) * sizeof *c);
        s->count = c;
        s->cap_count = cap;
    }
    if (s->count[id]++ == 0) {
        if (s->n_seen == s->cap_seen) {
            size_t cap = s->cap_seen ? 2 * s->cap_seen : 256;
            int32_t *l = realloc(s->seen, cap * sizeof *l);
            if (!l) {
                s->count[id]--;
                return;
            }
            s->seen = l;
            s->cap_seen = cap;
        }
        s->seen[s->n_seen++] = id;
    }
}

static float clean(float x) { return isnan(x) ? -INFINITY : x; }

/* The highest logit, lowest id among equals; -1 if all are -inf. */
static int32_t argmax(const float *x, int n) {
    int32_t best = -1;
    float v = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > v) {
            v = x[i];
            best = i;
        }
    return best;
}

static void apply_penalties(dsv4_sampler *s, float *x, int vocab) {
    const dsv4_sampler_params *p = &s->p;
    for (size_t i = 0; i < s->n_seen; i++) {
        int32_t id = s->seen[i];
        if (id >= vocab) continue;
        float c = (float)s->count[id], v = x[id];
        v -= p->presence_penalty + p->frequency_penalty * c;
        if (p->repetition_penalty != 1.0f) v = v > 0 ? v / p->repetition_penalty : v * p->repetition_penalty;
        x[id] = v;
    }
}

/* Candidate order: higher logit first, then lower id. */
static bool better(cand a, cand b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); }

static int by_rank(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Move the k best of c[0..n) to c[0..k), best first: a min-heap of the k best seen so far
 * (its root the worst of them), then a sort. O(n log k). */
static void keep_top_k(cand *c, size_t n, size_t k) {
    for (size_t i = 0; i < n; i++) {
        cand x = c[i];
        size_t j;
        if (i < k) { /* fill: sift up */
            for (j = i; j > 0 && better(c[(j - 1) / 2], x); j = (j - 1) / 2) c[j] = c[(j - 1) / 2];
            c[j] = x;
        } else if (better(x, c[0])) { /* replace the root: sift down */
            for (j = 0;;) {
                size_t l = 2 * j + 1, m = l;
                if (l >= k) break;
                if (l + 1 < k && better(c[l], c[l + 1])) m = l + 1;
                if (!better(x, c[m])) break;
                c[j] = c[m];
                j = m;
            }
            c[j] = x;
        }
    }
    qsort(c, k, sizeof *c, by_rank);
}

static void swap(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

static cand median_of_3(cand a, cand b, cand c) {
    if (better(b, a)) swap(&a, &b);  /* now a >= b */
    if (better(c, a)) return a;      /* c > a >= b */
    return better(c, b) ? c : b;     /* a >= c, b: the better of b and c */
}

/* The size of the nucleus of c[0..n): the shortest best-first prefix whose weight reaches
 * `need`. Rearranges c so that the nucleus is c[0..size), in no particular order. This is
 * quickselect on the boundary: partition around a pivot; if the better side already reaches
 * the mass, the boundary is inside it, otherwise it is on the other side and the better side
 * is wholly in. Expected O(n), where sorting would be O(n log n) for a flat distribution. */
static size_t nucleus(cand *c, size_t n, double need) {
    size_t lo = 0, hi = n; /* c[0..lo) is in; the boundary lies in c[lo..hi) */
    double in = 0;         /* weight of c[0..lo), always < need here */
    while (hi - lo > 16) {
        cand pivot = median_of_3(c[lo], c[lo + (hi - lo) / 2], c[hi - 1]);
        size_t a = lo;
        double mass = 0;
        for (size_t i = lo; i < hi; i++)
            if (better(c[i], pivot)) {
                swap(&c[a], &c[i]);
                mass += c[a++].w;
            }
        if (in + mass >= need) {
            hi = a; /* the pivot itself is not better than itself, so a < hi: progress */
            continue;
        }
        in += mass;
        lo = a;
        for (size_t i = lo; i < hi; i++) /* the pivot is the best of the rest: it is next in */
            if (c[i].id == pivot.id) {
                swap(&c[lo], &c[i]);
                break;
            }
        in += c[lo++].w;
        if (in >= need) return lo;
    }
    qsort(c + lo, hi - lo, sizeof *c, by_rank);
    for (size_t i = lo; i < hi; i++) {
        in += c[i].w;
        if (in >= need) return i + 1;
    }
    return hi; /* rounding: all of it */
}

/* One token from c[0..n), with probability proportional to its weight. */
static int32_t draw(dsv4_rng *rng, const cand *c, size_t n) {
    double total = 0;
    for (size_t i = 0; i < n; i++) total += c[i].w;
    double u = dsv4_rng_uniform(rng) * total;
    for (size_t i = 0; i < n; i++) {
        u -= c[i].w;
        if (u < 0) return c[i].id;
    }
    return c[n - 1].id; /* rounding left u just past the end */
}

/* Temperature, the filters and the draw, on the penalised logits x. */
static int32_t sample_tempered(dsv4_sampler *s, const float *x, int vocab) {
    const dsv4_sampler_params *p = &s->p;
    float inv_t = 1.0f / p->temperature;
    cand *c = s->cand;
    size_t n = 0;
    float m = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        float v = x[i] * inv_t;
        if (v == -INFINITY || isnan(v)) continue; /* impossible tokens */
        c[n++] = (cand){v, i, 0};
        m = DSV4_MAX(m, v);
    }
    if (n == 0) return -1;
    if (m == INFINITY) return argmax(x, vocab); /* a temperature so low that only the max counts */
    for (size_t i = 0; i < n; i++) c[i].w = exp((double)(c[i].logit - m));
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        keep_top_k(c, n, (size_t)p->top_k);
        n = (size_t)p->top_k;
    }
    if (p->top_p < 1.0f) {
        double total = 0;
        for (size_t i = 0; i < n; i++) total += c[i].w;
        n = nucleus(c, n, p->top_p * total);
    }
    if (p->min_p > 0) {
        float cut = m + logf(p->min_p);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].logit >= cut) c[k++] = c[i];
        n = k;
    }
    return draw(&s->rng, c, n);
}

int32_t dsv4_sample(dsv4_sampler *s, const float *logits, int vocab) {
    if (vocab <= 0) return -1;
    if ((size_t)vocab > s->cap) {
        float *w = realloc(s->work, (size_t)vocab * sizeof *w);
        if (w) s->work = w;
        cand *c = realloc(s->cand, (size_t)vocab * sizeof *c);
        if (c) s->cand = c;
        if (!w || !c) {
            dsv4_error(DSV4_ENOMEM, "sampler: out of memory for a vocabulary of %d", vocab);
            return -1;
        }
        s->cap = (size_t)vocab;
    }
    float *x = s->work;
    for (int i = 0; i < vocab; i++) x[i] = clean(logits[i]);
    for (int i = 0; i < s->p.n_bias; i++)
        if (s->p.bias[i].id < vocab) x[s->p.bias[i].id] += s->p.bias[i].value;
    apply_penalties(s, x, vocab);
    int32_t chosen = s->p.temperature == 0 ? argmax(x, vocab) : sample_tempered(s, x, vocab);
    if (chosen >= 0) dsv4_sampler_accept(s, chosen);
    return chosen;
}

/* ---- log-probabilities ---------------------------------------------------------------------- */

/* log of the softmax denominator, relative to the maximum: returns m, sets *log_z so that
 * logprob(i) = x_i - m - log_z. */
static float log_normaliser(const float *logits, int vocab, double *log_z) {
    float m = -INFINITY;
    for (int i = 0; i < vocab; i++) m = DSV4_MAX(m, clean(logits[i]));
    double z = 0;
    if (m > -INFINITY)
        for (int i = 0; i < vocab; i++) z += exp((double)(clean(logits[i]) - m));
    *log_z = log(z);
    return m;
}

float dsv4_logprob(const float *logits, int vocab, int32_t id) {
    if (id < 0 || id >= vocab) return -INFINITY;
    double log_z;
    float m = log_normaliser(logits, vocab, &log_z);
    if (m == -INFINITY) return -INFINITY;
    return (float)((double)(clean(logits[id]) - m) - log_z);
}

int dsv4_logprobs_topn(const float *logits, int vocab, int n, int32_t *ids, float *logprobs) {
    n = DSV4_MIN(DSV4_MIN(n, 20), vocab);
    if (n <= 0) return 0;
    cand top[20];
    int have = 0;
    for (int i = 0; i < vocab; i++) { /* insertion into a short sorted list; ids ascend, so
                                        an equal logit never displaces an earlier id */
        cand x = {clean(logits[i]), i, 0};
        if (have == n && !better(x, top[n - 1])) continue;
        int j = have < n ? have++ : n - 1;
        while (j > 0 && better(x, top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = x;
    }
    double log_z;
    float m = log_normaliser(logits, vocab, &log_z);
    for (int k = 0; k < have; k++) {
        ids[k] = top[k].id;
        logprobs[k] = m == -INFINITY ? -INFINITY : (float)((double)(top[k].logit - m) - log_z);
    }
    return have;
}
