#!/usr/bin/env bash
# tokenizer_bench.sh: encoding speed of dsv4's tokenizer against the Hugging Face library
# (npm `tokenizers`, native Rust binding), on the same few MB of text, one thread each.
#
#   bash bench/tokenizer_bench.sh [DSV4_BINARY] [SHARED_DIR] [MB]
#
# The text is built by tests/js/make_inputs.js from the tokenizer test corpus, the shared spec
# documents and our sources: ~20 KB documents of English prose, code, CJK, markup, specials.
# Both sides time only the encode calls (not loading, parsing or printing), best of 3 passes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dsv4=${1:-$here/build/dsv4}
shared=${2:-$here/../shared}
mb=${3:-4}
tok=$shared/tokenizer/deepseek-v4-tokenizer.json
[ -f "$here/tests/js/node_modules/tokenizers/package.json" ] || (cd "$here/tests/js" && npm ci --no-audit --no-fund --loglevel=error)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node "$here/tests/js/make_inputs.js" bench "$here" "$shared" "$mb" > "$tmp/bench.jsonl"

best=""
for pass in 1 2 3; do
  line=$("$dsv4" tokenize --tokenizer "$tok" --jsonl "$tmp/bench.jsonl" --stats 2>&1 >/dev/null)
  rate=$(sed -E 's/.*: ([0-9.]+) MB\/s.*/\1/' <<<"$line")
  if [ -z "$best" ] || awk "BEGIN{exit !($rate > $best)}"; then best=$rate; bestline=$line; fi
done
echo "dsv4: $bestline"
hf=$(node "$here/bench/tokenizer_bench.js" "$tok" "$tmp/bench.jsonl")
echo "$hf"
hfrate=$(head -1 <<<"$hf" | sed -E 's/.* ([0-9.]+) MB\/s/\1/')
awk -v a="$best" -v b="$hfrate" 'BEGIN{printf "ratio dsv4/hf (one thread each): %.2fx\n", a / b}'
