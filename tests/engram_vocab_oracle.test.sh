#!/usr/bin/env bash
# engram_vocab_oracle: DeepSeek-V4.1's Engram compressed vocabulary built by dsv4 (ICU
# normalisation in C) against the same construction run with the Hugging Face `tokenizers`
# library (npm, native binding; tests/js/engram_vocab.js), on DeepSeek's tokenizer, whose
# 129,280 ids must compress to the 99,092 ids of V4.1's engram_compressed_vocab_size.
#
#   bash engram_vocab_oracle.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
#
# Needs node and npm (installs the oracle with `npm ci` like tokenizer_oracle); fails, never
# skips, when something is missing.
set -euo pipefail
dsv4=$1 shared=$2 src=$3
js=$src/tests/js
tok=$shared/tokenizer/deepseek-v4-tokenizer.json

fail() { echo "engram_vocab_oracle: FAIL: $*" >&2; exit 1; }
[ -x "$dsv4" ] || fail "no dsv4 binary at $dsv4"
[ -f "$tok" ] || fail "no tokenizer file at $tok"
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh installs it)"
if [ ! -f "$js/node_modules/tokenizers/package.json" ]; then
  command -v npm >/dev/null || fail "npm is not installed"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $js failed"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node "$js/engram_vocab.js" "$tok" 129280 > "$tmp/expected" 2> "$tmp/expected.log" || fail "the oracle failed: $(cat "$tmp/expected.log")"
"$dsv4" engram map --tokenizer "$tok" --vocab 129280 > "$tmp/got" 2> "$tmp/got.log" || fail "dsv4 engram map failed: $(cat "$tmp/got.log")"
grep -q "compressed vocabulary: 99092 ids" "$tmp/got.log" || fail "dsv4: $(cat "$tmp/got.log"), expected 99092 ids"
if ! cmp -s "$tmp/expected" "$tmp/got"; then
  diff <(nl -v0 "$tmp/expected") <(nl -v0 "$tmp/got") | head -20 >&2
  fail "the compressed ids differ from the Hugging Face construction (first differences above: id, compressed id)"
fi
echo "engram_vocab_oracle: 129280 token ids -> 99092 compressed ids, identical to the Hugging Face construction"
