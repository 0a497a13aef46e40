#!/usr/bin/env bash
# A board provisioned by `station run` connects to the device gateway with the files the
# station wrote to it: `openssl s_server -Verify 1`, trusting the station's CA chain, accepts
# `openssl s_client` presenting the board's client.pem and its key, and the board verifies
# the gateway with the root.crt it was given. The same board with a certificate of a foreign
# CA is refused.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=4
line_setup
start_simboard "$N" --seed 3
"$STATION" run -c "$pki/run.yaml" --events "$T/events.jsonl" --no-view --boards "$N" \
	--max-seconds 120 >"$T/run.out" 2>"$T/run.err" || fail "station run: $(tail "$T/run.err")"
b="$T/line/board2"
[ -s "$b/files/client.pem" ] && [ -s "$b/files/root.crt" ] || fail "board2 has no files"
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"

server=
trap 'rc=$?; [ -z "$server" ] || kill "$server" 2>/dev/null || true; stop_simboard; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT
# gateway LOG: starts s_server on a free port (in $port) and waits until it listens.
gateway() {
	port=$(free_port) || fail "no free port"
	openssl s_server -accept "127.0.0.1:$port" -cert "$pki/gateway.pem" -key "$pki/gateway.key" \
		-CAfile "$T/device-cas.pem" -Verify 1 -verify_return_error -www -naccept 1 \
		>"$1" 2>&1 &
	server=$!
	wait_for_line "$1" ACCEPT 20 "$server" || fail "s_server did not start: $(cat "$1")"
}

gateway "$T/gw1.log"
printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" -quiet \
	-cert "$b/files/client.pem" -key "$b/key.pem" -CAfile "$b/files/root.crt" \
	-verify_return_error >"$T/c1.out" 2>"$T/c1.err" || fail "board2 refused: $(cat "$T/c1.err")"
grep -q "HTTP/1.0 200" "$T/c1.out" || fail "no answer over mutual TLS: $(cat "$T/c1.out")"
wait "$server" 2>/dev/null || true
ok "the gateway accepted board2's provisioned client.pem; board2 verified the gateway with its root.crt"

# The board's own key under a foreign CA's certificate: refused.
mkdir -p "$T/foreign"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj "/CN=Factory-CA/OU=acme-factory" -keyout "$T/foreign/ca.key" -out "$T/foreign/ca.pem" 2>/dev/null
openssl x509 -x509toreq -in "$b/files/client.pem" -signkey "$b/key.pem" -out "$T/foreign/req.pem" 2>/dev/null
openssl x509 -req -in "$T/foreign/req.pem" -CA "$T/foreign/ca.pem" -CAkey "$T/foreign/ca.key" \
	-days 30 -out "$T/foreign/client.pem" 2>/dev/null
gateway "$T/gw2.log"
if printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" -quiet \
	-cert "$T/foreign/client.pem" -key "$b/key.pem" -CAfile "$b/files/root.crt" \
	-verify_return_error 2>/dev/null | grep -q "HTTP/1.0 200"; then
	fail "the gateway accepted a certificate from a foreign CA"
fi
ok "the same key under a foreign CA's certificate is refused"
echo "all passed"
