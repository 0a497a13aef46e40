#!/usr/bin/env bash
# tests/bench/instructions.sh on a small scale: its figures are all there and agree with
# each other (each ratio is its count over the bound, "all" is the threads' sum, the serial
# path's bound is bench_http's plus the PoP verify), never their size. It refuses bad
# arguments by name. callgrind cannot run a sanitizer build: this runs on the release tree
# (tests/run.sh runs slow tests there only) and skips elsewhere.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
if ldd "$STATION" | has 'lib[at]san'; then
	echo "SKIP: $STATION is a sanitizer build; callgrind needs one without"
	exit 77
fi
S=$SOURCE_DIR/tests/bench/instructions.sh

expect_fail "no build directory" "usage: tests/bench/instructions.sh BUILD_DIR" bash "$S"
expect_fail "a count of 0" "--slots '0' is not a positive whole number" \
	bash "$S" "$BUILD_DIR" --slots 0
expect_fail "a count that is not a number" "--registrations '1e3' is not a positive" \
	bash "$S" "$BUILD_DIR" --registrations 1e3
expect_fail "an option without its value" "--boards-per-slot needs a value" \
	bash "$S" "$BUILD_DIR" --boards-per-slot
expect_fail "an unknown option" "unknown option '--fast'" bash "$S" "$BUILD_DIR" --fast
mkdir "$T/empty"
expect_fail "a directory without the binaries" "no $T/empty/tests/bench_http" bash "$S" "$T/empty"

bash "$S" "$BUILD_DIR" --registrations 40 --slots 4 --boards-per-slot 2 >"$T/out" 2>"$T/err" ||
	fail "instructions.sh failed: $(cat "$T/err")"
cat "$T/out"

# The figures: one bound line, then a headline and a row of figures for each of the two.
awk '
	function fail(msg) { print "FAIL: " msg > "/dev/stderr"; bad = 1; exit 1 }
	# A row "  loop N = Rx  ledger N = Rx  workers N = Rx  all N = Rx" over bound b.
	function check_row(b,    i, name, n, r, sum) {
		if (NF != 16) fail("not a row of four figures: " $0)
		sum = 0
		for (i = 1; i <= 16; i += 4) {
			name = $i; n = $(i + 1); r = $(i + 3)
			if ($(i + 2) != "=" || n !~ /^[0-9]+$/ || r !~ /^[0-9.]+x$/) fail("bad figure: " $0)
			if (n <= 0) fail(name " ran nothing: " $0)
			sub(/x$/, "", r)
			if (r - n / b > 0.0006 || n / b - r > 0.0006) fail(name " ratio is not " n " / " b ": " $0)
			if (name != "all") sum += n
			else if (n - sum > 3 || sum - n > 3) fail("all is not the sum of the threads: " $0)
		}
		rows++
	}
	/^bound: / { bound = $2; if (bound !~ /^[0-9]+$/ || bound <= 0) fail("bad bound: " $0); next }
	/^registration API, 40 registrations at 128 connections/ { want = bound; next }
	/^serial path, 8 boards through 4 slots/ {
		n = split($0, w, " ")
		if (w[n - 4] != bound || w[n - 3] != "+" || w[n - 1] != "=" || w[n] != bound + w[n - 2])
			fail("serial bound is not bench_http'"'"'s plus the PoP verify: " $0)
		want = w[n]; next
	}
	/^  loop / { if (!want) fail("a row without its headline: " $0); check_row(want); want = 0; next }
	END { if (!bad && rows != 2) { print "FAIL: " rows + 0 " rows of figures, not 2" > "/dev/stderr"; exit 1 } }
' "$T/out" || fail "instructions.sh: figures inconsistent"
ok "instructions.sh: a registration's and a board's instructions by thread, over the bounds"
