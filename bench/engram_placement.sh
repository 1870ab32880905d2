#!/usr/bin/env bash
# engram_placement.sh: decode speed of a DeepSeek-V4.1-shaped model with its Engram tables in
# RAM against the same tables read from disk through the memory map.
#
#   bash bench/engram_placement.sh [DSV4_BINARY] [MODEL_DIR] [RUNS] [STEPS]
#
# The model is written by `dsv4 synth --like v41-flash` if MODEL_DIR has none: the real layer
# schedule (40 layers, CSA2 roles, Engram at layers 1 and 14, DSpark) and the real Engram row
# geometry (24 columns of 256 e4m3 + 8 e8m0 bytes per layer and token) with tables of
# 2 x 1.9 GiB, on reduced widths so that a CPU decodes a step in tens of ms: a harder test
# for the disk than the real model, whose steps take far longer.
#
# Each run is one `dsv4 engram bench`: the model opened three times, with the tables in RAM,
# read through the map with read-ahead ("mapped-cold"), and read through the map when each
# layer needs them ("mapped-cold-sync", the naive way); the three decode the same seeded
# random tokens taking turns step by step, and the mapped ones drop the tables from the page
# cache before every step, so every row they read comes from the disk. Reported per
# placement, as medians over the runs: the step time, its ratio to RAM (medians, and the
# median of the per-step ratios), and the median time per step the forward pass spent on
# rows: waiting for them, and asking for them to be read (the direct cost of the placement).
set -euo pipefail
dsv4=${1:-build/dsv4}
dir=${2:-/tmp/dsv4-bench-v41}
runs=${3:-5}
steps=${4:-96}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ ! -f "$dir/config.json" ]; then
  "$dsv4" synth --like v41-flash --out "$dir" --layers 40 --dim 256 --heads 4 --head-dim 128 --q-lora 128 \
    --o-lora 64 --o-groups 2 --inter 128 --experts 8 --vocab 4096 --index-heads 4 --index-topk 64 \
    --engram-vocab 320000 >&2
fi
"$dsv4" info -m "$dir" | grep -E "^(layers|engram|weights|decode)" >&2

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$runs"); do
  "$dsv4" engram bench -m "$dir" -n "$steps" --seed "$r" >> "$out"
done
python3 - "$out" "$steps" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs)
print(f"{len(runs)} runs x {sys.argv[2]} decode steps (OMP threads: 1)")
print(f"{'placement':<18} {'ms/step':>8} {'vs RAM':>8} {'paired':>8} {'wait ms':>8} {'ask ms':>7} {'(wait+ask)/step':>16}")
for name in ("ram", "mapped-cold", "mapped-cold-sync"):
    ms = med([r[name]["ms_median"] for r in runs])
    vs = med([r[name]["vs_ram_median"] for r in runs])
    pr = med([r[name]["paired_ratio_median"] for r in runs])
    wait = med([r[name]["wait_ms_median"] for r in runs])
    ask = med([r[name]["readahead_ms_median"] for r in runs])
    print(f"{name:<18} {ms:>8.2f} {100 * (vs - 1):>+7.1f}% {100 * (pr - 1):>+7.1f}% {wait:>8.3f} {ask:>7.3f} {100 * (wait + ask) / ms:>15.2f}%")
PY
