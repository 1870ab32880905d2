/* cmd_train.c: `dsv4 train`, training a model from a CONFIG.json on a data set.
 *
 *   dsv4 train --config CONFIG.json --data DATA --out DIR [--steps N] [--batch B] [--seq T]
 *              [--lr X] [--seed S] [--threads N] [--resume] [--until STEP] [--log-every N]
 *
 * The library does the training (src/train/trainer.h); this file is the run around it:
 *   - DIR receives the tokenizer (copied from DATA), the configuration as run
 *     (train_config.json), and every checkpoint_every steps and at the end a checkpoint
 *     (config.json, model.safetensors with the official names: `dsv4 run -m DIR` and
 *     `dsv4 logits` load it, `dsv4 quantize` converts it; optimizer.safetensors,
 *     trainer.json);
 *   - DIR/train.csv gets a line per step (losses, learning rate, gradient norm, tokens/s,
 *     elapsed time, and the validation losses per family on validation steps), and
 *     DIR/loss.svg the curve, redrawn at each checkpoint;
 *   - a progress line on stderr: step, loss, tokens/s, ETA;
 *   - --resume continues from the checkpoint in DIR (weights, optimiser, data cursors, step):
 *     the steps after it are recomputed exactly as an uninterrupted run would have made them,
 *     and train.csv is cut back to the checkpoint;
 *   - Ctrl-C (SIGINT) or SIGTERM finishes the step in flight, writes a checkpoint and stops;
 *     so does reaching --until, which splits a run into sessions. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "cli.h"
#include "commands.h"
#include "plot.h"
#include "train/trainer.h"

static const char *usage =
    "usage: dsv4 train --config CONFIG.json --data DATA --out DIR [--steps N] [--batch B] [--seq T]\n"
    "                  [--lr X] [--seed S] [--threads N] [--resume] [--until STEP] [--log-every N]\n"
    "  --config   the run: model config, optimiser, losses, data phases (docs/training.md)\n"
    "  --data     a data set made by `dsv4 data build`\n"
    "  --out      checkpoints, train.csv and loss.svg go here\n"
    "  --steps, --batch, --seq, --lr, --seed   override the configuration\n"
    "  --resume   continue from the checkpoint in --out\n"
    "  --until    stop after this many steps of the run (with a checkpoint), to --resume later;\n"
    "             0 writes the initial weights\n";

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* ---- the history: train.csv and the plot ---------------------------------------------------- */

enum { COLS = 12 + DSV4_N_FAMILIES };
static const char *CSV_HEADER = "step,phase,lr,loss,mtp,indexer,balance,grad_norm,tokens,targets,tokens_per_s,elapsed_s";

typedef struct history {
    double *v[COLS]; /* columns of the CSV */
    size_t n, cap;
} history;

static bool history_add(history *h, const double *row) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        for (int c = 0; c < COLS; c++) {
            double *p = realloc(h->v[c], cap * sizeof(double));
            if (!p) return false;
            h->v[c] = p;
        }
        h->cap = cap;
    }
    for (int c = 0; c < COLS; c++) h->v[c][h->n] = row[c];
    h->n++;
    return true;
}

static void history_free(history *h) {
    for (int c = 0; c < COLS; c++) free(h->v[c]);
}

static void csv_line(FILE *f, const double *row) {
    for (int c = 0; c < COLS; c++) {
        if (c) fputc(',', f);
        if (isnan(row[c])) continue;
        if (c == 0 || c == 1 || c == 8 || c == 9) fprintf(f, "%.0f", row[c]);
        else fprintf(f, "%.6g", row[c]);
    }
    fputc('\n', f);
}

static FILE *csv_open(const char *path, const history *h) {
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(CSV_HEADER, f);
    for (int fam = 0; fam < DSV4_N_FAMILIES; fam++) fprintf(f, ",valid_%s", dsv4_family_name((dsv4_family)fam));
    fputc('\n', f);
    for (size_t i = 0; i < h->n; i++) {
        double row[COLS];
        for (int c = 0; c < COLS; c++) row[c] = h->v[c][i];
        csv_line(f, row);
    }
    fflush(f);
    return f;
}

