#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpus in fuzz/corpus/ (run once; the files are committed).

Seeds are small on purpose: libFuzzer mutates them, and CTest replays all of them on every
build. Each seed is either a valid file (so the fuzzer starts from inputs that reach the deep
checks) or one specific defect (so the replay test pins every error path). Names say which,
and tests/test_bad_checkpoints.c checks that valid_* seeds open and bad_* seeds fail.

The other files in fuzz/corpus/ (named by their SHA-1) were found by fuzzing and kept by
`fuzz_NAME -merge=1 fuzz/corpus/NAME build-fuzz/corpus/NAME`: each adds coverage the seeds lack."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ST = os.path.join(HERE, "corpus", "safetensors")
CF = os.path.join(HERE, "corpus", "config")
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
         "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def st_image(entries, data_len=None, header=None, length=None, pad=True):
    """entries: list of (name, dtype, shape) laid out back to back, or a dict header given raw."""
    if header is None:
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, dt, shape in entries:
            n = SIZES.get(dt, 1)
            for d in shape:
                n *= d
            header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
            off += n
        data_len = off if data_len is None else data_len
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    hlen = len(text) if length is None else length
    data = bytes((i * 37 + 11) & 255 for i in range(data_len or 0))
    return struct.pack("<Q", hlen) + text + data


def write(dirname, name, blob):
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())


