#!/usr/bin/env bash
# The event stream never stalls the line: `station run --json` whose stdout is a FIFO that
# nobody reads (the reader hung) still provisions every board and ends, drops the events that
# do not fit its bounded buffer, and says how many in the log; every line that did get out is
# whole. With a reader that keeps up, nothing is dropped and the summary says 0. The same
# holds for --events naming a FIFO.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
# Enough boards that their events (~3 KB each) overflow the pipe (64 KiB) and the buffer.
N=48
line_setup "  events_buffer: 4096"
start_simboard "$N" --seed 5

# wait_exit PID LIMIT_S: waits for PID to end (a failure bound, not a synchronisation);
# fails when it is still running then.
wait_exit() {
	local pid=$1 limit=$2 i
	for ((i = 0; i < limit * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -TERM "$pid" 2>/dev/null || true
	fail "station run still running after ${limit} s: the event stream stalled it: $(tail -3 "$T/run.err")"
}

# delivered: rows of the ledger that are delivered.
delivered() {
	"$STATION" ledger -c "$pki/run.yaml" list --state delivered | tail -n +2 | wc -l
}

# stalled_fifo PATH: a FIFO with a reader (fd 8) that never reads until the test drains it.
stalled_fifo() {
	mkfifo "$1"
	exec 7<>"$1" # opens without waiting, so that the read end below does not wait either
	exec 8<"$1"
	exec 7>&-
}

# 1. --json on stdout, a FIFO nobody reads.
stalled_fifo "$T/out.fifo"
"$STATION" run -c "$pki/run.yaml" --json --boards "$N" --max-seconds 300 \
	>"$T/out.fifo" 2>"$T/run.err" &
pid=$!
wait_exit "$pid" 300
wait "$pid" || fail "station run failed: $(tail -5 "$T/run.err")"
[ "$(delivered)" -eq "$N" ] || fail "$(delivered) of $N boards delivered"
dropped=$(sed -n 's/.*events stdout: \([0-9]*\) events dropped in all.*/\1/p' "$T/run.err")
[ -n "$dropped" ] && [ "$dropped" -gt 0 ] ||
	fail "the log does not count the dropped events: $(grep events "$T/run.err")"
[ "$(grep -c 'the reader is not keeping up' "$T/run.err")" -eq 1 ] ||
	fail "the first drop is not logged once: $(grep events "$T/run.err")"
cat <&8 >"$T/got.jsonl"
exec 8<&-
[ -s "$T/got.jsonl" ] || fail "nothing reached the FIFO"
jq -c . "$T/got.jsonl" >/dev/null || fail "a line in the stream is torn"
ok "stdout stalled: all $N boards provisioned, $dropped events dropped and logged, $(wc -l <"$T/got.jsonl") whole lines got out"

# 2. --events naming a FIFO nobody reads: the same.
stop_simboard
rm -rf "$LINE_DIR" "$pki/ledger.db"*
start_simboard "$N" --seed 6
stalled_fifo "$T/events.fifo"
"$STATION" run -c "$pki/run.yaml" --events "$T/events.fifo" --no-view --boards "$N" \
	--max-seconds 300 >"$T/run.out" 2>"$T/run.err" &
pid=$!
wait_exit "$pid" 300
wait "$pid" || fail "station run --events FIFO failed: $(tail -5 "$T/run.err")"
[ "$(delivered)" -eq "$N" ] || fail "--events FIFO: $(delivered) of $N boards delivered"
grep -qE "^  events dropped: [1-9][0-9]* " "$T/run.out" ||
	fail "the printed summary does not count the dropped events: $(cat "$T/run.out")"
grep -qE "events $T/events.fifo: [1-9][0-9]* events dropped in all" "$T/run.err" ||
	fail "the log does not count the dropped events: $(grep events "$T/run.err")"
cat <&8 >/dev/null
exec 8<&-
ok "--events FIFO stalled: all $N boards provisioned, the drops counted"

# A FIFO without a reader at start: refused with the reason, not waited for.
mkfifo "$T/lonely.fifo"
expect_fail "--events naming a FIFO nobody reads" "events file .*lonely.fifo: a FIFO that nobody reads" \
	"$STATION" run -c "$pki/run.yaml" --events "$T/lonely.fifo" --no-view --boards 1

# 3. A reader that keeps up: nothing dropped.
stop_simboard
rm -rf "$LINE_DIR" "$pki/ledger.db"*
start_simboard "$N" --seed 7
line_config "$pki/fast.yaml" <<YAML
station: test-station
slots:
  - board_map: $LINE_DIR/map.yaml
pool:
  workers: 2
YAML
"$STATION" run -c "$pki/fast.yaml" --json --boards "$N" --max-seconds 300 2>"$T/run.err" |
	cat >"$T/all.jsonl" || fail "station run with a reader failed: $(tail -5 "$T/run.err")"
[ "$(grep -c '"event":"pass"' "$T/all.jsonl")" -eq "$N" ] ||
	fail "with a reader: $(grep -c '"event":"pass"' "$T/all.jsonl") of $N pass events"
tail -1 "$T/all.jsonl" | jq -e '.event == "summary" and .events_dropped == 0 and .passed == '"$N" >/dev/null ||
	fail "with a reader: summary $(tail -1 "$T/all.jsonl")"
if grep -q "dropped" "$T/run.err"; then fail "with a reader, events were dropped: $(grep dropped "$T/run.err")"; fi
ok "with a reader: all $N pass events and the summary arrive, none dropped"
echo "all passed"
