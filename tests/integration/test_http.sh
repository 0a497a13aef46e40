#!/usr/bin/env bash
# `station serve`: the registration API as lmp-device-register uses it, against the real
# binary, a SoftHSM2-held CA and a real ledger. A client that behaves like the device tool
# (P-256 key, CSR with CN=uuid, OU=factory, keyUsage and EKU requested; a pretty-printed
# JSON body with "\/" escapes, every value a string, use-ostree-server and overrides; HEAD
# first, then POST with OSF-TOKEN; every top-level key of the answer written as a file)
# registers, and its files pass the gateway's mutual TLS test. Every bad request gets its
# status and a JSON error naming the problem, and nothing is signed for it. Then HTTPS with
# client-certificate authentication, and the restart keeps what the ledger recorded.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/http.sh"
. "$(dirname "$0")/../lib/gateway.sh"
GOLDEN="$SOURCE_DIR/tests/integration/test_http.sota.toml"
FACTORY=http-factory
HW=imx8mm-lpddr4-evk
HW_PROD=imx8mm-prod

pki="$T/pki"
dev_pki "$pki" $FACTORY
mkdir -p "$T/profiles"
gateway_profile "$T/profiles/gw.yaml" http-gw "$HW" "$FACTORY" "groups: [line-1]"
gateway_profile "$T/profiles/gw-prod.yaml" http-gw-prod "$HW_PROD" "$FACTORY" "production: true"
http_token
(umask 077 && echo "OSF-TOKEN: not-the-right-token-at-all" >"$T/bad-token.hdr")

# The dev PKI's configuration with its paths made absolute, plus profiles, pool and http.
station_config() {
	sed -e "s#^  cert: #  cert: $pki/#" -e "s#^  root: #  root: $pki/#" \
		-e "s#^  softhsm2_conf: #  softhsm2_conf: $pki/#" -e "s#^ledger: .*#ledger: $T/ledger.db#" \
		"$pki/station.yaml"
	cat <<EOF
profiles: $T/profiles
pool:
  workers: 2
http:
  listen: 127.0.0.1:0
  token_file: $T/tokens.txt
  max_body: 65536
EOF
}
station_config >"$T/station.yaml"

