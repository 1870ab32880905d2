/* trainer.c: one training step, validation, checkpoints (trainer.h has the overview).
 *
 * A step of B rows:
 *   1. the rows: row r takes the family drawn from (seed, step, r) and is packed from that
 *      family's cursor;
 *   2. the rows are dealt to the W workers by a fixed rule (longest first, each to the worker
 *      with the least work so far, ties to the lower worker) so that the workers finish at
 *      about the same time; each worker runs its rows in row order, forward then backward,
 *      single-threaded, into its own gradient buffer (a view of the master's weights);
 *   3. the buffers are added in worker order into the master's gradients;
 *   4. the global gradient norm, clipping, Muon / AdamW at the scheduled learning rate, and the
 *      router-bias rule on the step's expert loads.
 * The losses are means over the whole step: row r's main loss enters with weight
 * targets_r / targets of the step (so the step's loss is the mean over all its targets), the
 * MTP loss likewise over its targets times the MTP weight, the indexer loss with weight
 * tokens_r / tokens of the step, the balance loss (a per-sequence quantity) with 1 / B. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <sys/stat.h>

#include "base/base.h"
#include "train/trainer.h"

struct dsv4_trainer {
    dsv4_train_config cfg;
    dsv4_tmodel *tm;
    dsv4_optim *opt;
    dsv4_dataset *train, *valid;
    int W;
    dsv4_tmodel **views;     /* per worker: the master's weights, the worker's gradients */
    dsv4_tape **tapes;       /* per worker */
    int64_t *loads;          /* per worker: [blocks][E] tokens sent to each expert */
    long step;
    int topk;                /* the indexer top-k the weights views use now */
    dsv4_cursors cur;
    dsv4_row *rows;
    int cap_rows;
};

long dsv4_trainer_step_count(const dsv4_trainer *t) { return t->step; }
dsv4_tmodel *dsv4_trainer_model(dsv4_trainer *t) { return t->tm; }

void dsv4_trainer_free(dsv4_trainer *t) {
    if (!t) return;
    for (int w = 0; w < t->W; w++) {
        if (t->views) dsv4_tmodel_free(t->views[w]);
        if (t->tapes) dsv4_tape_free(t->tapes[w]);
    }
    free(t->views);
    free(t->tapes);
    free(t->loads);
    for (int r = 0; r < t->cap_rows; r++) dsv4_row_free(&t->rows[r]);
    free(t->rows);
    dsv4_optim_free(t->opt);
    dsv4_tmodel_free(t->tm);
    dsv4_dataset_close(t->train);
    dsv4_dataset_close(t->valid);
    dsv4_train_config_free(&t->cfg);
    free(t);
}

static int n_blocks(const struct dsv4_config *c) { return c->n_layers + c->n_mtp_layers; }

/* ---- checkpoints --------------------------------------------------------------------------- */

static dsv4_status write_text(const char *path, const char *text) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return dsv4_error(DSV4_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path)) return dsv4_error(DSV4_EIO, "%s: write failed", path);
    return DSV4_OK;
}

static dsv4_status renamed(dsv4_status rc, const char *tmp, const char *path) {
    if (rc) return rc;
    if (rename(tmp, path)) return dsv4_error(DSV4_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return DSV4_OK;
}

dsv4_status dsv4_trainer_save(dsv4_trainer *t, const char *dir) {
    char path[4096], tmp[4200];
    if (mkdir(dir, 0777) && errno != EEXIST) return dsv4_error(DSV4_EIO, "%s: cannot create: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/config.json", dir);
    dsv4_status rc = write_text(path, t->cfg.model_json);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!rc) rc = renamed(dsv4_tmodel_write(t->tm, tmp, false, false), tmp, path);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!rc) rc = renamed(dsv4_optim_write(t->opt, tmp), tmp, path);
    if (rc) return rc;
    json_t *j = json_object(), *cur = json_object();
    json_object_set_new(j, "format", json_string("dsv4-trainer 1"));
    json_object_set_new(j, "step", json_integer(t->step));
    json_object_set_new(j, "optimizer_step", json_integer(t->opt->step));
    json_object_set_new(j, "seed", json_integer((json_int_t)t->cfg.seed));
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        json_object_set_new(cur, dsv4_family_name((dsv4_family)f), json_integer((json_int_t)t->cur.next[f]));
    json_object_set_new(j, "cursors", cur);
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    if (!text) return dsv4_error(DSV4_ENOMEM, "out of memory writing the trainer state");
    snprintf(path, sizeof path, "%s/trainer.json", dir);
    rc = write_text(path, text);
    free(text);
    return rc;
}

