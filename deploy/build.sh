#!/usr/bin/env bash
# Builds kaoping into BUILD_DIR (default ./build) after installing missing Debian packages.
# Usage: deploy/build.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$top/build}
shift || true
"$top/deploy/install-deps.sh"
cmake -S "$top" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$bdir" -j"$(nproc)" >/dev/null
echo "$bdir"