cleanup() {
	local rc=$?
	[ -z "${SERVE_PID:-}" ] || kill "$SERVE_PID" 2>/dev/null || true
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

# expect_error DESC STATUS ERROR BODY [curl args...]: the request is refused with STATUS
# and {"error": ERROR, "message": ...}.
expect_error() {
	local what=$1 status=$2 name=$3 body=$4 code
	shift 4
	code=$(post "$body" "$T/err.json" "$@")
	[ "$code" = "$status" ] || fail "$what: status $code, expected $status: $(cat "$T/err.json")"
	[ "$(jq -r .error "$T/err.json")" = "$name" ] ||
		fail "$what: error $(jq -c . "$T/err.json"), expected $name"
	[ -n "$(jq -r .message "$T/err.json")" ] || fail "$what: no message"
	ok "$what: $status $name ($(jq -r .message "$T/err.json" | cut -c1-90))"
}

# register UUID HWID DIR [GROUP]: the device tool's whole registration into DIR.
register() {
	local uuid=$1 hw=$2 dir=$3 code
	[ -f "$dir/csr.pem" ] || key_csr "$dir" "$uuid" $FACTORY
	tool_body "$uuid" "$hw" "$dir/csr.pem" "${4:-}" >"$dir/body.json"
	code=$(curl -s -o /dev/null -w '%{http_code}' -I -H @"$T/token.hdr" "$URL/sign")
	[ "$code" -lt 500 ] || fail "HEAD /sign answered $code: the device tool would give up"
	code=$(post "$dir/body.json" "$dir/answer.json")
	[ "$code" = 201 ] || fail "registration of $uuid: status $code: $(cat "$dir/answer.json")"
	[ "$(jq -c 'keys' "$dir/answer.json")" = '["client.chained","client.pem","root.crt","sota.toml"]' ] ||
		fail "answer keys are $(jq -c keys "$dir/answer.json")"
	# As the device tool does: every key is a file of that name.
	for k in $(jq -r 'keys[]' "$dir/answer.json"); do
		jq -j --arg k "$k" '.[$k]' "$dir/answer.json" >"$dir/$k"
	done
}

serial_of() {
	openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'
}

start_server "$T/station.yaml"
case $URL in http://127.0.0.1:*) ;; *) fail "server URL is '$URL'" ;; esac
ok "station serve listens on $URL"

# ---- HEAD, then a registration like the device tool's -------------------------------------
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$URL/sign")
[ "$code" = 200 ] || fail "HEAD /sign: $code"
ok "HEAD /sign: 200"

U1=$(cat /proc/sys/kernel/random/uuid)
D1="$T/dev1"
register "$U1" $HW "$D1"
grep -q '\\/' "$D1/body.json" || fail "the body lacks the tool's \\/ escapes"
cmp -s "$D1/root.crt" "$pki/factory-root.pem" || fail "root.crt is not the factory root"
cat "$D1/client.pem" "$pki/local-ca.pem" | cmp -s - "$D1/client.chained" ||
	fail "client.chained is not client.pem followed by the device CA"
cmp -s "$D1/sota.toml" "$GOLDEN" || fail "sota.toml differs from $GOLDEN: $(diff "$GOLDEN" "$D1/sota.toml")"
openssl verify -x509_strict -purpose sslclient -CAfile "$D1/root.crt" \
	-untrusted "$pki/local-ca.pem" "$D1/client.pem" >/dev/null || fail "client.pem does not verify"
subj=$(openssl x509 -in "$D1/client.pem" -noout -subject -nameopt RFC2253)
[ "$subj" = "subject=OU=$FACTORY,CN=$U1" ] || fail "subject is '$subj'"
cat "$D1/root.crt" "$pki/local-ca.pem" >"$T/trust.pem"
certtool --verify --verify-profile high --load-ca-certificate "$T/trust.pem" \
	--infile "$D1/client.chained" >"$T/certtool.out" 2>&1 ||
	fail "certtool rejects client.chained: $(tail -3 "$T/certtool.out")"
ok "registered: 201 with exactly root.crt, sota.toml, client.pem, client.chained; chain verifies (openssl, certtool); sota.toml is the golden file"

# The files pass the device gateway's mutual TLS.
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"
gateway_connect "$T/device-cas.pem" "$D1/client.pem" "$D1/pkey.pem" "$D1/root.crt" ||
	fail "gateway refused the registered device: $(cat "$T/gw-client.err")"
ok "the registered files pass the gateway's mutual TLS (s_server -Verify 1, s_client)"

# The same uuid and key again: the recorded certificate, same serial.
code=$(post "$D1/body.json" "$T/again.json")
[ "$code" = 201 ] || fail "repeat: $code $(cat "$T/again.json")"
jq -j '.["client.pem"]' "$T/again.json" >"$T/again.pem"
[ "$(serial_of "$T/again.pem")" = "$(serial_of "$D1/client.pem")" ] || fail "repeat got another serial"
cmp -s "$T/again.pem" "$D1/client.pem" || fail "repeat got another certificate"
ok "same uuid and key again: 201 with the recorded certificate (same serial)"

# An allowed group; and the request's sota-config-dir reaches sota.toml.
U2=$(cat /proc/sys/kernel/random/uuid)
register "$U2" $HW "$T/dev2" line-1
ok "group line-1, allowed by the profile: 201"
U3=$(cat /proc/sys/kernel/random/uuid)
key_csr "$T/dev3" "$U3" $FACTORY
tool_body "$U3" $HW "$T/dev3/csr.pem" | jq --indent 4 '.["sota-config-dir"] = "/factory/sota"' >"$T/dev3/body.json"
code=$(post "$T/dev3/body.json" "$T/dev3/answer.json")
[ "$code" = 201 ] || fail "config dir: $code"
jq -r '.["sota.toml"]' "$T/dev3/answer.json" | has -x 'tls_clientcert_path = "/factory/sota/client.pem"' ||
	fail "sota-config-dir not applied: $(jq -r '.["sota.toml"]' "$T/dev3/answer.json")"
ok "the request's sota-config-dir is written into sota.toml"

# Production: the profile, not the device, decides businessCategory.
U4=$(cat /proc/sys/kernel/random/uuid)
key_csr "$T/dev4" "$U4" $FACTORY -subj "/CN=$U4/OU=$FACTORY/businessCategory=production"
register "$U4" $HW_PROD "$T/dev4"
openssl x509 -in "$T/dev4/client.pem" -noout -subject -nameopt RFC2253 | has "businessCategory=production" ||
	fail "production certificate lacks businessCategory"
ok "production profile: businessCategory=production issued"
GOOD="$U1 $U2 $U3 $U4"

# ---- Every bad request ----------------------------------------------------------------------
B="$T/bad"
mkdir -p "$B"
printf '{"csr": "x", "uuid": ' >"$B/truncated.json"
expect_error "malformed JSON" 400 HTTP_JSON "$B/truncated.json"
jq 'del(.csr)' "$D1/body.json" >"$B/nocsr.json"
expect_error "missing csr" 400 HTTP_FIELD "$B/nocsr.json"
jq '.uuid = 42' "$D1/body.json" >"$B/numuuid.json"
expect_error "uuid not a string" 400 HTTP_FIELD "$B/numuuid.json"

BU=$(cat /proc/sys/kernel/random/uuid)
key_csr "$B/sig" "$BU" $FACTORY
openssl req -in "$B/sig/csr.pem" -outform DER -out "$B/sig/csr.der"
flip_last_bit "$B/sig/csr.der"
{
	echo "-----BEGIN CERTIFICATE REQUEST-----"
	base64 -w 64 "$B/sig/csr.der"
	echo "-----END CERTIFICATE REQUEST-----"
} >"$B/sig/bad.pem"
tool_body "$BU" $HW "$B/sig/bad.pem" >"$B/sig.json"
expect_error "corrupted CSR self-signature" 400 CSR_SIGNATURE "$B/sig.json"

mkdir -p "$B/rsa"
openssl req -new -newkey rsa:1024 -nodes -keyout "$B/rsa/key.pem" -subj "/CN=$BU/OU=$FACTORY" \
	-out "$B/rsa/csr.pem" 2>/dev/null
tool_body "$BU" $HW "$B/rsa/csr.pem" >"$B/rsa.json"
expect_error "RSA-1024 key" 400 CSR_KEY_TYPE "$B/rsa.json"

key_csr "$B/bc" "$BU" $FACTORY -subj "/CN=$BU/OU=$FACTORY/businessCategory=production"
tool_body "$BU" $HW "$B/bc/csr.pem" >"$B/bc.json"
expect_error "businessCategory asked for by a non-production profile's device" 400 CSR_BC_UNEXPECTED "$B/bc.json"
tool_body "$BU" $HW_PROD "$T/dev1/csr.pem" | jq --indent 4 --arg u "$U1" '.uuid = $u' >"$B/nobc.json"
expect_error "production profile, CSR without businessCategory" 400 CSR_BC_MISSING "$B/nobc.json"

key_csr "$B/ou" "$BU" other-factory
tool_body "$BU" $HW "$B/ou/csr.pem" >"$B/ou.json"
expect_error "wrong OU" 400 CSR_OU_MISMATCH "$B/ou.json"

key_csr "$B/cn" "$(cat /proc/sys/kernel/random/uuid)" $FACTORY
tool_body "$BU" $HW "$B/cn/csr.pem" >"$B/cn.json"
expect_error "CN is not the uuid" 400 CSR_CN_MISMATCH "$B/cn.json"

key_csr "$B/id" "NOT-A-UUID" $FACTORY
tool_body "NOT-A-UUID" $HW "$B/id/csr.pem" >"$B/id.json"
expect_error "uuid not a UUID" 400 PROFILE_DEVICE_ID "$B/id.json"

key_csr "$B/hw" "$BU" $FACTORY
tool_body "$BU" no-such-board "$B/hw/csr.pem" >"$B/hw.json"
expect_error "unknown hardware id" 400 PROFILE_NOMATCH "$B/hw.json"

tool_body "$BU" $HW "$B/hw/csr.pem" line-2 >"$B/group.json"
expect_error "group not allowed by the profile" 403 HTTP_GROUP "$B/group.json"
tool_body "$BU" $HW_PROD "$B/bc/csr.pem" line-1 >"$B/group2.json"
expect_error "group on a profile that allows none" 403 HTTP_GROUP "$B/group2.json"

jq --indent 4 '.overrides.pacman.tags = "main"' "$B/hw.json" | sed 's/no-such-board/'$HW'/' >"$B/toml.json"
expect_error "override value that is not TOML text" 400 HTTP_FIELD "$B/toml.json"

tool_body "$BU" $HW "$B/hw/csr.pem" >"$B/good-unsent.json"
TOKEN_HDR="$T/bad-token.hdr" expect_error "wrong token" 401 HTTP_AUTH "$B/good-unsent.json"
cat "$T/token.hdr" "$T/bad-token.hdr" >"$T/two.hdr"
TOKEN_HDR="$T/two.hdr" expect_error "two tokens, one of them right" 401 HTTP_AUTH "$B/good-unsent.json"
code=$(curl -s -o "$T/err.json" -w '%{http_code}' --data-binary @"$B/good-unsent.json" "$URL/sign")
[ "$code" = 401 ] && [ "$(jq -r .error "$T/err.json")" = HTTP_AUTH ] || fail "no token: $code"
ok "no token: 401 HTTP_AUTH"

# The same uuid with another key; and the recorded key for another uuid.
key_csr "$B/other" "$U1" $FACTORY
tool_body "$U1" $HW "$B/other/csr.pem" >"$B/other.json"
expect_error "registered uuid with another key" 409 POOL_ID_OTHER_KEY "$B/other.json"
openssl req -new -key "$D1/pkey.pem" -subj "/CN=$BU/OU=$FACTORY" -out "$B/reuse.pem"
tool_body "$BU" $HW "$B/reuse.pem" >"$B/reuse.json"
expect_error "key already certified for another uuid" 409 POOL_KEY_REUSED "$B/reuse.json"

# Body limit: refused from Content-Length before the body is read, and while a chunked
# body streams in.
{ printf '{"csr": "'; head -c 70000 /dev/zero | tr '\0' A; printf '"}'; } >"$B/big.json"
code=$(post "$B/big.json" /dev/null)
[ "$code" = 413 ] || fail "body over the limit: $code"
code=$(post "$B/big.json" /dev/null -H 'Transfer-Encoding: chunked')
[ "$code" = 413 ] || fail "chunked body over the limit: $code"
ok "body over 64 KiB: 413, with Content-Length and chunked"

# Methods and paths.
code=$(curl -s -D "$T/hdr" -o "$T/err.json" -w '%{http_code}' "$URL/sign")
[ "$code" = 405 ] || fail "GET /sign: $code"
grep -qi '^allow: HEAD, POST' "$T/hdr" || fail "405 without Allow: $(cat "$T/hdr")"
[ "$(jq -r .error "$T/err.json")" = HTTP_METHOD ] || fail "GET /sign error: $(cat "$T/err.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$D1/body.json" "$URL/sign")
[ "$code" = 405 ] || fail "PUT /sign: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/status")
[ "$code" = 405 ] || fail "POST /status: $code"
ok "wrong method: 405 with Allow"
code=$(curl -s -o "$T/err.json" -w '%{http_code}' -H @"$T/token.hdr" --data-binary @"$D1/body.json" "$URL/register")
[ "$code" = 404 ] && [ "$(jq -r .error "$T/err.json")" = HTTP_NOT_FOUND ] || fail "unknown path: $code"
ok "unknown path: 404"

