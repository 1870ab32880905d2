/* train_config.c: a training run's CONFIG.json.
 *
 *   {
 *     "model": { ...the model's config.json (Hugging Face keys)... },
 *     "seed": 1, "init_std": 0.02, "steps": 4000, "workers": 2,
 *     "checkpoint_every": 100, "eval_every": 250, "eval_rows": 2,
 *     "optimizer": {"lr": 3e-3, "warmup": 100, "decay_start": 0.8, "final_lr_ratio": 0.1,
 *                   "weight_decay": 0.1, "momentum": 0.95, "update_rms": 0.18, "ns_steps": [8, 2],
 *                   "adam_betas": [0.9, 0.95], "adam_eps": 1e-20, "clip": 1.0,
 *                   "router_bias_speed": 0.001},
 *     "loss": {"mtp": 0.3, "mtp_in_decay": 0.1, "indexer": 1.0, "balance": 1e-4},
 *     "data": {"batch": 8, "seq": 512, "max_len": 4096,
 *              "mix": {"arith": 3, "table": 2, "needle": 2, "tools": 2, "text": 1, "chat": 1}},
 *     "phases": [{"until": 1000, "seq": 256, "index_topk": 256}, {"mix": {...}}]
 *   }
 * Every key but "model" has the default shown (V4's values for the optimiser and losses);
 * "phases" is a list of curriculum stages, each with the keys of "data" (those it leaves out
 * come from "data") and "until", the step where it ends (the last ends with the run); a phase
 * may also set "index_topk", the indexer's top-k while it lasts (large: dense CSA attention,
 * the indexer's warm-up; the checkpoint keeps the model's own value).
 * Unknown keys are errors, so that a misspelt key does not silently train something else. */
#include <jansson.h>
#include <stdio.h>

#include "base/base.h"
#include "model/config.h"
#include "train/trainer.h"

typedef struct reader {
    const char *path;
    dsv4_status rc;
} reader;

static void fail(reader *r, const char *fmt, const char *a, const char *b) {
    if (r->rc) return;
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a, b);
    r->rc = dsv4_error(DSV4_EFORMAT, "%s: %s", r->path, msg);
}

/* Every key of obj must be one of `known` (NULL-terminated). */
static void known_keys(reader *r, json_t *obj, const char *where, const char *const *known) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (const char *const *k = known; *k; k++) ok |= !strcmp(key, *k);
        if (!ok) fail(r, "unknown key \"%s\" in %s", key, where);
    }
}

static double num(reader *r, json_t *obj, const char *key, double def, double lo, double hi) {
    json_t *v = json_object_get(obj, key);
    if (!v) return def;
    if (!json_is_number(v)) {
        fail(r, "\"%s\" must be a number%s", key, "");
        return def;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        char range[128];
        snprintf(range, sizeof range, " (got %g, allowed %g..%g)", x, lo, hi);
        fail(r, "\"%s\" is out of range%s", key, range);
        return def;
    }
    return x;
}

static long integer(reader *r, json_t *obj, const char *key, long def, long lo, long hi) {
    json_t *v = json_object_get(obj, key);
    if (v && !json_is_integer(v)) {
        fail(r, "\"%s\" must be an integer%s", key, "");
        return def;
    }
    return (long)num(r, obj, key, (double)def, (double)lo, (double)hi);
}

static void pair(reader *r, json_t *obj, const char *key, double *a, double *b, double lo, double hi) {
    json_t *v = json_object_get(obj, key);
    if (!v) return;
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
        !json_is_number(json_array_get(v, 1))) {
        fail(r, "\"%s\" must be a list of two numbers%s", key, "");
        return;
    }
    double x = json_number_value(json_array_get(v, 0)), y = json_number_value(json_array_get(v, 1));
    if (!(x >= lo && x <= hi && y >= lo && y <= hi)) fail(r, "\"%s\" is out of range%s", key, "");
    *a = x;
    *b = y;
}

static const char *const DATA_KEYS[] = {"batch", "seq", "max_len", "mix", "index_topk", "until", NULL};

