#!/usr/bin/env bash
# serve: `dsv4 serve` driven by the official npm clients (`openai`, `@anthropic-ai/sdk`) and by
# raw HTTP for every error case, on a tiny random model with scripted replies.
#
#   bash serve.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
#
# The model comes from tests/serve/fixture.c (random weights, the real tokenizer cut to 1024
# tokens); tests/serve/script.json scripts the replies whose text a test checks. The server runs
# with an API key, a small queue, a 1 MiB body limit, a 1 s keep-alive and a disk cache; at the
# end it is restarted to check that the disk cache survives. It is always stopped on exit.
set -euo pipefail
dsv4=$1 shared=$2 src=$3
js=$src/tests/js
here=$src/tests/serve
build=$(dirname "$dsv4")

fail() { echo "serve: FAIL: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh installs it)"
if [ ! -f "$js/node_modules/openai/package.json" ] || [ ! -f "$js/node_modules/@anthropic-ai/sdk/package.json" ]; then
  command -v npm >/dev/null || fail "npm is not installed"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $js failed"
fi
. "$here/lib.sh"

tmp=$(mktemp -d)
trap 'serve_stop; rm -rf "$tmp"' EXIT
serve_fixture "$build" "$shared" "$tmp/model" || fail "cannot make the test model"

# One OpenMP thread: the engine shares 2 CI cores with node and the HTTP threads, and
# OpenMP barriers spin badly on an oversubscribed machine.
export DSV4_KEY=test-key-123 OMP_NUM_THREADS=1 NODE_PATH=$js/node_modules
opts=(-m "$tmp/model" --api-key "$DSV4_KEY" --parallel 4 --queue 4 --ctx 4096 --max-body-mb 1 --keepalive 1
      --kv-disk "$tmp/kv" --test-script "$here/script.json")
serve_start "$tmp/log" "$dsv4" "${opts[@]}" || fail "the server did not start"
export DSV4_URL=$SERVE_URL

status=0
# Each file passes in seconds; a request the server never answers would otherwise hang CI
# (seen once), so a file that runs 5 minutes fails with the server's state.
for t in openai anthropic errors; do
  if ! timeout 300 node --test --test-concurrency=1 "$here/$t.test.js"; then
    status=1
    echo "serve: $t.test.js failed or timed out; server health: $(curl -s -m 5 -H "Authorization: Bearer $DSV4_KEY" "$SERVE_URL/health")" >&2
  fi
done
kill -0 "$SERVE_PID" 2>/dev/null || fail "the server died: $(tail -5 "$tmp/log")"

# The disk cache survives a restart: the same long prompt is a cache hit at once.
body='{"model": "deepseek-v4-flash", "max_tokens": 1, "thinking": {"type": "disabled"},
       "messages": [{"role": "user", "content": "'"$(printf 'persistent prefix %.0s' $(seq 1 60))"'"}]}'
ask() { curl -sf "$DSV4_URL/v1/chat/completions" -H "Authorization: Bearer $DSV4_KEY" -d "$body"; }
ask > /dev/null || fail "the cache request failed"
serve_stop
serve_start "$tmp/log2" "$dsv4" "${opts[@]}" || fail "the server did not restart"
DSV4_URL=$SERVE_URL
hit=$(ask | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const u=JSON.parse(s).usage;console.log(u.prompt_cache_hit_tokens+"/"+u.prompt_tokens)})')
case $hit in
  0/*|"") echo "serve: after a restart the prompt was not found in the disk cache ($hit)" >&2; status=1 ;;
  *) echo "serve: disk cache after restart: $hit prompt tokens were cached" ;;
esac

[ $status = 0 ] || fail "see the failures above"
echo "serve: ok"
