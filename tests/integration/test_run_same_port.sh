#!/usr/bin/env bash
# Two slots whose names lead to one device (a second link to a board's port, as a glob that
# matches both a by-path link and its ttyUSB node would give): the slot that opens it second
# does not use it, says which slot has it, and waits; the board passes once, with one
# certificate, and nothing fails. Without the guard both slots talk to the board and take
# each other's answers.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
start_simboard 2 --seed 5
mkdir -p "$T/ports"
ln -s "$LINE_DIR/board0/tty" "$T/ports/a"
ln -s "$LINE_DIR/board0/tty" "$T/ports/b"
ln -s "$LINE_DIR/board1/tty" "$T/ports/c"
line_config "$pki/same.yaml" <<YAML
station: test-station
slots:
  - port: $T/ports/a
    name: A
  - port: $T/ports/b
    name: B
  - port: $T/ports/c
    name: C
pool:
  workers: 2
YAML
ev="$T/events.jsonl"
timeout 120 "$STATION" run -c "$pki/same.yaml" --events "$ev" --boards 2 --no-view \
	>"$T/run.out" 2>"$T/run.err" || fail "station run failed: $(tail -20 "$T/run.err")"
grep -E "slot [AB]: $T/ports/[ab] is the device slot [AB] has open \($T/ports/[ab]\): two names of one port" \
	"$T/run.err" | has . || fail "no word of the second name of one port: $(cat "$T/run.err")"
[ "$(grep -c 'two names of one port' "$T/run.err")" = 1 ] ||
	fail "said more than once: $(grep 'two names' "$T/run.err")"
[ "$(grep -c '"event":"pass"' "$ev")" = 2 ] || fail "not 2 passes: $(grep -E '"event":"(pass|fail)"' "$ev")"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed: $(grep '"event":"fail"' "$ev")"; fi
grep '"event":"pass"' "$ev" | has '"slot":"C"' || fail "board1's slot C did not pass"
[ "$(sqlite3 "$pki/ledger.db" "SELECT count(*) FROM certificates WHERE state <> 'failed'")" = 2 ] ||
	fail "the ledger does not hold 2 certificates"
ok "two names of one port: one slot uses it, the other says so and waits; 2 boards, 2 certificates"
