#!/usr/bin/env bash
# render.test.sh: `dsv4 render` must reproduce the official encoder byte for byte.
#
# Cases: the four official tests (shared/encoding/test_input_N.json, called as the official
# test_encoding_dsv4.py calls encode_messages: thinking mode for 1-3, chat for 4), the
# shared extra cases (shared/encoding/extra/NAME.input.json) and our own cases
# (tests/data/encoding/NAME.input.json); every expected output came from the official
# encoding_dsv4.py (see tests/data/encoding/README.md). Error cases
# (tests/data/encoding/errors/NAME.input.json) must be refused with a message that names
# the place given in NAME.expect.
# usage: bash render.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -u
dsv4=$1 shared=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

check() { # name input expected [render options...]
    local name=$1 input=$2 expected=$3
    shift 3
    if ! "$dsv4" render --input "$input" "$@" >"$tmp/out" 2>"$tmp/err"; then
        echo "FAIL $name: render failed: $(cat "$tmp/err")"
        fail=$((fail + 1))
    elif ! cmp -s "$tmp/out" "$expected"; then
        echo "FAIL $name: output differs from $expected"
        cmp "$tmp/out" "$expected" | head -1
        fail=$((fail + 1))
    else
        pass=$((pass + 1))
    fi
}

enc=$shared/encoding
if [ -d "$enc" ]; then
    for n in 1 2 3 4; do
        mode=thinking
        [ $n = 4 ] && mode=chat
        check "official_$n" "$enc/test_input_$n.json" "$enc/test_output_$n.txt" --mode $mode
    done
    for input in "$enc"/extra/*.input.json; do
        name=$(basename "$input" .input.json)
        check "extra/$name" "$input" "$enc/extra/$name.output.txt"
    done
else
    echo "FAIL: shared encoding cases not found at $enc (set DSV4_SHARED_DIR)"
    fail=$((fail + 1))
fi

for input in "$src"/tests/data/encoding/*.input.json; do
    [ -e "$input" ] || continue
    name=$(basename "$input" .input.json)
    check "data/$name" "$input" "$src/tests/data/encoding/$name.output.txt"
done

for input in "$src"/tests/data/encoding/errors/*.input.json; do
    [ -e "$input" ] || continue
    name=$(basename "$input" .input.json)
    want=$(cat "${input%.input.json}.expect")
    if "$dsv4" render --input "$input" >"$tmp/out" 2>"$tmp/err"; then
        echo "FAIL errors/$name: rendered, but should have been refused"
        fail=$((fail + 1))
    elif ! grep -qF -- "$want" "$tmp/err"; then
        echo "FAIL errors/$name: message \"$(cat "$tmp/err")\" does not name \"$want\""
        fail=$((fail + 1))
    else
        pass=$((pass + 1))
    fi
done

# Command-line options override encode_args: --no-bos renders the same without the BOS.
single=$src/tests/data/encoding/effort_high
bos='<｜begin▁of▁sentence｜>'
"$dsv4" render --input "$single.input.json" --no-bos >"$tmp/out" 2>"$tmp/err"
if [ "$bos$(cat "$tmp/out")" = "$(cat "$single.output.txt")" ]; then
    pass=$((pass + 1))
else
    echo "FAIL --no-bos: $(cat "$tmp/err")"
    fail=$((fail + 1))
fi

# --ids: the whole prompt tokenized must equal the HF library's ids (*.oracle-ids.json)
tok=$shared/tokenizer/deepseek-v4-tokenizer.json
check_ids() { # name input oracle [render options...]
    local name=$1 input=$2 oracle=$3
    shift 3
    if ! "$dsv4" render --input "$input" --ids --tokenizer "$tok" "$@" >"$tmp/ids" 2>"$tmp/err"; then
        echo "FAIL ids/$name: $(cat "$tmp/err")"
        fail=$((fail + 1))
    elif [ "$(tr -d ' \n' <"$tmp/ids")" != "$(tr -d ' \n' <"$oracle")" ]; then
        echo "FAIL ids/$name: ids differ from $oracle"
        fail=$((fail + 1))
    else
        pass=$((pass + 1))
    fi
}
if [ -f "$tok" ]; then
    for n in 1 2 3 4; do
        mode=thinking
        [ $n = 4 ] && mode=chat
        check_ids "official_$n" "$enc/test_input_$n.json" "$enc/test_output_$n.oracle-ids.json" --mode $mode
    done
    for input in "$enc"/extra/*.input.json; do
        name=$(basename "$input" .input.json)
        check_ids "extra/$name" "$input" "$enc/extra/$name.oracle-ids.json"
    done
else
    echo "FAIL: tokenizer not found at $tok"
    fail=$((fail + 1))
fi

echo "render: $pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
