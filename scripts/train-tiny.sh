#!/usr/bin/env bash
# train-tiny.sh: rebuild the embedded model models/tiny/ from nothing, the way it was made.
#
#   bash scripts/train-tiny.sh [WORK_DIR]      (default /tmp/dsv4-tiny; about 8 hours on 2 cores)
#
# 1. the data: a byte-level BPE tokenizer (4096 tokens, DeepSeek-V4's special tokens) trained on
#    the Debian `fortunes` corpus, and the generated task families (docs/training-data.md);
# 2. `dsv4 train` with configs/tiny.json (1300 steps of 8 x 512 tokens: a dense-indexer phase,
#    then prompts up to 2K, then up to 4K tokens), then configs/tiny-stage2.json (the same run
#    continued to step 1800 at a lower learning rate, weighted toward tables, needles and tool
#    calls), then configs/tiny-stage3.json (to step 3300 on a second data set that adds the
#    recall family: several questions about one text or table, each answered); interrupt it at
#    any time and run the script again: it resumes from the last checkpoint; then
#    configs/tiny-stage4.json (to step 4500: retrieval-heavy, prompts up to 1K with a dense
#    indexer, then 2K, then 4K) and configs/tiny-stage5.json (to step 5500 on a third data set
#    of shorter needles and recall texts, 160-1536 tokens: many retrievals just past the window),
#    then configs/tiny-stage6.json (to step 7200 on a fourth data set whose tables repeat the key
#    column on the right, half their questions from a cell to the key: the first five stages'
#    tables were `--table-layout plain`, where that look-up stayed at chance);
# 3. `dsv4 quantize` into the release formats (FP8 linears, FP4 routed experts) in models/tiny/.
# The run that made the shipped model was stopped at step 550 of a 2000-step schedule and resumed
# with this one (the first 550 steps are the same under both: same warm-up, same data order),
# and its second stage ran steps 1300-1382 under a 2100-step schedule (a constant learning rate
# where this one starts its decay at step 1350) before it was shortened to this one. Its third
# stage was lengthened twice while it ran: steps 1978-2025 ran under a 2550-step schedule (a
# learning rate 4-7 % below this one's constant 1e-3); the rest as this one. Its sixth stage ran
# steps 5500-5906 under a 6700-step and steps 5906-6114 under a 7700-step schedule, at this one's
# constant learning rate and table-weighted mix; its last phases were set while it ran, at steps
# 6181 and 6573, each before it took effect.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dsv4=${DSV4:-$here/build/dsv4}
work=${1:-/tmp/dsv4-tiny}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$work"
if [ ! -f "$work/data/manifest.json" ]; then
  "$dsv4" data build --out "$work/data" --seed 1 --vocab 4096 \
    --count arith=60000 --count table=30000 --count needle=16000 --count tools=12000 --count text=0 --count chat=6000 \
    --needle-min 256 --needle-max 4096 --table-layout plain
fi
# the third stage adds the recall family (several questions per text or table); the first two
# families' data are byte for byte those of the first data set, which stays what it was
if [ ! -f "$work/data-recall/manifest.json" ]; then
  "$dsv4" data build --out "$work/data-recall" --seed 1 --vocab 4096 \
    --count arith=60000 --count table=30000 --count needle=16000 --count tools=12000 --count text=0 --count chat=6000 \
    --count recall=24000 --needle-min 256 --needle-max 4096 --table-layout plain
fi
# the fifth stage: new examples (seed 2, the same tokenizer) of shorter prompts, where a needle
# lies just past the 128-token window and must be found through the compressed rows
if [ ! -f "$work/data-short/manifest.json" ]; then
  "$dsv4" data build --out "$work/data-short" --seed 2 --tokenizer "$work/data/tokenizer.json" \
    --count arith=10000 --count table=20000 --count needle=30000 --count tools=8000 --count text=0 --count chat=4000 \
    --count recall=30000 --needle-min 160 --needle-max 1536 --table-layout plain
fi
# the sixth stage: tables in the key-right layout (the default), half of their questions from a
# cell to the row's key, those answers naming the cell first (docs/training.md, "Table look-ups")
if [ ! -f "$work/data-tables/manifest.json" ]; then
  "$dsv4" data build --out "$work/data-tables" --seed 6 --tokenizer "$work/data/tokenizer.json" \
    --count arith=5000 --count table=60000 --count needle=15000 --count tools=6000 --count text=0 --count chat=3000 \
    --count recall=20000 --needle-min 160 --needle-max 1536 --table-reverse 0.5 --table-restate
fi
for stage in tiny:data tiny-stage2:data tiny-stage3:data-recall tiny-stage4:data-recall tiny-stage5:data-short tiny-stage6:data-tables; do
  config=${stage%%:*} data=${stage#*:}
  resume=()
  [ -f "$work/run/trainer.json" ] && resume=(--resume)
  "$dsv4" train --config "$here/configs/$config.json" --data "$work/$data" --out "$work/run" "${resume[@]}"
done
"$dsv4" quantize "$work/run" "$here/models/tiny"
cp "$work/run/loss.svg" "$here/models/tiny/loss.svg"
