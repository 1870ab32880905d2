/* engram.h: Engram, DeepSeek-V4.1's conditional memory (hashed n-gram embeddings).
 *
 * At a few layers the residual streams receive a gated value read from a huge table. Which
 * rows are read depends only on the input token ids: each token id is mapped to a smaller
 * "compressed" vocabulary (ids whose text normalises alike share one id), the suffix n-grams
 * ending at each position (orders 2..max_ngram) are hashed by a rolling XOR of id x odd
 * multiplier, and each of n_heads heads per order reduces the hash modulo its own prime. Row
 * = offset(order, head) + hash mod prime, into one table per Engram layer. So the rows of a
 * whole prompt, or of a drafted block, are known before the forward pass runs: they are
 * gathered ahead of time (engram.c) and the tables need not sit in fast memory.
 *
 * The module itself (engram.c): the gathered rows (FP8 e4m3 with one e8m0 scale per 32
 * dims, dequantised exactly) are concatenated per position, projected by one FP8 linear to
 * hc keys and one value, and each stream m is updated as
 *   X_m += sigmoid(signed_sqrt(<X_m, w_m . key_m> . rms(X_m)^-1 . rms(key_m)^-1 / sqrt(dim))) . value
 * before the layer's block (the gate per stream, the value shared).
 *
 * The hashing constants follow the official inference code exactly: multipliers from numpy's
 * default_rng(10007 * layer) (PCG64 seeded through SeedSequence, Generator.integers), primes
 * from one walk upward from engram_vocab_size that never hands out a prime twice. */
#ifndef DSV4_ENGRAM_H
#define DSV4_ENGRAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "kernels/linear.h"
#include "model/config.h"

/* ---- hashing (engram_hash.c) ---------------------------------------------------------------- */

/* numpy.random.default_rng(seed).integers(0, high, size=n, dtype=int64), high >= 1. */
dsv4_status dsv4_numpy_integers(uint64_t seed, int64_t high, int n, int64_t *out);

/* The hash multipliers of one Engram layer: 2 * integers(0, bound) + 1 with
 * bound = (INT64_MAX / compressed_vocab) / 2 and seed 10007 * layer_id, one per look-back shift. */
dsv4_status dsv4_engram_multipliers(int layer_id, int max_ngram, int compressed_vocab, int64_t *out);

/* The prime moduli of every Engram layer: primes[layer][(order-2)*n_heads + head], one global
 * walk (per layer, per order: restart at vocab_size - 1, take n_heads unused next primes). */
void dsv4_engram_primes(int n_layers, int max_ngram, int n_heads, int vocab_size, int64_t *primes);

/* Hash ids of position `pos` for one layer: rows[(order-2)*n_heads + head]. `c` holds the
 * compressed ids by position (at least positions pos-max_ngram+1..pos that exist); positions
 * before the sequence start read as pad_c. */
void dsv4_engram_hash(const int32_t *c, int pos, int max_ngram, int n_heads, int32_t pad_c, const int64_t *mult,
                      const int64_t *primes, const int64_t *offsets, int64_t *rows);

/* The compressed vocabulary. Sources, in order: tokenizer.json of the model directory (the
 * official construction: decode each id alone, normalise NFKC, NFD, strip accents, lowercase,
 * collapse whitespace, strip; first-seen order), engram_token_map.npy, or the synthetic
 * tokenizer of DeepSeek's tiny reference checkpoints (texts w{k}, " W{k}", "W{k}\n"). *out is
 * malloc'd [vocab]; *n_compressed the number of distinct ids; `source` names what was used. */
dsv4_status dsv4_engram_token_map(const char *dir, int vocab, int32_t **out, int *n_compressed, const char **source);
/* The same from a tokenizer.json path (for tests and tools). */
dsv4_status dsv4_engram_token_map_from_tokenizer(const char *path, int vocab, int32_t **out, int *n_compressed);
/* The synthetic tokenizer's map, built through the same normaliser. */
dsv4_status dsv4_engram_token_map_synthetic(int vocab, int32_t **out, int *n_compressed);