/* The checkpoint in dir: weights (its config.json must be the run's model), optimiser state,
 * step and cursors. */
static dsv4_status resume(dsv4_trainer *t, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t jerr;
    json_t *saved = json_load_file(path, 0, &jerr), *ours = json_loads(t->cfg.model_json, 0, &jerr);
    bool same = saved && ours && json_equal(saved, ours);
    json_decref(saved);
    json_decref(ours);
    if (!same) return dsv4_error(DSV4_EINVAL, "%s: missing, or not the model of the configuration (resume needs the same model)", path);
    dsv4_open_opts oo = {.numerics = DSV4_NUMERICS_EXACT};
    dsv4_model *m;
    dsv4_status rc = dsv4_model_open(dir, &oo, &m);
    if (rc) return rc;
    rc = dsv4_tmodel_from_model(m, &t->tm);
    dsv4_model_close(m);
    if (rc) return rc;
    if ((rc = dsv4_optim_new(t->tm, &t->cfg.optim, &t->opt))) return rc;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if ((rc = dsv4_optim_read(t->opt, path))) return rc;
    snprintf(path, sizeof path, "%s/trainer.json", dir);
    json_t *j = json_load_file(path, 0, &jerr);
    json_t *step = json_object_get(j, "step"), *ostep = json_object_get(j, "optimizer_step"), *cur = json_object_get(j, "cursors");
    if (!json_is_integer(step) || !json_is_integer(ostep) || !json_is_object(cur)) {
        json_decref(j);
        return dsv4_error(DSV4_EFORMAT, "%s: missing or malformed (needs step, optimizer_step, cursors)", path);
    }
    t->step = (long)json_integer_value(step);
    t->opt->step = (long)json_integer_value(ostep);
    for (int f = 0; f < DSV4_N_FAMILIES; f++)
        t->cur.next[f] = (uint64_t)json_integer_value(json_object_get(cur, dsv4_family_name((dsv4_family)f)));
    json_decref(j);
    return DSV4_OK;
}

/* ---- set-up -------------------------------------------------------------------------------- */

/* A fresh model: initial weights, hash tables balanced for the training data's token counts. */
static dsv4_status fresh(dsv4_trainer *t) {
    const struct dsv4_config *c = &t->cfg.model;
    dsv4_status rc = dsv4_tmodel_new(c, &t->tm);
    if (rc) return rc;
    dsv4_tmodel_init(t->tm, t->cfg.seed, t->cfg.init_std);
    double *freq = calloc((size_t)c->vocab_size, sizeof(double));
    if (!freq) return dsv4_error(DSV4_ENOMEM, "out of memory counting tokens");
    for (size_t i = 0; i < t->train->n_tokens; i++) freq[t->train->tokens[i]] += 1.0;
    dsv4_tmodel_init_hash(t->tm, freq, t->cfg.seed);
    free(freq);
    return dsv4_optim_new(t->tm, &t->cfg.optim, &t->opt);
}

/* Every phase still to run must find rows for each family of its mix: checked now, so that a
 * data set without them is an error before the first step, not hours into the run. */
static dsv4_status check_phases(const dsv4_trainer *t) {
    long start = 0;
    for (int p = 0; p < t->cfg.n_phases; p++) {
        const dsv4_phase *ph = &t->cfg.phases[p];
        bool ahead = ph->until > t->step;
        for (int f = 0; f < DSV4_N_FAMILIES && ahead; f++)
            if (ph->mix[f] > 0 && !dsv4_family_fits(t->train, f, ph->max_len))
                return dsv4_error(DSV4_EINVAL, "phase %d (from step %ld): the training data has no %s example of at most %d tokens",
                                  p + 1, start, dsv4_family_name((dsv4_family)f), ph->max_len);
        start = ph->until;
    }
    return DSV4_OK;
}

