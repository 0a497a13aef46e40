#!/usr/bin/env bash
# Instructions, not seconds: the station's cost a registration and a board counted by
# callgrind, each thread's against the crypto-only bound's instructions taken in the same
# run. CPU times on a shared machine move by a fifth from one round to the next; instruction
# counts move by less than a percent, so a change of a few percent shows here first. They
# leave the kernel out (system calls: the PTYs' reads and writes, the WAL's writes and
# fsyncs), which bench_http's and station bench's CPU figures carry: read the two together.
#
#   tests/bench/instructions.sh BUILD_DIR [--registrations N] [--slots N] [--boards-per-slot N]
#
# BUILD_DIR: a build without sanitizers (callgrind cannot run them), e.g. build-release.
# Prints, for the registration API (N registrations at 128 connections, default 1000) and
# the serial path (station bench unpaced, file key; default 32 slots of 4 boards):
#  - the bound: one certificate's verify + sign + verify (bench_http's, the same code as its
#    CPU bound), and for the serial path that plus the board's PoP verify as the loop ran it;
#  - the loop's, the ledger thread's (its opening left out) and the workers' instructions a
#    registration or board, each over the bound, and their sum.
set -euo pipefail

usage() {
	echo "usage: tests/bench/instructions.sh BUILD_DIR [--registrations N] [--slots N]" \
		"[--boards-per-slot N]" >&2
	exit 2
}

build=${1:-}
[ -n "$build" ] && [ "${build#-}" = "$build" ] || usage
shift
regs=1000 slots=32 per_slot=4
while [ $# -gt 0 ]; do
	case $1 in
	--registrations | --slots | --boards-per-slot)
		[ $# -ge 2 ] || { echo "instructions.sh: $1 needs a value" >&2; usage; }
		case $2 in '' | *[!0-9]* | 0*)
			echo "instructions.sh: $1 '$2' is not a positive whole number" >&2
			exit 2 ;;
		esac
		case $1 in
		--registrations) regs=$2 ;;
		--slots) slots=$2 ;;
		*) per_slot=$2 ;;
		esac
		shift 2 ;;
	-h | --help) usage ;;
	*) echo "instructions.sh: unknown option '$1'" >&2; usage ;;
	esac
done

bench_http=$build/tests/bench_http
station=$build/station/station
for f in "$bench_http" "$station" "$build/fixtures/simboard/simboard"; do
	[ -x "$f" ] || { echo "instructions.sh: no $f (build it first)" >&2; exit 1; }
done
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
	{ echo "instructions.sh: valgrind not found (Debian package valgrind)" >&2; exit 1; }
if ldd "$station" | grep 'lib[at]san' >/dev/null; then
	echo "instructions.sh: $build is a sanitizer build; callgrind needs one without" >&2
	exit 1
fi
export STATION_SIMBOARD=$build/fixtures/simboard/simboard

T=$(mktemp -d "${TMPDIR:-/tmp}/station-instr.XXXXXX")
trap 'rm -rf "$T"' EXIT

# incl NAME FILE: function NAME's inclusive instructions in callgrind FILE (a static
# function's clones, NAME.constprop.0 and the like, count as NAME), 0 when absent. Each file
# is annotated once, into FILE.txt.
incl() {
	[ -e "$2.txt" ] || callgrind_annotate --inclusive=yes --threshold=100 "$2" >"$2.txt" 2>/dev/null
	awk -v a=":$1 [" -v b=":$1." '
			$1 ~ /^[0-9,]+$/ && (index($0, a) || index($0, b)) {
				gsub(",", "", $1)
				if ($1 + 0 > m) m = $1 + 0
			}
			END { printf "%.0f\n", m + 0 }' "$2.txt"
}

# profiles PREFIX...: the per-thread callgrind files of the runs named PREFIX.PID (their
# annotations left out).
profiles() {
	local p f
	for p in "$@"; do
		for f in "$p"-[0-9]*; do
			case $f in
			*.txt) ;;
			*) [ ! -e "$f" ] || echo "$f" ;;
			esac
		done
	done
}

# files_with NAME FILE...: the files in which NAME ran.
files_with() {
	local name=$1 f
	shift
	for f in "$@"; do
		[ "$(incl "$name" "$f")" -gt 0 ] && echo "$f"
	done
	return 0
}

# sum NAME FILE...: NAME's inclusive instructions summed over the files.
sum() {
	local name=$1 total=0 f
	shift
	for f in "$@"; do
		total=$((total + $(incl "$name" "$f")))
	done
	echo "$total"
}

