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
cmake --build "$build" -j"$(nproc)" --target bench_issue bench_http station simboard slowhsm \
	bench_ledger bench_line bench_codec -- --no-print-directory >/dev/null

echo "== issuance (tests/bench/bench_issue.c)"
"$build/tests/bench_issue" "$@"

# The ledger on this machine's disk: rows/s by batch size, fsynced, and the CPU a row costs
# the ledger thread (one commit per batch; the station's grouping at 64 slots is about two
# boards a commit).
echo "== ledger: SQLite by batch size (tests/bench/bench_ledger.c)"
"$build/tests/bench_ledger" "$build" 3000

echo "== frame codec (tests/bench/bench_codec.c)"
"$build/tests/bench_codec"

# One round each at 1, 8 and 128 keep-alive connections: registrations/s against CPUs x the
# crypto-only rate (and, for one connection, against its latency floor: two fsynced ledger
# commits and the crypto, timed in the same run), the server's CPU per registration as a
# multiple of the crypto-only CPU split by thread, ledger commits per registration. Each
# round's bound is the mean of the crypto-only bounds measured just before and just after
# it: on this shared machine the bound alone moves by a fifth within seconds.
# BENCH_HTTP_ARGS: e.g. "-n 5000 -c 1,8,128 --softhsm"
echo "== registration API over loopback HTTP (tests/bench/bench_http.c)"
# shellcheck disable=SC2086
"$build/tests/bench_http" ${BENCH_HTTP_ARGS:--n 2000 -c 1,8,128}

# Instructions a registration and a board, by thread, over the bound's (callgrind): figures
# that do not move with the machine's load, but leave the kernel out. BENCH_INSTR=0 skips it.
if [ "${BENCH_INSTR:-1}" != 0 ]; then
	echo "== instructions by thread (tests/bench/instructions.sh, callgrind)"
	bash "$STATION_SRC/tests/bench/instructions.sh" "$build" || true
fi

# A line of stations on one PostgreSQL ledger, a server of its own (tests/lib/pg.sh): the
# ledger alone on PostgreSQL against SQLite, batch 1 and 32; N = 1, 2, 4 stations each with
# an emulated HSM of 20 ms and 4 sessions, the line's signatures/s against N x S/L (>= 0.9
# at N = 4) and commit latencies p50/p99 (tests/bench/pg_line.sh). BENCH_PG=0 skips it.
if [ "${BENCH_PG:-1}" != 0 ]; then
	bash "$STATION_SRC/tests/lib/pg.sh" run bash "$STATION_SRC/tests/bench/pg_line.sh" "$build" ||
		true
fi

