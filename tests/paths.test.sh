#!/usr/bin/env bash
# paths.test.sh: the logits do not depend on how the prompt is fed or on the thread count.
#
# One-shot prefill, chunks of 1, 5 and 64 tokens, and a split must give bit-identical .npy files,
# in both numerics modes, and so must 1 and 2 threads (every output element is summed by one
# thread in a fixed order, and every path runs the same kernels row by row).
# KERNELS selects the kernel set for the path comparison (DSV4_KERNELS; default: portable).
# usage: bash paths.test.sh DSV4_BINARY SHARED_DIR SOURCE_DIR
set -u
dsv4=$1 shared=$2
model=$shared/refvectors/models/tiny_v4flash_fp8
ids=$shared/refvectors/cases/long1000/fp8-fp32/ids.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
[ -d "$model" ] || { echo "FAIL: $model not found"; exit 1; }
# 300 tokens: the window wraps, CSA prunes, one HCA row completes
python_free_ids=$(tr -d '[] \n' <"$ids" | cut -d, -f1-300)
export DSV4_KERNELS=${KERNELS:-portable}
for num in exact default; do
    OMP_NUM_THREADS=2 "$dsv4" logits -m "$model" --ids "$python_free_ids" --numerics $num --out "$tmp/ref.npy" || fail=1
    for how in "--chunk 1" "--chunk 5" "--chunk 64" "--split 131"; do
        OMP_NUM_THREADS=2 "$dsv4" logits -m "$model" --ids "$python_free_ids" --numerics $num $how --out "$tmp/x.npy" || fail=1
        if ! cmp -s "$tmp/ref.npy" "$tmp/x.npy"; then echo "FAIL $num $how differs from one-shot prefill"; fail=1; fi
    done
    for k in portable best; do
        [ $k = best ] && kk= || kk=$k
        DSV4_KERNELS=$kk OMP_NUM_THREADS=2 "$dsv4" logits -m "$model" --ids "$python_free_ids" --numerics $num --out "$tmp/t2.npy" || fail=1
        DSV4_KERNELS=$kk OMP_NUM_THREADS=1 "$dsv4" logits -m "$model" --ids "$python_free_ids" --numerics $num --out "$tmp/t1.npy" || fail=1
        if ! cmp -s "$tmp/t2.npy" "$tmp/t1.npy"; then echo "FAIL $num ($k kernels): 1 thread differs from 2 threads"; fail=1; fi
    done
    OMP_NUM_THREADS=1 "$dsv4" logits -m "$model" --ids "$python_free_ids" --numerics $num --mtp --out "$tmp/m1.npy" || fail=1
    OMP_NUM_THREADS=2 "$dsv4" logits -m "$model" --ids "$python_free_ids" --numerics $num --mtp --chunk 3 --out "$tmp/m2.npy" || fail=1
    if ! cmp -s "$tmp/m1.npy" "$tmp/m2.npy"; then echo "FAIL $num: MTP logits depend on threads or chunking"; fail=1; fi
done
[ $fail = 0 ] && echo "paths: all identical"
exit $fail
