#!/usr/bin/env bash
# Mutual TLS as the device gateway does it: `openssl s_server -Verify 1`, trusting the
# station's device CA, accepts `openssl s_client` presenting a key and the certificate the
# station issued with its SoftHSM2-held CA key; the device verifies the gateway against the
# factory root. A certificate from a foreign CA is refused.
. "$(dirname "$0")/../lib/common.sh"

pki="$T/pki"
dev_pki "$pki" mtls-factory
uuid=$(cat /proc/sys/kernel/random/uuid)
d="$T/device"
device_csr "$d" "$uuid" mtls-factory
"$STATION" sign -c "$pki/station.yaml" --csr "$d/csr.pem" --device-id "$uuid" -o "$d/client.pem"
cp "$pki/factory-root.pem" "$d/root.crt"
# The gateway trusts the station's CA chain: the device CA and the factory root above it.
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"

# A foreign CA with an otherwise identical device certificate.
f="$T/foreign"
mkdir -p "$f"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj "/CN=Factory-CA/OU=mtls-factory" -keyout "$f/ca.key" -out "$f/ca.pem" 2>/dev/null
device_csr "$f" "$uuid" mtls-factory
openssl x509 -req -in "$f/csr.pem" -CA "$f/ca.pem" -CAkey "$f/ca.key" -days 30 \
	-out "$f/client.pem" 2>/dev/null

# Waits (bounded) until s_server says it listens.
wait_accept() {
	for _ in $(seq 1 400); do
		grep -q ACCEPT "$1" && return 0
		kill -0 $server 2>/dev/null || fail "s_server exited: $(cat "$1")"
		sleep 0.05
	done
	fail "s_server did not start: $(cat "$1")"
}

port=$(free_port) || fail "no free port"
# The gateway: requires a client certificate chaining to the device CA.
openssl s_server -accept "127.0.0.1:$port" -cert "$pki/gateway.pem" -key "$pki/gateway.key" \
	-CAfile "$T/device-cas.pem" -Verify 1 -verify_return_error -www -naccept 1 \
	>"$T/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$T"' EXIT

wait_accept "$T/server.log"

printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" \
	-cert "$d/client.pem" -key "$d/pkey.pem" -CAfile "$d/root.crt" -verify_return_error \
	-servername localhost -quiet >"$T/client.out" 2>"$T/client.err" ||
	fail "provisioned device refused: $(cat "$T/client.err") / $(cat "$T/server.log")"
grep -q "HTTP/1.0 200" "$T/client.out" || fail "no HTTP answer over mutual TLS: $(cat "$T/client.out")"
ok "gateway accepted the station-issued device certificate; device verified the gateway"

wait $server 2>/dev/null || true
port=$(free_port) || fail "no free port"
openssl s_server -accept "127.0.0.1:$port" -cert "$pki/gateway.pem" -key "$pki/gateway.key" \
	-CAfile "$T/device-cas.pem" -Verify 1 -verify_return_error -www -naccept 1 \
	>"$T/server2.log" 2>&1 &
server=$!
wait_accept "$T/server2.log"
if printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" \
	-cert "$f/client.pem" -key "$f/pkey.pem" -CAfile "$d/root.crt" -verify_return_error \
	-quiet >"$T/client2.out" 2>"$T/client2.err" && grep -q "HTTP/1.0 200" "$T/client2.out"; then
	fail "gateway accepted a certificate from a foreign CA"
fi
ok "gateway refused a certificate from a foreign CA"
echo "all passed"
