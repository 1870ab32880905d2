#!/usr/bin/env python3
"""train_torch.py: the training step of `dsv4 train`, written in PyTorch, to time dsv4 against.

This is our own implementation of the DeepSeek-V4 architecture as dsv4 computes it, from
docs/training.md and the engine's comments: mHC (hc_pre with the Sinkhorn projection, hc_post,
hc_head), attention over the sliding window plus compressed rows with the per-head sink, the
overlapping ratio-4 compressor with the lightning indexer (CSA) and the ratio-128 compressor
(HCA), YaRN on the compressed layers, MoE with hash and score routing (sqrt-softplus) and the
clamped SwiGLU, the MTP block; and of dsv4's training step: loss masks, the MTP loss, the
indexer's KL loss, the sequence-wise balance loss, gradient clipping, Muon (hybrid Newton-Schulz)
and AdamW, the router-bias rule.

It starts from a dsv4 checkpoint (`dsv4 train --until 0` writes the initial weights) and packs
its rows from the same data set exactly as dsv4 does for a single family (examples back to back
up to --seq tokens), so both sides run the same steps on the same tokens: the losses of step 0
agree to rounding, and the timing compares like with like. It needs only torch and numpy (Debian's
python3-torch); the project itself does not use it.

    python3 bench/train_torch.py --init CKPT --data DATA --family text --batch 8 --seq 512
                                 --steps 5 --threads 2 [--config CONFIG.json]
prints one line per step (loss, MTP loss, tokens/s) and a final JSON line.
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

FAMILIES = ["arith", "table", "needle", "tools", "text", "chat"]

# ---- checkpoints and data ------------------------------------------------------------------


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    kinds = {"F32": np.float32, "I32": np.int32, "I64": np.int64}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=kinds[t["dtype"]]).reshape(t["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class Rows:
    """The rows of one family, packed as dsv4's batch.c packs them."""

    def __init__(self, data, family, seq):
        self.tokens = np.fromfile(f"{data}/train.tokens", dtype="<i4")
        self.mask = np.fromfile(f"{data}/train.mask", dtype=np.uint8)
        idx = np.fromfile(f"{data}/train.index", dtype=np.uint8)
        n = int.from_bytes(idx[16:24].tobytes(), "little")
        rec = idx[32:32 + 16 * n].reshape(n, 16)
        first = rec[:, 0:8].copy().view("<u8").ravel()
        length = rec[:, 8:12].copy().view("<u4").ravel()
        fam = rec[:, 12:14].copy().view("<u2").ravel()
        f = FAMILIES.index(family)
        self.seqs = [(int(a), int(b)) for a, b, c in zip(first, length, fam) if c == f]
        self.seq, self.cursor = seq, 0

    def row(self):
        ids, mask, T = [], [], 0
        while True:
            a, n = self.seqs[self.cursor % len(self.seqs)]
            if n > self.seq:  # dsv4 gives it a row of its own (max_len is the bench's seq)
                self.cursor += 1
                continue
            if T and T + n > self.seq:
                break
            ids.append(self.tokens[a:a + n])
            mask.append(self.mask[a:a + n])
            T += n
            self.cursor += 1
        return torch.from_numpy(np.concatenate(ids).astype(np.int64)), torch.from_numpy(np.concatenate(mask).astype(bool))


# ---- the model -------------------------------------------------------------------------------


def rmsnorm(x, w, eps):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


