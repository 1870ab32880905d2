#!/usr/bin/env bash
# neon.test.sh: the AArch64 NEON kernels, tested on this (x86-64) machine.
#
# The kernels (src/kernels/linear_neon.c, picked by linear_arm.c) only build for AArch64, so
# this test cross-compiles test_kernels.c with the kernel files and what they use (numeric,
# base; no jansson or PCRE2, which have no AArch64 build here) and runs the binary under
# qemu-user twice: as a Cortex-A72, which has no BF16 instructions (the `neon` set alone), and
# as qemu's `max` CPU, which has them (`neon` and `neon-bf16`). test_kernels compares every set
# the CPU runs with the portable kernel, bit for bit where the set promises it.
#
# The flags are the build's own (-std=c11: no contraction of a*b+c into a fused multiply-add,
# which the portable kernel's order of operations relies on). qemu checks what the code
# computes, not how fast: nothing here measures speed on ARM.
#
# Usage: bash neon.test.sh <dsv4-binary> <shared-dir> <source-dir>
set -euo pipefail
src="${3:?usage: neon.test.sh <dsv4-binary> <shared-dir> <source-dir>}"

cc=aarch64-linux-gnu-gcc
for tool in "$cc" qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "neon.test.sh: $tool not found: install gcc-aarch64-linux-gnu and qemu-user (scripts/install-deps.sh)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Linked statically: qemu then needs no AArch64 loader or libraries (the dynamically linked
# binary, run with qemu -L and the cross sysroot, stalled for minutes here). The linker's one warning,
# that libgomp's static copy calls dlopen, is expected; anything else fails the build (-Werror).
flags=(-std=c11 -D_GNU_SOURCE -O2 -fopenmp -static -Wall -Wextra -Wshadow -Wno-unused-parameter
       -Wstrict-prototypes -Wmissing-prototypes -Werror -I"$src/include" -I"$src/src")
if ! nice -n 10 "$cc" "${flags[@]}" -o "$work/test_kernels" \
     "$src/tests/test_kernels.c" "$src/src/kernels/linear.c" "$src/src/kernels/linear_arm.c" \
     "$src/src/kernels/linear_neon.c" "$src/src/numeric/numeric.c" "$src/src/base/error.c" -lm \
     2>"$work/cc.log"; then
  cat "$work/cc.log" >&2
  echo "neon.test.sh: the AArch64 build of the kernels test failed" >&2
  exit 1
fi

export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
status=0
for cpu in cortex-a72 max; do
  echo "== qemu-aarch64 -cpu $cpu"
  out=$(qemu-aarch64 -cpu "$cpu" "$work/test_kernels" 2>&1) || status=1
  echo "$out"
  # the CPU must have been given the sets it was chosen for, or the test checked less than it says
  want="kernel sets: portable neon"
  [ "$cpu" = max ] && want="kernel sets: portable neon neon-bf16"
  if ! grep -qx "$want" <<<"$out"; then
    echo "neon.test.sh: on $cpu expected '$want'" >&2
    status=1
  fi
done
exit $status
