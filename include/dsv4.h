/* dsv4.h: the public C API of libdsv4, DeepSeek-V4 (and V4.1) in C.
 *
 * The library never prints and never exits. Every fallible call returns a dsv4_status; on
 * failure, dsv4_errmsg() gives a message (per thread) that names the file, tensor, field or
 * byte offset at fault. Objects are opaque and freed by their own *_free / *_close.
 *
 * The life of a generation:
 *   dsv4_model_open(dir, &opts, &m)          load config.json + safetensors (memory-mapped)
 *   dsv4_session_new(m, max_ctx, &s)         per-sequence state: window ring, compressor
 *                                            buffers, compressed KV rows, indexer keys
 *   dsv4_forward(s, ids, n, logits, ...)     feed n tokens at the session's position
 *   dsv4_session_reset(s) / dsv4_session_free(s)
 * Several sessions can be stepped together with dsv4_forward_batch (one batched step).
 *
 * DeepSeek-V4.1 checkpoints load through the same calls. Their draft head (DSpark) proposes
 * several tokens at once: dsv4_dspark_draft, and dsv4_generate_greedy with speculation on,
 * which verifies drafts in one batched step and gives exactly the tokens plain greedy
 * decoding gives.
 */
#ifndef DSV4_H
#define DSV4_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors --------------------------------------------------------------------------- */
typedef enum dsv4_status {
    DSV4_OK = 0,
    DSV4_EIO,          /* a file could not be opened, read or mapped */
    DSV4_EFORMAT,      /* a file is malformed: bad header, JSON, offsets, dtype, shape */
    DSV4_ENOTFOUND,    /* a tensor, key, file or name that should exist does not */
    DSV4_EINVAL,       /* a bad argument: out-of-range id, bad option, over-long prompt */
    DSV4_ENOMEM,       /* an allocation failed */
    DSV4_EUNSUPPORTED, /* a valid input this build does not handle */
    DSV4_ECANCELLED,   /* the caller asked to stop */
} dsv4_status;

const char *dsv4_errmsg(void);               /* message of the last error on this thread */
const char *dsv4_status_name(dsv4_status s); /* "EFORMAT", ... */

/* ---- model ---------------------------------------------------------------------------- */
typedef struct dsv4_model dsv4_model;
typedef struct dsv4_session dsv4_session;
typedef struct dsv4_config dsv4_config; /* see src/model/config.h; read-only for users */

typedef enum dsv4_numerics {
    /* The official quantisation points with fp32 activations: FP8 e4m3 activation blocks of
     * 128 before every FP8/FP4 matmul, FP8 rounding of the non-rope dims of window and
     * compressed KV, FP4 simulation of the indexer q and keys. The production mode. */
    DSV4_NUMERICS_DEFAULT = 0,
    /* Weights dequantised exactly, every activation fp32, no quantisation simulation. */
    DSV4_NUMERICS_EXACT = 1,
} dsv4_numerics;

typedef struct dsv4_open_opts {
    dsv4_numerics numerics;
    int kv_bf16_rope;     /* default numerics: keep KV rope dims in bf16 (production layout) */
    int n_threads;        /* 0 = all cores */
    int verbose_progress; /* nonzero: the library may call the progress callback */
    /* DeepSeek-V4.1 */
    int index_keys_intended; /* CSA2 indexers score against their own group's keys on every
                                step; default: the official code's stale shared slot (docs/v41.md) */
    int engram_ram;          /* copy the Engram tables into RAM at load (default: read them
                                through the checkpoint's memory map, e.g. from SSD) */
    int engram_sync;         /* gather Engram rows when their layer runs, without read-ahead
                                (for measurements; default: gathered while the first layers run) */
    void (*progress)(void *user, const char *what, double fraction);
    void *progress_user;
} dsv4_open_opts;

