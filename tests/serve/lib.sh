# lib.sh: start and stop `dsv4 serve` from scripts (the test, the benchmark, the fuzzer).
#
#   . tests/serve/lib.sh
#   serve_fixture BUILD_DIR SHARED_DIR OUT_DIR [fixture options]   make the random test model
#   serve_start LOG DSV4 [serve options]    starts it on a free port; sets SERVE_PID, SERVE_URL
#   serve_stop                              SIGTERM, then waits (the disk cache is flushed)
#
# The server prints "listening on http://HOST:PORT" once it accepts requests; serve_start
# waits for that line (at most 60 s) rather than guessing a port that may be taken.

serve_fixture() {
  local build=$1 shared=$2 out=$3
  shift 3
  local gen=$build/tests/serve_fixture
  [ -x "$gen" ] || { echo "no fixture generator at $gen (build the serve_fixture target)" >&2; return 1; }
  [ -f "$out/model.safetensors" ] || "$gen" "$out" "$shared/tokenizer/deepseek-v4-tokenizer.json" "$@"
}

serve_start() {
  local log=$1 dsv4=$2
  shift 2
  "$dsv4" serve --port 0 "$@" > "$log" 2>&1 &
  SERVE_PID=$!
  local i
  for i in $(seq 1 600); do
    if grep -q "listening on" "$log" 2>/dev/null; then
      SERVE_URL=$(grep -o 'http://[0-9.:]*' "$log" | head -1)
      return 0
    fi
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
      echo "dsv4 serve exited early:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "dsv4 serve did not start within 60 s" >&2
  cat "$log" >&2
  return 1
}

serve_stop() {
  if [ -n "${SERVE_PID:-}" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
    kill -TERM "$SERVE_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
  fi
  SERVE_PID=
}
