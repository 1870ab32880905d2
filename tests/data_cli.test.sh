#!/usr/bin/env bash
# data_cli: `dsv4 data build` and `dsv4 eval` on the test corpus, light enough for the
# sanitizer build (eval_smoke, release only, runs the model on every family):
#   - the data depends only on the options and the tokenizer: the same command gives the same
#     bytes, another seed gives other data, and the manifest counts what was asked for;
#   - eval --reference, which answers with the data's own answers, scores 100% in chat and in
#     thinking mode (the prompts, parsing and checks agree with the data);
#   - eval runs the reference tiny model (vocab 1000) through the generation loop.
#
#   bash data_cli.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -euo pipefail
dsv4=$1 shared=$2 src=$3
corpus=$src/tests/data/fortunes
model=$shared/refvectors/models/tiny_v4flash_fp8

fail() { echo "data_cli: FAIL: $*" >&2; exit 1; }
[ -d "$model" ] || fail "no reference model at $model"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

args=(--corpus "$corpus" --count arith=20 --count table=5 --count needle=2 --count tools=3 --count text=2
      --count chat=3 --needle-max 400 --quiet)
"$dsv4" data build --out "$tmp/a" --vocab 1000 "${args[@]}" || fail "build"
"$dsv4" data build --out "$tmp/b" --tokenizer "$tmp/a/tokenizer.json" "${args[@]}" || fail "build again"
for f in train.tokens train.mask train.index valid.tokens valid.mask valid.index manifest.json README.md tokenizer.json; do
  [ -s "$tmp/a/$f" ] || fail "$f is missing or empty"
  cmp "$tmp/a/$f" "$tmp/b/$f" || fail "$f differs between two builds with the same options"
done
"$dsv4" data build --out "$tmp/c" --seed 2 --tokenizer "$tmp/a/tokenizer.json" "${args[@]}" || fail "build --seed 2"
if cmp -s "$tmp/a/train.tokens" "$tmp/c/train.tokens"; then fail "--seed 2 gave the same data"; fi
grep -q '"sequences": 35' "$tmp/a/manifest.json" || fail "the manifest does not count 35 training sequences"
if "$dsv4" data build --out "$tmp/x" --count nosuch=1 2>/dev/null; then fail "an unknown family was accepted"; fi
# the table options change the tables and are recorded; without them the bytes are the default's
"$dsv4" data build --out "$tmp/t" --tokenizer "$tmp/a/tokenizer.json" "${args[@]}" --table-reverse 1 --table-rows 2-2 \
  --table-restate --table-layout key-right || fail "build with the table options"
if cmp -s "$tmp/a/train.tokens" "$tmp/t/train.tokens"; then fail "the table options changed nothing"; fi
tr -d ' \n' < "$tmp/t/manifest.json" |
  grep -q '"table_reverse":1.0,"table_rows":\[2,2\],"table_restate":true,"table_key_right":true' ||
  fail "the manifest does not record the table options"
for bad in "--table-rows 3-2" "--table-rows 1-9" "--table-reverse 1.5" "--table-layout sideways"; do
  # shellcheck disable=SC2086
  if "$dsv4" data build --out "$tmp/x" $bad 2>/dev/null; then fail "$bad was accepted"; fi
done

ev=(-m "$model" --tokenizer "$tmp/a/tokenizer.json" --corpus "$corpus" --threads 1)
"$dsv4" eval "${ev[@]}" --reference --n 30 --needle-n 3 --needle-lengths 300,1500 --json > "$tmp/ref.json" \
  || fail "eval --reference"
"$dsv4" eval "${ev[@]}" --reference --think --n 10 --needle-n 2 --needle-lengths 300 --json > "$tmp/ref-think.json" \
  || fail "eval --reference --think"
for f in ref ref-think; do
  n=$(grep -c '"accuracy": 1.0' "$tmp/$f.json" || true)
  bad=$(grep '"accuracy"' "$tmp/$f.json" | grep -vc '"accuracy": 1.0' || true)
  [ "$bad" = 0 ] && [ "$n" -ge 4 ] || fail "eval --reference ($f) is not 100% everywhere: $(cat "$tmp/$f.json")"
  grep -q '"table_layout": "key-right"' "$tmp/$f.json" || fail "eval --json ($f) does not name the default table layout"
done

"$dsv4" eval "${ev[@]}" --families arith --n 2 --max-tokens 3 --json > "$tmp/eval.json" || fail "eval"
grep -q '"n": 2' "$tmp/eval.json" && grep -q '"generated_tokens": [1-9]' "$tmp/eval.json" \
  || fail "eval did not answer 2 questions with the model: $(cat "$tmp/eval.json")"
if "$dsv4" eval "${ev[@]}" --families poems 2>/dev/null; then fail "an unknown family was accepted by eval"; fi
echo "data_cli: all checks passed"