def safetensors_seeds():
    os.makedirs(ST, exist_ok=True)
    w = lambda n, b: write(ST, n, b)
    w("valid_two.safetensors", st_image([("a.weight", "F32", [2, 3]), ("b", "BF16", [5])]))
    w("valid_all_dtypes.safetensors", st_image([(f"t.{d}", d, [2]) for d in SIZES]))
    w("valid_empty_header.safetensors", st_image([], header={}))
    w("valid_zero_elements.safetensors", st_image([("z", "F32", [0, 7]), ("s", "F32", [])]))
    w("valid_model_names.safetensors", st_image([
        ("embed.weight", "BF16", [4, 8]), ("layers.0.attn.wq_a.weight", "F8_E4M3", [4, 8]),
        ("layers.0.attn.wq_a.scale", "F8_E8M0", [1, 1]), ("layers.0.ffn.gate.tid2eid", "I64", [4, 2]),
        ("layers.0.ffn.experts.0.w1.weight", "I8", [4, 16]), ("layers.0.ffn.experts.0.w1.scale", "F8_E8M0", [4, 1]),
        ("layers.0.hc_attn_fn", "F32", [24, 8]), ("norm.weight", "BF16", [8])]))
    w("bad_truncated.safetensors", b"\x10\x00\x00")
    w("bad_empty.safetensors", b"")
    w("bad_header_past_end.safetensors", st_image([("a", "F32", [1])], length=1 << 40))
    w("bad_header_huge.safetensors", struct.pack("<Q", (1 << 64) - 1) + b"{}")
    w("bad_json.safetensors", st_image([], header=b'{"a": {"dtype": "F32", "shape": [1], '))
    w("bad_not_object.safetensors", st_image([], header=b"[1, 2, 3]"))
    w("bad_entry_not_object.safetensors", st_image([], header={"a": [1, 2]}))
    w("bad_metadata.safetensors", st_image([], header={"__metadata__": "pt"}))
    w("bad_duplicate_key.safetensors", st_image([], header=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                                         b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', data_len=2))
    w("bad_dtype.safetensors", st_image([], header={"a": {"dtype": "F12", "shape": [1], "data_offsets": [0, 1]}}, data_len=1))
    w("bad_shape_negative.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, data_len=1))
    w("bad_shape_overflow.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [1 << 40, 1 << 40, 0], "data_offsets": [0, 0]}}))
    w("bad_shape_int64.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [1 << 33, 1 << 30, 0], "data_offsets": [0, 0]}}))
    w("bad_ndim.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, data_len=1))
    w("bad_size_mismatch.safetensors", st_image([], header={"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, data_len=8))
    w("bad_offsets_reversed.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}, data_len=8))
    w("bad_offsets_out_of_range.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}}, data_len=8))
    w("bad_offsets_real.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [1], "data_offsets": [0.0, 1.0]}}, data_len=1))
    w("bad_overlap.safetensors", st_image([], header={
        "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}, data_len=8))
    w("bad_overlap_past_empty.safetensors", st_image([], header={
        "a": {"dtype": "U8", "shape": [100], "data_offsets": [0, 100]},
        "e": {"dtype": "U8", "shape": [0], "data_offsets": [50, 50]},
        "c": {"dtype": "U8", "shape": [10], "data_offsets": [60, 70]}}, data_len=100))
    w("bad_missing_field.safetensors", st_image([], header={"a": {"dtype": "U8", "shape": [1]}}, data_len=1))


TINY = {
    "bos_token_id": 0, "eos_token_id": 1, "expert_dtype": "fp4", "hc_eps": 1e-06, "hc_mult": 4,
    "hc_sinkhorn_iters": 20, "head_dim": 128, "hidden_size": 256, "index_head_dim": 128,
    "index_n_heads": 4, "index_topk": 16, "max_position_embeddings": 2048, "model_type": "deepseek_v4",
    "moe_intermediate_size": 128, "n_routed_experts": 8, "n_shared_experts": 1, "num_attention_heads": 4,
    "num_experts_per_tok": 2, "num_hidden_layers": 6, "num_hash_layers": 3, "num_key_value_heads": 1,
    "num_nextn_predict_layers": 1, "o_groups": 2, "o_lora_rank": 64, "q_lora_rank": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 16,
                     "original_max_position_embeddings": 65536, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 1.5, "scoring_func": "sqrtsoftplus",
    "sliding_window": 16, "swiglu_limit": 2.0, "vocab_size": 1000, "compress_rope_theta": 160000,
    "compress_ratios": [0, 0, 4, 128, 4, 128, 0]}

# The inference/config.json spelling (ModelArgs names) of the same tiny model.
INFERENCE = {
    "vocab_size": 1000, "dim": 256, "moe_inter_dim": 128, "n_layers": 6, "n_mtp_layers": 1,
    "n_hash_layers": 3, "n_heads": 4, "n_routed_experts": 8, "n_shared_experts": 1,
    "n_activated_experts": 2, "score_func": "sqrtsoftplus", "route_scale": 1.5, "swiglu_limit": 2.0,
    "q_lora_rank": 128, "head_dim": 128, "rope_head_dim": 64, "norm_eps": 1e-6, "o_groups": 2,
    "o_lora_rank": 64, "window_size": 16, "compress_ratios": [0, 0, 4, 128, 4, 128, 0],
    "compress_rope_theta": 160000.0, "original_seq_len": 65536, "rope_theta": 10000.0,
    "rope_factor": 16, "beta_fast": 32, "beta_slow": 1, "index_n_heads": 4, "index_head_dim": 128,
    "index_topk": 16, "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6}


def config_seeds():
    os.makedirs(CF, exist_ok=True)
    w = lambda n, obj: write(CF, n, obj if isinstance(obj, (bytes, str)) else json.dumps(obj, indent=1))

    def edit(base, **kv):
        c = json.loads(json.dumps(base))
        for k, v in kv.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c
    w("valid_tiny_hf.json", TINY)
    w("valid_tiny_inference.json", INFERENCE)
    w("valid_no_mtp_bf16.json", edit(TINY, num_nextn_predict_layers=0, quantization_config=None,
                                     expert_dtype=None, compress_ratios=[0, 0, 4, 128, 4, 128]))
    w("bad_json.json", '{"vocab_size": 1000, "hidden_size": ')
    w("bad_not_object.json", "[1, 2]")
    w("bad_missing_hidden_size.json", edit(TINY, hidden_size=None))
    w("bad_string_int.json", edit(TINY, num_attention_heads="4"))
    w("bad_real_int.json", edit(TINY, hidden_size=256.5))
    w("bad_huge_real.json", edit(TINY, hidden_size=1e300))
    w("bad_huge_int.json", edit(TINY, vocab_size=1 << 62))
    w("bad_negative.json", edit(TINY, num_hidden_layers=-3))
    w("bad_layers_overflow.json", edit(TINY, num_hidden_layers=2147483647))
    w("bad_ratios_len.json", edit(TINY, compress_ratios=[0, 4]))
    w("bad_ratio_value.json", edit(TINY, compress_ratios=[0, 0, 4, 128, 4, 1, 0]))
    w("bad_ratios_type.json", edit(TINY, compress_ratios="0,0,4"))
    w("bad_head_dim.json", edit(TINY, head_dim=-2147483647))
    w("bad_dims_product.json", edit(TINY, num_attention_heads=1 << 16, o_groups=1, head_dim=1 << 16))
    w("bad_rope_scaling_type.json", edit(TINY, rope_scaling={"type": "linear", "factor": 2}))
    w("bad_rope_scaling_not_object.json", edit(TINY, rope_scaling="yarn"))
    w("bad_block_size.json", edit(TINY, quantization_config={"fmt": "e4m3", "weight_block_size": [0, 1 << 40]}))
    w("bad_scoring_func.json", edit(TINY, scoring_func=7))
    w("bad_topk.json", edit(TINY, num_experts_per_tok=9))
    w("bad_theta.json", edit(TINY, rope_theta=-1))


if __name__ == "__main__":
    safetensors_seeds()
    config_seeds()