dsv4_status dsv4_trainer_new(const dsv4_train_config *cfg, const char *data_dir, const char *resume_dir,
                             dsv4_trainer **out) {
    *out = NULL;
    dsv4_trainer *t = calloc(1, sizeof *t);
    if (!t) return dsv4_error(DSV4_ENOMEM, "out of memory for a trainer");
    t->cfg = *cfg;
    t->cfg.model_json = strdup(cfg->model_json);
    t->W = cfg->workers;
    t->topk = cfg->model.index_topk;
    dsv4_status rc = DSV4_OK;
    if (!t->cfg.model_json) rc = dsv4_error(DSV4_ENOMEM, "out of memory for a trainer");
    int V = cfg->model.vocab_size;
    if (!rc) rc = dsv4_dataset_open(data_dir, "train", V, &t->train);
    if (!rc) {
        dsv4_status v = dsv4_dataset_open(data_dir, "valid", V, &t->valid);
        if (v) t->valid = NULL; /* validation is optional */
    }
    if (!rc) rc = resume_dir ? resume(t, resume_dir) : fresh(t);
    if (!rc) rc = check_phases(t);
    if (!rc) {
        t->views = calloc((size_t)t->W, sizeof *t->views);
        t->tapes = calloc((size_t)t->W, sizeof *t->tapes);
        t->loads = calloc((size_t)t->W * n_blocks(&cfg->model) * cfg->model.n_routed_experts + 1, sizeof(int64_t));
        if (!t->views || !t->tapes || !t->loads) rc = dsv4_error(DSV4_ENOMEM, "out of memory for the workers");
    }
    for (int w = 0; w < t->W && !rc; w++) {
        rc = dsv4_tmodel_new_view(t->tm, &t->views[w]);
        if (!rc && !(t->tapes[w] = dsv4_tape_new())) rc = dsv4_error(DSV4_ENOMEM, "out of memory for the workers");
    }
    if (rc) {
        dsv4_trainer_free(t);
        return rc;
    }
    /* a worker's products run on its own thread: nested parallel regions get one thread */
    omp_set_max_active_levels(1);
    dsv4_train_blas_init();
    *out = t;
    return DSV4_OK;
}

/* ---- a step -------------------------------------------------------------------------------- */

/* The indexer's top-k of every CSA layer in the master and the views (the tapes, sized by it,
 * are made anew). */
static dsv4_status set_topk(dsv4_trainer *t, int topk) {
    if (topk == t->topk) return DSV4_OK;
    const struct dsv4_config *c = &t->cfg.model;
    for (int w = -1; w < t->W; w++) {
        dsv4_tmodel *m = w < 0 ? t->tm : t->views[w];
        for (int l = 0; l < c->n_layers; l++) m->model.layers[l].attn.indexer.topk = topk;
        if (m->model.mtp) m->model.mtp->block.attn.indexer.topk = topk;
        if (w >= 0) {
            dsv4_tape_free(t->tapes[w]);
            if (!(t->tapes[w] = dsv4_tape_new())) return dsv4_error(DSV4_ENOMEM, "out of memory for the workers");
        }
    }
    t->topk = topk;
    return DSV4_OK;
}

static dsv4_status ensure_rows(dsv4_trainer *t, int n) {
    if (n <= t->cap_rows) return DSV4_OK;
    dsv4_row *rows = realloc(t->rows, (size_t)n * sizeof *rows);
    if (!rows) return dsv4_error(DSV4_ENOMEM, "out of memory for %d rows", n);
    memset(rows + t->cap_rows, 0, (size_t)(n - t->cap_rows) * sizeof *rows);
    t->rows = rows;
    t->cap_rows = n;
    return DSV4_OK;
}

static double row_cost(const dsv4_row *r) { return (double)r->T * (1.0 + r->T / 4096.0); }

/* worker[r] for each row: longest first to the least-loaded worker (ties: lower row, lower
 * worker) */
