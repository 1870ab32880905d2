#!/bin/bash
# synth.test.sh: `dsv4 synth` writes a checkpoint that `dsv4 logits` runs on.
# usage: bash synth.test.sh <dsv4-binary> <shared-dir> <source-dir>
set -euo pipefail
dsv4=$1
dir=$(mktemp -d /tmp/dsv4_synth_cli.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$dsv4" synth --like flash --layers 4 --experts 8 --dim 256 --vocab 1000 --inter 128 --heads 4 \
    --head-dim 128 --q-lora 128 --o-lora 64 --o-groups 2 --index-heads 4 --index-topk 16 --window 16 \
    --seed 7 --out "$dir/m" >/dev/null
"$dsv4" logits -m "$dir/m" --ids 3,1,4,1,5,9,2,6 --out "$dir/l.npy"
# an .npy of 8 x 1000 float32: 128-byte header + 32000 bytes
size=$(stat -c %s "$dir/l.npy")
[ "$size" -eq $((128 + 8 * 1000 * 4)) ] || { echo "unexpected logits file size $size"; exit 1; }
# bad options are refused
if "$dsv4" synth --like grok --out "$dir/x" 2>/dev/null; then echo "accepted --like grok"; exit 1; fi
echo "synth.test.sh: ok"
