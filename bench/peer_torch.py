"""peer_torch.py: DeepSeek's official DeepSeek-V4 inference code on the CPU, timed like `dsv4 bench`.

What runs. The model is DeepSeek's own inference/model.py, read from REF_DIR (the inference/
directory of the Hugging Face repository deepseek-ai/DeepSeek-V4-Flash; it is not part of this
repository) and executed as it is written, with one edit: the `assert x.dtype == torch.bfloat16`
of rotate_activation is dropped, because activations here are fp32 (see below). model.py imports
its GPU kernels from kernel.py (TileLang) and fast_hadamard_transform (CUDA); those two modules
are replaced by the plain-torch functions of this file, which compute what the kernels compute:

  act_quant, fp4_act_quant   block-wise e4m3 / e2m1 rounding with power-of-two (ue8m0) scales,
                             the documented rounding of the kernels;
  fp8_gemm, fp4_gemm         C = A . B^T with both operands' block scales. Every scale is a power
                             of two, so (q_a * s_a) . (q_w * s_w) in fp32 is the kernel's product
                             up to the order of the fp32 additions. The weights stay in their
                             stored format (one byte per e4m3, two e2m1 per byte) and are expanded
                             by table lookup a slab of rows at a time, inside each call, as the GPU
                             kernels do: memory stays bounded by the checkpoint's size, and the
                             cost measured is the reference's own way of computing on a CPU.
                             With --weights fp32 they are expanded once at load instead (4 bytes
                             per e4m3 or e2m1 value): PyTorch's best case, when memory allows;
  sparse_attn                attention over the gathered top-k rows with the per-head sink;
  hc_split_sinkhorn          the mHC pre/post weights and the Sinkhorn-normalised mixing matrix;
  hadamard_transform         the Walsh-Hadamard butterfly.

torch has no float8/float4 dtypes before 2.1, and model.py only compares dtypes by identity: the
names torch.float8_e4m3fn, torch.float4_e2m1fn_x2 and torch.float8_e8m0fnu are bound to int8,
uint8 and int16 stand-ins holding the raw bits. The default dtype is float32 (on GPU DeepSeek
runs bfloat16): that is dsv4's `default` numerics, so the two engines compute the same function
and their logits can be compared, and fp32 is the fast CPU path of torch.

The workload is `dsv4 bench`'s, token for token: the same xorshift64 stream of random ids from the
same seed, one prefill call of N tokens at position 0, two untimed decode steps, then D timed
decode steps. The first-step check: with --check F.npy (dsv4's logits for the first N+1 ids, fed
as one prefill of N then one token: `dsv4 logits --split N`), the logits of the timed prefill and
of the first decode step are compared with dsv4's rows N-1 and N; the run fails if they differ by
more than --tol. The check uses the outputs of the very calls that are timed, so the time measured
is the time of the model's computation and of nothing else.

Output: one JSON object on stdout (prefill_tok_s, decode_tok_s, the check, load time, peak RSS).

  /usr/bin/python3 bench/peer_torch.py MODEL_DIR --ref-dir REF_DIR [--prefill N] [--decode D]
                  [--threads T] [--seed S] [--weights stored|fp32] [--check EXACT.npy] [--tol X]
                  [--compare DEFAULT.npy]
  /usr/bin/python3 bench/peer_torch.py MODEL_DIR --write-ids F.json [--prefill N] [--seed S]
"""
import argparse
import json
import math
import os
import resource
import sys
import time
import types

import numpy as np
import torch

WARM = 2  # untimed decode steps before the timed ones, as in dsv4 bench


# ---- the workload: dsv4 bench's token ids ------------------------------------------------------

def bench_ids(seed, count, vocab):
    """The ids `dsv4 bench` feeds (src/infer/bench.c): xorshift64 from seed * golden + 0x1234567."""
    mask = (1 << 64) - 1
    s = (seed * 0x9E3779B97F4A7C15 + 0x1234567) & mask
    out = []
    for _ in range(count):
        s ^= (s << 13) & mask
        s ^= s >> 7
        s ^= (s << 17) & mask
        out.append(s % vocab)
    return out


# ---- number formats -----------------------------------------------------------------------------

