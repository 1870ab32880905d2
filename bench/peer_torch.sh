#!/usr/bin/env bash
# peer_torch.sh: dsv4 against DeepSeek's official inference code (PyTorch, CPU), the same workload.
#
# Both engines load MODEL_DIR, use the same number of threads and run `dsv4 bench`'s workload: a
# prefill of N random token ids (the same ids on both sides, from SEED) in one call, two untimed
# decode steps, then D timed decode steps. Printed: tokens/s of both, side by side, and the ratios
# dsv4 / PyTorch for prefill and decode.
#
# The PyTorch side (bench/peer_torch.py) is DeepSeek's own inference/model.py, executed as written,
# with its CUDA/TileLang kernels (kernel.py) replaced by plain-torch functions that round as the
# kernels do. It shows what the reference costs on a CPU, not what an optimised PyTorch port would.
# Before timing it proves it runs the model: in exact numerics its logits after the prefill and
# after one decode step must equal `dsv4 logits --numerics exact` to fp32 rounding, or the run stops.
#
# REF_DIR is the inference/ directory of the Hugging Face repository deepseek-ai/DeepSeek-V4-Flash
# (model.py, kernel.py, ...): download it yourself, e.g.
#   huggingface-cli download deepseek-ai/DeepSeek-V4-Flash --include 'inference/*' --local-dir DSV4
# and pass DSV4/inference. It is DeepSeek's code and is not part of this repository.
#
#   bash bench/peer_torch.sh MODEL_DIR REF_DIR [N] [D]        (N: 64, D: 4)
#   environment: THREADS (2), SEED (1), WEIGHTS (stored: FP8/FP4 weights expanded inside each
#                matmul; fp32: expanded once at load, PyTorch's best case if memory allows), DSV4 (build/dsv4), PYTHON (/usr/bin/python3, with Debian's
#                python3-torch and python3-numpy)
# Heavy runs on a shared machine: `nice -n 19 bash bench/peer_torch.sh ...`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
  sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
model=$1 ref=$2 N=${3:-64} D=${4:-4}
THREADS=${THREADS:-2} SEED=${SEED:-1} WEIGHTS=${WEIGHTS:-stored} DSV4=${DSV4:-$here/build/dsv4} PYTHON=${PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=PASSIVE

fail() { echo "peer_torch.sh: $*" >&2; exit 1; }
[ -f "$model/config.json" ] || fail "$model: no config.json: not a model directory"
[ -f "$ref/model.py" ] || fail "$ref: no model.py: REF_DIR must be the inference/ directory of deepseek-ai/DeepSeek-V4-Flash (see the header of this script)"
"$PYTHON" -c 'import torch, numpy' 2>/dev/null ||
  fail "$PYTHON cannot import torch and numpy: install Debian's python3-torch and python3-numpy (apt-get install python3-torch python3-numpy) or set PYTHON"
[ -x "$DSV4" ] || fail "$DSV4: no dsv4 binary: build it (cmake --build build --target dsv4) or set DSV4"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# dsv4's logits of the first N+1 ids, fed as the benchmark feeds them (N in one call, then one)
"$PYTHON" "$here/bench/peer_torch.py" "$model" --write-ids "$tmp/ids.json" --prefill "$N" --seed "$SEED"
for numerics in exact default; do
  "$DSV4" logits -m "$model" --ids @"$tmp/ids.json" --split "$N" --numerics $numerics --threads "$THREADS" \
    --out "$tmp/$numerics.npy"
done

echo "== dsv4 bench ($THREADS threads): prefill $N tokens, decode $D"
"$DSV4" bench -m "$model" --prefill "$N" --decode "$D" --threads "$THREADS" --seed "$SEED" --json >"$tmp/dsv4.json"
echo "== official model.py on PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__)') ($THREADS threads, weights $WEIGHTS)"
"$PYTHON" "$here/bench/peer_torch.py" "$model" --ref-dir "$ref" --prefill "$N" --decode "$D" --threads "$THREADS" \
  --seed "$SEED" --weights "$WEIGHTS" --check "$tmp/exact.npy" --compare "$tmp/default.npy" >"$tmp/torch.json" ||
  { cat "$tmp/torch.json"; fail "the PyTorch run failed"; }

"$PYTHON" - "$tmp/dsv4.json" "$tmp/torch.json" <<'PY'
import json, sys
d, t = (json.load(open(p)) for p in sys.argv[1:3])
c, v = t["check_exact"], t["timed_vs_dsv4_default"]
print(f"model {t['model']}, {t['threads']} threads; PyTorch: weights {t['weights']}, load {t['load_s']:.1f} s, "
      f"peak RSS {t['max_rss_bytes'] / 2**30:.2f} GiB")
print(f"check, exact numerics: |logits - dsv4| <= {max(c['max_abs_diff_prefill'], c['max_abs_diff_decode']):.2e} "
      f"(largest |logit| {c['max_abs_logit']:.3g}, tolerance {c['tol']:.2e})")
print(f"timed run, default numerics: |logits - dsv4| prefill {v['max_abs_diff_prefill']:.2e}, "
      f"decode {v['max_abs_diff_decode']:.2e}, same argmax: {v['same_argmax']}")
print(f"\n{'':8}{'dsv4 tok/s':>12}{'PyTorch tok/s':>15}{'dsv4/PyTorch':>14}")
for phase, n in (("prefill", t["prefill_tokens"]), ("decode", t["decode_tokens"])):
    a, b = d[f"{phase}_tok_s"], t[f"{phase}_tok_s"]
    print(f"{phase:8}{a:12.2f}{b:15.3f}{a / b:13.1f}x   ({n} tokens)")
PY
