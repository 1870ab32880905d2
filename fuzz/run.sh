#!/usr/bin/env bash
# run.sh: build the libFuzzer targets and fuzz each for a while.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s; targets: all fuzz_*.c)
#
# Builds with clang into build-fuzz/ (-DDSV4_FUZZ=ON: libFuzzer + ASan + UBSan), then runs
# each target with the seeds of fuzz/corpus/NAME and a dictionary fuzz/NAME.dict. Inputs the
# fuzzer finds interesting go to build-fuzz/corpus/NAME (kept between runs, never committed);
# a crash is written to build-fuzz/crash-NAME-* and the script stops with its status. To make
# a found bug a regression test, copy the minimised input into fuzz/corpus/NAME/; to keep the
# inputs that add coverage, build-fuzz/fuzz/fuzz_NAME -merge=1 fuzz/corpus/NAME build-fuzz/corpus/NAME.
# Environment: JOBS (build parallelism, default 2), NICE (default 19), FUZZ_ARGS (extra
# libFuzzer flags, e.g. "-max_len=65536").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
seconds="${1:-60}"
shift || true
build="$root/build-fuzz"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$here"/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DDSV4_FUZZ=ON >/dev/null
nice -n "${NICE:-19}" cmake --build "$build" -j "${JOBS:-2}" --target "${targets[@]}"

for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  mkdir -p "$build/corpus/$name"
  dict=()
  [ -f "$here/$name.dict" ] && dict=("-dict=$here/$name.dict")
  echo "== $t: ${seconds}s"
  # ASan's leak check runs at exit; UBSan findings abort (-fno-sanitize-recover).
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
  nice -n "${NICE:-19}" "$build/fuzz/$t" "${dict[@]}" -max_total_time="$seconds" \
      -artifact_prefix="$build/crash-$name-" -print_final_stats=1 ${FUZZ_ARGS:-} \
      "$build/corpus/$name" "$here/corpus/$name"
done
