#!/usr/bin/env bash
# serve_fuzz.sh: malformed and mutated requests against an ASan+UBSan build of `dsv4 serve`.
#
#   bash bench/serve_fuzz.sh [SAN_BUILD_DIR] [SHARED_DIR] [SECONDS] [SEED]
#
# SAN_BUILD_DIR is a build configured with -DDSV4_SANITIZE=ON (default build-san). The server
# runs on the random test model with a small queue and body limit; bench/serve_fuzz.js throws
# requests at it for SECONDS (default 120) from 8 connections at once. Afterwards the server
# must still answer, have no sequence left active, and stop cleanly on SIGTERM; its log must
# hold no sanitizer report (UBSan aborts on the first finding in this build, ASan too, and
# LeakSanitizer reports at exit). Exits 1 on any finding.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-san}
shared=${2:-${DSV4_SHARED_DIR:-/work/shared}}
seconds=${3:-120}
seed=${4:-$RANDOM}
. "$src/tests/serve/lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DSV4_KEY=fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

tmp=$(mktemp -d)
trap 'serve_stop; rm -rf "$tmp"' EXIT
serve_fixture "$build" "$shared" "$tmp/model"
serve_start "$tmp/log" "$build/dsv4" -m "$tmp/model" --api-key fuzz --parallel 4 --queue 8 --ctx 2048 \
  --max-body-mb 1 --keepalive 1 --kv-disk "$tmp/kv" --kv-disk-mb 64 --cache-mb 64
echo "serve_fuzz: $seconds s, seed $seed, server $SERVE_URL (pid $SERVE_PID)"

status=0
node "$src/bench/serve_fuzz.js" "$SERVE_URL" "$seconds" "$seed" 8 || status=1

# still alive, nothing stuck
for i in $(seq 1 100); do
  h=$(curl -s "$SERVE_URL/health" || true)
  case $h in *'"active":0,"waiting":0'*) break ;; esac
  sleep 0.1
done
echo "serve_fuzz: health after the run: $h"
case $h in *'"active":0,"waiting":0'*) ;; *) echo "serve_fuzz: FINDING: the server is stuck or gone" >&2; status=1 ;; esac

pid=$SERVE_PID
serve_stop
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error|SUMMARY: " "$tmp/log"; then
  cat "$tmp/log" >&2
  echo "serve_fuzz: FINDING: sanitizer report in the server log (above)" >&2
  status=1
fi
[ $status = 0 ] && echo "serve_fuzz: no findings" || echo "serve_fuzz: FINDINGS (see above)"
exit $status
