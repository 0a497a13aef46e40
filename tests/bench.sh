#!/usr/bin/env bash
# Benchmark entry: builds the release tree when needed, then runs the benchmark harnesses and
# prints their figures and ratios. Benchmarks are not tests: the machine's load moves the
# absolute figures, so compare the ratios printed by one run.
# Usage: tests/bench.sh [bench_issue args...]   e.g. tests/bench.sh -n 5000 -t 2 -r 5
# BENCH_BUILD_DIR overrides the build tree (default build-release beside the sources).
set -euo pipefail
STATION_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$STATION_SRC/tests/lib/deps.sh"
station_install_deps

build=${BENCH_BUILD_DIR:-$STATION_SRC/build-release}
cmake -S "$STATION_SRC" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_issue bench_http -- --no-print-directory >/dev/null

echo "== issuance (tests/bench/bench_issue.c)"
"$build/tests/bench_issue" "$@"

# BENCH_HTTP_ARGS: e.g. "-n 5000 -c 128 --softhsm"
echo "== registration API over loopback HTTP (tests/bench/bench_http.c)"
# shellcheck disable=SC2086
"$build/tests/bench_http" ${BENCH_HTTP_ARGS:--n 4000 -c 128}
