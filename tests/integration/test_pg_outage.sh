#!/usr/bin/env bash
# A station on a PostgreSQL ledger through database outages and its own death:
# - the server restarted mid-run (connections cut): the station reconnects and goes on;
# - the server stopped for longer than a batch: signing pauses (event and log say the
#   ledger is unavailable), boards wait and none fails for it; once the server is back
#   the line resumes by itself; every board passes, nothing is lost or recorded twice;
# - the station killed (SIGKILL) while a batch is in flight (intents committed, signatures
#   slow in an emulated HSM) and started again: every board passes, each with one
#   certificate; the intents the dead station left are superseded, none is possibly signed.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/pgline.sh"
SLOWHSM=$BUILD_DIR/fixtures/slowhsm/libslowhsm.so
[ -r "$SLOWHSM" ] || fail "no slow HSM module at $SLOWHSM"
F=8
TOTAL=48
pg_start
line_setup
seq_profile "$pki"

# Paced boards, and a new board in a fixture as each one finishes: the run lasts.
sim_start "$T/out" "$F" --baud 115200 --total "$TOTAL" --stagger-ms 500 --seed 3
station_config line-o "$pki/o.yaml" "$T/out/map.yaml" </dev/null
ev="$T/line-o.events"
station_start line-o "$pki/o.yaml" --boards "$TOTAL" --max-seconds 240
st=$STATION_PID

wait_for_line "$ev" '"event":"pass"' 60 "$st" 4 || fail "no board passed: $(tail -5 "$T/line-o.err")"
pg_restart
ok "PostgreSQL restarted under the running station"

wait_for_line "$ev" '"event":"pass"' 60 "$st" 12 || fail "the line did not go on after the restart: $(tail -5 "$T/line-o.err")"
pg_stop
wait_for_line "$ev" '"event":"pool".*"paused":true.*ledger unavailable' 60 "$st" ||
	fail "signing did not pause for the ledger: $(tail -5 "$T/line-o.err")"
# Boards wait for their certificates behind the batch that waits for the database.
queued_now() {
	grep '"event":"state"' "$ev" | sed -n 's/.*"slot":"\([^"]*\)".*"to":"\([^"]*\)".*/\1 \2/p' |
		awk '{ s[$1] = $2 } END { n = 0; for (k in s) if (s[k] == "queued") n++; print n }'
}
for ((i = 0; i < 1200; i++)); do
	[ "$(queued_now)" -ge $((F / 2)) ] && break
	kill -0 "$st" 2>/dev/null || fail "the station ended in the outage: $(tail -5 "$T/line-o.err")"
	sleep 0.05
