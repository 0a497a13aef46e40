#!/usr/bin/env bash
# HSM outage during a run: the SoftHSM2 token disappears under the running station (the
# module is re-initialised and the token is gone) and comes back later. Signing pauses
# visibly, no board is failed for it, and every board finishes once the token is back.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
needs_test_hooks
N=8
line_setup
# Paced boards: the first CSR reaches the pool well after the boards have said hello.
start_simboard "$N" --seed 9 --baud 9600
ev="$T/events.jsonl"
: >"$ev"
# The signer's fault hook: before its first signature the module loses all state, as when an
# HSM is reset or unplugged; the token directory is moved away by then.
STATION_TEST_FAIL=signer.finalize:1 "$STATION" run -c "$pki/run.yaml" --events "$ev" --no-view \
	--boards "$N" --max-seconds 300 >"$T/run.out" 2>"$T/run.err" &
pid=$!
wait_for_line "$ev" '"to":"hello"' 60 "$pid" || fail "no board said hello: $(tail "$T/run.err")"
mv "$pki/tokens" "$pki/tokens.away"
wait_for_line "$ev" '"event":"pool".*"paused":true' 120 "$pid" ||
	fail "signing did not pause: $(tail "$T/run.err")"
ok "signing paused while the token is gone: $(grep -m1 '"paused":true' "$ev" | grep -o '"reason":"[^"]*"')"
# While paused, boards wait in the queue: none fails. Let the retry loop run a few rounds.
wait_for_line "$ev" '"to":"queued"' 60 "$pid" || fail "no board queued"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed during the outage: $(grep -m1 '"event":"fail"' "$ev")"; fi
mv "$pki/tokens.away" "$pki/tokens"
wait "$pid" || fail "station run: $(tail -20 "$T/run.err")"
grep -q '"event":"pool".*"paused":false' "$ev" || fail "signing never resumed"
[ "$(grep -c '"event":"pass"' "$ev")" = "$N" ] || fail "$(grep -c '"event":"pass"' "$ev") of $N passed"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed: $(grep -m1 '"event":"fail"' "$ev")"; fi
ok "signing resumed when the token came back; all $N boards passed, none failed"
"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
echo "all passed"
