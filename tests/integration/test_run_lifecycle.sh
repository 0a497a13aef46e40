#!/usr/bin/env bash
# `station run` over its life: slots that appear with their ports (a glob rescanned while
# running), SIGHUP reloading the profiles, SIGTERM with boards in the middle of their files
# (abandoned safely, then resumed by the next run with the certificates already recorded),
# --max-seconds.
. "$(dirname "$0")/../lib/common.sh"
SIMBOARD=$BUILD_DIR/fixtures/simboard/simboard
[ -x "$SIMBOARD" ] || fail "no simboard at $SIMBOARD"
SIMPID=
STPID=

stop_simboard() {
	if [ -n "$SIMPID" ]; then
		kill -TERM "$SIMPID" 2>/dev/null || true
		wait "$SIMPID" 2>/dev/null || true
		SIMPID=
	fi
}
trap 'rc=$?; stop_simboard; [ -z "$STPID" ] || kill -9 "$STPID" 2>/dev/null; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT

# start_simboard DIR N [options]: serves N boards from DIR, waits for the ready line.
start_simboard() {
	local dir=$1 n=$2 line
	shift 2
	exec 3< <(exec "$SIMBOARD" --dir "$dir" --boards "$n" --seed 5 "$@")
	SIMPID=$!
	read -r -t 60 -u 3 line || fail "simboard did not start"
	case $line in "simboard: ready: $n boards"*) ;; *) fail "simboard: $line" ;; esac
	cat <&3 >>"$T/simboard.log" &
}

# wait_for FILE PATTERN COUNT: until FILE has COUNT lines matching PATTERN (bounded).
wait_for() {
	for _ in $(seq 1 1200); do
		[ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
		[ -n "$STPID" ] && ! kill -0 "$STPID" 2>/dev/null && fail "station exited early: $(tail -5 "$T/st.err")"
		sleep 0.05
	done
	fail "timed out waiting for $3 × /$2/ in $1"
}

pki="$T/pki"
dev_pki "$pki" acme-factory
cat >"$pki/sim-gw.yaml" <<'EOF'
sku: sim-gw
match:
  hardware_ids: [sim-board]
factory: acme-factory
device_id:
  source: board
sota:
  gateway: https://gateway.example:8443
  ostree_server: https://ostree.example:8443
files:
  - set: foundries
EOF
cp "$pki/station.yaml" "$pki/glob.yaml"
cat >>"$pki/glob.yaml" <<EOF
profiles: [sim-gw.yaml]
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
start_simboard "$T/line" 6
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
grep '"event":"summary"' "$T/ev2.jsonl" | grep -q '"reused":6,.*"stop_reason":"SIGTERM"' ||
	fail "summary after SIGTERM: $(grep summary "$T/ev2.jsonl")"
ok "SIGHUP reloads the profiles; SIGTERM ends the run with status 0"
stop_simboard

# Boards paced at 9600 baud take seconds for their files: stop the station while they are
# being written. They are abandoned, not failed; their certificates are in the ledger already,
# and the next run delivers those same certificates.
cp "$pki/station.yaml" "$pki/slow.yaml"
cat >>"$pki/slow.yaml" <<EOF
profiles: [sim-gw.yaml]
slots:
  - board_map: $T/slow/map.yaml
EOF
start_simboard "$T/slow" 4 --baud 9600
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
grep '"event":"summary"' "$T/ev5.jsonl" | grep -q '"stop_reason":"--max-seconds reached"' ||
	fail "--max-seconds summary: $(grep summary "$T/ev5.jsonl")"
ok "--max-seconds"

stop_simboard
echo "all passed"
