#!/usr/bin/env bash
# Production authorizations on a line of simulated boards: the brand owner's authorization
# for 10 units, a profile that requires one, 11 boards. The 11th board fails with
# AUTH_EXHAUSTED and nothing is signed for it; the ledger counts 10. Boards that come back
# (every board rebooted) get their recorded certificates and consume nothing. A new
# authorization dropped in the directory and a SIGHUP let the 11th board through. Then the
# registration API: 403 with the reason when no unit can be had.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/auth.sh"
N=11
line_setup
line_profile "$pki" board "authorization: required"
auth_config "$pki/run.yaml"
start_simboard "$N" --seed 17
auth_issue LOT-10 10 "$pki/authorizations/lot10.auth"
"$STATION" auth check -c "$pki/run.yaml" "$pki/authorizations/lot10.auth" >"$T/check.out" 2>&1 ||
	fail "auth check: $(cat "$T/check.out")"
grep -q ": OK: authorization .*, lot LOT-10, 10 units of sim-gw" "$T/check.out" ||
	fail "auth check: $(cat "$T/check.out")"
ok "the authorization verifies as the station sees it"

# ---- 11 boards, 10 units --------------------------------------------------------------
"$STATION" run -c "$pki/run.yaml" --events "$T/ev1.jsonl" --no-view --until-idle \
	--max-seconds 120 >"$T/run1.out" 2>"$T/run1.err" || true
[ "$(grep -c '"event":"pass"' "$T/ev1.jsonl")" = 10 ] ||
	fail "first run: $(grep -c '"event":"pass"' "$T/ev1.jsonl") passed, expected 10: $(tail -5 "$T/run1.err")"
fails=$(grep '"event":"fail"' "$T/ev1.jsonl")
[ "$(echo "$fails" | grep -c .)" = 1 ] || fail "first run: failures: $fails"
echo "$fails" | has '"reason":"AUTH_EXHAUSTED"' || fail "first run: the 11th failed otherwise: $fails"
refused_slot=$(echo "$fails" | jq -r .slot)
refused_dev=$(echo "$fails" | jq -r .device_id)
[ ! -e "$LINE_DIR/$refused_slot/files/client.pem" ] ||
	fail "the refused board $refused_slot holds a certificate"
[ "$(sqlite3 "$pki/ledger.db" "SELECT count(*) FROM certificates WHERE device_id = '$refused_dev'")" = 0 ] ||
	fail "the ledger has a row for the refused board $refused_dev"
ok "11 boards, 10 units: 10 pass, $refused_slot fails with AUTH_EXHAUSTED, nothing signed or recorded for it"

auth_counts LOT-10 10 10 "first run"
"$STATION" auth status -c "$pki/run.yaml" >"$T/status.txt" 2>&1 || fail "auth status: $(cat "$T/status.txt")"
grep -Eq "LOT-10 +10 +10 +0 " "$T/status.txt" || fail "auth status: $(cat "$T/status.txt")"
grep -Eq "station test-station +10 certificates" "$T/status.txt" ||
	fail "auth status by station: $(cat "$T/status.txt")"
ok "auth status: issued 10, used 10, left 0, 10 certificates at test-station"

# ---- Every board comes back: re-delivery consumes nothing -----------------------------
stop_simboard
start_simboard "$N" --seed 17
"$STATION" run -c "$pki/run.yaml" --events "$T/ev2.jsonl" --no-view --until-idle \
	--max-seconds 120 >"$T/run2.out" 2>"$T/run2.err" || true
[ "$(grep -c '"event":"pass".*"reused":true' "$T/ev2.jsonl")" = 10 ] ||
	fail "second run: $(grep -c '"reused":true' "$T/ev2.jsonl") recorded certificates delivered again, expected 10"
grep '"event":"fail"' "$T/ev2.jsonl" | has "\"slot\":\"$refused_slot\".*AUTH_EXHAUSTED" ||
	fail "second run: $refused_slot: $(grep "\"slot\":\"$refused_slot\"" "$T/ev2.jsonl" | tail -1)"
auth_counts LOT-10 10 10 "after re-delivery"
ok "re-delivery of 10 recorded certificates consumed nothing; the 11th still refused"

# ---- SIGHUP: a new authorization lets the 11th board through ---------------------------
# The boards are away while the station starts, and come back (rebooted) once it reloaded.
stop_simboard
# Its CA key is in a module slow to start (fixtures/slowhsm: C_Initialize takes 1.5 s first),
# so that a SIGHUP sent once it has read the authorizations lands while it sets up.
: >"$T/ev3.jsonl"
sed "/^  key: /s#module-path=[^\"]*#module-path=$BUILD_DIR/fixtures/slowhsm/libslowhsm.so#" \
	"$pki/run.yaml" >"$pki/run3.yaml"