/* The data keys of obj over `ph` (inherited values stay). */
static void read_phase(reader *r, json_t *obj, const char *where, dsv4_phase *ph) {
    if (!json_is_object(obj)) {
        fail(r, "%s must be an object%s", where, "");
        return;
    }
    known_keys(r, obj, where, DATA_KEYS);
    ph->batch = (int)integer(r, obj, "batch", ph->batch, 1, 1 << 20);
    ph->seq = (int)integer(r, obj, "seq", ph->seq, 2, 1 << 24);
    ph->max_len = (int)integer(r, obj, "max_len", ph->max_len, 2, 1 << 24);
    ph->index_topk = (int)integer(r, obj, "index_topk", ph->index_topk, 0, 1024);
    json_t *mix = json_object_get(obj, "mix");
    if (mix) {
        if (!json_is_object(mix)) fail(r, "\"mix\" in %s must be an object%s", where, "");
        double total = 0.0;
        const char *key;
        json_t *v;
        for (int f = 0; f < DSV4_N_FAMILIES; f++) ph->mix[f] = 0.0;
        json_object_foreach(mix, key, v) {
            int f = dsv4_family_of(key);
            if (f < 0) fail(r, "\"mix\" names an unknown family \"%s\"%s", key, "");
            else ph->mix[f] = num(r, mix, key, 0.0, 0.0, 1e9);
            if (f >= 0) total += ph->mix[f];
        }
        if (!(total > 0)) fail(r, "\"mix\" in %s gives no family a share%s", where, "");
    }
}

void dsv4_train_config_free(dsv4_train_config *cfg) {
    free(cfg->model_json);
    cfg->model_json = NULL;
}

