/* optim.c: Muon and AdamW over the training model's table, the router-bias rule, the
 * learning-rate schedule. optim.h explains which rule trains what and why. */
#include <math.h>
#include <stdio.h>

#include "base/base.h"
#include "io/safetensors.h"
#include "train/optim.h"

void dsv4_optim_defaults(dsv4_optim_opts *o) {
    *o = (dsv4_optim_opts){.weight_decay = 0.1f, .momentum = 0.95f, .update_rms = 0.18f, .ns_fast = 8, .ns_exact = 2,
                           .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-20f, .clip = 1.0f, .bias_speed = 0.001f};
}

const char *dsv4_opt_rule_name(dsv4_opt_rule r) {
    switch (r) {
    case DSV4_RULE_MUON: return "muon";
    case DSV4_RULE_ADAMW: return "adamw";
    case DSV4_RULE_ROUTER_BIAS: return "router-bias";
    }
    return "?";
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The rule of one parameter, from its official name and shape. */
static dsv4_opt_rule rule_of(const dsv4_tparam *p, bool *decay) {
    *decay = false;
    if (ends_with(p->name, "gate.bias")) return DSV4_RULE_ROUTER_BIAS;
    if (!strcmp(p->name, "embed.weight") || !strcmp(p->name, "head.weight")) {
        *decay = true;
        return DSV4_RULE_ADAMW;
    }
    if (p->ndim == 1 || ends_with(p->name, ".ape")) return DSV4_RULE_ADAMW; /* norms, base, scale, sinks */
    *decay = true;
    return DSV4_RULE_MUON;
}

dsv4_status dsv4_optim_new(const dsv4_tmodel *tm, const dsv4_optim_opts *o, dsv4_optim **out) {
    *out = NULL;
    dsv4_optim *opt = calloc(1, sizeof *opt);
    if (!opt) return dsv4_error(DSV4_ENOMEM, "out of memory for the optimiser");
    opt->o = *o;
    opt->n = tm->n_table;
    opt->n_floats = tm->n_floats;
    opt->rule = calloc((size_t)opt->n + 1, sizeof *opt->rule);
    opt->blocks = calloc((size_t)opt->n + 1, sizeof *opt->blocks);
    opt->decay = calloc((size_t)opt->n + 1, sizeof *opt->decay);
    opt->m = dsv4_alloc_aligned(tm->n_floats * sizeof(float) + 64, "optimiser state");
    opt->v = dsv4_alloc_aligned(tm->n_floats * sizeof(float) + 64, "optimiser state");
    if (!opt->rule || !opt->blocks || !opt->decay || !opt->m || !opt->v) {
        dsv4_optim_free(opt);
        return dsv4_error(DSV4_ENOMEM, "out of memory for the optimiser state (%zu floats)", tm->n_floats);
    }
    memset(opt->m, 0, tm->n_floats * sizeof(float));
    memset(opt->v, 0, tm->n_floats * sizeof(float));
    for (int i = 0; i < opt->n; i++) {
        const dsv4_tparam *p = &tm->table[i];
        opt->rule[i] = rule_of(p, &opt->decay[i]);
        opt->blocks[i] = ends_with(p->name, "attn.wo_a.weight") ? tm->model.cfg.o_groups : 1;
    }
    *out = opt;
    return DSV4_OK;
}

void dsv4_optim_free(dsv4_optim *opt) {
    if (!opt) return;
    free(opt->rule);
    free(opt->blocks);
    free(opt->decay);
    free(opt->m);
    free(opt->v);
    free(opt);
}

double dsv4_grad_norm(const dsv4_tmodel *tm) {
    double *part = calloc((size_t)tm->n_table + 1, sizeof(double));
    if (!part) return INFINITY; /* clipping then zeroes the step: safe */
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < tm->n_table; i++) {
        const float *g = tm->grads + tm->table[i].off;
        double s = 0.0;
        for (size_t j = 0; j < tm->table[i].n; j++) s += (double)g[j] * g[j];
        part[i] = s;
    }
    double total = 0.0;
    for (int i = 0; i < tm->n_table; i++) total += part[i];
    free(part);
    return sqrt(total);
}

/* ---- Newton-Schulz ------------------------------------------------------------------------- */