static void deal(const dsv4_row *rows, int B, int W, int *worker) {
    int *order = malloc((size_t)B * sizeof(int));
    double *work = calloc((size_t)W, sizeof(double));
    if (!order || !work) { /* round robin */
        for (int r = 0; r < B; r++) worker[r] = r % W;
        free(order), free(work);
        return;
    }
    for (int r = 0; r < B; r++) order[r] = r;
    for (int i = 1; i < B; i++) /* insertion sort by decreasing cost, stable */
        for (int j = i; j > 0 && row_cost(&rows[order[j]]) > row_cost(&rows[order[j - 1]]); j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (int i = 0; i < B; i++) {
        int best = 0;
        for (int w = 1; w < W; w++)
            if (work[w] < work[best]) best = w;
        worker[order[i]] = best;
        work[best] += row_cost(&rows[order[i]]);
    }
    free(order), free(work);
}

static int mtp_targets(const dsv4_row *r) {
    int n = 0;
    for (int i = 2; i < r->T; i++) n += r->mask[i] != 0;
    return n;
}

/* Loads of every block's experts from a tape into acc[blocks][E]. */
static void add_loads(const dsv4_tmodel *tm, const dsv4_tape *tp, bool mtp, int64_t *acc) {
    const struct dsv4_config *c = &tm->model.cfg;
    int E = c->n_routed_experts;
    for (int b = 0; b < c->n_layers + (mtp ? 1 : 0); b++) {
        const dsv4_moe_act *a = b < c->n_layers ? &tp->layers[b].moe : &tp->mtp_block.moe;
        for (int e = 0; e < E; e++) acc[(size_t)b * E + e] += a->start[e + 1] - a->start[e];
    }
}

dsv4_status dsv4_trainer_step(dsv4_trainer *t, dsv4_step_report *rep) {
    double t0 = dsv4_now();
    const dsv4_train_config *cfg = &t->cfg;
    const struct dsv4_config *c = &cfg->model;
    const dsv4_phase *ph = dsv4_train_phase(cfg, t->step);
    int B = ph->batch, W = t->W, E = c->n_routed_experts, nb = n_blocks(c);
    dsv4_status rc = set_topk(t, ph->index_topk ? ph->index_topk : c->index_topk);
    if (!rc) rc = ensure_rows(t, B);
    for (int r = 0; r < B && !rc; r++)
        rc = dsv4_row_fill(t->train, dsv4_row_family(ph, cfg->seed, t->step, r), ph->seq, ph->max_len, &t->cur, &t->rows[r]);
    if (rc) return rc;

    long tokens = 0, targets = 0, mtp_total = 0;
    int *worker = malloc((size_t)B * sizeof(int)), *mtp_n = malloc((size_t)B * sizeof(int));
    dsv4_losses *ls = calloc((size_t)B, sizeof *ls);
    dsv4_status *wrc = calloc((size_t)W, sizeof *wrc);
    if (!worker || !mtp_n || !ls || !wrc) {
        free(worker), free(mtp_n), free(ls), free(wrc);
        return dsv4_error(DSV4_ENOMEM, "out of memory for a step of %d rows", B);
    }
    for (int r = 0; r < B; r++) {
        tokens += t->rows[r].T;
        targets += t->rows[r].targets;
        mtp_total += (mtp_n[r] = mtp_targets(&t->rows[r]));
    }
    deal(t->rows, B, W, worker);
    bool decaying = dsv4_schedule_decaying(&cfg->sched, t->step);
    float mtp_w = c->n_mtp_layers ? (decaying ? cfg->mtp_decay : cfg->mtp) : 0.0f;
    memset(t->loads, 0, (size_t)W * nb * E * sizeof(int64_t));

#pragma omp parallel for schedule(dynamic, 1) num_threads(DSV4_MIN(W, omp_get_max_threads()))
    for (int w = 0; w < W; w++) {
        dsv4_tmodel *v = t->views[w];
        dsv4_tmodel_zero_grad(v);
        for (int r = 0; r < B && !wrc[w]; r++) {
            if (worker[r] != w) continue;
            const dsv4_row *row = &t->rows[r];
            dsv4_loss_opts lo = {
                .main = targets ? (float)row->targets / (float)targets : 0.0f,
                .mtp = mtp_total && mtp_w > 0 ? mtp_w * (float)mtp_n[r] / (float)mtp_total : 0.0f,
                .indexer = cfg->indexer * (float)row->T / (float)tokens,
                .balance = cfg->balance / (float)B,
                .mask = row->mask,
            };
            wrc[w] = dsv4_train_forward(v, t->tapes[w], row->ids, row->T, &lo, &ls[r]);
            if (!wrc[w]) wrc[w] = dsv4_train_backward(v, t->tapes[w]);
            if (!wrc[w]) add_loads(v, t->tapes[w], lo.mtp != 0.0f, t->loads + (size_t)w * nb * E);
        }
    }
    for (int w = 0; w < W && !rc; w++) rc = wrc[w];

    if (!rc) { /* the workers' gradients, added in worker order */
        float *g = t->tm->grads;
        size_t n = t->tm->n_floats;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float s = t->views[0]->grads[i];
            for (int w = 1; w < W; w++) s += t->views[w]->grads[i];
            g[i] = s;
        }
        for (int w = 1; w < W; w++)
            for (size_t i = 0; i < (size_t)nb * E; i++) t->loads[i] += t->loads[(size_t)w * nb * E + i];
    }
    double gnorm = 0.0;
    float lr = dsv4_schedule_lr(&cfg->sched, t->step);
    if (!rc) {
        gnorm = dsv4_grad_norm(t->tm);
        if (isfinite(gnorm)) {
            rc = dsv4_optim_step(t->opt, t->tm, lr, gnorm);
            if (!rc) dsv4_router_bias_update(t->tm, t->loads, cfg->optim.bias_speed);
        } else {
            rc = dsv4_error(DSV4_EINVAL, "step %ld: the gradient is not finite (norm %g): the run diverged", t->step, gnorm);
        }
    }
    if (!rc) {
        memset(rep, 0, sizeof *rep);
        rep->step = t->step;
        rep->lr = lr;
        rep->grad_norm = gnorm;
        rep->tokens = tokens;
        rep->targets = targets;
        rep->rows = B;
        for (int r = 0; r < B; r++) {
            if (targets) rep->loss += ls[r].main * t->rows[r].targets / (double)targets;
            if (mtp_total) rep->mtp += ls[r].mtp * mtp_n[r] / (double)mtp_total;
            rep->indexer += ls[r].indexer * t->rows[r].T / (double)tokens;
            rep->balance += ls[r].balance / B;
        }
        t->step++;
        rep->seconds = dsv4_now() - t0;
    }
    free(worker), free(mtp_n), free(ls), free(wrc);
    return rc;
}

