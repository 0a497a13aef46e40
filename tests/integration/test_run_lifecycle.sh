#!/usr/bin/env bash
# `station run` over its life: slots that appear with their ports (a glob rescanned while
# running), SIGHUP reloading the profiles, SIGTERM with boards in the middle of their files
# (abandoned safely, then resumed by the next run with the certificates already recorded),
# --max-seconds.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
STPID=
line_cleanup() {
	[ -z "$STPID" ] || kill -9 "$STPID" 2>/dev/null
}

# wait_for FILE PATTERN COUNT: until FILE has COUNT lines matching PATTERN (bounded).
wait_for() {
	local rc=0
	wait_for_line "$1" "$2" 60 "$STPID" "$3" || rc=$?
	[ "$rc" != 2 ] || fail "station exited early: $(tail -5 "$T/st.err")"
	[ "$rc" = 0 ] || fail "timed out waiting for $3 × /$2/ in $1"
}

line_setup
line_config "$pki/glob.yaml" <<EOF
slots:
  - glob: $T/line/*/tty
    name: "{parent}"
timeouts:
  rescan: 200
EOF

# The station starts with no port at all; the boards' ports appear while it runs.
"$STATION" run -c "$pki/glob.yaml" --events "$T/ev1.jsonl" --boards 6 --no-view \
	>"$T/st.out" 2>"$T/st.err" &
STPID=$!
wait_for "$T/st.err" "0 slots" 1
start_simboard 6 --seed 5
wait "$STPID" || fail "glob run: $(tail -5 "$T/st.err")"
STPID=
[ "$(grep -c '"event":"pass"' "$T/ev1.jsonl")" = 6 ] || fail "not 6 passes after the ports appeared"
for i in 0 1 2 3 4 5; do
	grep -q "\"event\":\"pass\",\"station\":\"[^\"]*\",\"slot\":\"board$i\"" "$T/ev1.jsonl" ||
		fail "no pass on slot board$i (named by {parent})"
done
ok "glob slots appeared with their ports; 6 boards passed"

# SIGHUP reloads the profiles; SIGTERM with nothing in flight ends cleanly, status 0.
"$STATION" run -c "$pki/glob.yaml" --events "$T/ev2.jsonl" --no-view >"$T/st.out" 2>"$T/st.err" &
STPID=$!
wait_for "$T/ev2.jsonl" '"event":"pass"' 6
kill -HUP "$STPID"
wait_for "$T/ev2.jsonl" '"event":"reload"' 1
grep -q "SIGHUP: 1 profiles reloaded" "$T/st.err" || fail "no reload notice: $(cat "$T/st.err")"
kill -TERM "$STPID"
wait "$STPID" || fail "SIGTERM: exit status $?"
STPID=
grep '"event":"summary"' "$T/ev2.jsonl" | has '"reused":6,.*"stop_reason":"SIGTERM"' ||
	fail "summary after SIGTERM: $(grep summary "$T/ev2.jsonl")"
ok "SIGHUP reloads the profiles; SIGTERM ends the run with status 0"
stop_simboard

# Boards paced at 9600 baud take seconds for their files: stop the station while they are
# being written. They are abandoned, not failed; their certificates are in the ledger already,
# and the next run delivers those same certificates.
line_config "$pki/slow.yaml" <<EOF
slots:
  - board_map: $T/slow/map.yaml
EOF
LINE_DIR=$T/slow
start_simboard 4 --seed 5 --baud 9600
"$STATION" run -c "$pki/slow.yaml" --events "$T/ev3.jsonl" --no-view >"$T/st.out" 2>"$T/st.err" &
STPID=$!
wait_for "$T/ev3.jsonl" '"to":"signed"' 4
kill -TERM "$STPID"
wait "$STPID" || fail "SIGTERM mid-write: exit status $?"
STPID=
[ "$(grep -c '"event":"abandoned".*"reason":"ENGINE_STOPPING"' "$T/ev3.jsonl")" = 4 ] ||
	fail "not 4 boards abandoned: $(grep -c abandoned "$T/ev3.jsonl")"
if grep -q '"event":"fail"' "$T/ev3.jsonl"; then fail "a board failed on SIGTERM"; fi
"$STATION" ledger -c "$pki/slow.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "10 rows, 10 certificates verified" "$T/check.out" || fail "ledger (6 + 4 rows): $(cat "$T/check.out")"
ok "SIGTERM mid-write: 4 boards abandoned (not failed), their certificates recorded"
# The operator learns which fixtures to leave alone: the log and the summary name each slot
# abandoned and its state, in lines of 80 columns at most; so does the summary event.
for i in 0 1 2 3; do
	grep -qE "^  (abandoned \(resumed on their next run\):)? .*board$i \((write|commit|verify)\)" "$T/st.out" ||
		fail "the summary does not name board$i: $(cat "$T/st.out")"
	grep -q "abandoned 4 boards in flight.*board$i (" "$T/st.err" || fail "the log does not name board$i"
done
if awk 'length($0) > 80' "$T/st.out" | has .; then
	fail "a summary line is wider than 80 columns: $(awk 'length($0) > 80' "$T/st.out")"
fi
grep '"event":"summary"' "$T/ev3.jsonl" |
	jq -e '[.abandoned_slots[].slot] | sort == ["board0", "board1", "board2", "board3"]' >/dev/null ||
	fail "summary event: $(grep summary "$T/ev3.jsonl")"
ok "the abandoned slots are named in the log, the summary and the summary event"

timeout 300 "$STATION" run -c "$pki/slow.yaml" --events "$T/ev4.jsonl" --until-idle --no-view \
	>"$T/st.out" 2>"$T/st.err" || fail "resuming run: $(tail -5 "$T/st.err")"
[ "$(grep -c '"event":"pass".*"reused":true' "$T/ev4.jsonl")" = 4 ] ||
	fail "the abandoned boards did not get their recorded certificates"
for i in 0 1 2 3; do
	"$SIMBOARD" verify "$T/slow/board$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "board$i: $(cat "$T/verify.out")"
done
"$STATION" ledger -c "$pki/slow.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "10 rows, 10 certificates verified" "$T/check.out" || fail "a second certificate was signed"
ok "the next run delivered the recorded certificates; boards verified; nothing signed twice"

# --max-seconds ends an idle run.
timeout 60 "$STATION" run -c "$pki/slow.yaml" --events "$T/ev5.jsonl" --max-seconds 0.5 --no-view \
	>"$T/st.out" 2>"$T/st.err" || fail "--max-seconds: $(tail -3 "$T/st.err")"
grep '"event":"summary"' "$T/ev5.jsonl" | has '"stop_reason":"--max-seconds reached"' ||
	fail "--max-seconds summary: $(grep summary "$T/ev5.jsonl")"
ok "--max-seconds"

stop_simboard
echo "all passed"