done
[ "$(queued_now)" -ge $((F / 2)) ] || fail "boards do not wait while the database is away"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed in the outage: $(grep -m1 '"event":"fail"' "$ev")"; fi
grep -q "signing paused: ledger unavailable" "$T/line-o.err" || fail "the log does not say signing paused for the ledger"
ok "database stopped: signing paused ($(grep -m1 -o '"reason":"[^"]\{0,80\}' "$ev" | tail -1)...), boards wait, none failed"
pg_start_again
wait "$st" || fail "station run: $(tail -20 "$T/line-o.err")"
STATIONS=()
grep -q '"event":"pool".*"paused":false' "$ev" || fail "signing never resumed"
[ "$(grep -c '"event":"pass"' "$ev")" = "$TOTAL" ] || fail "$(grep -c '"event":"pass"' "$ev") of $TOTAL passed"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed: $(grep -m1 '"event":"fail"' "$ev")"; fi
pg_unique_checks
[ "$(pg_q "SELECT count(*) FROM certificates WHERE state = 'delivered'")" = "$TOTAL" ] ||
	fail "$(pg_q "SELECT count(*) FROM certificates WHERE state = 'delivered'") delivered rows, expected $TOTAL"
[ "$(pg_q "SELECT count(*) FROM certificates WHERE state = 'intent'")" = 0 ] || fail "possibly signed rows left"
"$STATION" ledger -c "$pki/o.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
ok "signing resumed by itself; all $TOTAL boards passed, one certificate each, ledger check clean"

# The station killed with a batch in flight: an HSM of 400 ms a signature keeps the batch's
# intents committed and unsigned for a while.
sim_start "$T/kill" 6 --seed 5 --name-prefix k
sed -e "s|module-path=[^\"]*|module-path=$SLOWHSM|" "$pki/o.yaml" >"$pki/k.yaml"
sed -i -e "s|^station: .*|station: line-k|" -e "s|board_map: .*|board_map: $T/kill/map.yaml|" "$pki/k.yaml"
cat >>"$pki/k.yaml" <<YAML
pool:
  workers: 2
YAML
export SLOWHSM_LATENCY_MS=400 SLOWHSM_SESSIONS=2
station_start line-k "$pki/k.yaml" --max-seconds 120
st=$STATION_PID
for ((i = 0; i < 600; i++)); do
	[ "$(pg_q "SELECT count(*) FROM certificates WHERE station = 'line-k' AND state = 'intent'")" -gt 0 ] && break
	kill -0 "$st" 2>/dev/null || fail "line-k ended: $(tail -5 "$T/line-k.err")"
	sleep 0.05
done
kill -KILL "$st"
wait "$st" 2>/dev/null || true
STATIONS=()
left=$(pg_q "SELECT count(*) FROM certificates WHERE station = 'line-k' AND state = 'intent'")
[ "$left" -gt 0 ] || fail "no batch was in flight when the station was killed"
ok "station killed with $left intents committed and unsigned"
mv "$T/line-k.events" "$T/line-k.events.1"
station_start line-k "$pki/k.yaml" --until-idle --max-seconds 120
wait "$STATION_PID" || fail "line-k after the kill: $(tail -20 "$T/line-k.err")"
STATIONS=()
[ "$(grep -c '"event":"pass"' "$T/line-k.events")" = 6 ] || fail "line-k: $(grep -c '"event":"pass"' "$T/line-k.events") of 6 passed after the restart"
pg_unique_checks
[ "$(pg_q "SELECT count(*) FROM certificates WHERE station = 'line-k' AND state = 'delivered'")" = 6 ] ||
	fail "line-k: $(pg_q "SELECT count(*) FROM certificates WHERE station = 'line-k' AND state = 'delivered'") delivered"
[ "$(pg_q "SELECT count(*) FROM certificates WHERE state = 'intent'")" = 0 ] || fail "possibly signed rows left"
for b in 0 1 2 3 4 5; do
	"$SIMBOARD" verify "$T/kill/k$b" --root "$pki/factory-root.pem" >/dev/null || fail "simboard verify k$b"
done
"$STATION" ledger -c "$pki/k.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
ok "restarted: 6 boards passed, one certificate each, $(pg_q "SELECT count(*) FROM certificates WHERE station = 'line-k' AND reason = 'superseded'") superseded intents, ledger check clean"

# A line powered up before its database: the station starts, signing paused for the ledger
# (log and event say why), its boards wait; the database comes up and they pass. Stopped
# while it still waits, a station ends at once and records nothing.
# early NAME BOARDS SEED PREFIX: the database stopped, station NAME started with BOARDS new
# boards, until it says it waits for the database ($st is its PID).
early() {
	pg_stop
	sim_start "$T/$1" "$2" --seed "$3" --name-prefix "$4"
	station_config "line-$1" "$pki/$1.yaml" "$T/$1/map.yaml" </dev/null
	station_start "line-$1" "$pki/$1.yaml" --boards "$2" --max-seconds 120
	st=$STATION_PID
	wait_for_line "$T/line-$1.err" "its boards wait for the database" 60 "$st" ||
		fail "line-$1 did not start to wait for its database: $(tail -5 "$T/line-$1.err")"
	# Its loop runs (it handles SIGTERM from there on; before, the signal's default action
	# would end it, which is not what is tested).
	wait_for_line "$T/line-$1.err" "station line-$1: [0-9]+ slots" 60 "$st" ||
		fail "line-$1 did not start its loop: $(tail -5 "$T/line-$1.err")"
}
early e 3 9 e
wait_for_line "$T/line-e.events" '"event":"pool".*"paused":true.*ledger unavailable' 60 "$st" ||
	fail "no pause for the ledger: $(tail -5 "$T/line-e.events")"
sleep 1
kill -0 "$st" 2>/dev/null || fail "the station ended while its database was away: $(tail -5 "$T/line-e.err")"
if grep -q '"event":"fail"' "$T/line-e.events"; then fail "a board failed while the database was away"; fi
pg_start_again
wait "$st" || fail "line-e: $(tail -20 "$T/line-e.err")"
STATIONS=()
[ "$(grep -c '"event":"pass"' "$T/line-e.events")" = 3 ] ||
	fail "line-e: $(grep -c '"event":"pass"' "$T/line-e.events") of 3 passed once the database came"
grep -q "the database answers; signing resumes" "$T/line-e.err" || fail "the log does not say the ledger came"
ok "started before its database: signing paused, boards waited, all passed once it came"

early f 2 10 f
kill -TERM "$st"
rc=0
timeout 30 tail --pid="$st" -f /dev/null || fail "line-f did not end on SIGTERM while waiting"
wait "$st" || rc=$?
STATIONS=()
[ "$rc" -le 1 ] || fail "line-f exited $rc: $(tail -5 "$T/line-f.err")"
pg_start_again
[ "$(pg_q "SELECT count(*) FROM certificates WHERE station = 'line-f'")" = 0 ] || fail "line-f recorded rows"
ok "stopped while waiting for its database: ended at once, nothing recorded"
echo "all passed"