def _e4m3_table():
    t = np.zeros(256, np.float32)
    for b in range(256):
        sign, e, m = b >> 7, (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            v = float('nan')
        elif e == 0:
            v = (m / 8) * 2.0 ** -6
        else:
            v = (1 + m / 8) * 2.0 ** (e - 7)
        t[b] = -v if sign else v
    return torch.from_numpy(t)


E4M3 = _e4m3_table()                                          # byte -> value
E2M1 = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6])
E2M1_PAIRS = torch.stack([E2M1[torch.arange(256) & 15], E2M1[torch.arange(256) >> 4]], -1)  # byte -> (lo, hi)


def e8m0(s):
    """ue8m0 scale bytes -> 2^(s - 127) as fp32."""
    return torch.ldexp(torch.ones(s.shape), s.long() - 127)


def pow2_ceil(v):
    """2^ceil(log2 v) for positive normal fp32 v, from the bits (exact)."""
    bits = v.float().contiguous().view(torch.int32)
    e = ((bits >> 23) & 0xFF) - 127 + ((bits & 0x7FFFFF) != 0).int()
    return ((e + 127) << 23).int().view(torch.float32)


def e4m3_round(v):
    """Round to the nearest e4m3 value (ties to even), saturating at 448."""
    a = v.abs()
    _, ex = torch.frexp(a)
    step = torch.where(a < 2.0 ** -6, torch.full_like(a, 2.0 ** -9), torch.ldexp(torch.ones_like(a), ex - 4))
    return torch.copysign(torch.clamp(torch.round(a / step) * step, max=448.0), v)


def e2m1_round(v):
    """Round to the nearest e2m1 value (ties to even), saturating at 6."""
    a = v.abs()
    q = torch.where(a < 2, torch.round(a * 2) / 2, torch.where(a < 4, torch.round(a), torch.round(a / 2) * 2))
    return torch.copysign(torch.clamp(q, max=6.0), v)


# ---- kernel.py, in plain torch ------------------------------------------------------------------

QUANTISE = True  # False: the quantisers pass values through (dsv4's `exact` numerics), for the check

