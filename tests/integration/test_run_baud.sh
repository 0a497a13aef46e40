#!/usr/bin/env bash
# The line's rate (BAUD): with max_baud set, the station switches each board to the fastest
# rate both allow, greets it at the new rate and carries on there. simboard (--strict-baud)
# garbles bytes whenever the two ends of a PTY are at different rates, so a station that
# switched alone, or stayed behind, would fail its boards. A board whose UART cannot really do the new rate
# (simboard's baud fault) gets no good frame at it: both sides fall back to the old rate
# and the board passes there. A board that loses power mid-write reboots at the starting rate:
# the station hears bytes that make no sense at the new rate and greets it at the starting
# one. When a fixture gets its next board (simboard --total), that board talks at the
# starting rate again and the station finds it there. A board that hangs at the new rate is
# tried once at the starting rate, then fails as hung. Without max_baud nothing is switched.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=5
TOTAL=8      # boards put in; board4's hangs, so the others' fixtures take the swaps
PASSES=7
line_setup
# A new rate is tried for 5 s (2 s by default), so that a loaded machine's slow answer at
# the new rate is not taken for a board that cannot do it.
line_config "$pki/baud.yaml" <<YAML
station: test-station
slots:
  - board_map: $LINE_DIR/map.yaml
    max_baud: 921600
pool:
  workers: 2
timeouts:
  baud_trial: 5000
YAML

# A fastest rate below the starting one is a configuration mistake.
line_config "$pki/bad.yaml" <<YAML
slots:
  - board_map: $LINE_DIR/map.yaml
    baud: 115200
    max_baud: 9600
YAML
expect_fail "max_baud below baud refused" "bad.yaml:[0-9]+:[0-9]+: 'max_baud' is 9600, below the line's starting rate 115200" \
	"$STATION" run -c "$pki/bad.yaml" --no-view

start_simboard "$N" --seed 5 --baud 115200 --bauds 115200,460800,921600 --strict-baud --fault baud:board2 \
	--fault power-loss:board3 --fault hang=WRITE:board4 \
	--total "$TOTAL"
if timeout 300 "$STATION" run -c "$pki/baud.yaml" --events "$T/events.jsonl" --boards "$TOTAL" \
	--no-view >"$T/run.out" 2>"$T/run.err"; then
	fail "station run exited 0 although board4 failed"
fi
ev="$T/events.jsonl"
[ "$(grep -c '"event":"pass"' "$ev")" = "$PASSES" ] ||
	fail "$(grep -c '"event":"pass"' "$ev") of $PASSES boards passed: $(grep -m3 '"event":"fail"' "$ev")"
grep '"event":"fail"' "$ev" | grep '"slot":"board4"' | has '"reason":"PROTO_TIMEOUT"' ||
	fail "board4 did not fail as hung: $(grep '"event":"fail"' "$ev")"
grep -q "board4.*no answer to WRITE at 921600 baud after [0-9]* tries; trying the board at 115200" "$T/run.err" ||
	fail "board4 was not tried at the starting rate: $(grep board4 "$T/run.err" | tail -3)"
# Every board of board2's fixture stayed at 115200, board3's finished there after their
# reboot; every other one went to 921600.
pass_ev() { grep '"event":"pass"' "$ev"; }
slow=$(pass_ev | grep -c '"slot":"board[23]".*"baud":115200') || true
fast=$(pass_ev | grep -v '"slot":"board[23]"' | grep -c '"baud":921600') || true
b23=$(pass_ev | grep -c '"slot":"board[23]"') || true
[ "$b23" -ge 2 ] && [ "$slow" = "$b23" ] && [ "$fast" = $((PASSES - b23)) ] ||
	fail "rates: board2/3 $slow of $b23 at 115200, others $fast of $((PASSES - b23)) at 921600: $(pass_ev | grep -o '"slot":"[a-z0-9]*"\|"baud":[0-9]*' | paste -sd' ')"
grep '"event":"pass"' "$ev" | grep '"slot":"board3"' | has '"resyncs":[1-9]' ||
	fail "board3 did not reboot mid-run: $(grep '"slot":"board3"' "$ev" | grep pass)"
grep -q "board3.*bytes at another rate" "$T/run.err" ||
	fail "board3's reboot was not heard as bytes at another rate: $(grep board3 "$T/run.err" | tail -3)"
sim_logged 'board2.*baud fallback to 115200' ||
	fail "board2 did not fall back: $(grep board2 "$T/simboard.log" | tail -5)"
# Both sides kept to the trial the configuration sets: a board of board2's fixture passes
# only after its 5 s at the new rate have run out.
jq -e -s '[.[] | select(.event == "pass" and .slot == "board2") | .ms.total] | length > 0 and min > 5000' \
	"$ev" >/dev/null || fail "board2's boards did not wait out a trial of 5 s: $(grep '"event":"pass"' "$ev" | grep '"slot":"board2"')"
if grep -v 'board2' "$T/simboard.log" | has 'baud fallback'; then
	fail "a board that can do the new rate fell back: $(grep 'baud fallback' "$T/simboard.log")"
fi
# The fixtures' next boards started at 115200 and were found (swaps happened).
sim_logged 'swapped: new board' $((TOTAL - N)) ||
	fail "no boards were swapped in: $(tail -5 "$T/simboard.log")"
ok "BAUD: $((PASSES - b23)) boards switched to 921600, board2's fixture fell back to 115200, board3's rebooted to it; new boards found at the starting rate; board4 hung and failed after one try at 115200"

for i in $(seq 0 $((N - 2))); do  # not board4: it hung
	"$SIMBOARD" verify "$T/line/board$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "simboard verify board$i: $(cat "$T/verify.out")"
done
"$STATION" ledger -c "$pki/baud.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "$TOTAL rows, $TOTAL certificates verified" "$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
ok "boards' files verify, ledger check: $TOTAL certificates (board4's too: signed before it hung)"
stop_simboard

# Without max_baud the line stays at its starting rate.
LINE_DIR=$T/line2
sed "s#$T/line/map.yaml#$LINE_DIR/map.yaml#" "$pki/run.yaml" >"$pki/plain.yaml"
start_simboard 2 --seed 6 --baud 115200 --bauds 115200,921600 --strict-baud
timeout 120 "$STATION" run -c "$pki/plain.yaml" --events "$T/plain.jsonl" --boards 2 --no-view \
	>"$T/plain.out" 2>"$T/plain.err" || fail "station run (no max_baud) failed: $(tail -20 "$T/plain.err")"
[ "$(grep '"event":"pass"' "$T/plain.jsonl" | grep -c '"baud":115200')" = 2 ] ||
	fail "without max_baud: $(grep '"event"' "$T/plain.jsonl" | grep -o '"baud":[0-9]*' | paste -sd' ')"
ok "without max_baud: no switch"
