/* info.h: parameter counts, storage bytes and per-token costs of a loaded model. */
#ifndef DSV4_INFO_H
#define DSV4_INFO_H

#include "model/model.h"

typedef struct dsv4_param_stats {
    double total_params;  /* without the MTP block (V4.1: the backbone, without Engram and DSpark) */
    double active_params; /* per token: top-k routed experts, no embedding table */
    double mtp_params;    /* the MTP block (V4.1: the DSpark stages and heads) */
    /* V4.1 Engram: table rows are looked up, not multiplied, so they are neither in the
     * totals above nor active; the projections are active */
    double engram_table_params, engram_proj_params;
    double engram_table_bytes;   /* codes + scales as stored */
    double engram_read_per_token; /* table bytes a token reads (its rows, all Engram layers) */
    double dspark_bytes, backbone_bytes; /* checkpoint bytes of DSpark and of everything else */
    double bytes_by_dtype[20]; /* checkpoint bytes by dsv4_dtype */
    double decode_bytes;  /* weight bytes read per decoded token (the active set, as stored) */
} dsv4_param_stats;
void dsv4_model_param_stats(const struct dsv4_model *m, dsv4_param_stats *out);

typedef struct dsv4_kv_costs {
    int n_window, n_csa, n_hca;
    /* V4.1: the KV sources each keep compressed rows and index keys for their group */
    int n_kv_sources;
    double compressed_per_token, index_per_token;
    double row_bytes, index_row_bytes;   /* one KV row, one indexer key */
    double csa_per_token, hca_per_token; /* amortised bytes per token of one layer */
    double per_token;                    /* all layers */
    double window_bytes;                 /* fixed: the sliding windows of every layer (+MTP) */
} dsv4_kv_costs;
/* fmt_choice: 0 exact (f32 rows), 1 default (FP8 + f32 rope), 2 production (FP8 + bf16 rope). */
void dsv4_model_kv_costs(const struct dsv4_model *m, int fmt_choice, dsv4_kv_costs *out);

#endif