/* ---- validation ---------------------------------------------------------------------------- */

dsv4_status dsv4_trainer_validate(dsv4_trainer *t, double loss[DSV4_N_FAMILIES]) {
    for (int f = 0; f < DSV4_N_FAMILIES; f++) loss[f] = NAN;
    if (!t->valid) return DSV4_OK;
    const dsv4_phase *ph = dsv4_train_phase(&t->cfg, t->step);
    dsv4_status rc = set_topk(t, ph->index_topk ? ph->index_topk : t->cfg.model.index_topk);
    if (rc) return rc;
    int R = t->cfg.eval_rows, n = 0;
    bool scored[DSV4_N_FAMILIES]; /* the families with a row within the phase's max_len */
    for (int f = 0; f < DSV4_N_FAMILIES; f++) scored[f] = dsv4_family_fits(t->valid, f, ph->max_len);
    dsv4_row *rows = calloc((size_t)DSV4_N_FAMILIES * R, sizeof *rows);
    double *sum = calloc((size_t)DSV4_N_FAMILIES * R, sizeof(double));
    if (!rows || !sum) {
        free(rows), free(sum);
        return dsv4_error(DSV4_ENOMEM, "out of memory for validation");
    }
    for (int f = 0; f < DSV4_N_FAMILIES && !rc; f++) {
        if (!scored[f]) continue;
        dsv4_cursors cur = {{0}}; /* always the same rows */
        for (int r = 0; r < R && !rc; r++) rc = dsv4_row_fill(t->valid, f, ph->seq, ph->max_len, &cur, &rows[n++]);
    }
    dsv4_status *wrc = calloc((size_t)t->W, sizeof *wrc);
    if (!rc && !wrc) rc = dsv4_error(DSV4_ENOMEM, "out of memory for validation");
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(DSV4_MIN(t->W, omp_get_max_threads()))
        for (int w = 0; w < t->W; w++)
            for (int i = w; i < n && !wrc[w]; i += t->W) {
                dsv4_loss_opts lo = {.main = 1.0f, .mask = rows[i].mask};
                dsv4_losses l;
                wrc[w] = dsv4_train_forward(t->views[w], t->tapes[w], rows[i].ids, rows[i].T, &lo, &l);
                sum[i] = l.main * l.n_main;
            }
        for (int w = 0; w < t->W && !rc; w++) rc = wrc[w];
    }
    for (int f = 0, i = 0; f < DSV4_N_FAMILIES && !rc; f++) {
        if (!scored[f]) continue;
        double s = 0.0;
        long m = 0;
        for (int r = 0; r < R; r++, i++) {
            s += sum[i];
            m += rows[i].targets;
        }
        loss[f] = m ? s / m : NAN;
    }
    for (int i = 0; i < n; i++) dsv4_row_free(&rows[i]);
    free(rows), free(sum), free(wrc);
    return rc;
}