grep -q "libslowhsm.so" "$pki/run3.yaml" || fail "run3.yaml: no slow module: $(cat "$pki/run3.yaml")"
SLOWHSM_INIT_MS=1500 "$STATION" run -c "$pki/run3.yaml" --events "$T/ev3.jsonl" --no-view \
	>"$T/run3.out" 2>"$T/run3.err" &
RUNPID=$!
line_cleanup() { kill -TERM "$RUNPID" 2>/dev/null; wait "$RUNPID" 2>/dev/null; }
wait_for_line "$T/run3.err" "authorizations .*: 1 loaded" 30 "$RUNPID" ||
	fail "the station did not load the authorizations: $(tail -5 "$T/run3.err")"
# A SIGHUP while it still sets up (it opens the signer and the ledger after reading the
# authorizations) is carried out once its loop runs; it does not end the station.
when="during set-up"
grep -q "station test-station: [0-9]* slots" "$T/run3.err" && when="after set-up (its loop ran already)"
kill -HUP "$RUNPID"
wait_for_line "$T/ev3.jsonl" '"event":"reload"' 30 "$RUNPID" ||
	fail "a SIGHUP sent $when was not carried out: $(tail -5 "$T/run3.err")"
ok "a SIGHUP sent $when: the station reloaded once its loop ran"
auth_issue LOT-1 1 "$pki/authorizations/lot1.auth"
kill -HUP "$RUNPID"
wait_for_line "$T/run3.err" "authorizations .*: 2 loaded" 30 "$RUNPID" ||
	fail "SIGHUP did not reload the authorizations: $(tail -5 "$T/run3.err")"
start_simboard "$N" --seed 17
wait_for_line "$T/ev3.jsonl" '"event":"pass"' 90 "$RUNPID" "$N" ||
	fail "after SIGHUP: $(grep -c '"event":"pass"' "$T/ev3.jsonl") of $N passed: $(grep '"event":"fail"' "$T/ev3.jsonl" | tail -2)"
grep '"event":"pass"' "$T/ev3.jsonl" | grep "\"slot\":\"$refused_slot\"" | has '"reused":false' ||
	fail "after SIGHUP: $refused_slot did not get a new certificate"
kill -TERM "$RUNPID"
wait "$RUNPID" || true
line_cleanup() { :; }
auth_counts LOT-10 10 10 "after SIGHUP"
auth_counts LOT-1 1 1 "after SIGHUP"
ok "SIGHUP loaded a new authorization; the 11th board consumed its unit, the others nothing"

# ---- The registration API: 403 with the reason -----------------------------------------
. "$(dirname "$0")/../lib/http.sh"
cat "$pki/run.yaml" >"$pki/serve.yaml"
cat >>"$pki/serve.yaml" <<YAML
http:
  listen: 127.0.0.1:0
YAML
stop_simboard
start_server "$pki/serve.yaml"
key_csr "$T/dev1" "11111111-2222-4333-8444-555555555555" acme-factory
tool_body 11111111-2222-4333-8444-555555555555 sim-board "$T/dev1/csr.pem" >"$T/body1.json"
code=$(curl -s -o "$T/answer1.json" -w '%{http_code}' -H 'Content-Type: application/json' \
	--data-binary @"$T/body1.json" "$URL/sign")
[ "$code" = 403 ] || fail "registration without a unit left: HTTP $code: $(cat "$T/answer1.json")"
[ "$(jq -r .error "$T/answer1.json")" = AUTH_EXHAUSTED ] || fail "403 body: $(cat "$T/answer1.json")"
stop_server
auth_counts LOT-10 10 10 "after the refused registration"
"$STATION" report attempts -c "$pki/run.yaml" --format jsonl >"$T/attempts.jsonl" ||
	fail "report attempts"
jq -se 'map(select(.slot | startswith("http:")))[0] | .outcome == "fail" and
	.reason == "AUTH_EXHAUSTED" and .hardware_id == "sim-board" and .profile == "sim-gw"' \
	"$T/attempts.jsonl" >/dev/null || fail "the registration's attempt: $(grep http: "$T/attempts.jsonl")"
ok "registration API: 403 AUTH_EXHAUSTED, nothing consumed, the attempt recorded with its reason"
echo "all passed"
