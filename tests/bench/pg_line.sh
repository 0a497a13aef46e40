#!/usr/bin/env bash
# A line of stations on one PostgreSQL ledger (run by tests/bench.sh under tests/lib/pg.sh,
# which sets STATION_TEST_PG to a server of its own). Not a test: quote the ratios.
# - The ledger alone: certificates recorded per second on PostgreSQL against SQLite, batch
#   1 and 32 (tests/bench/bench_ledger.c --pg).
# - Scale-out: N = 1, 2, 4 stations (tests/bench/bench_line.c, one process each), each
#   signing with an emulated HSM of L ms a signature and S sessions, so that each station's
#   bound is S/L and the HSMs, not the two CPUs, are the line's limit: the line's
#   signatures/s against N x S/L (target: at least 0.9 at N = 4, i.e. the shared database is
#   never the bottleneck), and the commit latencies p50/p99 of the stations.
# Usage: pg_line.sh BUILD_DIR   (PG_LINE_N: certificates per station, default 5 s worth;
# PG_LINE_L, PG_LINE_S: the HSM, default 20 ms and 4 sessions; PG_LINE_STATIONS: "1 2 4")
set -euo pipefail
build=$1
: "${STATION_TEST_PG:?run it under tests/lib/pg.sh run}"
L=${PG_LINE_L:-20}
S=${PG_LINE_S:-4}
n=${PG_LINE_N:-$((5 * S * 1000 / L))}
work=$(mktemp -d "${TMPDIR:-/tmp}/pg-line.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== ledger: PostgreSQL against SQLite (tests/bench/bench_ledger.c)"
"$build/tests/bench_ledger" --pg "$STATION_TEST_PG" "$work" 3200

echo "== a line on one PostgreSQL: N stations, each with an HSM of $L ms and $S sessions (S/L = $((S * 1000 / L))/s), $n certificates each"
printf "  %-2s %12s %12s %7s %21s %21s\n" N "line sig/s" "N x S/L" ratio "intent commit p50/p99" "record commit p50/p99"
for N in ${PG_LINE_STATIONS:-1 2 4}; do
	rm -f "$work/go"
	pids=()
	for i in $(seq 1 "$N"); do
		"$build/tests/bench_line" --pg "$STATION_TEST_PG" --station "line$N-st$i" \
			--slowhsm "$build/fixtures/slowhsm/libslowhsm.so" -n "$n" -L "$L" -S "$S" \
			--go "$work/go" >"$work/st$i.out" 2>"$work/st$i.err" &
		pids+=($!)
	done
	# Every station has made its CSRs and opened its pool: start them together.
	for i in $(seq 1 "$N"); do
		for ((t = 0; t < 6000; t++)); do
			grep -q '^ready' "$work/st$i.out" && break
			kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { cat "$work/st$i.err" >&2; exit 1; }
			sleep 0.05
		done
	done
	touch "$work/go"
	for p in "${pids[@]}"; do
		wait "$p" || { cat "$work"/st*.err >&2; exit 1; }
	done
	pids=()
	cat "$work"/st*.out | awk -v N="$N" -v S="$S" -v L="$L" '
		$1 == "result" {
			ok += $5; if (start == "" || $7 < start) start = $7; if ($9 > end) end = $9
			ip50 += $11; ip99 = $13 > ip99 ? $13 : ip99
			rp50 += $15; rp99 = $17 > rp99 ? $17 : rp99; k++
		}
		END {
			rate = ok / (end - start); bound = N * S * 1000 / L
			printf "  %-2d %12.0f %12.0f %7.2f %10.1f/%-6.1f ms %10.1f/%-6.1f ms\n",
				N, rate, bound, rate / bound, ip50 / k, ip99, rp50 / k, rp99
		}'
done
echo "  (p50: the mean of the stations' medians; p99: the worst station's)"
