#!/bin/bash
# bench/run.sh: dsv4's decode and prefill speed against this machine's limits.
#
# Synthesizes a DeepSeek-V4-Flash-shaped checkpoint with 2 layers (all 256 FP4 experts per
# layer, about 13 GB) into a scratch directory unless it is already there, then runs
# `dsv4 bench` on it and prints the ratios: decode bandwidth / measured bandwidth and prefill
# GFLOP/s / measured FMA peak. Extra arguments go to `dsv4 bench` (--threads N, --depth N, ...).
#
# Environment: BUILD (build directory, default ./build), DSV4_SCRATCH (default
# /tmp/dsv4-bench), PREFILL (tokens, default 2048), DECODE (steps, default 32).
# OMP_WAIT_POLICY defaults to passive: on a machine shared with other jobs, OpenMP threads
# that spin while waiting take the cores the working threads need (set it to active on a
# dedicated machine to compare).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
scratch=${DSV4_SCRATCH:-/tmp/dsv4-bench}
model=$scratch/flash-l2
dsv4=$build/dsv4
[ -x "$dsv4" ] || { echo "bench/run.sh: $dsv4 not found (build first, or set BUILD)" >&2; exit 1; }
mkdir -p "$scratch"
# the index is written last: its presence means a complete checkpoint
if [ ! -f "$model/model.safetensors.index.json" ]; then
    echo "synthesizing $model (DeepSeek-V4-Flash shapes, 2 layers, 256 experts)..." >&2
    "$dsv4" synth --like flash --layers 2 --seed 1 --out "$model" >&2
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
json=$scratch/bench.json
"$dsv4" bench -m "$model" --prefill "${PREFILL:-2048}" --decode "${DECODE:-32}" --json "$@" > "$json"
field() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$json" | tr -d '"'; }
echo "kernels $(field kernels), $(field threads) threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, depth $(field depth)"
awk -v tok="$(field decode_tok_s)" -v bpt="$(field decode_bytes_per_token)" -v bw="$(field bandwidth_gb_s)" \
    -v r="$(field decode_bw_ratio)" -v rs="$(field decode_bw_ratio_start)" 'BEGIN {
    printf "decode   %.2f tok/s x %.3f GB/token = %.1f GB/s; bandwidth %.1f GB/s; ratio %.1f%% (vs the STREAM figure before the run: %.1f%%)\n",
           tok, bpt / 1e9, tok * bpt / 1e9, bw, 100 * r, 100 * rs }'
awk -v h="$(field decode_head_gb_s)" -v e="$(field decode_expert_gb_s)" -v o="$(field decode_other_share)" \
    -v a="$(field decode_attn_share)" 'BEGIN {
    printf "         the head streams at %.1f GB/s, the experts at %.1f GB/s; %.1f%% of a step is neither (attention %.1f%%)\n",
           h, e, 100 * o, 100 * a }'
awk -v tok="$(field prefill_tok_s)" -v gf="$(field prefill_gflops)" -v eg="$(field expert_gflops)" \
    -v pk="$(field fma_peak_gflops)" -v n="$(field prefill_tokens)" 'BEGIN {
    printf "prefill  %d tokens: %.1f tok/s, %.1f GFLOP/s = %.1f%% of the FMA peak (%.1f GFLOP/s); expert products %.1f GFLOP/s = %.1f%%\n",
           n, tok, gf, 100 * gf / pk, pk, eg, 100 * eg / pk }'
awk -v r="$(field decode_bw_ratio_cpu)" -v p="$(field prefill_peak_ratio_cpu)" -v e="$(field expert_peak_ratio_cpu)" 'BEGIN {
    printf "per CPU-second (robust to other jobs on the machine): decode %.1f%% of the reads, prefill %.1f%% and experts %.1f%% of the FMA peak\n",
           100 * r, 100 * p, 100 * e }'
echo "(full results: $json)"