# ---- Pages of other sites -----------------------------------------------------------------
# A page in a browser on this machine may reach the loopback server through a name of its own
# that it rebinds to 127.0.0.1 (DNS rebinding), or post to it from its own origin (CSRF).
# The server answers only its own names (421 HTTP_HOST), and POST /sign never to a browser
# (403 HTTP_BROWSER, with the right token too). Nothing is signed for either.
PORT=${URL##*:}
host_refused() {
	local what=$1 host=$2 code
	shift 2
	code=$(curl -s -o "$T/err.json" -w '%{http_code}' -H "Host: $host" "$@")
	[ "$code" = 421 ] && [ "$(jq -r .error "$T/err.json")" = HTTP_HOST ] ||
		fail "$what with Host $host: $code $(cat "$T/err.json")"
	jq -r .message "$T/err.json" | has -F "Host $host is not this machine" ||
		fail "$what: the message does not name the Host: $(cat "$T/err.json")"
}
for host in "rebind.example:$PORT" rebind.example "localhost.rebind.example:$PORT" \
	"127.0.0.1.nip.io:$PORT" "[2001:db8::1]:$PORT" "10.1.2.3:$PORT"; do
	host_refused "GET /status" "$host" "$URL/status"
	host_refused "GET /metrics" "$host" "$URL/metrics"
	host_refused "GET /console" "$host" "$URL/console"
	host_refused "POST /sign" "$host" -H @"$T/token.hdr" -H 'Content-Type: application/json' \
		--data-binary @"$B/good-unsent.json" "$URL/sign"
done
for host in "localhost:$PORT" "LocalHost.:$PORT" "station.localhost:$PORT" "127.0.0.1:$PORT" \
	"127.0.1.1:$PORT" "[::1]:$PORT" "$(hostname):$PORT"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "$URL/status")
	[ "$code" = 200 ] || fail "GET /status with Host $host: $code"
