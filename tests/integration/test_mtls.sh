#!/usr/bin/env bash
# Mutual TLS as the device gateway does it: `openssl s_server -Verify 1`, trusting the
# station's device CA, accepts `openssl s_client` presenting a key and the certificate the
# station issued with its SoftHSM2-held CA key; the device verifies the gateway against the
# factory root. A certificate from a foreign CA is refused.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/gateway.sh"

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

# The gateway requires a client certificate chaining to the device CA.
gateway_connect "$T/device-cas.pem" "$d/client.pem" "$d/pkey.pem" "$d/root.crt" ||
	fail "provisioned device refused: $(cat "$T/gw-client.err") / $(cat "$T/gw-server.log")"
ok "gateway accepted the station-issued device certificate; device verified the gateway"

if gateway_connect "$T/device-cas.pem" "$f/client.pem" "$f/pkey.pem" "$d/root.crt"; then
	fail "gateway accepted a certificate from a foreign CA"
fi
ok "gateway refused a certificate from a foreign CA"
echo "all passed"
