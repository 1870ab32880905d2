/* trainer.h: training a DeepSeek-V4 model on a data set made by `dsv4 data build`.
 *
 * The pieces, each in its own file:
 *   train_config.c  the run's CONFIG.json: the model's config.json, seeds, optimiser,
 *                   losses, and the phases of the data curriculum
 *   batch.c         the data set on disk (SPLIT.tokens / .mask / .index, mapped) and the
 *                   rows of a step: examples of one family packed back to back
 *   trainer.c       a step: rows spread over a fixed number of workers, forward and backward
 *                   per row, gradients added up, clipping, Muon / AdamW, the router-bias rule;
 *                   validation; checkpoints and resuming
 *
 * Determinism. A step is a pure function of (weights, optimiser state, seed, step number,
 * data cursors): the rows come from a random stream seeded by (seed, step), every row is
 * given to one of `workers` workers by a fixed rule (not by which thread is free), a worker
 * runs its rows in order on one thread into its own gradient buffer, and the buffers are
 * added in worker order. The number of OpenMP threads only decides how many workers run at
 * once, so the losses and weights are bit-identical on 1 and 2 threads (tests/train.test.sh). */
#ifndef DSV4_TRAINER_H
#define DSV4_TRAINER_H

#include <stdint.h>

#include "data/tasks.h"
#include "train/optim.h"
#include "train/train.h"

/* ---- the run's configuration (train_config.c) --------------------------------------------- */

enum { DSV4_MAX_PHASES = 16 };

/* One stage of the curriculum. */
typedef struct dsv4_phase {
    long until;                      /* the phase ends before this step (the last: the run's end) */
    int batch;                       /* rows per step */
    int seq;                         /* tokens per row: short examples are packed up to it */
    int max_len;                     /* longer examples are skipped; needles, and examples
                                      * longer than seq, have rows of their own */
    double mix[DSV4_N_FAMILIES];     /* relative share of the rows per family */
    int index_topk;                  /* the indexer's top-k during the phase (0: the model's);
                                      * a large one makes CSA dense, V3.2's indexer warm-up */
} dsv4_phase;

typedef struct dsv4_train_config {
    char *model_json;                /* the model's config.json, as text */
    struct dsv4_config model;
    uint64_t seed;
    float init_std;                  /* initializer_range */
    long steps;
    int workers;                     /* gradient buffers of a step (not threads) */
    dsv4_schedule sched;
    dsv4_optim_opts optim;
    float mtp, mtp_decay;            /* MTP loss weight, and in the learning-rate decay */
    float indexer;                   /* indexer KL loss weight */
    float balance;                   /* sequence-wise balance loss weight */
    int checkpoint_every, eval_every, eval_rows;
    int n_phases;
    dsv4_phase phases[DSV4_MAX_PHASES];
} dsv4_train_config;

/* Parse CONFIG.json (train_config.c and docs/training.md describe the keys). */
dsv4_status dsv4_train_config_parse(const char *json_text, const char *path, dsv4_train_config *cfg);
void dsv4_train_config_free(dsv4_train_config *cfg);
/* The phase of a step. */
const dsv4_phase *dsv4_train_phase(const dsv4_train_config *cfg, long step);

/* ---- the data (batch.c) ------------------------------------------------------------------- */

typedef struct dsv4_seq_rec {
    uint64_t first;
    uint32_t len;
    uint16_t family, flags;
} dsv4_seq_rec;

typedef struct dsv4_dataset {
    const int32_t *tokens;
    const uint8_t *mask;
    size_t n_tokens;
    dsv4_seq_rec *seq;
    size_t n_seq;
    uint32_t *by_family[DSV4_N_FAMILIES]; /* sequence numbers of each family, in file order */
    size_t n_family[DSV4_N_FAMILIES];
    const uint8_t *maps[2];
    size_t map_sizes[2];
} dsv4_dataset;

/* Open DIR/SPLIT.{tokens,mask,index}; checks the header, every record against the token
 * count, and the ids against vocab (when > 0). */
dsv4_status dsv4_dataset_open(const char *dir, const char *split, int vocab, dsv4_dataset **out);
void dsv4_dataset_close(dsv4_dataset *d);

/* One row of a step: tokens, their loss mask (views into the row's own buffers). */
typedef struct dsv4_row {
    int32_t *ids;
    uint8_t *mask;
    int T, cap;
    int family;
    int examples;
    int targets;                     /* mask[1..T) set: the main loss's terms */
} dsv4_row;

/* Where each family's reading has got to (saved with checkpoints). */
typedef struct dsv4_cursors {
    uint64_t next[DSV4_N_FAMILIES];  /* examples consumed so far, per family (wraps around) */
} dsv4_cursors;

/* Fill `row` with examples of family f read from the cursor on: needles one per row, the
 * others packed until the next would pass seq (one longer than seq alone); examples longer than
 * max_len are skipped. */
dsv4_status dsv4_row_fill(const dsv4_dataset *d, int f, int seq, int max_len, dsv4_cursors *cur, dsv4_row *row);
/* Whether family f has an example of at most max_len tokens (what dsv4_row_fill needs). */
bool dsv4_family_fits(const dsv4_dataset *d, int f, int max_len);
void dsv4_row_free(dsv4_row *row);
/* The family of row r of a step, drawn with the phase's mix from (seed, step, r). */
int dsv4_row_family(const dsv4_phase *ph, uint64_t seed, long step, int r);

/* ---- the trainer (trainer.c) -------------------------------------------------------------- */

typedef struct dsv4_step_report {
    long step;
    float lr;
    double loss, mtp, indexer, balance; /* means over the step's targets / queries / rows */
    double grad_norm;
    long tokens, targets;
    int rows;
    double seconds;
} dsv4_step_report;

typedef struct dsv4_trainer dsv4_trainer;

/* A trainer for `cfg` on the data in data_dir (train split; the valid split for validation).
 * Fresh weights from cfg's seed, or with resume_dir the checkpoint written there. */
dsv4_status dsv4_trainer_new(const dsv4_train_config *cfg, const char *data_dir, const char *resume_dir,
                             dsv4_trainer **out);
void dsv4_trainer_free(dsv4_trainer *t);
long dsv4_trainer_step_count(const dsv4_trainer *t);   /* steps done */
dsv4_tmodel *dsv4_trainer_model(dsv4_trainer *t);
/* One step. */
dsv4_status dsv4_trainer_step(dsv4_trainer *t, dsv4_step_report *rep);
/* Mean main loss of the first cfg->eval_rows validation rows of each family (NAN when the
 * family has no validation data). */
dsv4_status dsv4_trainer_validate(dsv4_trainer *t, double loss[DSV4_N_FAMILIES]);
/* Write a checkpoint into dir: config.json, model.safetensors (F32, official names; `dsv4 run`
 * loads it), optimizer.safetensors and trainer.json (step, cursors, seed); each file
 * written beside and renamed, so an interrupted write leaves the previous checkpoint. */
dsv4_status dsv4_trainer_save(dsv4_trainer *t, const char *dir);

#endif
