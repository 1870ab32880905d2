#!/usr/bin/env bash
# tokenize_cli: `dsv4 tokenize` end to end: --text, --jsonl, --decode (whole and --stream),
# and errors that name the bad line. Expected ids are the Hugging Face library's (the example
# in shared/tokenizer/README.md).
#
#   bash tokenize_cli.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -euo pipefail
dsv4=$1 shared=$2
tok=$shared/tokenizer/deepseek-v4-tokenizer.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0
expect() { # NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); else
    failures=$((failures + 1)); printf '%s: expected\n  %s\ngot\n  %s\n' "$1" "$2" "$3" >&2; fi
}

text='<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>'
ids='{"ids": [128803, 30594, 128804, 128821, 36101, 128822, 7624, 1]}'
expect "--text" "$ids" "$("$dsv4" tokenize --tokenizer "$tok" --text "$text")"
expect "--decode --ids" "{\"text\": \"$text\"}" \
  "$("$dsv4" tokenize --tokenizer "$tok" --decode --ids 128803,30594,128804,128821,36101,128822,7624,1)"

printf '{"text": "Hello"}\n\n{"text": "a\\u0000b"}\n' > "$tmp/in.jsonl"
"$dsv4" tokenize --tokenizer "$tok" --jsonl "$tmp/in.jsonl" > "$tmp/ids.jsonl"
expect "--jsonl lines" 2 "$(wc -l < "$tmp/ids.jsonl")"
"$dsv4" tokenize --tokenizer "$tok" --decode --jsonl "$tmp/ids.jsonl" > "$tmp/back.jsonl"
"$dsv4" tokenize --tokenizer "$tok" --decode --stream --jsonl "$tmp/ids.jsonl" > "$tmp/stream.jsonl"
expect "round trip" "$(printf '{"text": "Hello"}\n{"text": "a\\u0000b"}')" "$(cat "$tmp/back.jsonl")"
expect "stream round trip" "$(cat "$tmp/back.jsonl")" "$(cat "$tmp/stream.jsonl")"

printf '{"text": "ok"}\n{"txt": "wrong key"}\n' > "$tmp/bad.jsonl"
err=$("$dsv4" tokenize --tokenizer "$tok" --jsonl "$tmp/bad.jsonl" 2>&1 >/dev/null || true)
expect "bad line named" 1 "$(grep -c 'line 2' <<<"$err")"
printf '{"ids": [1, -5]}\n' > "$tmp/badids.jsonl"
err=$("$dsv4" tokenize --tokenizer "$tok" --decode --jsonl "$tmp/badids.jsonl" 2>&1 >/dev/null || true)
expect "bad id named" 1 "$(grep -c 'line 1: ids\[1\]' <<<"$err")"
printf '{"ids": [1, 999999]}\n' > "$tmp/range.jsonl"
err=$("$dsv4" tokenize --tokenizer "$tok" --decode --jsonl "$tmp/range.jsonl" 2>&1 >/dev/null || true)
expect "out-of-vocabulary id named" 1 "$(grep -c 'line 1: token id 999999 at position 1' <<<"$err")"
err=$("$dsv4" tokenize --tokenizer /nonexistent.json --text x 2>&1 >/dev/null || true)
expect "missing tokenizer named" 1 "$(grep -c 'nonexistent.json' <<<"$err")"

echo "tokenize_cli: $passed passed, $failures failed"
[ "$failures" = 0 ]