dsv4_status dsv4_newton_schulz(float *X, int rows, int cols, int fast, int exact) {
    static const float quintic[3] = {3.4445f, -4.7750f, 2.0315f}, cubic[3] = {2.0f, -1.5f, 0.5f};
    bool wide = rows <= cols;
    int s = wide ? rows : cols; /* the Gram matrix is s x s */
    size_t n = (size_t)rows * cols;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)X[i] * X[i];
    float inv = (float)(1.0 / (sqrt(ss) + 1e-7));
    for (size_t i = 0; i < n; i++) X[i] *= inv;
    float *A = malloc(((size_t)s * s + 1) * sizeof(float)), *B = malloc(((size_t)s * s + 1) * sizeof(float));
    float *Y = malloc((n + 1) * sizeof(float));
    if (!A || !B || !Y) {
        free(A), free(B), free(Y);
        return dsv4_error(DSV4_ENOMEM, "out of memory orthogonalising a %d x %d matrix", rows, cols);
    }
    for (int it = 0; it < fast + exact; it++) {
        const float *k = it < fast ? quintic : cubic;
        /* wide: A = X X^T, X <- a X + (b A + c A A) X;  tall: A = X^T X, X <- a X + X (b A + c A A) */
        if (wide) dsv4_sgemm_tiled(false, true, s, s, cols, 1.0f, X, cols, X, cols, 0.0f, A, s);
        else dsv4_sgemm_tiled(true, false, s, s, rows, 1.0f, X, cols, X, cols, 0.0f, A, s);
        memcpy(B, A, (size_t)s * s * sizeof(float));
        dsv4_sgemm_tiled(false, false, s, s, s, k[2], A, s, A, s, k[1], B, s);
        memcpy(Y, X, n * sizeof(float));
        if (wide) dsv4_sgemm_tiled(false, false, rows, cols, s, 1.0f, B, s, Y, cols, k[0], X, cols);
        else dsv4_sgemm_tiled(false, false, rows, cols, s, 1.0f, Y, cols, B, s, k[0], X, cols);
    }
    free(A), free(B), free(Y);
    return DSV4_OK;
}

/* ---- the updates --------------------------------------------------------------------------- */

static dsv4_status muon_update(dsv4_optim *opt, const dsv4_tparam *p, int blocks, float *w, const float *g, float gscale,
                               float lr, bool decay) {
    const dsv4_optim_opts *o = &opt->o;
    float *m = opt->m + p->off, mu = o->momentum;
    float *u = malloc((p->n + 1) * sizeof(float));
    if (!u) return dsv4_error(DSV4_ENOMEM, "out of memory updating %s", p->name);
    bool any = false;
    for (size_t j = 0; j < p->n; j++) {
        float gj = gscale * g[j];
        m[j] = mu * m[j] + gj;
        u[j] = mu * m[j] + gj;
        any |= u[j] != 0.0f;
    }
    float keep = decay ? 1.0f - lr * o->weight_decay : 1.0f;
    int rows = (int)p->shape[0] / blocks, cols = (int)p->shape[1];
    float step = lr * o->update_rms * sqrtf((float)DSV4_MAX(rows, cols));
    dsv4_status rc = DSV4_OK;
    for (int b = 0; b < blocks && any && !rc; b++)
        rc = dsv4_newton_schulz(u + (size_t)b * rows * cols, rows, cols, o->ns_fast, o->ns_exact);
    if (!rc)
        for (size_t j = 0; j < p->n; j++) w[j] = keep * w[j] - (any ? step * u[j] : 0.0f);
    free(u);
    return rc;
}

static void adamw_update(dsv4_optim *opt, const dsv4_tparam *p, float *w, const float *g, float gscale, float lr,
                         bool decay) {
    const dsv4_optim_opts *o = &opt->o;
    float *m = opt->m + p->off, *v = opt->v + p->off;
    double t = (double)opt->step + 1.0;
    float c1 = (float)(1.0 - pow(o->beta1, t)), c2 = (float)(1.0 - pow(o->beta2, t));
    float keep = decay ? 1.0f - lr * o->weight_decay : 1.0f;
    for (size_t j = 0; j < p->n; j++) {
        float gj = gscale * g[j];
        m[j] = o->beta1 * m[j] + (1.0f - o->beta1) * gj;
        v[j] = o->beta2 * v[j] + (1.0f - o->beta2) * gj * gj;
        w[j] = keep * w[j] - lr * (m[j] / c1) / (sqrtf(v[j] / c2) + o->eps);
    }
}

