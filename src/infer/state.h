/* state.h: what a sequence remembers between forward steps.
 *
 * Per layer: the sliding-window ring of the last W raw KV rows; for compressed layers the
 * compressor's partial windows (the pooled rows wait until their window is complete) and the
 * compressed KV rows; for CSA layers the indexer's own compressor and its keys. The MTP block
 * has one more window of its own.
 *
 * V4.1: only KV-source layers hold compressed rows (comp) and index keys (idx, whose
 * kv/score buffers are unused); the other layers of a group read them. Every DSpark stage
 * has a window, filled with the main model's states. The session also keeps the Engram
 * n-gram history and the shared index-key slot (csa2.c). Row formats: the window is FP8
 * over all dims in blocks of 32, compressed KV FP4 with e4m3 scales per 16, index keys FP4
 * with e8m0 scales per 32 (each exactly what the official code rounds to), f32 in exact
 * numerics.
 *
 * Rows are kept in the compact formats the model defines when the numerics allow it without
 * loss: in the default numerics the non-rope dims of every KV row are already FP8 (blocks of
 * 64 with power-of-two scales) and the indexer keys FP4 (blocks of 32), so storing e4m3/e2m1
 * codes + e8m0 scales is exact. The rope dims stay fp32 by default; the production layout
 * (FlashMLA's 584-byte rows) keeps them in bf16, which the kv_bf16_rope option selects: it
 * is what the official bf16 numerics compute with, but it moves logits measurably away from
 * the fp32-activation reference (one bf16 rounding feeds every later FP8 rounding decision).
 * In exact numerics rows are fp32. */
#ifndef DSV4_STATE_H
#define DSV4_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef enum {
    DSV4_ROW_F32,          /* dim floats */
    DSV4_ROW_FP8_KV,       /* rd f32 rope dims + (dim-rd) e4m3 + (dim-rd)/64 e8m0 */
    DSV4_ROW_FP8_KV_BF16,  /* the production layout: rd bf16 rope dims + the same */
    DSV4_ROW_FP4_IDX,      /* dim/2 packed e2m1 + dim/32 e8m0 */
    /* V4.1 */
    DSV4_ROW_FP8_B32,      /* window KV: all dims e4m3 (rope included) + dim/32 e8m0 */
    DSV4_ROW_FP4_KV16,     /* compressed KV: dim/2 packed e2m1 + dim/16 e4m3 scales */
} dsv4_row_fmt;

typedef struct dsv4_rowstore {
    dsv4_row_fmt fmt;
    int dim, rd;
    size_t row_bytes;
    int cap;        /* rows allocated */
    uint8_t *data;  /* cap * row_bytes, calloc'd (the OS commits pages on first touch) */
} dsv4_rowstore;

size_t dsv4_row_bytes(dsv4_row_fmt fmt, int dim, int rd);
dsv4_status dsv4_rowstore_init(dsv4_rowstore *s, dsv4_row_fmt fmt, int dim, int rd, int cap);
void dsv4_rowstore_free(dsv4_rowstore *s);
void dsv4_rowstore_put(dsv4_rowstore *s, int row, const float *v);
void dsv4_rowstore_get(const dsv4_rowstore *s, int row, float *out);
/* The value a row takes after a round trip through the store (for chunk-local rows). */
void dsv4_row_roundtrip(dsv4_row_fmt fmt, int dim, int rd, float *v);

/* A compressor's pending windows: rows [0, ratio) hold the previous window (overlap only),
 * rows [coff*ratio - ratio, coff*ratio) the current one; kv = a values, score = z + ape. */
typedef struct dsv4_comp_state {
    float *kv, *score; /* [coff*ratio, coff*dc] */
    dsv4_rowstore rows;
    int n_rows;        /* completed compressed rows */
} dsv4_comp_state;

typedef struct dsv4_layer_state {
    dsv4_rowstore win; /* W rows, slot = pos mod W */
    dsv4_comp_state comp, idx;
} dsv4_layer_state;

struct dsv4_session {
    struct dsv4_model *m;
    int pos, max_ctx;
    int n_states;          /* n_layers (+1 for the MTP block; V4.1: + the DSpark stages) */
    dsv4_layer_state *layers;
    int mtp_pos;           /* tokens the MTP block has consumed */
    /* V4.1 */
    int idx_slot;          /* CSA2's shared index-key slot: the KV source that published last (-1: none) */
    int32_t *engram_ids;   /* [max_ctx] compressed token ids by position: the n-gram history */
    float *dspark_hidden;  /* [dspark_cap, n_targets * dim] DSpark's input for the last step's rows */
    int dspark_rows, dspark_pos0, dspark_cap;
};

dsv4_layer_state *dsv4_session_layer(dsv4_session *s, int layer_id);

/* V4.1 compressor inputs are kept by position (slot = pos mod this) rather than by position
 * in the group: a group pools the slots of its own positions, and a rollback of up to
 * (slots - ratio) positions leaves the pending group intact. */
static inline int dsv4_csa2_slots(int ratio) { return ratio * ((64 + ratio - 1) / ratio); }

#endif
