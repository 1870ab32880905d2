#!/usr/bin/env bash
# tokenizer_oracle: dsv4's tokenizer against the real Hugging Face `tokenizers` library (npm,
# native binding), on ~1,900 strings (hand-written corpus, spec documents, our sources, seeded
# random text) for encoding, and ~800 id lists for decoding, whole and streamed.
#
#   bash tokenizer_oracle.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
#
# Needs node and npm; installs the oracle with `npm ci` (tests/js/package-lock.json) unless
# tests/js/node_modules already has it. It fails, never skips, when something is missing.
set -euo pipefail
dsv4=$1 shared=$2 src=$3
js=$src/tests/js
tok=$shared/tokenizer/deepseek-v4-tokenizer.json

fail() { echo "tokenizer_oracle: FAIL: $*" >&2; exit 1; }
[ -x "$dsv4" ] || fail "no dsv4 binary at $dsv4"
[ -f "$tok" ] || fail "no tokenizer file at $tok"
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh installs it)"
if [ ! -f "$js/node_modules/tokenizers/package.json" ]; then
  command -v npm >/dev/null || fail "npm is not installed"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $js failed"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

node "$js/make_inputs.js" corpus "$src" "$shared" > "$tmp/texts.jsonl"
node "$js/oracle.js" encode "$tok" "$tmp/texts.jsonl" > "$tmp/ids.expected"
"$dsv4" tokenize --tokenizer "$tok" --jsonl "$tmp/texts.jsonl" > "$tmp/ids.got"
status=0
node "$js/compare.js" encode "$tmp/texts.jsonl" "$tmp/ids.expected" "$tmp/ids.got" || status=1

node "$js/make_inputs.js" ids "$tok" > "$tmp/lists.jsonl"
node "$js/oracle.js" decode "$tok" "$tmp/lists.jsonl" > "$tmp/text.expected"
"$dsv4" tokenize --tokenizer "$tok" --decode --jsonl "$tmp/lists.jsonl" > "$tmp/text.got"
node "$js/compare.js" decode "$tmp/lists.jsonl" "$tmp/text.expected" "$tmp/text.got" || status=1
"$dsv4" tokenize --tokenizer "$tok" --decode --stream --jsonl "$tmp/lists.jsonl" > "$tmp/stream.got"
node "$js/compare.js" stream-decode "$tmp/lists.jsonl" "$tmp/text.expected" "$tmp/stream.got" || status=1

[ $status = 0 ] || fail "dsv4 differs from the Hugging Face library (see above)"
echo "tokenizer_oracle: all comparisons passed"
