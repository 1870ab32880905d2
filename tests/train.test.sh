#!/usr/bin/env bash
# train: `dsv4 train` on a tiny model (every layer kind, hash and score routing, MTP, a dense
# indexer phase then a sparse one) and a small data set, a few steps:
#   - the losses, the weights and the optimiser state are bit-identical on 1 and 2 threads;
#   - a run stopped at a checkpoint (--until) and resumed equals the uninterrupted run, byte
#     for byte, and its train.csv is continued;
#   - the loss falls, train.csv has a line per step with the validation losses on validation
#     steps, loss.svg is written;
#   - the checkpoint loads in the engine (dsv4 run), and `dsv4 quantize` turns it into the
#     release formats, which load and run too;
#   - a bad configuration is refused with a message naming the key.
#
#   bash train.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -euo pipefail
dsv4=$1 src=$3
config=$src/tests/data/train_tiny.json
export OMP_WAIT_POLICY=PASSIVE

fail() { echo "train: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$dsv4" data build --out "$tmp/data" --corpus "$src/tests/data/fortunes" --vocab 512 --count arith=60 --count table=10 \
  --count needle=6 --count tools=6 --count text=4 --count chat=6 --count recall=6 --needle-min 100 --needle-max 240 --quiet \
  || fail "data build"
run() { "$dsv4" train --config "$config" --data "$tmp/data" --log-every 100 "$@" 2>"$tmp/log" || { cat "$tmp/log" >&2; return 1; }; }
run --out "$tmp/t1" --threads 1 || fail "train on 1 thread"
run --out "$tmp/t2" --threads 2 || fail "train on 2 threads"
# the columns that do not measure time
for t in t1 t2; do cut -d, -f1-10,13- "$tmp/$t/train.csv" > "$tmp/$t.csv"; done
cmp "$tmp/t1.csv" "$tmp/t2.csv" || fail "the losses differ between 1 and 2 threads"
for f in model.safetensors optimizer.safetensors trainer.json; do
  cmp "$tmp/t1/$f" "$tmp/t2/$f" || fail "$f differs between 1 and 2 threads"
done

run --out "$tmp/r" --threads 2 --until 4 || fail "train --until 4"
grep -q '"step": 4' "$tmp/r/trainer.json" || fail "no checkpoint at step 4"
run --out "$tmp/r" --threads 2 --resume || fail "train --resume"
for f in model.safetensors optimizer.safetensors trainer.json; do
  cmp "$tmp/t1/$f" "$tmp/r/$f" || fail "$f of the resumed run differs from the uninterrupted run's"
done
cut -d, -f1-10,13- "$tmp/r/train.csv" > "$tmp/r.csv"
cmp "$tmp/t1.csv" "$tmp/r.csv" || fail "the resumed run's train.csv differs"

lines=$(wc -l < "$tmp/t1/train.csv")
[ "$lines" -eq 7 ] || fail "train.csv has $lines lines, expected a header and 6 steps"
first=$(sed -n 2p "$tmp/t1/train.csv" | cut -d, -f4)
last=$(sed -n 7p "$tmp/t1/train.csv" | cut -d, -f4)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' || fail "the loss did not fall: $first -> $last"
sed -n 4p "$tmp/t1/train.csv" | grep -Eq ',[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+$' \
  || fail "no validation losses on step 3"
grep -q '<polyline' "$tmp/t1/loss.svg" || fail "loss.svg has no curve"

"$dsv4" run -m "$tmp/t1" -p "What is 2 + 3?" --max-tokens 4 --ctx 512 --threads 1 > /dev/null 2>&1 || fail "dsv4 run on the checkpoint"
"$dsv4" quantize "$tmp/t1" "$tmp/q" > /dev/null || fail "quantize"
grep -q '"expert_dtype": "fp4"' "$tmp/q/config.json" || fail "the quantised config has no expert_dtype"
"$dsv4" run -m "$tmp/q" -p "What is 2 + 3?" --max-tokens 4 --ctx 512 --threads 1 > /dev/null 2>&1 || fail "dsv4 run on the quantised model"

sed 's/"warmup": 1/"warmpu": 1/' "$config" > "$tmp/bad.json"
if "$dsv4" train --config "$tmp/bad.json" --data "$tmp/data" --out "$tmp/bad" 2> "$tmp/err"; then fail "a misspelt key was accepted"; fi
grep -q 'warmpu' "$tmp/err" || fail "the error does not name the unknown key: $(cat "$tmp/err")"
# a phase whose mix the data cannot fill is refused before the first step, naming the family
sed 's/"max_len": 800/"max_len": 60/' "$config" > "$tmp/short.json"
if "$dsv4" train --config "$tmp/short.json" --data "$tmp/data" --out "$tmp/short" 2> "$tmp/err"; then
  fail "a mix with no example within max_len was accepted"
fi
grep -q 'phase 1 (from step 0): the training data has no [a-z]* example of at most 60 tokens' "$tmp/err" || fail "the error does not name the family: $(cat "$tmp/err")"
[ ! -f "$tmp/short/train.csv" ] || [ "$(wc -l < "$tmp/short/train.csv")" -le 1 ] || fail "steps ran before the error"
# validation scores the families that fit and leaves the others out (the text examples are longer)
sed -e 's/"max_len": 800}/"max_len": 200, "mix": {"arith": 1}}/' -e 's/"mix": {"arith": 2, "needle": 1, "tools": 1}/"mix": {"arith": 1}/' \
  "$config" > "$tmp/arith.json"
"$dsv4" train --config "$tmp/arith.json" --data "$tmp/data" --out "$tmp/arith" --log-every 100 2> "$tmp/err" ||
  fail "validation with families longer than max_len: $(cat "$tmp/err")"
awk -F, 'NR > 1 && $13 != "" { found = 1; if ($17 != "") bad = 1 } END { exit !(found && !bad) }' "$tmp/arith/train.csv" ||
  fail "validation did not score arith and leave text out: $(cat "$tmp/arith/train.csv")"
echo "train: ok ($(sed -n 2p "$tmp/t1/train.csv" | cut -d, -f4) -> $last over 6 steps; 1 and 2 threads and resume identical)"
