#!/usr/bin/env bash
# A board provisioned by `station run` connects to the device gateway with the files the
# station wrote to it: `openssl s_server -Verify 1`, trusting the station's CA chain, accepts
# `openssl s_client` presenting the board's client.pem and its key, and the board verifies
# the gateway with the root.crt it was given. The same board with a certificate of a foreign
# CA is refused.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/gateway.sh"
N=4
line_setup
start_simboard "$N" --seed 3
"$STATION" run -c "$pki/run.yaml" --events "$T/events.jsonl" --no-view --boards "$N" \
	--max-seconds 120 >"$T/run.out" 2>"$T/run.err" || fail "station run: $(tail "$T/run.err")"
b="$T/line/board2"
[ -s "$b/files/client.pem" ] && [ -s "$b/files/root.crt" ] || fail "board2 has no files"
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"

gateway_connect "$T/device-cas.pem" "$b/files/client.pem" "$b/key.pem" "$b/files/root.crt" ||
	fail "board2 refused: $(cat "$T/gw-client.err")"
ok "the gateway accepted board2's provisioned client.pem; board2 verified the gateway with its root.crt"

# The board's own key under a foreign CA's certificate: refused.
mkdir -p "$T/foreign"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj "/CN=Factory-CA/OU=acme-factory" -keyout "$T/foreign/ca.key" -out "$T/foreign/ca.pem" 2>/dev/null
openssl x509 -x509toreq -in "$b/files/client.pem" -signkey "$b/key.pem" -out "$T/foreign/req.pem" 2>/dev/null
openssl x509 -req -in "$T/foreign/req.pem" -CA "$T/foreign/ca.pem" -CAkey "$T/foreign/ca.key" \
	-days 30 -out "$T/foreign/client.pem" 2>/dev/null
if gateway_connect "$T/device-cas.pem" "$T/foreign/client.pem" "$b/key.pem" "$b/files/root.crt"; then
	fail "the gateway accepted a certificate from a foreign CA"
fi
ok "the same key under a foreign CA's certificate is refused"
echo "all passed"