done
# A client that names no host (HTTP/1.0) is no page of another site.
exec 6<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /status HTTP/1.0\r\n\r\n' >&6
read -r -t 30 line <&6 || fail "no answer to HTTP/1.0 without Host"
exec 6<&-
case $line in "HTTP/1.1 200"* | "HTTP/1.0 200"*) ;; *) fail "HTTP/1.0 without Host: '$line'" ;; esac
ok "another site's name for 127.0.0.1 (6 kinds): 421 HTTP_HOST on /status, /metrics, /console, /sign; this machine's names (7 kinds, and none, HTTP/1.0) served"
for h in "Origin: http://evil.example" "Origin: null" "Origin: http://127.0.0.1:$PORT" \
	"Sec-Fetch-Site: cross-site" "Sec-Fetch-Site: same-origin"; do
	expect_error "POST /sign with '$h'" 403 HTTP_BROWSER "$B/good-unsent.json" -H "$h"
done
jq -r .message "$T/err.json" | has -F "from a web page" || fail "browser refusal: $(cat "$T/err.json")"
# The other resources: another site's page may link to them (a navigation), never fetch them.
for r in "/status cross-site cors" "/metrics same-site no-cors" "/console/events cross-site cors" \
	"/console cross-site no-cors" "/status cross-site navigate -X POST"; do
	set -- $r
	code=$(curl -s -o "$T/err.json" -w '%{http_code}' -H "Sec-Fetch-Site: $2" -H "Sec-Fetch-Mode: $3" \
		${4:+"$4"} ${5:+"$5"} "$URL$1")
	[ "$code" = 403 ] && [ "$(jq -r .error "$T/err.json")" = HTTP_BROWSER ] ||
		fail "$1 fetched by another site ($2, $3): $code $(cat "$T/err.json")"
