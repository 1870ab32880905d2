/* synth_v41.h: random checkpoints shaped like DeepSeek-V4.1-Flash.
 *
 * dsv4_synth_v41_write() writes a model directory laid out as the V4.1-Flash release: the HF
 * config.json (text_config + quantization_config with 32x32 blocks), FP8 e4m3 linears with
 * e8m0 block scales, packed FP4 routed experts, bf16 norms / embedding / head / router /
 * compressors / index keys, f32 mHC parameters and sinks, the CSA2 layer roles (Full, Reuse,
 * Reindex, SWA, scaled from the real 40-layer schedule when fewer layers are asked for), the
 * two Engram tables (FP8 rows + e8m0 scales, each in its own shard as in the release) and
 * the three DSpark stages with their heads. Widths, expert counts and the Engram table size
 * can be reduced; the table size follows the prime walk from engram_vocab_size (about
 * 24 x engram_vocab_size rows per table, 264 bytes a row at the real widths).
 *
 * Values are random, scaled like trained weights (linear weights ~ fan_in^-1/2, norms 1),
 * and depend only on the seed and the tensor name, generated while written. It exists to
 * measure the engine at V4.1 shapes, above all the cost of Engram tables on SSD. */
#ifndef DSV4_SYNTH_V41_H
#define DSV4_SYNTH_V41_H

#include <stdbool.h>
#include <stdint.h>

#include "dsv4.h"

typedef struct dsv4_synth_v41_opts {
    int n_layers;         /* 0: 40 */
    int n_experts;        /* routed experts per layer; 0: 384 (DSpark: min(128, this)) */
    int dim, vocab, moe_inter, n_heads, head_dim, q_lora_rank, o_lora_rank, o_groups;
    int index_n_heads, index_topk, window, n_activated;
    int engram_vocab_size;  /* 0: 16,000,000 (the real tables, 2 x 94 GiB) */
    int engram_head_dim;    /* 0: 256 */
    bool no_dspark;
    const char *tokenizer;  /* copied into the directory (the Engram vocabulary is built from it) */
    uint64_t seed;
    double shard_gib;       /* largest backbone shard; 0: 4 GiB */
    void (*progress)(void *user, const char *what, double fraction);
    void *progress_user;
} dsv4_synth_v41_opts;

/* Write the checkpoint into `dir` (created if missing). *total_bytes: tensor bytes written. */
dsv4_status dsv4_synth_v41_write(const dsv4_synth_v41_opts *opts, const char *dir, uint64_t *total_bytes);

#endif