class Rope:
    def __init__(self, rd, base, orig, factor, beta_fast, beta_slow):
        i = torch.arange(0, rd, 2, dtype=torch.float32) / rd
        freqs = 1.0 / torch.pow(torch.tensor(float(base), dtype=torch.float64), i.double()).float()
        if orig > 0:
            lo = math.floor(rd * math.log(orig / (beta_fast * 2 * math.pi)) / (2 * math.log(base)))
            hi = math.ceil(rd * math.log(orig / (beta_slow * 2 * math.pi)) / (2 * math.log(base)))
            lo, hi = max(lo, 0), min(hi, rd - 1)
            if lo == hi:
                hi += 0.001
            ramp = ((torch.arange(rd // 2, dtype=torch.float32) - lo) / (hi - lo)).clamp(0, 1)
            freqs = freqs / factor * ramp + freqs * (1 - ramp)
        self.freqs, self.rd = freqs, rd

    def apply(self, x, pos, inverse=False):
        """x [..., T, rd] rotated at positions pos [T] (pairs 2i, 2i+1)."""
        ang = pos.float()[:, None] * self.freqs[None, :]
        c, s = torch.cos(ang.double()).float(), torch.sin(ang.double()).float()
        if inverse:
            s = -s
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), -1).flatten(-2)


def rope_tail(rope, x, pos, inverse=False):
    rd = rope.rd
    return torch.cat((x[..., :-rd], rope.apply(x[..., -rd:], pos, inverse)), -1)


def hadamard(n):
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h / math.sqrt(n)


class Model:
    def __init__(self, cfg, weights):
        self.c = cfg
        self.w = {k: v.clone().requires_grad_(v.dtype == torch.float32) for k, v in weights.items()}
        rs = cfg.get("rope_scaling", {}) or {}
        rd = cfg["qk_rope_head_dim"]
        self.rope_plain = Rope(rd, cfg["rope_theta"], 0, 1.0, rs.get("beta_fast", 32), rs.get("beta_slow", 1))
        self.rope_yarn = Rope(rd, cfg["compress_rope_theta"], rs.get("original_max_position_embeddings", 0),
                              rs.get("factor", 1.0), rs.get("beta_fast", 32), rs.get("beta_slow", 1))
        self.had = hadamard(cfg["index_head_dim"])
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.hc_eps = cfg.get("hc_eps", 1e-6)

    def params(self):
        return {k: v for k, v in self.w.items() if v.requires_grad}

    # mHC
    def hc_pre(self, p, X):
        c, hc = self.c, self.c["hc_mult"]
        T = X.shape[0]
        v = X.reshape(T, -1)
        m = (v @ self.w[p + "_fn"].t()) * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + self.eps)
        sc, base = self.w[p + "_scale"], self.w[p + "_base"]
        pre = torch.sigmoid(m[:, :hc] * sc[0] + base[:hc]) + self.hc_eps
        post = 2 * torch.sigmoid(m[:, hc:2 * hc] * sc[1] + base[hc:2 * hc])
        comb = (m[:, 2 * hc:] * sc[2] + base[2 * hc:]).view(T, hc, hc)
        comb = torch.softmax(comb, -1) + self.hc_eps
        comb = comb / (comb.sum(-2, keepdim=True) + self.hc_eps)
        for _ in range(c["hc_sinkhorn_iters"] - 1):
            comb = comb / (comb.sum(-1, keepdim=True) + self.hc_eps)
            comb = comb / (comb.sum(-2, keepdim=True) + self.hc_eps)
        return (pre[:, :, None] * X).sum(1), post, comb

    @staticmethod
    def hc_post(v, X, post, comb):
        return post[:, :, None] * v[:, None, :] + torch.einsum("tjk,tjd->tkd", comb, X)

    def hc_head(self, p, X):
        T = X.shape[0]
        v = X.reshape(T, -1)
        m = (v @ self.w[p + "hc_head_fn"].t()) * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + self.eps)
        pre = torch.sigmoid(m * self.w[p + "hc_head_scale"][0] + self.w[p + "hc_head_base"]) + self.hc_eps
        return (pre[:, :, None] * X).sum(1)

    # the compressor: rows [T // ratio, dc]
    def compress(self, p, u, ratio, dc, rope, rotate):
        W = self.w
        T = u.shape[0]
        n = T // ratio
        a, z = u @ W[p + ".wkv.weight"].t(), u @ W[p + ".wgate.weight"].t()
        if n == 0:
            return u.new_zeros(0, dc)
        width = a.shape[1]
        score = z[:n * ratio].view(n, ratio, width) + W[p + ".ape"][None]
        A = a[:n * ratio].view(n, ratio, width)
        if ratio == 4:  # overlap: the A-halves of window w-1 and the B-halves of window w
            prevA = torch.cat((A.new_zeros(1, ratio, dc), A[:-1, :, :dc]), 0)
            prevZ = torch.cat((score.new_full((1, ratio, dc), -math.inf), score[:-1, :, :dc]), 0)
            A = torch.cat((prevA, A[:, :, dc:]), 1)
            score = torch.cat((prevZ, score[:, :, dc:]), 1)
        pooled = (torch.softmax(score, 1) * A).sum(1)
        rows = rmsnorm(pooled, W[p + ".norm.weight"], self.eps)
        rows = rope_tail(rope, rows, torch.arange(n) * ratio)
        return rows @ self.had.t() if rotate else rows

    def attention(self, p, u, ratio, ids_pos, want_idx):
        c, W = self.c, self.w
        T = u.shape[0]
        H, D, rd, Wn = c["num_attention_heads"], c["head_dim"], c["qk_rope_head_dim"], c["sliding_window"]
        rope = self.rope_yarn if ratio else self.rope_plain
        pos = torch.arange(T)
        q_lat = rmsnorm(u @ W[p + "wq_a.weight"].t(), W[p + "q_norm.weight"], self.eps)
        q = rmsnorm((q_lat @ W[p + "wq_b.weight"].t()).view(T, H, D), None, self.eps)
        q = rope_tail(rope, q.transpose(0, 1), pos).transpose(0, 1)
        kv = rope_tail(rope, rmsnorm(u @ W[p + "wkv.weight"].t(), W[p + "kv_norm.weight"], self.eps), pos)
        tt, jj = pos[:, None], pos[None, :]
        mask = (jj <= tt) & (jj > tt - Wn)
        keys = kv
        idx_loss = None
        if ratio:
            comp = self.compress(p + "compressor", u, ratio, D, rope, False)
            n = comp.shape[0]
            keys = torch.cat((kv, comp), 0)
            cc = torch.arange(n)[None, :]
            visible = cc < ((tt + 1) // ratio)
            if ratio == 4:  # the lightning indexer chooses among the visible rows
                k = c["index_topk"]
                nh, hd = c["index_n_heads"], c["index_head_dim"]
                ikeys = self.compress(p + "indexer.compressor", u.detach(), 4, hd, rope, True)
                iq = (q_lat.detach() @ W[p + "indexer.wq_b.weight"].t()).view(T, nh, hd)
                iq = rope_tail(rope, iq.transpose(0, 1), pos).transpose(0, 1) @ self.had.t()
                iw = (u.detach() @ W[p + "indexer.weights_proj.weight"].t()) / math.sqrt(hd) / math.sqrt(nh)
                I = (torch.relu(torch.einsum("thd,cd->thc", iq, ikeys)) * iw[:, :, None]).sum(1)
                Im = I.detach().masked_fill(~visible, -math.inf)
                top = torch.topk(Im, min(k, n), -1).indices if n else torch.zeros(T, 0, dtype=torch.long)
                sel = torch.zeros(T, n, dtype=torch.bool)
                if n:
                    sel.scatter_(1, top, True)
                visible = sel & visible
            mask = torch.cat((mask, visible), 1)
        s = torch.einsum("thd,jd->thj", q, keys) / math.sqrt(D)
        s = s.masked_fill(~mask[:, None, :], -math.inf)
        sink = W[p + "attn_sink"][None, :, None].expand(T, H, 1)
        P = torch.softmax(torch.cat((s, sink), -1), -1)[..., :-1]
        o = torch.einsum("thj,jd->thd", P, keys)
        o = rope_tail(rope, o.transpose(0, 1), pos, inverse=True).transpose(0, 1)
        if ratio == 4 and want_idx and keys.shape[0] > T:
            psel = P.detach()[:, :, T:].sum(1).masked_fill(~visible, 0)  # heads summed, the selection only
            mass = psel.sum(-1)
            ok = mass > 0
            if ok.any():
                tgt = psel[ok] / mass[ok, None]
                logq = torch.log_softmax(I[ok].masked_fill(~visible[ok], -math.inf), -1)
                kl = torch.where(tgt > 0, tgt * (torch.log(tgt.clamp_min(1e-30)) - logq), torch.zeros_like(tgt))
                idx_loss = kl.sum(-1).mean()
        G, olr = c["o_groups"], c["o_lora_rank"]
        og = o.reshape(T, G, H // G * D)
        wo_a = W[p + "wo_a.weight"].view(G, olr, -1)
        zo = torch.einsum("tgi,goi->tgo", og, wo_a).reshape(T, G * olr)
        return zo @ W[p + "wo_b.weight"].t(), idx_loss

    def expert(self, p, x, weight=None):
        W, L = self.w, self.c.get("swiglu_limit", 0)
        g, up = x @ W[p + "w1.weight"].t(), x @ W[p + "w3.weight"].t()
        if L > 0:
            g, up = g.clamp(max=L), up.clamp(-L, L)
        h = F.silu(g) * up
        if weight is not None:
            h = h * weight[:, None]
        return h @ W[p + "w2.weight"].t()

    def moe(self, p, u, ids, hashed):
        c, W = self.c, self.w
        E, K = c["n_routed_experts"], c["num_experts_per_tok"]
        logits = u @ W[p + "gate.weight"].t()
        s = torch.sqrt(F.softplus(logits))
        if hashed:
            idx = W[p + "gate.tid2eid"].long()[ids]
        else:
            idx = torch.topk(s.detach() + W[p + "gate.bias"].detach(), K, -1).indices
        wt = s.gather(1, idx)
        wt = wt / wt.sum(-1, keepdim=True) * c["routed_scaling_factor"]
        out = torch.zeros_like(u)
        for e in range(E):
            t, k = torch.nonzero(idx == e, as_tuple=True)
            if len(t):
                out = out.index_add(0, t, self.expert(f"{p}experts.{e}.", u[t], wt[t, k]))
        out = out + self.expert(p + "shared_experts.", u)
        bal = None
        if not hashed:  # the sequence-wise balance loss: sum_i f_i P_i, f from top-k without the bias
            T = u.shape[0]
            top = torch.topk(s.detach(), K, -1).indices
            f = torch.zeros(E).index_add(0, top.flatten(), torch.ones(top.numel())) * E / (K * T)
            bal = (f * (s / s.sum(-1, keepdim=True)).mean(0)).sum()
        load = torch.bincount(idx.flatten(), minlength=E)
        return out, bal, load

    def block(self, p, lid, X, ids, want_idx):
        c, W = self.c, self.w
        ratio = c["compress_ratios"][lid]
        a, post, comb = self.hc_pre(p + "hc_attn", X)
        v, il = self.attention(p + "attn.", rmsnorm(a, W[p + "attn_norm.weight"], self.eps), ratio, None, want_idx)
        X = self.hc_post(v, X, post, comb)
        a, post, comb = self.hc_pre(p + "hc_ffn", X)
        v, bal, load = self.moe(p + "ffn.", rmsnorm(a, W[p + "ffn_norm.weight"], self.eps), ids,
                                lid < c["num_hash_layers"])
        return self.hc_post(v, X, post, comb), il, bal, load

    def head(self, p, X, norm):
        return rmsnorm(self.hc_head(p, X), self.w[norm], self.eps) @ self.w["head.weight"].t()

    def losses(self, ids, mask, lam_mtp, want_idx):
        """L (masked), L_mtp, the indexer loss, the balance loss, expert loads."""
        c, W = self.c, self.w
        T, hc = ids.shape[0], c["hc_mult"]
        X = W["embed.weight"][ids][:, None, :].expand(T, hc, -1).contiguous()
        idx_loss, bal, loads = 0.0, 0.0, []
        for l in range(c["num_hidden_layers"]):
            X, il, b, load = self.block(f"layers.{l}.", l, X, ids, want_idx)
            idx_loss = idx_loss + (il if il is not None else 0.0)
            bal = bal + (b if b is not None else 0.0)
            loads.append(load)
        rows = torch.nonzero(mask[1:], as_tuple=True)[0]
        logits = self.head("", X[rows], "norm.weight")
        L = F.cross_entropy(logits, ids[rows + 1]) if len(rows) else logits.sum() * 0
        Lm = torch.zeros(())
        if lam_mtp > 0 and T >= 3:
            e = rmsnorm(W["embed.weight"][ids[1:]], W["mtp.0.enorm.weight"], self.eps)
            h = rmsnorm(X[:T - 1], W["mtp.0.hnorm.weight"], self.eps)
            X0 = (e @ W["mtp.0.e_proj.weight"].t())[:, None, :] + h @ W["mtp.0.h_proj.weight"].t()
            Xm, _, b, load = self.block("mtp.0.", c["num_hidden_layers"], X0, ids[1:], False)
            bal = bal + b
            loads.append(load)
            rows = torch.nonzero(mask[2:], as_tuple=True)[0]
            if len(rows):
                Lm = F.cross_entropy(self.head("mtp.0.", Xm[rows], "mtp.0.norm.weight"), ids[rows + 2])
        return L, Lm, idx_loss, bal, loads


# ---- the optimisers ----------------------------------------------------------------------------


def newton_schulz(G, fast, exact):
    X = G / (G.norm() + 1e-7)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.t()
    for i in range(fast + exact):
        a, b, c = (3.4445, -4.7750, 2.0315) if i < fast else (2.0, -1.5, 0.5)
        A = X @ X.t()
        X = a * X + (b * A + c * A @ A) @ X
    return X.t() if tall else X


class Optimizer:
    def __init__(self, model, o):
        self.m, self.o, self.step_n = model, o, 0
        self.state = {k: [torch.zeros_like(v), torch.zeros_like(v)] for k, v in model.params().items()}

    def rule(self, name, p):
        if name.endswith("gate.bias"):
            return "bias", False
        if name in ("embed.weight", "head.weight"):
            return "adamw", True
        if p.dim() == 1 or name.endswith(".ape"):
            return "adamw", False
        return "muon", True

    @torch.no_grad()
    def step(self, lr, gscale):
        o, t = self.o, self.step_n + 1
        for name, p in self.m.params().items():
            rule, decay = self.rule(name, p)
            if rule == "bias":
                continue
            g = (p.grad if p.grad is not None else torch.zeros_like(p)) * gscale
            m, v = self.state[name]
            keep = 1 - lr * o["weight_decay"] if decay else 1.0
            if rule == "adamw":
                b1, b2 = o["adam_betas"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.mul_(keep).sub_(lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + o["adam_eps"]))
            else:
                mu = o["momentum"]
                m.mul_(mu).add_(g)
                u = m * mu + g
                blocks = self.m.c["o_groups"] if name.endswith("attn.wo_a.weight") else 1
                rows, cols = p.shape[0] // blocks, p.shape[1]
                if u.abs().sum() > 0:
                    u = torch.cat([newton_schulz(b, *o["ns_steps"]) for b in u.split(rows, 0)], 0)
                p.mul_(keep).sub_(lr * o["update_rms"] * math.sqrt(max(rows, cols)) * u)
        self.step_n += 1


# ---- the run -----------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True, help="a dsv4 checkpoint directory (config.json, model.safetensors)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", help="the dsv4 train CONFIG.json (optimiser and loss weights)")
    ap.add_argument("--family", default="text")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = json.load(open(f"{args.init}/config.json"))
    run = json.load(open(args.config)) if args.config else {}
    o = {"lr": 3e-3, "warmup": 100, "weight_decay": 0.1, "momentum": 0.95, "update_rms": 0.18, "ns_steps": [8, 2],
         "adam_betas": [0.9, 0.95], "adam_eps": 1e-20, "clip": 1.0, "router_bias_speed": 0.001}
    o.update(run.get("optimizer", {}))
    lw = {"mtp": 0.3, "indexer": 1.0, "balance": 1e-4}
    lw.update(run.get("loss", {}))
    model = Model(cfg, load_safetensors(f"{args.init}/model.safetensors"))
    opt = Optimizer(model, o)
    rows = Rows(args.data, args.family, args.seq)
    E = cfg["n_routed_experts"]
    results = []
    for step in range(args.steps):
        t0 = time.time()
        batch = [rows.row() for _ in range(args.batch)]
        targets = sum(int(m[1:].sum()) for _, m in batch)
        mtp_total = sum(int(m[2:].sum()) for _, m in batch)
        tokens = sum(len(i) for i, _ in batch)
        for p in model.params().values():
            p.grad = None
        tot = {"loss": 0.0, "mtp": 0.0}
        loads = None
        for ids, mask in batch:
            L, Lm, il, bal, ld = model.losses(ids, mask, lw["mtp"], lw["indexer"] > 0)
            n, nm = int(mask[1:].sum()), int(mask[2:].sum())
            obj = L * (n / targets) + Lm * (lw["mtp"] * nm / max(mtp_total, 1))
            obj = obj + il * (lw["indexer"] * len(ids) / tokens) + bal * (lw["balance"] / args.batch)
            obj.backward()
            tot["loss"] += float(L) * n / targets
            tot["mtp"] += float(Lm) * nm / max(mtp_total, 1)
            ld = torch.stack(ld)
            loads = ld if loads is None else loads + ld
        with torch.no_grad():
            gnorm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.params().values() if p.grad is not None))
            gscale = o["clip"] / gnorm if o["clip"] > 0 and gnorm > o["clip"] else 1.0
            lr = o["lr"] * (step + 1) / o["warmup"] if step < o["warmup"] else o["lr"]
            opt.step(lr, gscale)
            blocks = [f"layers.{l}." for l in range(cfg["num_hidden_layers"])] + ["mtp.0."]
            for b, name in enumerate(blocks):  # the router-bias rule
                if name + "ffn.gate.bias" in model.w:
                    load = loads[b].double()
                    model.w[name + "ffn.gate.bias"] += o["router_bias_speed"] * torch.sign(load.mean() - load).float()
        dt = time.time() - t0
        results.append({"step": step, "loss": tot["loss"], "mtp": tot["mtp"], "grad_norm": gnorm, "tokens": tokens,
                        "seconds": dt})
        print(f"torch step {step}: loss {tot['loss']:.5f} mtp {tot['mtp']:.5f} grad norm {gnorm:.4f} "
              f"{tokens} tokens {tokens / dt:.1f} tok/s", flush=True)
    timed = results[1:] if len(results) > 1 else results
    print(json.dumps({"tokens_per_s": sum(r["tokens"] for r in timed) / sum(r["seconds"] for r in timed),
                      "steps": results}))


if __name__ == "__main__":
    sys.exit(main())