callgrind() {
	valgrind --tool=callgrind --separate-threads=yes --toggle-collect='bound_rate*' \
		--toggle-collect=uv_run --toggle-collect=ledger_main --toggle-collect=worker_main "$@"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
# row COUNT LOOP LEDGER WORKERS BOUND: each thread's instructions a unit, over the bound.
row() {
	local n=$1 bound=$5 out="" i v
	local -a names=(loop ledger workers all) counts=("$2" "$3" "$4" $(($2 + $3 + $4)))

	for i in 0 1 2 3; do
		v=$((counts[i] / n))
		out="$out  ${names[i]} $v = $(ratio "$v" "$bound")x"
	done
	echo "$out"
}

# The registration API: one round at 128 connections; the bound from the same process.
bound_n=200
callgrind --callgrind-out-file="$T/http.%p" "$bench_http" -n "$regs" -c 128 \
	--bound-n "$bound_n" --no-round-bounds -d "$T" >"$T/http.out" 2>"$T/http.err" ||
	{ echo "instructions.sh: bench_http failed: $(tail -3 "$T/http.err")" >&2; exit 1; }
mapfile -t files < <(profiles "$T"/http.*)
main=$(files_with bound_rate "${files[@]}")
[ "$(echo "$main" | wc -l)" = 1 ] && [ -n "$main" ] ||
	{ echo "instructions.sh: bench_http's bound not found in its profile" >&2; exit 1; }
bound=$(($(incl bound_rate "$main") / bound_n))
loop=$(incl uv_run "$main")
mapfile -t lfiles < <(files_with ledger_main "${files[@]}")
ledger=$(($(sum ledger_main "${lfiles[@]}") - $(sum st_ledger_open "${lfiles[@]}")))
workers=$(sum worker_main "${files[@]}")
[ "$bound" -gt 0 ] && [ "$loop" -gt 0 ] && [ "$ledger" -gt 0 ] && [ "$workers" -gt 0 ] ||
	{ echo "instructions.sh: a thread of bench_http ran nothing" >&2; exit 1; }

echo "bound: $bound instructions a certificate (verify + sign + verify, file key; bench_http)"
echo "registration API, $regs registrations at 128 connections, a registration over the bound:"
row "$regs" "$loop" "$ledger" "$workers" "$bound"

# The serial path: station bench unpaced; its station run is the traced child with a loop.
boards=$((slots * per_slot))
callgrind --trace-children=yes --trace-children-skip='*simboard*,*openssl*,*gnuplot*' \
	--callgrind-out-file="$T/st.%p" "$station" bench --slots "$slots" \
	--boards-per-slot "$per_slot" --baud 0 --signer file --rounds 1 -q \
	--json "$T/st.json" >"$T/st.out" 2>"$T/st.err" ||
	{ echo "instructions.sh: station bench failed: $(tail -3 "$T/st.err")" >&2; exit 1; }
passed=$(sed -n 's/.*"passed": *\([0-9]*\).*/\1/p' "$T/st.json" | head -1)
[ "$passed" = "$boards" ] ||
	{ echo "instructions.sh: station bench passed ${passed:-no} boards of $boards" >&2; exit 1; }
mapfile -t files < <(profiles "$T"/st.*)
mapfile -t lfiles < <(files_with ledger_main "${files[@]}")
[ "${#lfiles[@]}" = 1 ] || { echo "instructions.sh: no single station run traced" >&2; exit 1; }
run=${lfiles[0]%-*}
mapfile -t files < <(profiles "$run")
main=$(files_with uv_run "${files[@]}")
loop=$(incl uv_run "$main")
pop=$(($(incl st_ecdsa_verify "$main") / boards))
ledger=$(($(incl ledger_main "${lfiles[0]}") - $(incl st_ledger_open "${lfiles[0]}")))
workers=$(sum worker_main "${files[@]}")
[ "$loop" -gt 0 ] && [ "$pop" -gt 0 ] && [ "$ledger" -gt 0 ] && [ "$workers" -gt 0 ] ||
	{ echo "instructions.sh: a thread of the station ran nothing" >&2; exit 1; }
echo "serial path, $boards boards through $slots slots unpaced, file key, a board over the" \
	"bound with the PoP verify: $bound + $pop = $((bound + pop))"
row "$boards" "$loop" "$ledger" "$workers" $((bound + pop))
echo "(instructions alone: the kernel's work, system calls and the writes they start, is not in"
echo "them; bench_http's and station bench's CPU figures carry it)"
