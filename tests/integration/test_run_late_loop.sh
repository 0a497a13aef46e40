#!/usr/bin/env bash
# A station whose loop is held up comes to a request's timer late, after the board's answer
# came in: libuv runs the timers that are due before it polls. The answer is taken for what
# it is; the board is not failed for an answer it gave in time, nor sent the request again.
# The loop is held up by a test fault hook (STATION_TEST_FAIL=slot.stall_after:TYPE:MS: the
# loop thread sleeps MS ms once, right after the first TYPE request is sent), with one try
# per request and a wait of 2 s for TYPE, shorter than the hold-up of 2.5 s, for WRITE and
# then for CSR (the other requests keep their default waits, so that a loaded machine's slow
# answer is not taken for the fault under test). A board that really does not answer still
# fails at its deadline (simboard's hang fault).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
needs_test_hooks
N=4
line_setup "retries:
  request: 1"
# with_wait NAME TYPE MS: $pki/NAME.yaml, run.yaml with a wait of MS for the requests TYPE.
with_wait() {
	{
		cat "$pki/run.yaml"
		printf 'timeouts:\n  %s: %s\n' "$2" "$3"
	} >"$pki/$1.yaml"
}

# late TYPE: N boards, the loop held up for 2.5 s after the first TYPE request: all pass,
# none with a retransmission; the hook's hold-up happened (the log says it was armed, and
# one board's run took longer than the hold-up).
late() {
	local type=$1 ev="$T/late-$1.jsonl"
	rm -rf "$LINE_DIR" "$pki/ledger.db"*
	start_simboard "$N" --seed 11
	with_wait "late-$type" "${type,,}" 2000
	STATION_TEST_FAIL="slot.stall_after:$type:2500" line_run_all "$pki/late-$type.yaml" "$ev" "$N"
	stop_simboard
	grep -q "test fault hook slot.stall_after:$type:2500 armed" "$ev.err" ||
		fail "$type: the hook was not armed: $(tail -3 "$ev.err")"
	jq -e -s '[.[] | select(.event == "pass") | .ms.total] | max > 2500' "$ev" >/dev/null ||
		fail "$type: no board was held up: $(jq -c -s '[.[] | select(.event == "pass") | .ms.total]' "$ev")"
	jq -e -s '[.[] | select(.event == "pass") | .retransmits] | add == 0' "$ev" >/dev/null ||
		fail "$type: a request was sent again: $(jq -c -s '[.[] | select(.event == "pass") | {slot, retransmits}]' "$ev")"
}
late WRITE
late CSR
ok "a loop held up past the deadline of one WRITE, then of one CSR: all $N boards pass, nothing sent again"

# The same waits with a board that never answers its WRITE: it fails at the deadline.
rm -rf "$LINE_DIR" "$pki/ledger.db"*
start_simboard 2 --seed 11 --fault hang=WRITE:board1
with_wait hang write 3000
rc=0
timeout 120 "$STATION" run -c "$pki/hang.yaml" --events "$T/hang.jsonl" --boards 2 --no-view \
	>"$T/hang.out" 2>"$T/hang.err" || rc=$?
[ "$rc" = 1 ] || fail "station run with a failed board: exit status $rc, expected 1: $(tail -3 "$T/hang.err")"
jq -e -s '[.[] | select(.event == "pass")] | length == 1' "$T/hang.jsonl" >/dev/null ||
	fail "board0 did not pass: $(grep -m2 '"event":"fail"' "$T/hang.jsonl")"
jq -e -s '[.[] | select(.event == "fail" and .slot == "board1" and .reason == "PROTO_TIMEOUT")] | length == 1' \
	"$T/hang.jsonl" >/dev/null || fail "board1 did not fail PROTO_TIMEOUT: $(grep -m2 '"event"' "$T/hang.jsonl")"
ok "a board that does not answer still fails at its deadline (PROTO_TIMEOUT)"
