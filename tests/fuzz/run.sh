#!/usr/bin/env bash
# tests/fuzz/run.sh [TARGET...]: builds the libFuzzer targets of tests/fuzz with clang
# (-fsanitize=fuzzer, with AddressSanitizer and UBSan on the whole library) and runs each
# target (default: every one: msg scheme csv) for KP_FUZZ_SECONDS seconds (default 60),
# starting from its seed corpus tests/fuzz/corpus/TARGET; what the fuzzer learns is kept in
# BUILD/fuzz-corpus/TARGET for the next run. A crash, a leak, a broken invariant, a timeout
# (> 10 s for one input) or an input using more than 2 GB fails the run; the input is saved
# under BUILD/fuzz-artifacts/TARGET/ and `BUILD/tests/fuzz/fuzz_TARGET FILE` reproduces it
# (tests/fuzz/fuzz_TARGET_replay FILE in a gcc build too).
# Environment: KP_FUZZ_SECONDS, KP_FUZZ_BUILD (default build-fuzz), KP_FUZZ_CC (clang),
# KP_FUZZ_JOBS (parallel fuzzing processes per target, default 1).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bdir=${KP_FUZZ_BUILD:-$top/build-fuzz}
secs=${KP_FUZZ_SECONDS:-60}
jobs=${KP_FUZZ_JOBS:-1}
"$top/deploy/install-deps.sh"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(msg scheme csv)
CC=${KP_FUZZ_CC:-clang} cmake -S "$top" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKP_FUZZ=ON -DKP_SANITIZE=fuzzer-no-link,address,undefined >/dev/null
build=()
for t in "${targets[@]}"; do
    if [ -f "$top/tests/fuzz/fuzz_$t.c" ]; then build+=("fuzz_$t"); else echo "run.sh: no target $t" >&2; exit 2; fi
done
cmake --build "$bdir" -j"$(nproc)" --target "${build[@]}" >/dev/null

rc=0
for t in "${targets[@]}"; do
    bin=$bdir/tests/fuzz/fuzz_$t
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: not built (its module is missing); skipped"
        continue
    fi
    work=$bdir/fuzz-corpus/$t
    art=$bdir/fuzz-artifacts/$t
    mkdir -p "$work" "$art"
    echo "== fuzz $t for ${secs}s"
    par=()
    # -jobs > 1 forks workers that log to fuzz-N.log in the current directory: run in bdir.
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
    if ! (cd "$bdir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        "${par[@]}" -print_final_stats=1 -artifact_prefix="$art/" \
        "$work" "$top/tests/fuzz/corpus/$t" >"$bdir/fuzz-$t.log" 2>&1); then
        echo "fuzz $t: FAILED (log: $bdir/fuzz-$t.log, inputs: $art/)"
        grep -E "ERROR|invariant failed|SUMMARY|Test unit written" "$bdir/fuzz-$t.log" | head -n 20
        rc=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov: " "$bdir/fuzz-$t.log" | tail -n 3
        echo "fuzz $t: ok ($(find "$work" -type f | wc -l) inputs in the working corpus)"
    fi
done
exit $rc
