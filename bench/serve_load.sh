#!/usr/bin/env bash
# serve_load.sh: throughput, batching gain, a 32-client load test and cache timing of `dsv4 serve`.
#
#   bash bench/serve_load.sh [BUILD_DIR] [SHARED_DIR] [-- fixture options, e.g. --dim 512]
#
# On the random test model (tests/serve/fixture.c; bigger with fixture options), with the
# server on loopback:
#   1. aggregate decode tokens/s with 1, 4 and 8 sequences in parallel (as many streaming
#      clients, 64 tokens each, context caching off), and the batching gain over 1;
#   2. 32 concurrent streaming clients against --parallel 8: every stream must complete;
#   3. a long prompt sent twice: both times and the cached tokens of the second.
# OMP_NUM_THREADS defaults to 1 (set it to use more cores). Prints a summary at the end.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
shared=${2:-${DSV4_SHARED_DIR:-/work/shared}}
shift $(( $# < 2 ? $# : 2 ))
[ "${1:-}" = "--" ] && shift
. "$src/tests/serve/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DSV4_KEY=bench

tmp=$(mktemp -d)
trap 'serve_stop; rm -rf "$tmp"' EXIT
serve_fixture "$build" "$shared" "$tmp/model" "$@"
load=$src/bench/serve_load.js
tokens=${TOKENS:-64}

declare -A tps
for p in 1 4 8; do
  serve_start "$tmp/log" "$build/dsv4" -m "$tmp/model" --api-key bench --parallel $p --cache-mb 0 --ctx 4096
  node "$load" "$SERVE_URL" throughput 1 4 > /dev/null # warm up
  out=$(node "$load" "$SERVE_URL" throughput $p "$tokens")
  engine=$(curl -s "$SERVE_URL/health" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const e=JSON.parse(s).engine;
    console.log(`${(e.batch_rows/e.steps).toFixed(2)} sequences per step, ${(1000*e.forward_s/e.steps).toFixed(1)} ms per step, ${(100*e.forward_s/(e.forward_s+e.sample_s)).toFixed(1)}% of engine time in the forward pass`)})')
  echo "parallel $p: $out (engine, warm-up included: $engine)"
  tps[$p]=$(echo "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).tokens_per_s))')
  serve_stop
done

serve_start "$tmp/log" "$build/dsv4" -m "$tmp/model" --api-key bench --parallel 8 --queue 32 --ctx 16384
load32=$(node "$load" "$SERVE_URL" throughput 32 "$tokens")
echo "32 clients on 8 sequences: $load32"
cache=$(node "$load" "$SERVE_URL" cache ${WORDS:-1500})
echo "cache: $cache"
health=$(curl -s "$SERVE_URL/health")
serve_stop

echo
echo "== summary (OMP_NUM_THREADS=$OMP_NUM_THREADS, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)) =="
printf 'aggregate decode tokens/s: 1 seq %s | 4 seq %s | 8 seq %s\n' "${tps[1]}" "${tps[4]}" "${tps[8]}"
node -e "console.log('batching gain: 4 seq ' + (${tps[4]}/${tps[1]}).toFixed(2) + 'x, 8 seq ' + (${tps[8]}/${tps[1]}).toFixed(2) + 'x')"
echo "32-client load: $load32"
echo "cache: $cache"
echo "server after the load: $health"
errors=$(echo "$load32" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).errors))')
[ "$errors" = 0 ] || { echo "serve_load: $errors streams failed" >&2; exit 1; }
