/* quantize.h: a full-precision checkpoint to the storage formats of the DeepSeek-V4 release.
 *
 * The release stores each tensor in one of five ways, by its role:
 *   FP8   F8_E4M3 weight + F8_E8M0 "NAME.scale" [ceil(rows/128), ceil(cols/128)]: one
 *         power-of-two scale per 128 x 128 block, 2^ceil(log2(amax / 448)), so that the
 *         block's largest value maps to at most 448, e4m3's largest. The linears of
 *         attention (wq_a, wq_b, wkv, wo_a, wo_b), the indexer's wq_b, the shared expert's
 *         w1 / w2 / w3 and MTP's e_proj / h_proj.
 *   FP4   the routed experts (expert_dtype "fp4"): I8 [rows, cols/2] of e2m1 codes, two per
 *         byte along the input axis (low nibble first), + F8_E8M0 "NAME.scale" [rows, cols/32],
 *         one power-of-two scale per 32 inputs, 2^ceil(log2(amax / 6)).
 *   BF16  the embedding, the head, RMSNorm weights, the router's gate.weight, the compressors'
 *         wkv / wgate / norm and the indexer's weights_proj.
 *   F32   mHC (hc_*), attention sinks, compressor position biases (ape), router biases.
 *   I64   the hash-routing tables tid2eid.
 * Rounding is to nearest, ties to even, as the official conversions. The config.json written
 * beside gets the release's quantization_config (fp8, e4m3, ue8m0 scales, 128 x 128 blocks)
 * and expert_dtype. Tensors are produced on demand while the file is written (only the scales
 * are computed ahead), so a checkpoint larger than memory converts too. */
#ifndef DSV4_QUANTIZE_H
#define DSV4_QUANTIZE_H

#include "dsv4.h"

typedef struct dsv4_quantize_report {
    int tensors, fp8, fp4, bf16, f32, index;
    size_t bytes_in, bytes_out;
} dsv4_quantize_report;

/* in_dir: config.json and F32 / BF16 safetensors (one file or shards); out_dir (existing):
 * config.json, model.safetensors, and tokenizer.json / tokenizer_config.json copied when
 * present. Tensors already in FP8 or FP4 (with their scales) are copied as they are. */
dsv4_status dsv4_quantize_checkpoint(const char *in_dir, const char *out_dir, dsv4_quantize_report *rep);

#endif
