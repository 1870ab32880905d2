#!/usr/bin/env bash
# eval_smoke: the whole pipeline on the test corpus with the reference tiny model (release
# build only: the model runs on a few thousand tokens):
#   - `dsv4 data build` from scratch, tokenizer training included, twice: the same bytes;
#   - `dsv4 eval` on every family, table and JSON: every section is reported, a needle longer
#     than the model's context is reported as skipped. The model is random, so accuracy is
#     about 0; data_cli's --reference runs check that the scoring itself is right.
#
#   bash eval_smoke.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -euo pipefail
dsv4=$1 shared=$2 src=$3
corpus=$src/tests/data/fortunes
model=$shared/refvectors/models/tiny_v4flash_fp8

fail() { echo "eval_smoke: FAIL: $*" >&2; exit 1; }
[ -d "$model" ] || fail "no reference model at $model"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

args=(--corpus "$corpus" --vocab 1000 --count arith=10 --count table=2 --count needle=1 --count tools=2
      --count text=1 --count chat=2 --needle-max 300 --quiet)
"$dsv4" data build --out "$tmp/a" "${args[@]}" || fail "build"
"$dsv4" data build --out "$tmp/b" "${args[@]}" || fail "build again"
for f in "$tmp"/a/*; do cmp "$f" "$tmp/b/$(basename "$f")" || fail "$(basename "$f") differs between two builds"; done

ev=(-m "$model" --tokenizer "$tmp/a/tokenizer.json" --corpus "$corpus" --threads 1 --n 1 --needle-n 1 --max-tokens 4)
"$dsv4" eval "${ev[@]}" --needle-lengths 300,4096 --json > "$tmp/eval.json" || fail "eval --json"
for key in '"arith"' '"table"' '"key_to_cell"' '"cell_to_key"' '"tools"' '"round_trip"' '"needle"' '"tokens": 300' '"mean_prompt_tokens"'; do
  grep -q "$key" "$tmp/eval.json" || fail "eval --json lacks $key"
done
"$dsv4" eval "${ev[@]}" --needle-lengths 300,4096 > "$tmp/eval.txt" || fail "eval"
for row in "arith" "table" "  key to cell" "  cell to key" "tools: call" "tools: round trip" "needle 300" "needle 4K"; do
  grep -q "^$row " "$tmp/eval.txt" || fail "the table lacks a \"$row\" row: $(cat "$tmp/eval.txt")"
done
grep -q "needle 4K .*beyond the model's context" "$tmp/eval.txt" || fail "needle 4K is not reported as beyond the context"
# the diagnosis options: every table question cell to key, on tables of two rows
"$dsv4" eval "${ev[@]}" --families table --n 4 --table-rows 2-2 --table-reverse-only --reference > "$tmp/rev.txt" ||
  fail "eval --table-reverse-only"
grep -q "^  cell to key *4 *4 " "$tmp/rev.txt" || fail "--table-reverse-only did not ask 4 cell-to-key questions: $(cat "$tmp/rev.txt")"
grep -q "^  key to cell *0 " "$tmp/rev.txt" || fail "--table-reverse-only asked key-to-cell questions: $(cat "$tmp/rev.txt")"
for layout in plain key-right; do # the data's own answers fit either layout's questions
  "$dsv4" eval "${ev[@]}" --families table --n 12 --table-layout $layout --reference > "$tmp/lay.txt" ||
    fail "eval --table-layout $layout"
  grep -q "^table *12 *12 " "$tmp/lay.txt" && grep -q "$layout tables" "$tmp/lay.txt" ||
    fail "--table-layout $layout: $(cat "$tmp/lay.txt")"
done
"$dsv4" eval "${ev[@]}" --table-layout sideways 2> "$tmp/err.txt" && fail "--table-layout sideways accepted"
grep -q "table-layout" "$tmp/err.txt" || fail "--table-layout sideways: $(cat "$tmp/err.txt")"
"$dsv4" eval "${ev[@]}" --table-rows 3-9 2> "$tmp/err.txt" && fail "--table-rows 3-9 accepted"
grep -q "table-rows" "$tmp/err.txt" || fail "--table-rows 3-9: $(cat "$tmp/err.txt")"
echo "eval_smoke: all checks passed"