def act_quant(x, block_size=128, scale_fmt=None, scale_dtype=None, inplace=False):
    """e4m3 codes (held as fp32 values) and per-block scales; inplace: x rounded through e4m3."""
    n = x.size(-1)
    xf = x.float().reshape(-1, n // block_size, block_size)
    amax = xf.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    s = pow2_ceil(amax * torch.tensor(1 / 448)) if scale_fmt is not None else amax * (1 / 448)
    q = e4m3_round(torch.clamp(xf / s, -448, 448))
    if not QUANTISE:
        q, s = xf, torch.ones_like(s)
    if inplace:
        x.copy_((q * s).reshape(x.shape).to(x.dtype))
        return x
    return q.reshape(x.shape), s.reshape(*x.shape[:-1], n // block_size)


def fp4_act_quant(x, block_size=32, inplace=False):
    """x rounded through e2m1 in blocks of 32 with power-of-two scales (model.py only uses inplace)."""
    assert inplace, "model.py calls fp4_act_quant in place only"
    n = x.size(-1)
    xf = x.float().reshape(-1, n // block_size, block_size)
    amax = xf.abs().amax(-1, keepdim=True).clamp(min=6 * 2.0 ** -126)
    s = pow2_ceil(amax * torch.tensor(1 / 6))
    if not QUANTISE:
        return x
    x.copy_((e2m1_round(torch.clamp(xf / s, -6, 6)) * s).reshape(x.shape).to(x.dtype))
    return x


SLAB = 1 << 22  # weight elements expanded to fp32 at a time (16 MiB)


def _scaled_activations(a, a_s):
    """The exact fp32 values of the quantised activations: codes times their per-128 scales."""
    k = a.size(-1)
    m = a.numel() // k
    return (a.reshape(m, k // 128, 128).float() * a_s.reshape(m, -1, 1).float()).reshape(m, k)


def expand_fp8(b, b_s, r0, r1):
    """Rows r0..r1 of an e4m3 weight [n, k] with per-(128, 128) scales, as fp32 (exact)."""
    k = b.size(1)
    w = torch.index_select(E4M3, 0, b[r0:r1].view(torch.uint8).reshape(-1).int()).view(r1 - r0, k // 128, 128)
    s = e8m0(b_s[torch.arange(r0, r1) // 128])                 # [rows, k/128]
    return (w * s[:, :, None]).view(r1 - r0, k)


def expand_fp4(b, b_s, r0, r1):
    """Rows r0..r1 of a packed e2m1 weight [n, k/2] with per-(row, 32) scales, as fp32 (exact)."""
    k = 2 * b.size(1)
    w = torch.index_select(E2M1_PAIRS, 0, b[r0:r1].view(torch.uint8).reshape(-1).int()).view(r1 - r0, k // 32, 32)
    return (w * e8m0(b_s[r0:r1])[:, :, None]).view(r1 - r0, k)


def _gemm(a, a_s, b, b_s, expand):
    """C = A . B^T for a quantised B: its fp32 copy if --weights fp32 made one, else B expanded a
    slab of rows at a time."""
    k = a.size(-1)
    x = _scaled_activations(a, a_s)
    whole = getattr(b, 'fp32', None)
    if whole is not None:
        c = x @ whole.t()
    else:
        n = b.size(0)
        rows = max(128, SLAB // k // 128 * 128)
        c = torch.empty(x.size(0), n)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            torch.matmul(x, expand(b, b_s, r0, r1).t(), out=c[:, r0:r1])
    return c.to(torch.get_default_dtype()).reshape(*a.shape[:-1], c.size(1))


def fp8_gemm(a, a_s, b, b_s, scale_dtype=None):
    """C = A . B^T, A e4m3 with per-(row, 128) scales, B e4m3 [n, k] with per-(128, 128) scales."""
    return _gemm(a, a_s, b, b_s, expand_fp8)


def fp4_gemm(a, a_s, b, b_s, scale_dtype=None):
    """C = A . B^T, A e4m3 with per-(row, 128) scales, B e2m1 packed [n, k/2] with per-(row, 32) scales."""
    return _gemm(a, a_s, b, b_s, expand_fp4)


def sparse_attn(q, kv, attn_sink, topk_idxs, softmax_scale):
    """out[t, h] = sum_j p_j kv[idx_j] over the valid (>= 0) top-k rows of token t; the sink is an
    extra logit per head that takes probability but adds no value."""
    b, m, h, d = q.shape
    out = torch.empty(b, m, h, d)
    sink = attn_sink.float().view(1, h, 1)
    for bi in range(b):
        for t0 in range(0, m, 64):  # 64 query rows at a time: the gathered keys stay small
            idx = topk_idxs[bi, t0:t0 + 64].long()
            keys = kv[bi].float()[idx.clamp(min=0)]             # [rows, k, d]
            scores = torch.einsum('thd,tkd->thk', q[bi, t0:t0 + 64].float(), keys) * softmax_scale
            scores = scores.masked_fill((idx < 0)[:, None, :], -math.inf)
            scores = torch.cat([scores, sink.expand(scores.size(0), h, 1)], -1)
            p = torch.softmax(scores, -1)[..., :-1]
            out[bi, t0:t0 + 64] = torch.einsum('thk,tkd->thd', p, keys)
    return out.to(q.dtype)


def hc_split_sinkhorn(mixes, hc_scale, hc_base, hc_mult=4, sinkhorn_iters=20, eps=1e-6):
    """mHC: pre weights, post weights and the doubly-stochastic mixing matrix (Sinkhorn)."""
    hc = hc_mult
    pre = torch.sigmoid(mixes[..., :hc] * hc_scale[0] + hc_base[:hc]) + eps
    post = 2 * torch.sigmoid(mixes[..., hc:2 * hc] * hc_scale[1] + hc_base[hc:2 * hc])
    comb = (mixes[..., 2 * hc:] * hc_scale[2] + hc_base[2 * hc:]).unflatten(-1, (hc, hc))
    comb = comb.softmax(-1) + eps
    comb = comb / (comb.sum(-2, keepdim=True) + eps)
    for _ in range(sinkhorn_iters - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + eps)
        comb = comb / (comb.sum(-2, keepdim=True) + eps)
    return pre, post, comb


def hadamard_transform(x, scale):
    """Walsh-Hadamard transform along the last dimension (a power of two), times scale."""
    shape, n = x.shape, x.shape[-1]
    y = x.float().reshape(-1, n)
    h = 1
    while h < n:
        y = y.reshape(-1, n // (2 * h), 2, h)
        y = torch.stack([y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]], 2)
        h *= 2
    return (y.reshape(shape) * scale).to(x.dtype)


# ---- the official model.py ----------------------------------------------------------------------

def load_reference(ref_dir):
    """model.py from ref_dir as a module, its GPU imports served by the functions above."""
    path = os.path.join(ref_dir, 'model.py')
    if not os.path.isfile(path):
        sys.exit(f'peer_torch: {path} not found: REF_DIR must be the inference/ directory of '
                 'the Hugging Face repository deepseek-ai/DeepSeek-V4-Flash')
    torch.float8_e4m3fn = torch.int8
    torch.float4_e2m1fn_x2 = torch.uint8
    torch.float8_e8m0fnu = torch.int16
    kernel = types.ModuleType('kernel')
    for f in (act_quant, fp4_act_quant, fp8_gemm, fp4_gemm, sparse_attn, hc_split_sinkhorn):
        setattr(kernel, f.__name__, f)
    sys.modules['kernel'] = kernel
    fht = types.ModuleType('fast_hadamard_transform')
    fht.hadamard_transform = hadamard_transform
    sys.modules['fast_hadamard_transform'] = fht
    # integer parameters (the stand-ins, tid2eid) cannot require gradients
    new = torch.nn.Parameter.__new__
    torch.nn.Parameter.__new__ = lambda cls, data=None, requires_grad=True: new(
        cls, data, requires_grad and (data is None or data.is_floating_point()))
    src = open(path).read()
    bf16_only = '    assert x.dtype == torch.bfloat16\n'
    if bf16_only not in src:
        sys.exit(f'peer_torch: {path}: rotate_activation no longer has the bf16 assert this script '
                 'removes; is this the DeepSeek-V4 inference code?')
    module = types.ModuleType('model')
    exec(compile(src.replace(bf16_only, '', 1), path, 'exec'), module.__dict__)
    return module


def model_args(M, cfg, max_seq_len):
    rs = cfg.get('rope_scaling') or {}
    return M.ModelArgs(
        max_batch_size=1, max_seq_len=max_seq_len,
        dtype='fp8' if 'quantization_config' in cfg else 'bf16', scale_fmt='ue8m0',
        expert_dtype=cfg.get('expert_dtype'), vocab_size=cfg['vocab_size'], dim=cfg['hidden_size'],
        moe_inter_dim=cfg['moe_intermediate_size'], n_layers=cfg['num_hidden_layers'],
        n_hash_layers=cfg.get('num_hash_layers', 0),
        n_mtp_layers=0,  # the MTP block is not part of a plain forward (nor of dsv4 bench)
        n_heads=cfg['num_attention_heads'], n_routed_experts=cfg['n_routed_experts'],
        n_shared_experts=cfg.get('n_shared_experts', 1), n_activated_experts=cfg['num_experts_per_tok'],
        score_func=cfg.get('scoring_func', 'sqrtsoftplus'), route_scale=cfg.get('routed_scaling_factor', 1.0),
        swiglu_limit=cfg.get('swiglu_limit', 0.0), q_lora_rank=cfg['q_lora_rank'], head_dim=cfg['head_dim'],
        rope_head_dim=cfg['qk_rope_head_dim'], norm_eps=cfg.get('rms_norm_eps', 1e-6), o_groups=cfg['o_groups'],
        o_lora_rank=cfg['o_lora_rank'], window_size=cfg['sliding_window'],
        compress_ratios=tuple(cfg['compress_ratios']),
        compress_rope_theta=cfg.get('compress_rope_theta', 40000.0),
        original_seq_len=rs.get('original_max_position_embeddings', 0),
        rope_theta=cfg.get('rope_theta', 10000.0), rope_factor=rs.get('factor', 40),
        beta_fast=rs.get('beta_fast', 32), beta_slow=rs.get('beta_slow', 1),
        index_n_heads=cfg.get('index_n_heads', 64), index_head_dim=cfg.get('index_head_dim', 128),
        index_topk=cfg.get('index_topk', 512), hc_mult=cfg['hc_mult'],
        hc_sinkhorn_iters=cfg.get('hc_sinkhorn_iters', 20), hc_eps=cfg.get('hc_eps', 1e-6))


# ---- the checkpoint -----------------------------------------------------------------------------

NP_DTYPES = {'F32': np.float32, 'BF16': np.uint16, 'F8_E4M3': np.uint8, 'F8_E8M0': np.uint8,
             'I8': np.uint8, 'U8': np.uint8, 'I32': np.int32, 'I64': np.int64}


def read_safetensors(path):
    """name -> (dtype, array) for one file, mapped (nothing is read until a tensor is used)."""
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
    out = {}
    for name, v in header.items():
        if name == '__metadata__':
            continue
        if v['dtype'] not in NP_DTYPES:
            sys.exit(f'peer_torch: {path}: tensor {name} has dtype {v["dtype"]}, not one this loader knows')
        b, e = v['data_offsets']
        out[name] = (v['dtype'], data[b:e].view(NP_DTYPES[v['dtype']]).reshape(v['shape']))
    return out


def to_float(dt, w, scale):
    """A checkpoint tensor as fp32: bf16 widened, e4m3 times its 128x128 block scales."""
    if dt == 'BF16':
        out = np.empty(w.shape, np.uint32)
        out[...] = w
        out <<= 16
        return torch.from_numpy(out.view(np.float32))
    if dt == 'F8_E4M3':
        s = e8m0(torch.from_numpy(scale.astype(np.int64)))
        v = E4M3[torch.from_numpy(np.array(w, np.int64))]
        return v * s.repeat_interleave(128, 0)[:v.shape[0]].repeat_interleave(128, 1)[:, :v.shape[1]]
    return torch.from_numpy(np.array(w, np.float32))


def load_weights(model, model_dir):
    index = os.path.join(model_dir, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(index))['weight_map'].values())) if os.path.exists(index) else ['model.safetensors']
    sd = {}
    for f in files:
        sd.update(read_safetensors(os.path.join(model_dir, f)))
    params = dict(model.named_parameters())
    for name, p in params.items():
        if name not in sd:
            if name.endswith('.scale') and name[:-len('scale')] + 'weight' in params:
                continue  # e8m0 scales of a weight that is dequantised below
            sys.exit(f'peer_torch: {model_dir}: no tensor {name} in the checkpoint')
        dt, w = sd[name]
        if p.dtype in (torch.int8, torch.uint8):       # e4m3 bits / packed e2m1 pairs
            p.data = torch.from_numpy(np.array(w, np.uint8)).view(p.dtype)
        elif p.dtype == torch.int16:                    # e8m0 scale bytes
            p.data = torch.from_numpy(w.astype(np.int16))
        elif p.dtype in (torch.int32, torch.int64):     # tid2eid
            p.data = torch.from_numpy(w.astype(np.int64))
        else:                                           # declared float: bf16 / e4m3 (wo_a) widened
            scale = sd.get(name[:-len('weight')] + 'scale', (None, None))[1]
            p.data = to_float(dt, w, scale)
        if list(p.shape) != list(w.shape) and p.dtype not in (torch.int32, torch.int64):
            sys.exit(f'peer_torch: {model_dir}: {name} has shape {list(w.shape)}, model.py wants {list(p.shape)}')
    for mod in model.modules():  # model.py reads a quantised weight's scales from weight.scale
        if getattr(mod, 'scale', None) is not None and hasattr(mod, 'weight'):
            mod.weight.scale = mod.scale


def expand_all(model):
    """--weights fp32: every e4m3/e2m1 weight expanded to fp32 once, kept as weight.fp32. Refused
    when it would not fit in the memory available now (with 2 GiB to spare)."""
    quantised = [m.weight for m in model.modules()
                 if hasattr(m, 'weight') and getattr(m.weight, 'scale', None) is not None
                 and m.weight.dtype in (torch.int8, torch.uint8)]
    need = sum(4 * w.numel() * (2 if w.dtype == torch.uint8 else 1) for w in quantised)
    avail = next(int(l.split()[1]) * 1024 for l in open('/proc/meminfo') if l.startswith('MemAvailable:'))
    if need > avail - (2 << 30):
        sys.exit(f'peer_torch: --weights fp32 needs {need / 2**30:.1f} GiB more, {avail / 2**30:.1f} GiB are '
                 'available: use --weights stored')
    for w in quantised:
        expand = expand_fp4 if w.dtype == torch.uint8 else expand_fp8
        w.fp32 = expand(w, w.scale, 0, w.size(0))


# ---- the run ------------------------------------------------------------------------------------

def first_steps(model, ids, n):
    """Logits after a prefill of ids[:n] at position 0, and after one decode step with ids[n]."""
    a = model(torch.tensor([ids[:n]]), 0)[0].clone()
    b = model(torch.tensor([[ids[n]]]), n)[0].clone()
    return a.numpy(), b.numpy()


def compare(mine, path, n):
    """|difference| of (prefill, first decode step) logits from dsv4's rows n-1 and n in path."""
    want = np.load(path)
    if want.ndim != 2 or want.shape[0] < n + 1 or want.shape[1] != mine[0].size:
        sys.exit(f'peer_torch: {path}: shape {want.shape}, expected [{n + 1}, {mine[0].size}] (dsv4 logits --split {n})')
    return {'max_abs_diff_prefill': float(np.abs(mine[0] - want[n - 1]).max()),
            'max_abs_diff_decode': float(np.abs(mine[1] - want[n]).max()),
            'max_abs_logit': float(np.abs(want[n - 1:n + 1]).max()),
            'same_argmax': bool(mine[0].argmax() == want[n - 1].argmax() and mine[1].argmax() == want[n].argmax())}


def main():
    global QUANTISE
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('model_dir')
    ap.add_argument('--ref-dir', default=os.environ.get('REF_DIR'))
    ap.add_argument('--prefill', type=int, default=64)
    ap.add_argument('--decode', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--check', metavar='EXACT.npy',
                    help="dsv4's logits of the first N+1 ids in exact numerics (dsv4 logits --numerics exact --split N)")
    ap.add_argument('--tol', type=float, default=1e-4,
                    help='largest |logit difference| accepted by --check, relative to max(1, largest |logit|)')
    ap.add_argument('--compare', metavar='DEFAULT.npy',
                    help="dsv4's logits of the same ids in default numerics: reported for the timed run")
    ap.add_argument('--weights', choices=('stored', 'fp32'), default='stored',
                    help='stored: FP8/FP4 weights expanded inside each matmul (bounded memory, the default); '
                         'fp32: expanded once at load (4-8x the memory, PyTorch\'s best case)')
    ap.add_argument('--write-ids', metavar='F.json', help='write the first N+1 ids as JSON and stop')
    o = ap.parse_args()
    if o.prefill < 1 or o.decode < 1:
        sys.exit('peer_torch: --prefill and --decode need at least 1 token')
    cfg = json.load(open(os.path.join(o.model_dir, 'config.json')))
    P = o.prefill
    ids = bench_ids(o.seed, P + WARM + o.decode + 1, cfg['vocab_size'])
    if o.write_ids:
        json.dump(ids[:P + 1], open(o.write_ids, 'w'))
        return
    if not o.ref_dir:
        sys.exit('peer_torch: give the official inference/ directory with --ref-dir DIR or REF_DIR')

    torch.set_num_threads(o.threads)
    torch.set_default_dtype(torch.float32)
    M = load_reference(o.ref_dir)
    t0 = time.perf_counter()
    model = M.Transformer(model_args(M, cfg, (P + WARM + o.decode + 1 + 127) // 128 * 128))
    load_weights(model, o.model_dir)
    if o.weights == 'fp32':
        expand_all(model)
    result = {'model': o.model_dir, 'engine': 'official model.py, torch ' + torch.__version__,
              'weights': o.weights, 'threads': torch.get_num_threads(), 'load_s': time.perf_counter() - t0}

    with torch.inference_mode():
        if o.check:
            # In exact numerics the two engines compute the same real function, so they must agree
            # to fp32 rounding; in default numerics a one-ulp difference can flip an e4m3 rounding
            # (a near-tie) and move later logits by O(0.1) on random weights (docs/numerics.md).
            fresh = [(b, b.clone()) for b in model.buffers()]
            QUANTISE = False
            check = compare(first_steps(model, ids, P), o.check, P)
            QUANTISE = True
            for b, init in fresh:  # the caches as they were: the timed run starts from nothing
                b.copy_(init)
            worst = max(check['max_abs_diff_prefill'], check['max_abs_diff_decode'])
            check['tol'] = o.tol * max(1.0, check['max_abs_logit'])
            result['check_exact'] = check
            if worst > check['tol']:
                print(json.dumps(result, indent=1))
                sys.exit(f'peer_torch: in exact numerics the logits differ from dsv4 by {worst:.3g} > '
                         f'{check["tol"]:.3g}: the two engines do not compute the same function')

        t0 = time.perf_counter()
        first = model(torch.tensor([ids[:P]]), 0)[0].clone()
        prefill_s = time.perf_counter() - t0
        second = model(torch.tensor([[ids[P]]]), P)[0].clone()
        for i in range(1, WARM):
            model(torch.tensor([[ids[P + i]]]), P + i)
        t0 = time.perf_counter()
        for i in range(o.decode):
            model(torch.tensor([[ids[P + WARM + i]]]), P + WARM + i)
        decode_s = time.perf_counter() - t0

    result.update(prefill_tokens=P, prefill_s=prefill_s, prefill_tok_s=P / prefill_s,
                  decode_tokens=o.decode, depth=P + WARM, decode_s=decode_s, decode_tok_s=o.decode / decode_s,
                  max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if o.compare:
        result['timed_vs_dsv4_default'] = compare((first.numpy(), second.numpy()), o.compare, P)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
