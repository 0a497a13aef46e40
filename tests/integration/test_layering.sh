#!/usr/bin/env bash
# The layering of station/README.md holds: every #include "..." in drivers/, station/ and
# fixtures/ names a header of its own folder or of a folder on a line above it in the
# README's `layers` block (folders on one line are peers and include none of each other).
# A wrong-way include fails the test with file:line and the two folders. Reads files only.
# Usage: test_layering.sh [TREE]   (default: the source tree)
set -euo pipefail
: "${SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
root=${1:-$SOURCE_DIR}
cd "$root"

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

[ -f station/README.md ] || fail "$root: no station/README.md"
# The layers block: one line per layer, lowest first.
layers=$(awk '/^```layers$/ { on = 1; next } on && /^```/ { exit } on && NF' station/README.md)
[ -n "$layers" ] || fail "station/README.md has no \`\`\`layers block"

# Every C file of the three trees, with its folder and the headers it includes, checked in
# one awk run: headers are found by name (names are unique across the trees, as unqualified
# includes need), folders by their layer.
find drivers station fixtures -type f \( -name '*.c' -o -name '*.h' \) | sort >"${TMPDIR:-/tmp}/layering.$$"
trap 'rm -f "${TMPDIR:-/tmp}/layering.$$"' EXIT
awk -v layers="$layers" '
function dir(p) { sub(/\/[^\/]*$/, "", p); return p }
function base(p) { sub(/^.*\//, "", p); return p }
BEGIN {
	n = split(layers, line, "\n")
	for (i = 1; i <= n; i++) {
		k = split(line[i], f, /[ \t]+/)
		for (j = 1; j <= k; j++)
			if (f[j] != "") rank[f[j]] = i
	}
}
FNR == NR {
	files[++nfiles] = $0
	h = base($0)
	if (h ~ /\.h$/ && h in home) {
		print "FAIL: " h " is in " home[h] " and " dir($0) ": an unqualified #include cannot tell them apart"
		bad++
	}
	if (h ~ /\.h$/)
		home[h] = dir($0)
	if (!(dir($0) in rank)) {
		print "FAIL: " $0 ": folder " dir($0) " is in no layer of station/README.md"
		bad++
	}
	next
}
END {
	for (i = 1; i <= nfiles; i++) {
		file = files[i]; from = dir(file); ln = 0
		while ((getline text < file) > 0) {
			ln++
			if (text !~ /^[ \t]*#[ \t]*include[ \t]*"/) continue
			h = text; sub(/^[^"]*"/, "", h); sub(/".*$/, "", h)
			h = base(h)
			if (!(h in home)) {
				print "FAIL: " file ":" ln ": includes \"" h "\", which is in none of drivers/, station/, fixtures/"
				bad++
				continue
			}
			to = home[h]
			if (to == from || rank[to] < rank[from]) continue
			print "FAIL: " file ":" ln ": " from " includes " h " from " to ", which is " \
			      (rank[to] == rank[from] ? "its peer" : "above it") " in the layering of station/README.md"
			bad++
		}
		close(file)
	}
	if (bad) exit 1
	print "ok - " nfiles " files in " length(rank) " folders include only their own folder and those below it"
}' "${TMPDIR:-/tmp}/layering.$$"
