#!/usr/bin/env bash
# Runs every test of kaoping: installs what is missing, builds, and runs the whole CTest
# suite (unit tests, integration tests with a throwaway PostgreSQL and the real daemons),
# then the same suite again in an AddressSanitizer + UBSan build, then a Release build (compile
# only: -O3 finds warnings -O2 does not, and -Werror makes them errors), then every libFuzzer
# target of tests/fuzz for a bounded time (clang).
#   deploy/test.sh            both suites, the Release build and the fuzzers (KP_FUZZ_SECONDS each,
#                             default 30)
#   deploy/test.sh --quick    the normal build only
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

passed=0
failed=0
run_suite() {
    local bdir=$1; shift
    echo "== building $bdir $*"
    "$top/deploy/build.sh" "$bdir" "$@" >/dev/null
    echo "== testing $bdir"
    local rc=0 line
    (cd "$bdir" && ctest --output-on-failure --timeout 600 -j2) | tee "$bdir/ctest.out" || rc=$?
    # "97% tests passed, 1 tests failed out of 51"
    line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$bdir/ctest.out" | tail -n 1)
    if [ -n "$line" ]; then
        local f n
        f=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
        n=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
        passed=$((passed + n - f))
        failed=$((failed + f))
    fi
    if [ $rc -ne 0 ]; then
        echo "kaoping: $passed passed, $((failed > 0 ? failed : 1)) failed"
        exit $rc
    fi
}

run_suite "$top/build"
if [ $quick -eq 0 ]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_suite "$top/build-asan" -DKP_SANITIZE=address,undefined
    echo "== building $top/build-release -DCMAKE_BUILD_TYPE=Release (compile only)"
    "$top/deploy/build.sh" "$top/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null || {
        echo "kaoping: $passed passed, the Release build failed"
        exit 1
    }
    echo "== fuzzing (tests/fuzz/run.sh, ${KP_FUZZ_SECONDS:-30}s per target)"
    KP_FUZZ_SECONDS=${KP_FUZZ_SECONDS:-30} "$top/tests/fuzz/run.sh"
fi
echo "kaoping: $passed passed, $failed failed"