/* ---- the module (engram.c) ------------------------------------------------------------------ */

typedef enum {
    DSV4_ENGRAM_MAPPED = 0, /* rows read from the checkpoint's memory map (SSD or page cache) */
    DSV4_ENGRAM_RAM = 1,    /* tables copied into anonymous memory at load */
} dsv4_engram_placement;

/* One Engram layer's weights. */
typedef struct dsv4_engram_w {
    int layer, index;       /* backbone layer id, position in engram_layer_ids */
    int64_t rows;
    const uint8_t *codes;   /* [rows, head_dim] e4m3 */
    const uint8_t *scales;  /* [rows, head_dim / 32] e8m0 */
    const dsv4_tensor *t_codes, *t_scales;
    uint8_t *ram;           /* the RAM copy (codes then scales), when placed in RAM */
    dsv4_linear wkv;        /* [(hc + 1) * dim, n_cols * head_dim] */
    float *gate_w;          /* [hc, dim] q_weight * k_weight */
    int64_t mult[DSV4_MAX_NGRAM];
    int64_t *primes, *offsets; /* [n_cols] */
} dsv4_engram_w;

/* A gather job: the rows of every Engram layer for the step's positions, copied into a
 * staging buffer (codes then scales per row) by the reader thread while the first layers run. */
typedef struct dsv4_engram {
    int n_layers, max_ngram, n_heads, head_dim, n_cols;
    int vocab, n_compressed;
    int32_t *token_map, pad_c;
    const char *map_source;
    dsv4_engram_w *layers;
    dsv4_engram_placement placement;
    bool sync;              /* gather at the layer, no read-ahead (for measurements) */
    /* the reader thread */
    bool sync_init;         /* mu and cv are initialised */
    pthread_t thread;
    bool thread_started, quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const int64_t *job_rows; /* [n_layers][n][n_cols] */
    uint8_t *job_out;        /* [n_layers][n][n_cols][row_bytes] */
    int job_n, job_pending;  /* the reader thread has a job */
    int claimed[DSV4_MAX_ENGRAM_LAYERS], done[DSV4_MAX_ENGRAM_LAYERS]; /* per layer of the job */
    /* counters */
    double wait_s;          /* time forward steps spent waiting for rows */
    double prefetch_s;      /* time forward steps spent asking for rows to be read */
    long long rows_read;
} dsv4_engram;

struct dsv4_model;
struct dsv4_fwd_batch;

/* Bytes of one staged row: head_dim codes + head_dim/32 scales. */
static inline int dsv4_engram_row_bytes(const dsv4_engram *e) { return e->head_dim + e->head_dim / 32; }

/* After the weights are bound: token map, hashing constants, checks, placement. */
dsv4_status dsv4_engram_init(struct dsv4_model *m, dsv4_engram_placement placement, bool sync);
void dsv4_engram_free(dsv4_engram *e);
/* Table bytes (codes + scales) of all layers. */
double dsv4_engram_table_bytes(const dsv4_engram *e);
/* Drop the tables' pages from the page cache (benchmarks: start SSD-resident). Pages another
 * process (or another model object) still maps stay. */
dsv4_status dsv4_engram_evict(struct dsv4_model *m);

/* Start gathering the rows of `rows` ([n_layers][n][n_cols]) into `out` (returns at once).
 * dsv4_engram_wait returns when Engram layers 0..index are staged (copying them itself if
 * the reader has not); dsv4_engram_finish when the whole job is and the reader is idle. */
void dsv4_engram_gather_begin(dsv4_engram *e, const int64_t *rows, int n, uint8_t *out);
void dsv4_engram_wait(dsv4_engram *e, int index);
void dsv4_engram_finish(dsv4_engram *e);
/* Ask the OS to start reading the rows of `rows` (no copy): read-ahead for drafted tokens. */
void dsv4_engram_prefetch(const dsv4_engram *e, const int64_t *rows, int n);

/* X[n, hc, dim] += the Engram update of layer `index` from its staged rows. */
dsv4_status dsv4_engram_forward(const struct dsv4_model *m, int index, const uint8_t *staged, int n, float *X);

#endif
