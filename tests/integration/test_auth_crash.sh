#!/usr/bin/env bash
# Authorization units across crashes: `station run` consumes units of a 40-unit
# authorization for 24 boards and is killed with SIGKILL at random moments (while boards
# send CSRs, wait for signing, receive files), then restarted on the same ledger and
# boards. After every kill the ledger's count equals its rows exactly: certificates plus
# the intents a crash left (which hold their unit until their board comes back). After the
# last run every board is provisioned, and used = certificates recorded under the
# authorization = 24, with nothing pending.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/auth.sh"
needs_test_hooks
N=24
KILLS=${CRASH_KILLS:-8}
line_setup
line_profile "$pki" board "authorization: required"
auth_config "$pki/run.yaml"
auth_issue LOT-C 40 "$pki/authorizations/lot-c.auth"
# Boards paced at a real rate, and put in one after another over two seconds each time the
# line comes back (a power cycle of the fixtures), so that kills land while units are still
# being consumed.
line_up() {
	stop_simboard
	start_simboard "$N" --seed "$1" --baud 230400 --stagger-ms 2000
}

# counts: "used certificates pending" of lot LOT-C, from the ledger.
counts() {
	sqlite3 "$pki/ledger.db" "SELECT a.used, (SELECT count(*) FROM certificates c WHERE \
c.auth_id = a.id AND c.cert_der IS NOT NULL), (SELECT count(*) FROM certificates c WHERE \
c.auth_id = a.id AND c.state = 'intent') FROM authorizations a WHERE a.lot = 'LOT-C'" | tr '|' ' '
}

RANDOM=1717
kills=0
pending_seen=0
for run in $(seq 1 "$KILLS"); do
	ev="$T/events.$run.jsonl"
	: >"$ev"
	# Odd runs die right after a batch's intents (and their units) are committed, before
	# its certificates are recorded (the pool's fault hook); even ones at a random event.
	line_up "$run"
	hook=
	[ $((run % 2)) = 1 ] && hook="pool.kill_after_intents:$((1 + RANDOM % 4))"
	STATION_TEST_FAIL=$hook "$STATION" run -c "$pki/run.yaml" --events "$ev" --no-view \
		--until-idle >"$T/run.$run.out" 2>"$T/run.$run.err" &
	pid=$!
	k=$((N + RANDOM % (N * 6)))
	for ((i = 0; i < 60 * 20; i++)); do
		[ -z "$hook" ] && [ "$(wc -l <"$ev")" -ge "$k" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	st=0
	wait "$pid" 2>/dev/null || st=$?
	[ "$st" != 137 ] || kills=$((kills + 1))
	"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.$run" 2>&1 ||
		fail "ledger check after kill $run: $(cat "$T/check.$run")"
	read -r used certs pending <<<"$(counts)"
	[ -n "$used" ] || continue # killed before the authorization was recorded
	[ "$used" = $((certs + pending)) ] ||
		fail "kill $run: $used units used, but $certs certificates and $pending intents"
	[ "$pending" = 0 ] || pending_seen=$((pending_seen + 1))
	echo "  run $run (${hook:-event $k}): used $used = $certs certificates + $pending intents"
done
[ "$pending_seen" -gt 0 ] || fail "no kill left an intent holding a unit: the test proved nothing"
ok "$kills kills with SIGKILL; after each the units used equal the certificates plus the intents left ($pending_seen times some were left)"

line_up 0
"$STATION" run -c "$pki/run.yaml" --events "$T/final.jsonl" --no-view --until-idle \
	--max-seconds 240 >"$T/final.out" 2>"$T/final.err" ||
	fail "final run: $(tail -20 "$T/final.err")"
[ "$(grep -c '"event":"pass"' "$T/final.jsonl")" = "$N" ] ||
	fail "final run: $(grep -c '"event":"pass"' "$T/final.jsonl") of $N passed: $(grep -m3 '"event":"fail"' "$T/final.jsonl")"
read -r used certs pending <<<"$(counts)"
[ "$used" = "$N" ] && [ "$certs" = "$N" ] && [ "$pending" = 0 ] ||
	fail "after the last run: used $used, certificates $certs, pending $pending; expected $N, $N, 0"
"$STATION" auth status -c "$pki/run.yaml" --json >"$T/status.json" || fail "auth status"
jq -e --argjson n "$N" '.issued == 40 and .used == $n and .left == 40 - $n and
	.stations["test-station"].certificates == $n and .stations["test-station"].pending == 0' \
	"$T/status.json" >/dev/null || fail "auth status: $(cat "$T/status.json")"
for i in $(seq 0 $((N - 1))); do
	"$SIMBOARD" verify "$T/line/board$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "board$i: $(cat "$T/verify.out")"
done
ok "all $N boards provisioned; used = certificates recorded = $N, none pending, none counted twice"
echo "all passed"
