#!/usr/bin/env bash
# The whole test suite: installs missing Debian packages, builds the normal, the sanitizer
# (ASan+UBSan) and, with clang, the libFuzzer trees, and runs CTest in each.
# Usage: tests/run.sh [ctest args...]   e.g. tests/run.sh -R policy
set -euo pipefail
STATION_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$STATION_SRC/tests/lib/deps.sh"
station_install_deps

jobs=$(nproc)
status=0

echo "== build (RelWithDebInfo)"
# Both trees CTest runs carry the fault hooks the recovery tests drive (STATION_TEST_HOOKS);
# tests/integration/test_install.sh builds a tree of its own without them, as a package is.
station_build "$STATION_SRC/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTATION_TEST_HOOKS=ON
echo "== build (ASan+UBSan)"
station_build "$STATION_SRC/build-asan" -DCMAKE_BUILD_TYPE=Debug -DSTATION_SANITIZE=ON \
	-DSTATION_TEST_HOOKS=ON
if command -v clang >/dev/null; then
	echo "== build (libFuzzer)"
	CC=clang station_build "$STATION_SRC/build-fuzz" -DCMAKE_BUILD_TYPE=Debug \
		-DSTATION_SANITIZE=ON -DSTATION_FUZZ=ON
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$STATION_SRC/tests/lsan.supp:print_suppressions=0

# The fuzz targets of this tree are corpus replayers (tests/fuzz/replay_main.c), built with
# gcc and the sanitizers: every committed input runs under ASan and UBSan here, whether or
# not clang is there for the libFuzzer runs below.
echo "== tests and fuzz corpora replayed (sanitizer build)"
(cd "$STATION_SRC/build-asan" && ctest -j"$jobs" --output-on-failure -LE 'slow' "$@") || status=1
if [ -d "$STATION_SRC/build-fuzz" ]; then
	echo "== fuzz (short libFuzzer runs)"
	(cd "$STATION_SRC/build-fuzz" && ctest -j"$jobs" --output-on-failure -L fuzz "$@") || status=1
fi
echo "== tests (release build)"
(cd "$STATION_SRC/build" && ctest -j"$jobs" --output-on-failure "$@") || status=1
exit $status