done
for r in "/console cross-site navigate" "/status same-origin cors" "/status none navigate" \
	"/console same-site navigate"; do
	set -- $r
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "Sec-Fetch-Site: $2" -H "Sec-Fetch-Mode: $3" "$URL$1")
	[ "$code" = 200 ] || fail "$1 with Sec-Fetch-Site $2 and mode $3: $code"
done
curl -s -D "$T/hdr" -o /dev/null "$URL/status"
grep -qix 'x-content-type-options: nosniff.' "$T/hdr" && grep -qix 'x-frame-options: DENY.' "$T/hdr" ||
	fail "no nosniff or frame options: $(cat "$T/hdr")"
ok "POST /sign from a web page (Origin or Sec-Fetch-Site, 5 kinds): 403 HTTP_BROWSER; the other resources too when another site fetches them (5 kinds), not when it links to them; every answer says nosniff and no framing"

# ---- Nothing was signed for any refused request -----------------------------------------
"$STATION" ledger -c "$T/station.yaml" list >"$T/ledger.txt" || fail "ledger list failed"
rows=$(($(wc -l <"$T/ledger.txt") - 1))
[ "$rows" = 4 ] || fail "ledger has $rows rows, expected the 4 good registrations: $(cat "$T/ledger.txt")"
for u in $GOOD; do
	grep -q "$u" "$T/ledger.txt" || fail "$u missing from the ledger"
done
grep -q "$BU" "$T/ledger.txt" && fail "a refused uuid is in the ledger"
ok "ledger: the 4 good registrations only (the bad CSRs, checked on the signing workers, left no row)"