dsv4_status dsv4_model_open(const char *dir, const dsv4_open_opts *opts, dsv4_model **out);
void dsv4_model_close(dsv4_model *m);
const dsv4_config *dsv4_model_config(const dsv4_model *m);
int dsv4_model_vocab(const dsv4_model *m);
int dsv4_model_dim(const dsv4_model *m);
int dsv4_model_hc(const dsv4_model *m);
int dsv4_model_has_mtp(const dsv4_model *m);
const char *dsv4_model_dir(const dsv4_model *m);

/* ---- sessions and the forward pass ---------------------------------------------------- */
dsv4_status dsv4_session_new(dsv4_model *m, int max_ctx, dsv4_session **out);
void dsv4_session_free(dsv4_session *s);
void dsv4_session_reset(dsv4_session *s);
int dsv4_session_pos(const dsv4_session *s);     /* tokens consumed so far */
int dsv4_session_max_ctx(const dsv4_session *s);
size_t dsv4_session_bytes(const dsv4_session *s); /* bytes of state in use now */

enum {
    DSV4_LOGITS_NONE = 0, /* only advance the state */
    DSV4_LOGITS_LAST = 1, /* logits of the last fed token: [vocab] */
    DSV4_LOGITS_ALL = 2,  /* logits after every fed token: [n, vocab] */
};

/* One sequence's part of a batched forward step. */
typedef struct dsv4_batch_item {
    dsv4_session *session;
    const int32_t *ids; /* tokens to append at the session's current position */
    int n;
    int want_logits;    /* DSV4_LOGITS_* */
    float *logits;      /* caller's buffer, sized by want_logits */
    float *hidden;      /* optional: final hc streams [n, hc, dim] (the MTP block's input) */
} dsv4_batch_item;

dsv4_status dsv4_forward_batch(dsv4_model *m, dsv4_batch_item *items, int n_items);
dsv4_status dsv4_forward(dsv4_session *s, const int32_t *ids, int n, int want_logits,
                         float *logits);

/* The MTP block: feed the main model's final streams at positions p..p+n-1 with the ids of
 * the NEXT tokens (ids[p+1..p+n]); it keeps its own window state in the session and writes
 * logits [n, vocab] that predict the tokens at p+2... */
dsv4_status dsv4_mtp_forward(dsv4_session *s, const float *hidden, const int32_t *next_ids,
                             int n, float *logits);

/* ---- DeepSeek-V4.1: DSpark drafting and speculative decoding ---------------------------- */

/* Tokens DSpark drafts per step (0: the model has no DSpark head). */
int dsv4_model_dspark_block(const dsv4_model *m);

/* Draft the tokens that follow `anchor`, the token after the session's last position (chosen
 * but not yet fed). Uses the hidden state the session's last forward step left for its last
 * token. Writes draft[block] (greedy, with the Markov refinement), and when not NULL the
 * draft logits [block, vocab] and the confidence head's raw outputs [block]. The session's
 * position does not change. */
dsv4_status dsv4_dspark_draft(dsv4_session *s, int32_t anchor, int32_t *draft, float *logits, float *confidence);

typedef struct dsv4_spec_stats {
    int steps;        /* forward steps of the main model after the prompt */
    int drafted;      /* draft tokens proposed */
    int accepted;     /* draft tokens accepted */
    int generated;    /* tokens produced */
    double seconds;   /* wall time of the generation (prompt excluded) */
    double draft_seconds, verify_seconds; /* of which drafting, and main-model steps */
} dsv4_spec_stats;

/* Greedy generation of up to max_new tokens after the prompt (fed at the session's current
 * position), stopping after `eos` (-1: never). With `speculative` set and a DSpark head, each
 * step drafts a block, verifies it in one forward step and keeps the longest prefix the main
 * model agrees with plus its own next token, rolling the session back over the rest: the
 * tokens are the same as without speculation. out[max_new] receives the tokens. */
dsv4_status dsv4_generate_greedy(dsv4_session *s, const int32_t *prompt, int n_prompt, int max_new, int32_t eos,
                                 int speculative, int32_t *out, int *n_out, dsv4_spec_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
