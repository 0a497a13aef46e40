#!/usr/bin/env bash
# `station run` end to end: 64 simulated boards on PTYs, a CA in SoftHSM2, the SQLite ledger.
# Every board passes; every certificate verifies (OpenSSL against the factory root and the
# local CA); every board's committed files are right (simboard verify); the ledger checks
# out; the event stream has 64 pass outcomes and a summary. A second run on the same ledger
# and boards recognises every board and delivers its recorded certificate again, signing
# nothing new.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/gateway.sh"
N=64
line_setup

# Configuration mistakes are reported at file:line:col before anything starts.
sed 's/^pool:/pool:\n  wokers: 2/' "$pki/run.yaml" >"$pki/bad.yaml"
expect_fail "unknown key in the configuration" "bad.yaml:[0-9]+:[0-9]+: unknown key 'wokers' \\(did you mean 'workers'\\?\\)" \
	"$STATION" run -c "$pki/bad.yaml" --no-view
expect_fail "run without -c" "run needs -c" "$STATION" run
expect_fail "bad --boards" "--boards 'x'" "$STATION" run -c "$pki/run.yaml" --boards x

start_simboard "$N" --seed 7

timeout 300 "$STATION" run -c "$pki/run.yaml" --events "$T/events.jsonl" --until-idle --no-view \
	>"$T/run.out" 2>"$T/run.err" || fail "station run failed: $(tail -20 "$T/run.err")"
grep -qE "^station test-station: $N boards in [0-9.]+ s, [0-9]+ boards/hour$" "$T/run.out" &&
	grep -q "^  $N passed (0 delivered again), 0 failed" "$T/run.out" ||
	fail "summary: $(cat "$T/run.out")"
ok "station run: $N boards, exit 0"

ev="$T/events.jsonl"
[ "$(grep -c '"event":"pass"' "$ev")" = "$N" ] || fail "events: $(grep -c '"event":"pass"' "$ev") pass outcomes, expected $N"
if grep -q '"event":"fail"' "$ev"; then fail "events: a board failed: $(grep -m3 '"event":"fail"' "$ev")"; fi
[ "$(grep -c '"event":"summary"' "$ev")" = 1 ] || fail "events: no single summary"
grep '"event":"summary"' "$ev" | has "\"boards\":$N,\"passed\":$N,\"failed\":0" ||
	fail "summary event: $(grep summary "$ev")"
grep '"event":"summary"' "$ev" | has '"boards_per_hour":[1-9]' || fail "summary without boards/hour"
first=$(grep -m1 '"event":"pass"' "$ev")
for phase in hello csr queue sign record write verify total; do
	case $first in *"\"$phase\":"*) ;; *) fail "pass outcome lacks the $phase duration: $first" ;; esac
done
grep -q '"event":"state","station":"test-station","slot":"board5","from":"committed","to":"verified"' "$ev" ||
	fail "state transitions missing from the events"
# Every line is one whole JSON object.
if grep -qv '^{"ts":"[0-9T:.-]*Z","event":"[a-z]*",.*}$' "$ev"; then fail "a malformed event line"; fi
ok "events: $N pass outcomes with per-phase durations, transitions, one summary"

# Every board: files as committed, certificate chains to the root with the board's own key.
cat "$pki/factory-root.pem" "$pki/local-ca.pem" >"$T/trust.pem"
for i in $(seq 0 $((N - 1))); do
	b="$T/line/board$i"
	"$SIMBOARD" verify "$b" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "simboard verify board$i: $(cat "$T/verify.out")"
	openssl verify -x509_strict -purpose sslclient -CAfile "$pki/factory-root.pem" \
		-untrusted "$pki/local-ca.pem" "$b/files/client.pem" >/dev/null ||
		fail "openssl verify board$i"
	subj=$(openssl x509 -in "$b/files/client.pem" -noout -subject -nameopt RFC2253)
	[ "$subj" = "subject=OU=acme-factory,CN=$(cat "$b/device-id")" ] || fail "board$i subject '$subj'"
	cmp -s "$b/files/root.crt" "$pki/factory-root.pem" || fail "board$i root.crt is not the factory root"
	grep -q 'primary_ecu_hardware_id = "sim-board"' "$b/files/sota.toml" || fail "board$i sota.toml"
	grep -q "^pass provisioned $(cat "$b/device-id")" "$b/result" || fail "board$i was not told pass"
done
ok "$N boards: simboard verify, openssl verify -x509_strict -purpose sslclient, subject, root.crt, sota.toml"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "$N rows, $N certificates verified" "$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
[ "$(grep -c ',delivered,' <("$STATION" ledger -c "$pki/run.yaml" export --format csv))" = "$N" ] ||
	fail "not every ledger row is delivered"
ok "ledger check: $N certificates, all delivered"

# A provisioned board's own files (and its key) get it through the gateway's mutual TLS.
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"
b="$T/line/board3"
gateway_connect "$T/device-cas.pem" "$b/files/client.pem" "$b/key.pem" "$b/files/root.crt" ||
	fail "the gateway refused board3: $(cat "$T/gw-client.err")"
ok "board3's files pass the gateway's mutual TLS (openssl s_server -Verify 1)"

# The same boards again (a restart, a re-run of the line): each is recognised by its device
# id and key and gets its recorded certificate; nothing new is signed. Events on stdout.
serial5=$(openssl x509 -in "$T/line/board5/files/client.pem" -noout -serial)
timeout 300 "$STATION" run -c "$pki/run.yaml" --json --boards "$N" >"$T/again.jsonl" 2>"$T/again.err" ||
	fail "second run: $(tail -20 "$T/again.err")"
[ "$(grep -c '"event":"pass".*"reused":true' "$T/again.jsonl")" = "$N" ] ||
	fail "second run: not every board was delivered its recorded certificate"
grep '"event":"summary"' "$T/again.jsonl" | has "\"passed\":$N,\"failed\":0,\"abandoned\":0,\"reused\":$N" ||
	fail "second run summary: $(grep summary "$T/again.jsonl")"
[ "$(openssl x509 -in "$T/line/board5/files/client.pem" -noout -serial)" = "$serial5" ] ||
	fail "board5 got another certificate"
"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check after the second run"
grep -q "$N rows, $N certificates verified" "$T/check.out" || fail "second run added rows: $(cat "$T/check.out")"
ok "second run: $N recorded certificates delivered again, none signed"

stop_simboard
echo "all passed"