dsv4_status dsv4_optim_step(dsv4_optim *opt, dsv4_tmodel *tm, float lr, double gnorm) {
    if (tm->n_table != opt->n || tm->n_floats != opt->n_floats)
        return dsv4_error(DSV4_EINVAL, "optimiser made for another model (%d tensors, this one %d)", opt->n, tm->n_table);
    float gscale = opt->o.clip > 0 && gnorm > opt->o.clip ? (float)(opt->o.clip / gnorm) : 1.0f;
    dsv4_status rc = DSV4_OK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < opt->n; i++) {
        const dsv4_tparam *p = &tm->table[i];
        float *w = tm->params + p->off;
        const float *g = tm->grads + p->off;
        if (opt->rule[i] == DSV4_RULE_MUON) {
            dsv4_status r = muon_update(opt, p, opt->blocks[i], w, g, gscale, lr, opt->decay[i]);
            if (r) {
#pragma omp critical(dsv4_optim_rc)
                rc = r;
            }
        } else if (opt->rule[i] == DSV4_RULE_ADAMW) {
            adamw_update(opt, p, w, g, gscale, lr, opt->decay[i]);
        }
    }
    if (!rc) opt->step++;
    return rc;
}

void dsv4_router_bias_update(dsv4_tmodel *tm, const int64_t *loads, float speed) {
    const struct dsv4_config *c = &tm->model.cfg;
    int E = c->n_routed_experts;
    for (int b = 0; b < c->n_layers + (tm->model.mtp ? 1 : 0); b++) {
        const dsv4_moe_w *w = b < c->n_layers ? &tm->model.layers[b].moe : &tm->model.mtp->block.moe;
        if (w->hash || !w->bias) continue;
        const int64_t *load = loads + (size_t)b * E;
        double mean = 0.0;
        for (int e = 0; e < E; e++) mean += (double)load[e] / E;
        for (int e = 0; e < E; e++)
            w->bias[e] += (double)load[e] < mean ? speed : (double)load[e] > mean ? -speed : 0.0f;
    }
}

/* ---- state --------------------------------------------------------------------------------- */

dsv4_status dsv4_optim_write(const dsv4_optim *opt, const char *path) {
    dsv4_st_writer *w = dsv4_st_writer_new();
    if (!w) return dsv4_error(DSV4_ENOMEM, "out of memory writing %s", path);
    int64_t shape[1] = {(int64_t)opt->n_floats};
    dsv4_status rc = dsv4_st_writer_add(w, "m", DSV4_DT_F32, 1, shape, opt->m);
    if (!rc) rc = dsv4_st_writer_add(w, "v", DSV4_DT_F32, 1, shape, opt->v);
    if (!rc) rc = dsv4_st_writer_write(w, path);
    dsv4_st_writer_free(w);
    return rc;
}

dsv4_status dsv4_optim_read(dsv4_optim *opt, const char *path) {
    dsv4_st *st;
    dsv4_status rc = dsv4_st_open_file(path, &st);
    if (rc) return rc;
    const char *names[2] = {"m", "v"};
    float *dst[2] = {opt->m, opt->v};
    for (int k = 0; k < 2 && !rc; k++) {
        const dsv4_tensor *t = dsv4_st_find(st, names[k]);
        if (!t || t->dtype != DSV4_DT_F32 || t->ndim != 1 || (size_t)t->shape[0] != opt->n_floats)
            rc = dsv4_error(DSV4_EFORMAT, "%s: tensor \"%s\" missing or not F32 [%zu] (another model's state?)", path,
                            names[k], opt->n_floats);
        else memcpy(dst[k], t->data, opt->n_floats * sizeof(float));
    }
    dsv4_st_close(st);
    return rc;
}

/* ---- the schedule -------------------------------------------------------------------------- */

bool dsv4_schedule_decaying(const dsv4_schedule *s, long step) {
    return step >= (long)((double)s->decay_start * s->total) && s->decay_start < 1.0f;
}

float dsv4_schedule_lr(const dsv4_schedule *s, long step) {
    if (step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    long d0 = (long)((double)s->decay_start * s->total);
    if (step < d0 || s->total - 1 <= d0) return s->lr;
    double x = (double)(step - d0) / (double)(s->total - 1 - d0); /* 0 .. 1 */
    if (x > 1.0) x = 1.0;
    double f = s->final_ratio + (1.0 - s->final_ratio) * 0.5 * (1.0 + cos(3.141592653589793 * x));
    return (float)(s->lr * f);
}
