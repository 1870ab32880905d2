#!/usr/bin/env bash
# bench: `dsv4 bench --json` on the embedded model, small: every figure the issue names is in
# the object and the derived ones agree with what they are derived from (prefill / peak, the
# decode step's breakdown within the step), a synthetic depth is labelled as such, the
# production KV layout (--kv-bf16-rope) holds less state, and bad options are refused. Timings themselves are not checked (benchmarks, not tests).
#
#   bash bench.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -euo pipefail
dsv4=$1 src=$3
fail() { echo "bench: FAIL: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh installs it)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=PASSIVE

"$dsv4" bench -m "$src/models/tiny" --prefill 48 --decode 4 --bw-mib 48 --json > "$tmp/a.json" || fail "bench"
"$dsv4" bench -m "$src/models/tiny" --prefill 0 --decode 3 --depth 300 --bw-mib 48 --json > "$tmp/b.json" \
  || fail "bench --depth"
"$dsv4" bench -m "$src/models/tiny" --prefill 0 --decode 3 --depth 300 --bw-mib 48 --kv-bf16-rope --json > "$tmp/c.json" \
  || fail "bench --kv-bf16-rope"
node - "$tmp/a.json" "$tmp/b.json" "$tmp/c.json" <<'JS' || fail "the JSON objects (above)"
const fs = require('fs');
const [a, b, c] = process.argv.slice(2).map(f => JSON.parse(fs.readFileSync(f, 'utf8')));
let bad = 0;
const check = (ok, what) => { if (!ok) { console.error('bench: ' + what); bad++; } };
for (const k of ['decode_tok_s', 'decode_bytes_per_token', 'bandwidth_gb_s', 'decode_bw_ratio', 'prefill_tok_s',
                 'prefill_gflops', 'fma_peak_gflops', 'prefill_peak_ratio', 'threads', 'decode_head_gb_s',
                 'decode_expert_gb_s', 'decode_other_share', 'decode_attn_share', 'kv_bytes_per_token'])
  check(typeof a[k] === 'number' && isFinite(a[k]), `${k} is a number (${a[k]})`);
for (const k of ['decode_tok_s', 'decode_bytes_per_token', 'bandwidth_gb_s', 'decode_bw_ratio', 'prefill_tok_s',
                 'prefill_gflops', 'fma_peak_gflops', 'threads', 'decode_head_gb_s', 'decode_expert_gb_s'])
  check(a[k] > 0, `${k} > 0 (${a[k]})`);
check(Math.abs(a.prefill_peak_ratio - a.prefill_gflops / a.fma_peak_gflops) <= 1e-3 * a.prefill_peak_ratio,
      'prefill_peak_ratio = prefill_gflops / fma_peak_gflops');
check(a.decode_other_share >= -0.02 && a.decode_other_share < 1, `decode_other_share in [0, 1) (${a.decode_other_share})`);
check(a.decode_attn_share > 0 && a.decode_attn_share <= a.decode_other_share + 0.02,
      `attention is part of the rest of a step (${a.decode_attn_share} <= ${a.decode_other_share})`);
check(a.prefill_tokens === 48 && a.decode_tokens === 4 && a.depth === 48 && a.depth_synthetic === false,
      'prefill 48 then 4 decode steps at depth 48, not synthetic');
check(b.depth === 300 && b.depth_synthetic === true && b.decode_tokens === 3, 'depth 300 labelled synthetic');
check(b.kv_bytes > a.kv_bytes, 'the deeper session holds more state');
// bf16 rope dims: 2 bytes instead of 4 for each of the 32 rotary dims of every window and
// compressed KV row (the indexer's keys do not change)
check(c.depth === 300 && c.kv_bytes < b.kv_bytes, `--kv-bf16-rope keeps less state (${c.kv_bytes} < ${b.kv_bytes})`);
process.exit(bad ? 1 : 0);
JS
if "$dsv4" bench -m "$src/models/tiny" --prefill many 2> "$tmp/err"; then fail "--prefill many accepted"; fi
grep -q -- "--prefill" "$tmp/err" || fail "the error does not name --prefill: $(cat "$tmp/err")"
if "$dsv4" bench -m "$src/models/tiny" --bw-mib 1 2> "$tmp/err"; then fail "--bw-mib 1 accepted"; fi
echo "bench: ok"
