#!/usr/bin/env bash
# chat.test.sh: `dsv4 chat` reuses its session across turns and still answers exactly as a
# fresh run of the whole conversation does.
#
# Two turns are chatted (greedy), the conversation saved with /save; then `dsv4 run
# --messages` computes the last answer from scratch on the conversation before it. The
# answers must be identical, in chat mode (the session continues after the first answer) and in
# thinking mode (the encoding drops the first turn's reasoning, so the chat must roll its
# session back to the snapshot before that turn's assistant header).
# usage: bash chat.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -u
dsv4=$1 shared=$2 src=$3
build=$(cd "$(dirname "$dsv4")" && pwd)
. "$src/tests/serve/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
serve_fixture "$build" "$shared" "$tmp/model" || { echo "FAIL: cannot make the test model"; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE DSV4_KERNELS=${KERNELS:-portable}
for mode in --nothink --think; do
    printf 'Hello there\nWhat is two plus two?\n/save %s\n/quit\n' "$tmp/conv.json" |
        "$dsv4" chat -m "$tmp/model" $mode -n 10 --no-color >"$tmp/chat.out" 2>"$tmp/chat.err" ||
        { echo "FAIL $mode: chat failed: $(cat "$tmp/chat.err")"; fail=1; continue; }
    node -e '
        const fs = require("fs");
        const m = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
        if (m.length !== 4 || m[3].role !== "assistant") { console.error("unexpected transcript", m); process.exit(1); }
        fs.writeFileSync(process.argv[2], JSON.stringify(m.slice(0, 3)));
        fs.writeFileSync(process.argv[3], m[3].content);
        fs.writeFileSync(process.argv[4], m[3].reasoning_content || "");' \
        "$tmp/conv.json" "$tmp/prefix.json" "$tmp/want" "$tmp/want_reasoning" || { fail=1; continue; }
    "$dsv4" run -m "$tmp/model" $mode -n 10 --no-color --messages "$tmp/prefix.json" >"$tmp/run.out" 2>"$tmp/run.err" ||
        { echo "FAIL $mode: run failed: $(cat "$tmp/run.err")"; fail=1; continue; }
    # run prints the reasoning (thinking mode), a blank line, the answer, a newline
    want="$(cat "$tmp/want_reasoning")"
    if [ -s "$tmp/want" ]; then
        [ -n "$want" ] && want="$want"$'\n\n'
        want="$want$(cat "$tmp/want")"
    fi
    if [ "$(cat "$tmp/run.out")" != "$want" ]; then
        echo "FAIL $mode: the chat's second answer differs from a fresh run of the conversation"
        echo "  chat: $(printf %q "$want")"
        echo "  run:  $(printf %q "$(cat "$tmp/run.out")")"
        fail=1
    fi
done
[ $fail = 0 ] && echo "chat: session reuse gives the same answers as fresh runs"
exit $fail
