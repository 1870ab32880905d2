#!/bin/bash
# grad.test.sh: `dsv4 grad` against the reference gradients of refvectors/grads/long160.
#
# The loss of the 160-token prefill and its gradient w.r.t. every weight of the tiny V4-Flash
# model (FP8/FP4 on disk, gradients w.r.t. the dequantised values) must match what torch
# autograd computes through the official model.py: the loss within 1e-5 of loss.json, every
# tensor of grads.safetensors within a relative L2 error of 1e-4, none missing, none extra and
# non-zero (the comparison reads the file dsv4 grad wrote). The MTP loss is checked against
# loss.json as well (its gradient has no reference: test_grad_fd checks it).
# Usage: grad.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -u
dsv4=$1
shared=$2
ref=$shared/refvectors/grads/long160
model=$shared/refvectors/models/tiny_v4flash_fp8
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# the loss.json value of a key
expect() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),*$/\1/p" "$ref/loss.json"; }
# |a - b| <= tol
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }

out=$("$dsv4" grad -m "$model" --ids @"$ref/ids.json" --out "$tmp/grads.safetensors" --ref "$ref/grads.safetensors")
status=$?
echo "$out" | tail -n 3
if [ $status -ne 0 ]; then echo "FAIL: dsv4 grad differs from the reference gradients (status $status)"; fail=1; fi
got=$(echo "$out" | sed -n 's/^loss \(.*\)$/\1/p')
want=$(expect loss)
if [ -z "$got" ] || ! close "$got" "$want" 1e-5; then echo "FAIL: loss $got, loss.json has $want"; fail=1; fi

out=$("$dsv4" grad -m "$model" --ids @"$ref/ids.json" --mtp --out "$tmp/grads_mtp.safetensors")
status=$?
got=$(echo "$out" | sed -n 's/^loss_mtp \(.*\)$/\1/p')
want=$(expect loss_mtp)
echo "loss_mtp $got (loss.json: $want)"
if [ $status -ne 0 ] || [ -z "$got" ] || ! close "$got" "$want" 1e-5; then echo "FAIL: loss_mtp $got, loss.json has $want"; fail=1; fi

# the MTP gradient is not the L reference: the comparison must say so
if "$dsv4" grad -m "$model" --ids @"$ref/ids.json" --mtp --ref "$ref/grads.safetensors" > /dev/null; then
    echo "FAIL: the MTP gradient passed as the gradient of L"
    fail=1
fi
[ $fail -eq 0 ] && echo "grad: all checks passed"
exit $fail
