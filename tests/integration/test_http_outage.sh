#!/usr/bin/env bash
# The HSM goes away under `station serve`: a registration is not failed for it, and it is
# not left hanging either: after sign_timeout_ms the device gets 503 (Retry-After) naming the
# pause. The request stays in the pool; when the token comes back its certificate is signed
# and recorded, and the device's next attempt gets exactly that certificate (201, same
# serial): nothing is lost, nothing is issued twice.
. "$(dirname "$0")/../lib/common.sh"
needs_test_hooks
for tool in curl jq openssl; do
	command -v $tool >/dev/null || fail "$tool is needed (tests/lib/deps.sh installs it)"
done
FACTORY=acme-factory
SERVE_PID=
cleanup() {
	local rc=$?
	[ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

pki="$T/pki"
dev_pki "$pki" $FACTORY
gateway_profile "$pki/gw.yaml" gw imx8mm-lpddr4-evk "$FACTORY"
cp "$pki/station.yaml" "$pki/serve.yaml"
cat >>"$pki/serve.yaml" <<EOF
profiles: [gw.yaml]
pool:
  workers: 1
http:
  listen: 127.0.0.1:0
  sign_timeout_ms: 2000
EOF

# The signer's fault hook: before its first signature the module loses all state, as when an
# HSM is reset; the token directory is away by then, so reopening fails until it is back.
exec 3< <(STATION_TEST_FAIL=signer.finalize:1 exec "$STATION" serve -c "$pki/serve.yaml" 2>"$T/serve.err")
SERVE_PID=$!
read -r -t 60 -u 3 line || fail "station serve did not start: $(cat "$T/serve.err")"
URL=${line#station: serving on }

u=$(cat /proc/sys/kernel/random/uuid)
d="$T/dev"
mkdir -p "$d"
openssl ecparam -name prime256v1 -genkey -noout -out "$d/pkey.pem" 2>/dev/null
openssl req -new -key "$d/pkey.pem" -subj "/CN=$u/OU=$FACTORY" -out "$d/csr.pem"
jq -n --indent 4 --rawfile csr "$d/csr.pem" --arg uuid "$u" '
	{name: "dev", uuid: $uuid, csr: $csr, "hardware-id": "imx8mm-lpddr4-evk",
	 "sota-config-dir": "/var/sota", "use-ostree-server": "true"}' | sed 's#/#\\/#g' >"$d/body.json"
post() {
	curl -s -D "$T/hdr" -o "$1" -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary @"$d/body.json" "$URL/sign"
}
status() {
	curl -s "$URL/status" | jq -r "$1"
}

mv "$pki/tokens" "$pki/tokens.away"
code=$(post "$T/first.json")
[ "$code" = 503 ] || fail "during the outage: $code $(cat "$T/first.json")"
[ "$(jq -r .error "$T/first.json")" = HTTP_TIMEOUT ] || fail "error: $(cat "$T/first.json")"
jq -r .message "$T/first.json" | has "signing is paused" || fail "message: $(cat "$T/first.json")"
grep -qi '^retry-after:' "$T/hdr" || fail "503 without Retry-After"
[ "$(status .pool.paused)" = true ] || fail "the pool is not paused: $(curl -s "$URL/status")"
ok "HSM away: 503 HTTP_TIMEOUT after sign_timeout_ms, naming the pause; the request stays queued"

mv "$pki/tokens.away" "$pki/tokens"
# The queued request is signed once the token is back (bounded wait on the counter).
for _ in $(seq 1 240); do
	[ "$(status .registrations.abandoned)" = 1 ] && break
	kill -0 "$SERVE_PID" || fail "station serve died: $(tail "$T/serve.err")"
	sleep 0.25
done
[ "$(status .registrations.abandoned)" = 1 ] || fail "the queued request was never finished"
[ "$(status .pool.paused)" = false ] || fail "signing did not resume"
[ "$(status .pool.signed)" = 1 ] || fail "pool signed $(status .pool.signed)"
"$STATION" ledger -c "$pki/serve.yaml" list >"$T/ledger.txt"
grep -q "$u .* signed " "$T/ledger.txt" || fail "ledger: $(cat "$T/ledger.txt")"
serial=$(awk -v u="$u" '$3 == u { print $2 }' "$T/ledger.txt" | sed 's/^0*//')
ok "token back: the queued request was signed and recorded (serial $serial) without a client"

code=$(post "$T/again.json")
[ "$code" = 201 ] || fail "the device's next attempt: $code $(cat "$T/again.json")"
jq -j '.["client.pem"]' "$T/again.json" >"$d/client.pem"
got=$(openssl x509 -in "$d/client.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//')
[ "$got" = "$serial" ] || fail "the next attempt got serial $got, the ledger recorded $serial"
[ "$(status .registrations.reused)" = 1 ] || fail "not counted as reused"
[ "$(status .pool.signed)" = 1 ] || fail "a second certificate was signed"
[ "$(($(wc -l <"$T/ledger.txt") - 1))" = 1 ] || fail "ledger rows: $(cat "$T/ledger.txt")"
ok "the device's next attempt: 201 with the recorded certificate (same serial); one certificate in all"

kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || fail "station serve did not exit cleanly: $(tail "$T/serve.err")"
SERVE_PID=
echo "all passed"