/* The rows of an earlier train.csv before step `upto` (resuming). */
static void csv_read(const char *path, long upto, history *h) {
    size_t len;
    char *text = cli_read_file(path, &len);
    if (!text) return;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "step", 4)) continue;
        double row[COLS];
        char *p = line;
        for (int c = 0; c < COLS; c++) {
            char *end;
            row[c] = (*p && *p != ',') ? strtod(p, &end) : NAN;
            if (*p && *p != ',') p = end;
            if (*p == ',') p++;
        }
        if (row[0] < (double)upto) history_add(h, row);
    }
    free(text);
}

static void draw(const char *dir, const history *h) {
    static const char *colors[DSV4_N_FAMILIES] = {"#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"};
    double *smooth = malloc((h->n + 1) * sizeof(double));
    if (!smooth) return;
    double ema = NAN;
    for (size_t i = 0; i < h->n; i++) { /* a moving average over about 20 steps */
        double x = h->v[3][i];
        ema = isnan(ema) ? x : 0.95 * ema + 0.05 * x;
        smooth[i] = ema;
    }
    plot_series s[3 + DSV4_N_FAMILIES];
    int n = 0;
    s[n++] = (plot_series){"loss (per step)", "#c7c7c7", h->v[0], h->v[3], h->n, false, true};
    s[n++] = (plot_series){"loss (averaged)", "#1f77b4", h->v[0], smooth, h->n, false, false};
    s[n++] = (plot_series){"MTP loss", "#ff7f0e", h->v[0], h->v[4], h->n, true, true};
    /* validation losses: only the validation steps, as lines of their own */
    double *vx[DSV4_N_FAMILIES] = {0}, *vy[DSV4_N_FAMILIES] = {0};
    char names[DSV4_N_FAMILIES][32];
    for (int f = 0; f < DSV4_N_FAMILIES; f++) {
        size_t m = 0;
        vx[f] = malloc((h->n + 1) * sizeof(double));
        vy[f] = malloc((h->n + 1) * sizeof(double));
        if (!vx[f] || !vy[f]) continue;
        for (size_t i = 0; i < h->n; i++)
            if (!isnan(h->v[12 + f][i])) vx[f][m] = h->v[0][i], vy[f][m++] = h->v[12 + f][i];
        if (!m) continue;
        snprintf(names[f], sizeof names[f], "valid %s", dsv4_family_name((dsv4_family)f));
        s[n++] = (plot_series){names[f], colors[f], vx[f], vy[f], m, false, false};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    plot_svg(path, "dsv4 train", "step", "cross-entropy (nats per target token)", s, n);
    for (int f = 0; f < DSV4_N_FAMILIES; f++) free(vx[f]), free(vy[f]);
    free(smooth);
}

/* ---- the progress line ------------------------------------------------------------------- */

static void clock_text(double s, char *out, size_t n) {
    long t = (long)(s + 0.5);
    snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void progress(const dsv4_step_report *r, long total, double tok_s, double eta, double elapsed, bool tty) {
    char e[32], el[32], bar[21];
    clock_text(eta, e, sizeof e);
    clock_text(elapsed, el, sizeof el);
    int filled = (int)(20.0 * (r->step + 1) / total);
    for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '-';
    bar[20] = 0;
    fprintf(stderr, "%sstep %ld/%ld [%s] loss %.4f mtp %.4f | %.0f tok/s | %s elapsed, ETA %s%s", tty ? "\r" : "",
            r->step + 1, total, bar, r->loss, r->mtp, tok_s, el, e, tty ? "\033[K" : "\n");
}

/* ---- the command ----------------------------------------------------------------------------- */

static bool copy_file(const char *from, const char *to) {
    size_t len;
    char *text = cli_read_file(from, &len);
    if (!text) return false;
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(text, 1, len, f) == len;
    if (f) ok &= fclose(f) == 0;
    free(text);
    return ok;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train", *config = NULL, *data = NULL, *out = NULL;
    long long steps = 0, batch = 0, seq = 0, seed = -1, threads = 0, log_every = 10, until = -1;
    double lr = -1;
    bool resume = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (cli_is(a, "-c", "--config")) {
            if (!(config = cli_value(argc, argv, &i))) return cli_fail(cmd, "--config needs a file"), 2;
        } else if (cli_is(a, "-d", "--data")) {
            if (!(data = cli_value(argc, argv, &i))) return cli_fail(cmd, "--data needs a directory"), 2;
        } else if (cli_is(a, "-o", "--out")) {
            if (!(out = cli_value(argc, argv, &i))) return cli_fail(cmd, "--out needs a directory"), 2;
        } else if (cli_is(a, NULL, "--steps")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1LL << 40, &steps)) return cli_fail(cmd, "--steps needs a positive integer"), 2;
        } else if (cli_is(a, NULL, "--batch")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 20, &batch)) return cli_fail(cmd, "--batch needs a positive integer"), 2;
        } else if (cli_is(a, NULL, "--seq")) {
            if (!cli_int(cli_value(argc, argv, &i), 2, 1 << 24, &seq)) return cli_fail(cmd, "--seq needs an integer >= 2"), 2;
        } else if (cli_is(a, NULL, "--seed")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1LL << 53, &seed)) return cli_fail(cmd, "--seed needs an integer >= 0"), 2;
        } else if (cli_is(a, "-t", "--threads")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 4096, &threads)) return cli_fail(cmd, "--threads needs a positive integer"), 2;
        } else if (cli_is(a, NULL, "--log-every")) {
            if (!cli_int(cli_value(argc, argv, &i), 1, 1 << 30, &log_every)) return cli_fail(cmd, "--log-every needs a positive integer"), 2;
        } else if (cli_is(a, NULL, "--lr")) {
            if (!cli_float(cli_value(argc, argv, &i), &lr) || !(lr > 0)) return cli_fail(cmd, "--lr needs a positive number"), 2;
        } else if (cli_is(a, NULL, "--until")) {
            if (!cli_int(cli_value(argc, argv, &i), 0, 1LL << 40, &until)) return cli_fail(cmd, "--until needs a step number"), 2;
        } else if (cli_is(a, NULL, "--resume")) {
            resume = true;
        } else {
            fputs(usage, stderr);
            return cli_fail(cmd, "unknown option %s", a), 2;
        }
    }
    if (!config || !data || !out) {
        fputs(usage, stderr);
        return cli_fail(cmd, "--config, --data and --out are required"), 2;
    }
    size_t len;
    char *text = cli_read_file(config, &len);
    if (!text) return cli_fail(cmd, "%s: %s", config, strerror(errno));
    dsv4_train_config cfg;
    dsv4_status rc = dsv4_train_config_parse(text, config, &cfg);
    if (rc) {
        free(text);
        return cli_fail_lib(cmd, NULL);
    }
    if (steps) {
        cfg.steps = cfg.sched.total = steps;
        cfg.phases[cfg.n_phases - 1].until = steps;
    }
    for (int p = 0; p < cfg.n_phases; p++) {
        if (batch) cfg.phases[p].batch = (int)batch;
        if (seq) cfg.phases[p].seq = (int)seq;
        if (seq && cfg.phases[p].max_len < seq) cfg.phases[p].max_len = (int)seq;
    }
    if (lr > 0) cfg.sched.lr = (float)lr;
    if (seed >= 0) cfg.seed = (uint64_t)seed;
    if (threads) dsv4_set_threads((int)threads);

    char path[4096], path2[4096];
    if (mkdir(out, 0777) && errno != EEXIST) {
        free(text);
        dsv4_train_config_free(&cfg);
        return cli_fail(cmd, "%s: cannot create: %s", out, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", data);
    snprintf(path2, sizeof path2, "%s/tokenizer.json", out);
    if (!copy_file(path, path2)) fprintf(stderr, "dsv4 train: warning: no tokenizer copied from %s\n", path);
    snprintf(path, sizeof path, "%s/train_config.json", out);
    FILE *cf = fopen(path, "w");
    if (cf) {
        fputs(text, cf);
        fclose(cf);
    }
    free(text);

    dsv4_trainer *t;
    double t_load = dsv4_now();
    if (dsv4_trainer_new(&cfg, data, resume ? out : NULL, &t)) {
        dsv4_train_config_free(&cfg);
        return cli_fail_lib(cmd, resume ? "cannot resume" : NULL);
    }
    long start = dsv4_trainer_step_count(t);
    history h = {0};
    snprintf(path, sizeof path, "%s/train.csv", out);
    if (resume) csv_read(path, start, &h);
    FILE *csv = csv_open(path, &h);
    if (!csv) {
        dsv4_trainer_free(t);
        dsv4_train_config_free(&cfg);
        return cli_fail(cmd, "%s: %s", path, strerror(errno));
    }
    double elapsed0 = h.n ? h.v[11][h.n - 1] : 0.0;
    const dsv4_tmodel *tm = dsv4_trainer_model(t);
    size_t n_params = 0;
    for (int i = 0; i < tm->n_table; i++) n_params += tm->table[i].n;
    fprintf(stderr, "dsv4 train: %zu parameters, %ld steps (set up in %.1f s)\n", n_params, cfg.steps, dsv4_now() - t_load);
    if (resume) fprintf(stderr, "dsv4 train: resuming at step %ld\n", start);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    bool tty = isatty(2);
    double t_run = dsv4_now(), recent[32] = {0};
    int n_recent = 0, status = 0;
    long end = until >= 0 && until < cfg.steps ? until : cfg.steps;
    if (end <= start && dsv4_trainer_save(t, out)) status = cli_fail_lib(cmd, "checkpoint"); /* --until 0: the initial weights */
    for (long step = start; step < end && !stop_requested; step++) {
        dsv4_step_report r;
        if (dsv4_trainer_step(t, &r)) {
            if (tty) fputc('\n', stderr);
            status = cli_fail_lib(cmd, NULL);
            break;
        }
        double elapsed = elapsed0 + (dsv4_now() - t_run);
        double row[COLS];
        row[0] = (double)step, row[1] = (double)(dsv4_train_phase(&cfg, step) - cfg.phases), row[2] = r.lr;
        row[3] = r.loss, row[4] = r.mtp, row[5] = r.indexer, row[6] = r.balance, row[7] = r.grad_norm;
        row[8] = (double)r.tokens, row[9] = (double)r.targets, row[10] = r.tokens / r.seconds, row[11] = elapsed;
        for (int f = 0; f < DSV4_N_FAMILIES; f++) row[12 + f] = NAN;
        bool last = step + 1 == cfg.steps;
        if (cfg.eval_every && ((step + 1) % cfg.eval_every == 0 || last)) {
            double vl[DSV4_N_FAMILIES];
            if (dsv4_trainer_validate(t, vl)) {
                status = cli_fail_lib(cmd, "validation");
                break;
            }
            for (int f = 0; f < DSV4_N_FAMILIES; f++) row[12 + f] = vl[f];
        }
        history_add(&h, row);
        csv_line(csv, row);
        fflush(csv);
        recent[n_recent++ % 32] = r.seconds;
        double mean = 0.0;
        int m = DSV4_MIN(n_recent, 32);
        for (int i = 0; i < m; i++) mean += recent[i] / m;
        if (tty || (step + 1) % log_every == 0 || last)
            progress(&r, cfg.steps, r.tokens / r.seconds, mean * (double)(cfg.steps - step - 1), elapsed, tty);
        if ((cfg.checkpoint_every && (step + 1) % cfg.checkpoint_every == 0) || step + 1 == end || stop_requested) {
            if (dsv4_trainer_save(t, out)) {
                status = cli_fail_lib(cmd, "checkpoint");
                break;
            }
            draw(out, &h);
        }
    }
    if (tty) fputc('\n', stderr);
    if (stop_requested && !status) {
        fprintf(stderr, "dsv4 train: stopped at step %ld; checkpoint in %s (continue with --resume)\n",
                dsv4_trainer_step_count(t), out);
        status = 130;
    } else if (!status && dsv4_trainer_step_count(t) < cfg.steps) {
        fprintf(stderr, "dsv4 train: paused at step %ld of %ld; checkpoint in %s (continue with --resume)\n",
                dsv4_trainer_step_count(t), cfg.steps, out);
    } else if (!status) {
        fprintf(stderr, "dsv4 train: done, %ld steps; checkpoint, train.csv and loss.svg in %s\n",
                dsv4_trainer_step_count(t), out);
    }
    fclose(csv);
    history_free(&h);
    dsv4_trainer_free(t);
    dsv4_train_config_free(&cfg);
    return status;
}