# `station bench`: the whole station against simulated boards (station/cli/cmd_bench.c). Set
# BENCH_STATION=0 to skip it; BENCH_RESULTS names where its JSON and plots go (default
# $build/bench-results). Each configuration is one of the product's bars:
#  - paced at 115200 baud, 1 to 256 slots: throughput against the wire bound (>= 0.95 at 256);
#  - the same line with the boards switched to 921600 (max_baud): the speed-up over that bound;
#  - 16 slots whose answers leave 16 ms late (a USB adapter's latency timer), boards of
#    protocol versions 2 to 8, and 5 to 8 with frames of 4096 bytes (two files a WRITE in
#    version 6, a WRITE sent behind another in version 7, BOOT standing for HELLO in
#    version 8): what the round trips and bytes cost; then 16 ms against 1 ms (the
#    low-latency mode the station asks serial ports for) and none;
#  - 1024 slots paced at 115200: throughput against the wire bound (>= 0.95), with the
#    station's and simboard's CPU per board, the station's requests, turns and port
#    writes a board, and the boards' waits for the station by what they said before
#    (BOOT, CSR, WRITE, the proof); then boards of version 7 against version 8, interleaved;
#  - 8 and 1024 slots: RSS per added slot (<= 64 KiB);
#  - unpaced, 64 and 256 slots, file key and SoftHSM2: issuance per core against the
#    crypto-only bound (>= 0.6); the station's CPU per board over the bound with the board's
#    proof-of-possession verify counted in it, split by thread, with simboard's CPU per board;
#    bytes per board over the protocol's minimum; ledger commits per board; then boards of
#    frames of 4096 bytes, version 5 against version 6, interleaved;
#  - 16 slots paced at 115200 with an HSM of 50 ms a signature: against the wire bound (the
#    files that need no certificate go while it is signed);
#  - an emulated HSM of 20 ms a signature and 4 sessions: signatures/s against S/L (>= 0.9).
if [ "${BENCH_STATION:-1}" != 0 ]; then
	results=${BENCH_RESULTS:-$build/bench-results}
	mkdir -p "$results"
	rounds=${BENCH_ROUNDS:-3}
	st="$build/station/station"
	echo "== station bench: paced at 115200 baud (wire bound)"
	"$st" bench --slots 1,16,64,256 --boards-per-slot 4 --baud 115200 --rounds "$rounds" -q \
		--json "$results/paced.json" --plot "$results/paced.png" || true
	echo "== station bench: starting at 115200, switched to 921600 with BAUD (max_baud)"
	"$st" bench --slots 16,64 --boards-per-slot 4 --baud 115200 --max-baud 921600 -q \
		--rounds "$rounds" --json "$results/maxbaud.json" || true
	# Round trips on a real line: a USB-serial adapter holds a board's answer up to its
	# latency timer (often 16 ms). Boards of protocol version 2 (10 requests a board),
	# version 3 (8), version 4 (7), version 5 (7, fewer bytes), version 6 (7 with frames of
	# 1024 bytes), version 7 (7 requests in 5 turns) and version 8 (6 in 4: the BOOT of a
	# board that boots while the station watches stands for HELLO's answer), then versions 5
	# to 8 with frames of 4096 (7, 5, 5 and 4), each answer 16 ms late, in interleaved rounds.
	echo "== station bench: paced at 115200, answers 16 ms late (a USB adapter's latency" \
		"timer): boards of protocol versions 2 to 8, and 5 to 8 with frames of 4096" \
		"bytes, interleaved"
	for ((r = 1; r <= rounds; r++)); do
		for vf in 2:1024 3:1024 4:1024 5:1024 6:1024 7:1024 8:1024 5:4096 6:4096 7:4096 8:4096; do
			IFS=: read -r v f <<<"$vf"
			printf 'round %d, version %d, frames of %d: ' "$r" "$v" "$f"
			"$st" bench --slots 16 --boards-per-slot 4 --baud 115200 --board-protocol "$v" \
				--board-frame "$f" --turnaround 16 -q \
				--json "$results/turnaround-v$v-f$f-$r.json" |
				grep -E '^ +16 ' || echo "failed"
		done
	done
	echo "(columns as in the tables below: slots, boards, boards/h, wire bound/h, ratio," \
		"p50/p95/p99 ms, ...)"
	# What the low-latency mode the station asks serial ports for is worth: an FTDI adapter's
	# timer at 16 ms (its default) against 1 ms (the mode), and no wait at all, version 8
	# with frames of 1024, in interleaved rounds.
	echo "== station bench: paced at 115200, version 8, answers 16 ms late against 1 ms (an" \
		"adapter in low-latency mode) and none, interleaved"
	for ((r = 1; r <= rounds; r++)); do
		for t in 16 1 0; do
			printf 'round %d, answers %2d ms late: ' "$r" "$t"
			"$st" bench --slots 16 --boards-per-slot 4 --baud 115200 --turnaround "$t" -q \
				--json "$results/latency-$t-$r.json" | grep -E '^ +16 ' || echo "failed"
		done
	done
	# 1,024 slots paced: the line's throughput against the wire bound, with the station's and
	# simboard's CPU per board (on a machine with few CPUs the two share them), and what the
	# turns add to a board's time over its bytes. Twelve boards a slot: with four, the
	# steady window (after every slot has its first board, before the last ones end) is
	# about a second and its figure moves by a third from round to round.
	echo "== station bench: 1024 slots paced at 115200, twelve boards a slot (wire bound," \
		"both processes' CPU per board, turns)"
	"$st" bench --slots 1024 --boards-per-slot 12 --baud 115200 --rounds "$rounds" \
		--json "$results/paced-1024.json" |
		grep -E '^ +(cpu|wire|limited by|throughput|turns|port|machine) | +after BOOT |x \(crypto|simboard \(|^ +1024 |^ slots' || true
	# The same line of boards of version 7 (4 or 5 turns a board: a WRITE sent behind another)
	# against version 8 (one fewer: no HELLO after BOOT), in interleaved rounds of one each.
	echo "== station bench: 1024 slots paced at 115200, twelve boards a slot, version 7" \
		"against version 8, interleaved"
	for ((r = 1; r <= rounds; r++)); do
		for v in 7 8; do
			echo "round $r, version $v:"
			"$st" bench --slots 1024 --boards-per-slot 12 --baud 115200 --board-protocol "$v" \
				--json "$results/paced-1024-v$v-$r.json" |
				grep -E '^ +(throughput|turns|port|machine) | +after BOOT |^ +1024 ' || echo "failed"
		done
	done
	echo "== station bench: memory at 8 and 1024 slots"
	"$st" bench --slots 8,1024 --baud 115200 -q --json "$results/rss.json" || true
	for signer in file softhsm; do
		# Every run's block: the CPU per board with its per-thread split, bytes over the
		# minimum, commits per board.
		echo "== station bench: unpaced, 64 and 256 slots, $signer (issuance per core, CPU" \
			"per board over the bound, bytes over the minimum)"
		"$st" bench --slots 64,256 --boards-per-slot 8 --baud 0 --signer "$signer" \
			--rounds "$rounds" --json "$results/unpaced-$signer.json" || true
	done
	# Boards of frames of 4096 bytes: version 6 takes two files a WRITE (5 round trips a
	# board, 7 for version 5). Interleaved rounds of one each; the medians' lines.
	echo "== station bench: unpaced, 64 and 256 slots, file key, frames of 4096 bytes:" \
		"version 5 against version 6, interleaved"
	for ((r = 1; r <= rounds; r++)); do
		for v in 5 6; do
			echo "round $r, version $v:"
			"$st" bench --slots 64,256 --boards-per-slot 8 --baud 0 --signer file \
				--board-protocol "$v" --board-frame 4096 \
				--json "$results/unpaced-4096-v$v-$r.json" |
				grep -E '^ +(64|256) +[0-9]+ +[0-9]+ |station CPU/board =' || echo "failed"
		done
	done
	# An HSM whose signature takes 50 ms on a line paced at 115200: the files that do not
	# hold the certificate (root.crt, sota.toml) go while it is signed, so the line stays
	# near its wire bound.
	echo "== station bench: paced at 115200 with an emulated HSM of 50 ms a signature, 4" \
		"sessions (wire bound)"
	"$st" bench --slots 16 --boards-per-slot 4 --baud 115200 --signer slowhsm:L=50,S=4 \
		--rounds "$rounds" -q --json "$results/paced-slowhsm.json" || true
	echo "== station bench: emulated HSM, 20 ms a signature, 4 sessions (S/L)"
	"$st" bench --slots 128 --boards 400 --baud 0 --signer slowhsm:L=20,S=4 \
		--rounds "$rounds" -q --json "$results/slowhsm.json" || true
	echo "JSON and plots in $results"
fi

# The operator console at 1,024 slots in chromium: whether a page keeps up with a line at
# full speed (BENCH_CONSOLE=0 skips it).
if [ "${BENCH_CONSOLE:-1}" != 0 ]; then
	echo "== operator console: 1024 slots, unpaced, one page in chromium"
	bash "$STATION_SRC/tests/bench/bench_console.sh" "$build" || true
fi
