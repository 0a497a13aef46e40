#!/usr/bin/env bash
# Backpressure: a signing pool with room for one request (pool.queue_max: 1) while the HSM
# is away. Every board reaches the queue; one is in the pool, the others wait for room.
# When the token is back, each of them gets in only when the pool says there is room again
# (st_pool_set_room_cb), and every board passes.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
needs_test_hooks
N=6
line_setup
sed -i 's/^pool:$/pool:\n  queue_max: 1/' "$pki/run.yaml"
run_hsm_away "$N" 4
line_cleanup() { kill "$pid" 2>/dev/null || true; }
wait_for_line "$ev" '"to":"queued"' 120 "$pid" "$N" ||
	fail "not every board reached the queue: $(grep -c '"to":"queued"' "$ev") of $N: $(tail "$T/run.err")"
# The pause comes when the pool's worker finds the token gone, which may be after the last
# board reached the queue: wait for it, do not look once.
wait_for_line "$ev" '"event":"pool".*"paused":true' 60 "$pid" ||
	fail "signing did not pause: $(grep '"event":"pool"' "$ev") $(tail "$T/run.err")"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed while waiting: $(grep -m1 '"event":"fail"' "$ev")"; fi
ok "$N boards queued, one in the pool, $((N - 1)) waiting for room"
mv "$pki/tokens.away" "$pki/tokens"
wait "$pid" || fail "station run: $(tail -20 "$T/run.err")"
[ "$(grep -c '"event":"pass"' "$ev")" = "$N" ] || fail "$(grep -c '"event":"pass"' "$ev") of $N passed"
"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
ok "the pool made room one request at a time and every waiting board got in: $N passed"
