#!/usr/bin/env bash
# A slot whose line carries bytes but no frame says what it sees once the limit (timeouts:
# no_frame) has passed, instead of waiting without a word: in its note on the view, once in
# the log, and in an event, with the byte rate and what the bytes suggest. Nobody's board is
# failed for it. Four fixtures:
#  - a board at another rate than the line's (simboard --strict-baud): garbled chatter;
#  - a board whose agent is not running (hang) that floods its console: text only;
#  - a board that answers with wrong sequence numbers: frames, none an answer;
#  - a board that floods its console but runs the agent: provisioned, no word about its line.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
command -v tmux >/dev/null || fail "tmux is not installed (tests/lib/deps.sh lists it)"
SIM2=
tm() {
	tmux -S "$T/tmux.sock" "$@"
}
line_cleanup() {
	[ ! -s "$T/station.pid" ] || kill -TERM "$(cat "$T/station.pid")" 2>/dev/null || true
	tm kill-server 2>/dev/null || true
	[ -z "$SIM2" ] || kill -TERM "$SIM2" 2>/dev/null || true
}

line_setup
line_config "$pki/noframe.yaml" <<EOF
station: test-station
slots:
  - board_map: $T/line/map.yaml
  - board_map: $T/slow/map.yaml
timeouts:
  no_frame: 7000
outputs:
  console_dir: $T/consoles
EOF
start_simboard 3 --seed 41 --fault hang:board0 --fault babble=50:board0,board2 \
	--fault bad-seq:board1
# A board whose UART is at 57600 on a line the station opens at 115200.
exec 4< <(exec "$SIMBOARD" --dir "$T/slow" --boards 1 "${SIM_OPTS[@]}" --name-prefix slow --baud 57600 \
	--strict-baud --fault babble=50 --seed 42)
SIM2=$!
read -r -t 60 -u 4 line || fail "the second simboard did not start"
case $line in "simboard: ready: 1 boards"*) ;; *) fail "simboard: $line" ;; esac
cat <&4 >>"$T/simboard2.log" &

# The station in a terminal wide enough for the whole note.
tm new-session -d -s v -x 220 -y 30 "env -u NO_COLOR PS1='$ ' bash --norc --noprofile"
tm send-keys -t v -l "bash -c 'echo \$\$ >$T/station.pid; exec $STATION run -c $pki/noframe.yaml --events $T/ev.jsonl 2>$T/run.err'; echo \"exit status \$?\""
tm send-keys -t v Enter

# wait_for WHAT CHECK...: polls until CHECK succeeds (bounded), the station still running.
wait_for() {
	local what=$1 i
	shift
	for ((i = 0; i < 1200; i++)); do
		# Whether it had exited before the check: then the check had its chance.
		tm capture-pane -t v -p -J >"$T/before"
		"$@" && return 0
		grep -q "^exit status" "$T/before" && fail "station exited: $(tail -5 "$T/run.err")"
		sleep 0.05
	done
	fail "timed out waiting for $what: $(tail -5 "$T/run.err")"
}
said() {
	grep -q "\"event\":\"line\",\"station\":\"test-station\",\"slot\":\"$1\",\"status\":\"no_frame\"" \
		"$T/ev.jsonl" 2>/dev/null
}
# The slot's note on the view, with the seconds without a frame grown well past the first
# word: the slot kept watching (and could have said it again) for a while.
noted_long() {
	tm capture-pane -t v -p -J >"$T/screen"
	grep -qE "^$1 +waiting .*no frame for (1[0-9]|[2-9][0-9]|[1-9][0-9][0-9]+) s, [0-9]+ bytes/s: $2" "$T/screen"
}
for slot in slow0 board0 board1; do
	wait_for "$slot's event" said $slot
done
wait_for "board2 to pass" grep -q '"event":"pass".*"slot":"board2"' "$T/ev.jsonl"
wait_for "slow0's note" noted_long slow0 "garbled: wrong baud rate\?"
wait_for "board0's note" noted_long board0 "console text only: agent not running\?"
wait_for "board1's note" noted_long board1 "answers with wrong seq"
cp "$T/screen" "$T/screen-notes.txt"
ok "the view's notes: seconds without a frame, the byte rate, the likely cause"
kill -TERM "$(cat "$T/station.pid")"
stopped() {
	tm capture-pane -t v -p -J >"$T/screen"
	grep -q "^exit status 0" "$T/screen"
}
wait_for "the station to stop" stopped
: >"$T/station.pid"

# event SLOT FIELD: the slot's no_frame event's field.
event() {
	jq -r "select(.event == \"line\" and .slot == \"$1\" and .status == \"no_frame\") | .$2" "$T/ev.jsonl"
}
for slot in slow0 board0 board1; do
	[ "$(event $slot bytes | wc -l)" = 1 ] || fail "$slot: more than one event"
	[ "$(grep -c "slot $slot: .* and no valid frame" "$T/run.err")" = 1 ] ||
		fail "$slot: not said once in the log: $(grep "slot $slot:" "$T/run.err")"
	awk -v r="$(event $slot bytes_per_s)" -v s="$(event $slot seconds)" \
		'BEGIN { exit !(r > 0 && s >= 7) }' || fail "$slot: rate or time: $(grep "\"$slot\",\"status\":\"no_frame" "$T/ev.jsonl")"
done
case $(event slow0 detail) in *"likely a wrong baud rate (the line is at 115200)"*) ;;
*) fail "slow0: $(event slow0 detail)" ;; esac
case $(event board0 detail) in *"console text only: is the board's provisioning agent running?"*) ;;
*) fail "board0: $(event board0 detail)" ;; esac
case $(event board1 detail) in *"answers to requests the station never made (wrong seq)"*) ;;
*) fail "board1: $(event board1 detail)" ;; esac
grep -q "slot slow0: [0-9]* bytes in [0-9]* s ([0-9]* bytes/s) and no valid frame: .*likely a wrong baud rate" \
	"$T/run.err" || fail "slow0's log line: $(grep 'slot slow0' "$T/run.err")"
ok "each silent-but-noisy line said what it sees once, in the log and an event"

if grep -q '"event":"fail"' "$T/ev.jsonl"; then fail "a board failed: $(grep '"event":"fail"' "$T/ev.jsonl")"; fi
if jq -e 'select(.event == "line" and .slot == "board2")' "$T/ev.jsonl" >/dev/null; then
	fail "board2 (frames among its console flood) was reported"
fi
grep '"event":"summary"' "$T/ev.jsonl" | has '"boards":1,"passed":1,"failed":0' ||
	fail "summary: $(grep summary "$T/ev.jsonl")"
ok "no board failed; a chatty board that answers is provisioned without a word about its line"
echo "all passed"
