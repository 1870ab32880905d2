/* synth.h: random checkpoints with the real shapes and storage formats of DeepSeek-V4.
 *
 * dsv4_synth_write() writes a model directory (config.json with the official HF keys, one
 * or more .safetensors files, model.safetensors.index.json when sharded) that is laid out
 * exactly like DeepSeek-V4-Flash or -Pro: FP8 e4m3 linears with e8m0 128x128 block scales,
 * packed FP4 routed experts with one e8m0 scale per 32 inputs, bf16 norms, embedding, head,
 * router and compressors, f32 mHC parameters, sinks, ape and router bias, i64 tid2eid for
 * the hash-routed layers, and the MTP block. Fewer layers or experts, or smaller widths, can
 * be asked for; the layer-kind schedule of the real model is kept.
 *
 * The values are random but scaled like trained weights (linear weights ~ 1/sqrt(fan_in),
 * norm weights ~ 1), so a forward pass stays finite, and they depend only on the seed and
 * the tensor's name: two runs with the same options write identical files. Tensors are
 * generated while they are written, so a checkpoint of tens of GB never sits in memory.
 * Benchmarks use it to measure the engine on full-width layers without the real weights. */
#ifndef DSV4_SYNTH_H
#define DSV4_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "dsv4.h"

typedef struct dsv4_synth_opts {
    const char *like;  /* "flash" or "pro" */
    int n_layers;      /* 0: as the real model (43 / 61) */
    int n_experts;     /* routed experts per layer; 0: as the real model (256 / 384) */
    uint64_t seed;
    /* Smaller widths for test models (0: the real value). */
    int dim, vocab, moe_inter, n_heads, head_dim, q_lora_rank, o_lora_rank, o_groups;
    int index_n_heads, index_topk, window, n_activated;
    bool no_mtp;       /* leave the MTP block out */
    double shard_gib;  /* largest shard; 0: 4 GiB */
    void (*progress)(void *user, const char *what, double fraction);
    void *progress_user;
} dsv4_synth_opts;

/* Write the checkpoint into `dir` (created if missing; existing model files are replaced).
 * `total_bytes`, if not NULL, receives the size of the tensor data written. */
dsv4_status dsv4_synth_write(const dsv4_synth_opts *opts, const char *dir, uint64_t *total_bytes);

#endif