# ---- Status and metrics -----------------------------------------------------------------
curl -s "$URL/status" >"$T/status.json"
[ "$(jq .registrations.signed "$T/status.json")" = 4 ] || fail "status: $(cat "$T/status.json")"
[ "$(jq .registrations.reused "$T/status.json")" = 1 ] || fail "status reused: $(jq .registrations "$T/status.json")"
[ "$(jq .registrations.refused "$T/status.json")" = 2 ] || fail "status refused: $(jq .registrations "$T/status.json")"
[ "$(jq .pool.signed "$T/status.json")" = 4 ] || fail "status pool: $(jq .pool "$T/status.json")"
[ "$(jq .registrations.too_large "$T/status.json")" = 2 ] || fail "status 413s: $(jq .registrations "$T/status.json")"
curl -s "$URL/metrics" >"$T/metrics.txt"
grep -qx 'station_registrations_total{result="signed"} 4' "$T/metrics.txt" || fail "metrics: $(head -20 "$T/metrics.txt")"
grep -qx 'station_certificates_signed_total 4' "$T/metrics.txt" || fail "metrics: signed total"
grep -qx 'station_pool_paused 0' "$T/metrics.txt" || fail "metrics: paused"
grep -q '^station_pool_queue_depth 0$' "$T/metrics.txt" || fail "metrics: queue depth"
grep -q '^station_sign_batches_total [1-9]' "$T/metrics.txt" || fail "metrics: batches"
grep -q '^station_registration_duration_seconds_count [1-9]' "$T/metrics.txt" || fail "metrics: latency"
grep -q '^# TYPE station_registration_duration_seconds histogram$' "$T/metrics.txt" || fail "metrics: histogram type"
ok "GET /status (JSON) and GET /metrics (Prometheus text)"
grep -q "$TOKEN" "$T/serve.err" && fail "the token appears in the log"
ok "the token never reaches the log"
# An idle keep-alive connection does not hold the stop up.
exec 5<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&5
read -r -t 30 line <&5 || fail "no answer on the keep-alive connection"
case $line in "HTTP/1.1 200"*) ;; *) fail "keep-alive connection: '$line'" ;; esac
stop_server
exec 5<&-
ok "SIGTERM with an idle keep-alive connection open: clean exit"
# Delivery marks ride with the ledger's next commit (or wait a moment for one); the server
# commits them before it exits.
"$STATION" ledger -c "$T/station.yaml" list >"$T/ledger.txt" || fail "ledger list failed"
grep -qv "delivered\|STATE" "$T/ledger.txt" && fail "a row is not delivered: $(cat "$T/ledger.txt")"
ok "ledger: each of the 4 good registrations delivered"

# ---- HTTPS with client certificates; the ledger across a restart ------------------------
{
	station_config | sed '/^  token_file/d'
	echo "  tls_cert: $pki/gateway.pem"
	echo "  tls_key: $pki/gateway.key"
	echo "  client_ca: $T/device-cas.pem"
} >"$T/tls.yaml"
start_server "$T/tls.yaml"
case $URL in https://127.0.0.1:*) ;; *) fail "TLS server URL is '$URL'" ;; esac
code=$(curl -s -o "$T/tls.json" -w '%{http_code}' --cacert "$pki/factory-root.pem" \
	--cert "$D1/client.pem" --key "$D1/pkey.pem" -H 'Content-Type: application/json' \
	--data-binary @"$D1/body.json" "$URL/sign")
[ "$code" = 201 ] || fail "HTTPS registration with a client certificate: $code $(cat "$T/tls.json")"
jq -j '.["client.pem"]' "$T/tls.json" | cmp -s - "$D1/client.pem" ||
	fail "after the restart the repeat got another certificate"
ok "HTTPS with a client certificate: 201, the recorded certificate after a restart"
if curl -s -o /dev/null --cacert "$pki/factory-root.pem" --data-binary @"$D1/body.json" \
	"$URL/sign" 2>/dev/null; then
	fail "HTTPS without a client certificate was served"
fi
ok "HTTPS without a client certificate: refused in the handshake"
stop_server
grep -q "AddressSanitizer\|runtime error" "$T/serve.err" && fail "sanitizer report: $(cat "$T/serve.err")"
echo "all passed"
