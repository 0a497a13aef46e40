#!/usr/bin/env bash
# The build lists its sources and tests by name (no globs), so a file nobody listed would be
# neither built nor run, silently. Every C file under drivers/, station/ and fixtures/ is
# named in its folder's CMakeLists.txt (the one nearest above it), and every test, fuzz
# target and benchmark under tests/ in tests/CMakeLists.txt; a file that is missing fails
# the test by name. Reads files only.
set -euo pipefail
: "${SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
cd "$SOURCE_DIR"
bad=0

# listed FILE NAME: whether NAME stands as a word in FILE (comments aside).
listed() {
	local re=${2//./\\.}
	# grep reads all it is given (no -q), or sed may die of SIGPIPE under pipefail.
	sed 's/#.*//' "$1" | grep -E "(^|[[:space:](])$re([[:space:])]|$)" >/dev/null
}

# A C file is listed by the CMakeLists.txt of its folder or of a folder above it (the path
# relative to that one), up to the top of its tree.
while IFS= read -r f; do
	dir=$(dirname "$f")
	found=
	while :; do
		if [ -f "$dir/CMakeLists.txt" ] && listed "$dir/CMakeLists.txt" "${f#"$dir"/}"; then
			found=1
			break
		fi
		case $dir in */*) dir=$(dirname "$dir") ;; *) break ;; esac
	done
	if [ -z "$found" ]; then
		echo "FAIL: $f is listed in no CMakeLists.txt above it: it is not built"
		bad=$((bad + 1))
	fi
done < <(find drivers station fixtures -name '*.c' | sort)

for f in tests/unit/test_*.c tests/integration/test_*.sh tests/fuzz/fuzz_*.c tests/bench/bench_*.c; do
	name=$(basename "$f")
	name=${name%.*}
	if ! listed tests/CMakeLists.txt "$name"; then
		echo "FAIL: $f is not listed in tests/CMakeLists.txt: it does not run"
		bad=$((bad + 1))
	fi
done
[ "$bad" -eq 0 ] || exit 1
echo "ok - every source is built and every test, fuzz target and benchmark is listed"
