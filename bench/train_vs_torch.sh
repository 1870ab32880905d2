#!/usr/bin/env bash
# train_vs_torch.sh: `dsv4 train` against PyTorch on the CPU, the same run on both sides.
#
# Both start from the same initial weights (`dsv4 train --until 0` writes them) of the model in
# CONFIG, read the same rows of the same data set (one family, packed to SEQ tokens) and take
# STEPS optimiser steps of BATCH rows with the same losses and optimisers (bench/train_torch.py is
# our PyTorch implementation of the architecture and of dsv4's step). Printed: the losses of both
# side by side (step 0 must agree to rounding: the same function of the same weights) and the
# training speed in tokens/s, steps after the first, with the ratio.
#
#   bash bench/train_vs_torch.sh [DSV4_BINARY] [DATA_DIR]
#   environment: STEPS (4), BATCH (8), SEQ (512), THREADS (2), FAMILY (text), CONFIG (configs/tiny.json),
#                PYTHON (/usr/bin/python3, with Debian's python3-torch)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dsv4=${1:-$here/build/dsv4}
data=${2:-}
STEPS=${STEPS:-4} BATCH=${BATCH:-8} SEQ=${SEQ:-512} THREADS=${THREADS:-2} FAMILY=${FAMILY:-text}
CONFIG=${CONFIG:-$here/configs/tiny.json} PYTHON=${PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=PASSIVE
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$data" ]; then
  data=$tmp/data
  "$dsv4" data build --out "$data" --quiet
fi

# the run: CONFIG's model and optimiser, one family, a constant learning rate after warm-up
"$PYTHON" - "$CONFIG" "$tmp/bench.json" "$STEPS" "$BATCH" "$SEQ" "$FAMILY" <<'PY'
import json, sys
src, dst, steps, batch, seq, family = sys.argv[1:]
c = json.load(open(src))
c.pop("phases", None)
c.update(steps=int(steps), eval_every=0, checkpoint_every=0)
c["optimizer"]["decay_start"] = 1.0
c["data"] = {"batch": int(batch), "seq": int(seq), "max_len": int(seq), "mix": {family: 1}}
json.dump(c, open(dst, "w"), indent=1)
PY
"$dsv4" train --config "$tmp/bench.json" --data "$data" --out "$tmp/dsv4" --until 0 2>/dev/null
cp -r "$tmp/dsv4" "$tmp/init"
echo "== dsv4 train ($THREADS threads): $STEPS steps of $BATCH rows of <= $SEQ tokens ($FAMILY)"
"$dsv4" train --config "$tmp/bench.json" --data "$data" --out "$tmp/dsv4" --resume --threads "$THREADS" --log-every 1
echo "== PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__)') ($THREADS threads)"
"$PYTHON" "$here/bench/train_torch.py" --init "$tmp/init" --data "$data" --config "$tmp/bench.json" --family "$FAMILY" \
  --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" | tee "$tmp/torch.txt"

"$PYTHON" - "$tmp/dsv4/train.csv" "$tmp/torch.txt" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
torch = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
print("\nstep  dsv4 loss   torch loss   dsv4 MTP    torch MTP")
for r, t in zip(rows, torch["steps"]):
    print(f"{int(r['step']):4d}  {float(r['loss']):9.5f}  {t['loss']:11.5f}  {float(r['mtp']):9.5f}  {t['mtp']:11.5f}")
timed = rows[1:] if len(rows) > 1 else rows
tok = sum(float(r["tokens"]) for r in timed)
sec = sum(float(r["tokens"]) / float(r["tokens_per_s"]) for r in timed)
ours = tok / sec
print(f"\ntraining speed: dsv4 {ours:.0f} tokens/s, PyTorch {torch['tokens_per_s']:.0f} tokens/s: "
      f"dsv4 is {ours / torch['tokens_per_s']:.2f}x PyTorch")
PY
