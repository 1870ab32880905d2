#!/usr/bin/env bash
# bpe_oracle: a tokenizer trained by `dsv4 tokenizer train` against the real Hugging Face
# `tokenizers` library (npm, native binding): the library must load our file and give the same
# ids as dsv4 on ~1,900 strings (hand-written corpus, spec documents, chat renderings, our
# sources, random text), and the same text for ~800 id lists. Also: `dsv4 data build` trains
# the same tokenizer as `dsv4 tokenizer train` on the text `dsv4 data text` writes.
#
#   bash bpe_oracle.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -euo pipefail
dsv4=$1 shared=$2 src=$3
js=$src/tests/js
corpus=$src/tests/data/fortunes

fail() { echo "bpe_oracle: FAIL: $*" >&2; exit 1; }
[ -x "$dsv4" ] || fail "no dsv4 binary at $dsv4"
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh installs it)"
if [ ! -f "$js/node_modules/tokenizers/package.json" ]; then
  command -v npm >/dev/null || fail "npm is not installed"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $js failed"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A tokenizer with some variety: the data's text, our docs and the spec (English, math, CJK).
"$dsv4" data text --corpus "$corpus" --out "$tmp/text.txt"
"$dsv4" tokenizer train --corpus "$tmp/text.txt" "$src"/docs/*.md "$shared"/spec/*.md --vocab 3000 \
  --out "$tmp/tok.json" --quiet || fail "training"

node "$js/make_inputs.js" corpus "$src" "$shared" > "$tmp/texts.jsonl"
node "$js/oracle.js" encode "$tmp/tok.json" "$tmp/texts.jsonl" > "$tmp/ids.expected"
"$dsv4" tokenize --tokenizer "$tmp/tok.json" --jsonl "$tmp/texts.jsonl" > "$tmp/ids.got"
status=0
node "$js/compare.js" encode "$tmp/texts.jsonl" "$tmp/ids.expected" "$tmp/ids.got" || status=1
node "$js/make_inputs.js" ids "$tmp/tok.json" > "$tmp/lists.jsonl"
node "$js/oracle.js" decode "$tmp/tok.json" "$tmp/lists.jsonl" > "$tmp/text.expected"
"$dsv4" tokenize --tokenizer "$tmp/tok.json" --decode --jsonl "$tmp/lists.jsonl" > "$tmp/text.got"
node "$js/compare.js" decode "$tmp/lists.jsonl" "$tmp/text.expected" "$tmp/text.got" || status=1
[ $status = 0 ] || fail "dsv4 differs from the Hugging Face library on a trained tokenizer (see above)"

# The builder's tokenizer is `tokenizer train` on `data text`.
"$dsv4" data build --out "$tmp/data" --corpus "$corpus" --vocab 1000 --count arith=4 --count table=1 \
  --count needle=1 --count tools=1 --count text=1 --count chat=1 --needle-max 300 --quiet || fail "data build"
"$dsv4" tokenizer train --corpus "$tmp/text.txt" --vocab 1000 --out "$tmp/tok1000.json" --quiet
cmp "$tmp/data/tokenizer.json" "$tmp/tok1000.json" || fail "data build trained another tokenizer than tokenizer train"
echo "bpe_oracle: all comparisons passed"
