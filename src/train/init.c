/* init.c: the starting point of a model trained from scratch.
 *
 * Weights. Every tensor draws from its own random stream, seeded by the run's seed and the
 * tensor's official name, so a tensor's initial values do not depend on which other tensors
 * the architecture has. The rules, by the role the name gives:
 *   matrices (linears, embedding, head, mHC fn)   N(0, std^2) (std = initializer_range, 0.02)
 *   output projections into the residual streams  N(0, std^2 / (2 * blocks)): attention's wo_b
 *   (wo_b, every expert's w2)                      and the experts' w2, as GPT-2 scales them,
 *                                                  so the streams do not grow with depth
 *   RMSNorm weights                                1
 *   mHC gating factors (*_scale)                   0.01 (the mHC paper's alpha)
 *   mHC static biases (*_base)                     0, except the residual mix of each site:
 *                                                  +4 on the diagonal, so that Sinkhorn starts
 *                                                  near the identity and the hc streams keep
 *                                                  their own content (docs/tiny-model.md)
 *   attention sinks, compressor position biases,   0
 *   router biases
 * With base 0 the pre weights are sigmoid(0) = 1/2 and the post weights 2 sigmoid(0) = 1.
 *
 * Hash routing. The first layers route by a frozen table tid2eid[token] of K distinct
 * experts. DeepSeek does not publish how its table was made; ours balances the expected load:
 * tokens are placed in decreasing order of their frequency in the training data, each on K
 * experts drawn at random among those whose load is within the token's own frequency of the
 * least loaded one. The load imbalance stays below the largest token frequency (as greedy
 * least-loaded placement), and the random draws make every hash layer's table different. */
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "infer/sampler.h"
#include "train/train.h"

static uint64_t fnv1a(const char *s, uint64_t h) {
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static float normal(dsv4_rng *r) {
    double u1 = dsv4_rng_uniform(r), u2 = dsv4_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

void dsv4_tmodel_init(dsv4_tmodel *tm, uint64_t seed, float std) {
    const struct dsv4_config *c = &tm->model.cfg;
    int hc = c->hc_mult, blocks = c->n_layers + c->n_mtp_layers;
    float out_std = std / sqrtf(2.0f * (float)blocks);
    for (int i = 0; i < tm->n_table; i++) {
        const dsv4_tparam *p = &tm->table[i];
        float *w = tm->params + p->off;
        dsv4_rng r;
        dsv4_rng_seed(&r, fnv1a(p->name, 0xcbf29ce484222325ull ^ seed));
        if (ends_with(p->name, "norm.weight")) {
            for (size_t j = 0; j < p->n; j++) w[j] = 1.0f;
        } else if (ends_with(p->name, "_scale")) {
            for (size_t j = 0; j < p->n; j++) w[j] = 0.01f;
        } else if (ends_with(p->name, "_base")) {
            memset(w, 0, p->n * sizeof(float));
            if (!ends_with(p->name, "hc_head_base")) /* [pre hc | post hc | comb hc x hc] */
                for (int j = 0; j < hc; j++) w[2 * hc + j * hc + j] = 4.0f;
        } else if (p->ndim == 1 || ends_with(p->name, ".ape")) {
            memset(w, 0, p->n * sizeof(float)); /* sinks, position biases, router biases */
        } else {
            float sd = ends_with(p->name, "wo_b.weight") || ends_with(p->name, "w2.weight") ? out_std : std;
            for (size_t j = 0; j < p->n; j++) w[j] = sd * normal(&r);
        }
    }
}

void dsv4_tmodel_init_hash(dsv4_tmodel *tm, const double *freq, uint64_t seed) {
    const struct dsv4_config *c = &tm->model.cfg;
    int V = c->vocab_size, E = c->n_routed_experts, K = c->n_activated_experts;
    int *order = malloc((size_t)V * sizeof(int));
    double *load = malloc((size_t)E * sizeof(double));
    int *cand = malloc((size_t)E * sizeof(int));
    bool *taken = malloc((size_t)E * sizeof(bool));
    if (!order || !load || !cand || !taken) { /* keep the default tables */
        free(order), free(load), free(cand), free(taken);
        return;
    }
    /* decreasing frequency, ties to the lower id (a Shell sort: deterministic, no context
     * pointer needed as qsort would) */
    for (int t = 0; t < V; t++) order[t] = t;
    for (int gap = V / 2; gap > 0; gap /= 2)
        for (int i = gap; i < V; i++)
            for (int j = i; j >= gap; j -= gap) {
                int a = order[j - gap], b = order[j];
                double fa = freq ? freq[a] : 0.0, fb = freq ? freq[b] : 0.0;
                if (fa > fb || (fa == fb && a < b)) break;
                order[j - gap] = b;
                order[j] = a;
            }
    for (int h = 0; h < tm->n_tid2eid; h++) {
        dsv4_rng r;
        dsv4_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)h + 1);
        for (int e = 0; e < E; e++) load[e] = 0.0;
        int32_t *table = tm->tid2eid[h];
        for (int i = 0; i < V; i++) {
            int t = order[i];
            double f = (freq ? freq[t] : 0.0) + 1e-9; /* unseen tokens spread evenly too */
            for (int e = 0; e < E; e++) taken[e] = false;
            for (int k = 0; k < K; k++) {
                double lo = INFINITY;
                for (int e = 0; e < E; e++)
                    if (!taken[e]) lo = fmin(lo, load[e]);
                int n = 0;
                for (int e = 0; e < E; e++)
                    if (!taken[e] && load[e] <= lo + f) cand[n++] = e;
                int e = cand[(int)(dsv4_rng_uniform(&r) * n)];
                taken[e] = true;
                load[e] += f;
                table[(size_t)t * K + k] = e;
            }
        }
    }
    free(order), free(load), free(cand), free(taken);
}