dsv4_status dsv4_train_config_parse(const char *json_text, const char *path, dsv4_train_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!root) return dsv4_error(DSV4_EFORMAT, "%s: malformed JSON at line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
    reader r = {.path = path};
    static const char *const TOP[] = {"model", "seed", "init_std", "steps", "workers", "checkpoint_every", "eval_every",
                                      "eval_rows", "optimizer", "loss", "data", "phases", NULL};
    if (!json_is_object(root)) fail(&r, "not a JSON object%s%s", "", "");
    else known_keys(&r, root, "the configuration", TOP);

    json_t *model = json_object_get(root, "model");
    if (!r.rc && !json_is_object(model)) fail(&r, "\"model\" (the model's config.json) is missing or not an object%s%s", "", "");
    if (!r.rc) {
        cfg->model_json = json_dumps(model, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        char where[4200];
        snprintf(where, sizeof where, "%s: \"model\"", path);
        if (!cfg->model_json) r.rc = dsv4_error(DSV4_ENOMEM, "out of memory for the model configuration");
        else r.rc = dsv4_config_parse(cfg->model_json, where, &cfg->model);
    }
    double init_default = 0.02;
    if (!r.rc && json_is_number(json_object_get(model, "initializer_range")))
        init_default = json_number_value(json_object_get(model, "initializer_range"));
    cfg->seed = (uint64_t)integer(&r, root, "seed", 1, 0, (1L << 53));
    cfg->init_std = (float)num(&r, root, "init_std", init_default, 0.0, 10.0);
    cfg->steps = integer(&r, root, "steps", 1000, 1, 1L << 40);
    cfg->workers = (int)integer(&r, root, "workers", 2, 1, 256);
    cfg->checkpoint_every = (int)integer(&r, root, "checkpoint_every", 100, 0, 1 << 30);
    cfg->eval_every = (int)integer(&r, root, "eval_every", 250, 0, 1 << 30);
    cfg->eval_rows = (int)integer(&r, root, "eval_rows", 2, 1, 1 << 20);

    json_t *o = json_object_get(root, "optimizer");
    dsv4_optim_defaults(&cfg->optim);
    cfg->sched = (dsv4_schedule){.lr = 3e-3f, .warmup = 100, .decay_start = 0.8f, .final_ratio = 0.1f};
    if (o) {
        static const char *const OPT[] = {"lr", "warmup", "decay_start", "final_lr_ratio", "weight_decay", "momentum",
                                          "update_rms", "ns_steps", "adam_betas", "adam_eps", "clip",
                                          "router_bias_speed", NULL};
        if (!json_is_object(o)) fail(&r, "\"optimizer\" must be an object%s%s", "", "");
        else known_keys(&r, o, "\"optimizer\"", OPT);
        dsv4_optim_opts *p = &cfg->optim;
        cfg->sched.lr = (float)num(&r, o, "lr", cfg->sched.lr, 0.0, 10.0);
        cfg->sched.warmup = integer(&r, o, "warmup", cfg->sched.warmup, 0, 1L << 40);
        cfg->sched.decay_start = (float)num(&r, o, "decay_start", cfg->sched.decay_start, 0.0, 1.0);
        cfg->sched.final_ratio = (float)num(&r, o, "final_lr_ratio", cfg->sched.final_ratio, 0.0, 1.0);
        p->weight_decay = (float)num(&r, o, "weight_decay", p->weight_decay, 0.0, 10.0);
        p->momentum = (float)num(&r, o, "momentum", p->momentum, 0.0, 0.9999);
        p->update_rms = (float)num(&r, o, "update_rms", p->update_rms, 0.0, 10.0);
        double a = p->ns_fast, b = p->ns_exact, b1 = p->beta1, b2 = p->beta2;
        pair(&r, o, "ns_steps", &a, &b, 0, 100);
        pair(&r, o, "adam_betas", &b1, &b2, 0.0, 0.99999);
        p->ns_fast = (int)a, p->ns_exact = (int)b, p->beta1 = (float)b1, p->beta2 = (float)b2;
        p->eps = (float)num(&r, o, "adam_eps", p->eps, 0.0, 1.0);
        p->clip = (float)num(&r, o, "clip", p->clip, 0.0, 1e9);
        p->bias_speed = (float)num(&r, o, "router_bias_speed", p->bias_speed, 0.0, 1.0);
    }
    cfg->sched.total = cfg->steps;

    json_t *l = json_object_get(root, "loss");
    static const char *const LOSS[] = {"mtp", "mtp_in_decay", "indexer", "balance", NULL};
    if (l && !json_is_object(l)) fail(&r, "\"loss\" must be an object%s%s", "", "");
    else if (l) known_keys(&r, l, "\"loss\"", LOSS);
    cfg->mtp = (float)num(&r, l, "mtp", 0.3, 0.0, 100.0);
    cfg->mtp_decay = (float)num(&r, l, "mtp_in_decay", 0.1, 0.0, 100.0);
    cfg->indexer = (float)num(&r, l, "indexer", 1.0, 0.0, 100.0);
    cfg->balance = (float)num(&r, l, "balance", 1e-4, 0.0, 100.0);

    dsv4_phase base = {.until = 0, .batch = 8, .seq = 512, .max_len = 4096};
    for (int f = 0; f < DSV4_N_FAMILIES; f++) base.mix[f] = 1.0;
    json_t *data = json_object_get(root, "data");
    if (data) read_phase(&r, data, "\"data\"", &base);
    if (json_object_get(data, "until")) fail(&r, "\"until\" belongs in a phase, not in \"data\"%s%s", "", "");
    json_t *phases = json_object_get(root, "phases");
    if (phases && (!json_is_array(phases) || json_array_size(phases) == 0 || json_array_size(phases) > DSV4_MAX_PHASES))
        fail(&r, "\"phases\" must be a list of 1 to 16 objects%s%s", "", "");
    if (!r.rc && phases) {
        cfg->n_phases = (int)json_array_size(phases);
        for (int i = 0; i < cfg->n_phases && !r.rc; i++) {
            char where[32];
            snprintf(where, sizeof where, "phase %d", i);
            json_t *p = json_array_get(phases, (size_t)i);
            cfg->phases[i] = base;
            read_phase(&r, p, where, &cfg->phases[i]);
            bool last = i == cfg->n_phases - 1;
            cfg->phases[i].until = last ? cfg->steps : integer(&r, p, "until", 0, 1, 1L << 40);
            if (!last && !json_object_get(p, "until")) fail(&r, "%s needs \"until\" (the step it ends at)%s", where, "");
            if (i > 0 && !last && cfg->phases[i].until <= cfg->phases[i - 1].until)
                fail(&r, "%s ends before the phase before it%s", where, "");
        }
    } else if (!r.rc) {
        cfg->n_phases = 1;
        cfg->phases[0] = base;
        cfg->phases[0].until = cfg->steps;
    }
    json_decref(root);
    if (r.rc) dsv4_train_config_free(cfg);
    return r.rc;
}

const dsv4_phase *dsv4_train_phase(const dsv4_train_config *cfg, long step) {
    for (int i = 0; i < cfg->n_phases - 1; i++)
        if (step < cfg->phases[i].until) return &cfg->phases[i];
    return &cfg->phases[cfg->n_phases - 1];
}
