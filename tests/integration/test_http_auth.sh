#!/usr/bin/env bash
# Who may use the registration server. Beyond loopback `station serve` (and `station run`)
# refuse to start unless every client authenticates (client certificates, or tokens over
# HTTPS) or the configuration says `allow_unauthenticated: true`; tokens over plain HTTP
# beyond loopback are refused. Each refusal is a file:line:col error naming the fix, for
# every non-loopback form (0.0.0.0, [::], a specific IPv4 or IPv6 address, an IPv4-mapped
# one). The configurations allowed really demand their credential (401, or no TLS
# handshake, without it), on /status and /metrics as on /sign. Then reissue under
# `reprovision: reissue`: the same uuid with a new key gets a new certificate only with a
# token or the device's own client certificate, and is refused (409, flagged, nothing
# signed) otherwise.
#
# Traffic goes to loopback only. The non-loopback listeners bind in a network namespace of
# their own (unshare -n), whose loopback interface carries the documentation addresses
# 192.0.2.1 and 2001:db8::1: nothing leaves the namespace. Without unshare those listeners
# are skipped; the refusals, which bind nothing, are checked either way.
if [ -z "${STATION_TEST_NETNS:-}" ] && unshare -n true 2>/dev/null; then
	STATION_TEST_NETNS=1 exec unshare -n bash "$0" "$@"
fi
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/http.sh"
# Only inside a namespace of its own does the test touch an interface.
NETNS=
if [ "${STATION_TEST_NETNS:-}" = 1 ] &&
	[ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net 2>/dev/null)" ]; then
	NETNS=1
	ip link set lo up
	ip addr add 192.0.2.1/32 dev lo
	ip addr add 2001:db8::1/128 dev lo nodad
fi
FACTORY=auth-factory
HW=auth-board

pki="$T/pki"
dev_pki "$pki" $FACTORY
mkdir -p "$pki/profiles"
gateway_profile "$pki/profiles/gw.yaml" auth-gw $HW $FACTORY "certificate: {reprovision: reissue}"
make_token "$pki"
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$pki/device-cas.pem"
TLS=("tls_cert: gateway.pem" "tls_key: gateway.key")

# http_config NAME LINE...: $pki/NAME.yaml: the dev PKI's configuration with the profiles,
# and an http section of the given lines.
http_config() {
	local name=$1 l
	shift
	{
		cat "$pki/station.yaml"
		echo "profiles: profiles/"
		echo "http:"
		for l in "$@"; do echo "  $l"; done
		echo "  max_body: 65536"
	} >"$pki/$name.yaml"
}

# refused DESC TEXT LINE...: `station serve` refuses the configuration with these http lines
# at start, with an error at file:line:col that says TEXT; nothing was served.
n_refused=0
refused() {
	local what=$1 text=$2 cfg="$pki/refused.yaml"
	shift 2
	http_config refused "$@"
	if timeout 60 "$STATION" serve -c "$cfg" >"$T/out" 2>"$T/err"; then
		fail "$what: station serve started"
	fi
	grep -q "serving on" "$T/out" && fail "$what: it served: $(cat "$T/out")"
	grep -E "^$cfg:[0-9]+:[0-9]+: " "$T/err" | has -F -- "$text" ||
		fail "$what: no file:line:col error saying '$text': $(cat "$T/err")"
	grep -q "errors\? in $cfg" "$T/err" || fail "$what: $(cat "$T/err")"
	n_refused=$((n_refused + 1))
}

# ---- Refused by the configuration alone -----------------------------------------------------
NOT_LOOPBACK="is not loopback: anyone who reaches it"
PLAIN_TOKENS="tokens over plain HTTP"
for listen in 0.0.0.0:0 "'[::]:0'" 192.0.2.1:8443 "'[2001:db8::1]:0'" "'[::ffff:192.0.2.1]:0'" \
	10.11.12.13:443; do
	refused "$listen, nothing" "$NOT_LOOPBACK" "listen: $listen"
	refused "$listen, HTTPS without client_ca or tokens" "$NOT_LOOPBACK" "listen: $listen" "${TLS[@]}"
	refused "$listen, token_file over plain HTTP" "$PLAIN_TOKENS" "listen: $listen" "token_file: tokens.txt"
	refused "$listen, tokens over plain HTTP" "$PLAIN_TOKENS" "listen: $listen" "tokens: [$TOKEN]"
	refused "$listen, allow_unauthenticated: false" "$NOT_LOOPBACK" "listen: $listen" \
		"allow_unauthenticated: false"
	refused "$listen, allow_unauthenticated: yes" "must be true or false" "listen: $listen" \
		"allow_unauthenticated: yes"
	refused "$listen, allow_unauthenticated with tokens over plain HTTP" "contradicts token_file" \
		"listen: $listen" "token_file: tokens.txt" "allow_unauthenticated: true"
done
refused "loopback, allow_unauthenticated with client certificates" "contradicts client_ca" \
	"listen: localhost:0" "${TLS[@]}" "client_ca: device-cas.pem" "allow_unauthenticated: true"
ok "station serve refuses $n_refused configurations at start, each at file:line:col with the fix"

# The fix is named, at the key concerned; and `station run` refuses the same.
http_config refused "listen: 0.0.0.0:8443"
if timeout 60 "$STATION" run -c "$pki/refused.yaml" --no-view >"$T/out" 2>"$T/err"; then
	fail "station run started with an open listener beyond loopback"
fi
grep -qF "$pki/refused.yaml:13:11: listen address '0.0.0.0:8443' is not loopback" "$T/err" ||
	fail "station run: $(cat "$T/err")"
for fix in "tls_cert, tls_key, client_ca" "token_file or tokens" "allow_unauthenticated: true" \
	"listen on loopback"; do
	grep -qF "$fix" "$T/err" || fail "the message does not name '$fix': $(cat "$T/err")"
done
http_config refused "listen: '[::]:8443'" "token_file: tokens.txt"
timeout 60 "$STATION" run -c "$pki/refused.yaml" --no-view >"$T/out" 2>"$T/err" &&
	fail "station run started with tokens over plain HTTP"
grep -qF "$pki/refused.yaml:14:15: tokens over plain HTTP on '[::]:8443'" "$T/err" ||
	fail "station run: $(cat "$T/err")"
grep -qF "add tls_cert and tls_key" "$T/err" || fail "no fix named: $(cat "$T/err")"
ok "station run refuses them too; the messages point at listen and token_file and name the fixes"

# ---- Requests --------------------------------------------------------------------------------
# call OUT METHOD URL [curl args]: prints the status code ("000" when no HTTP answer came,
# e.g. a refused TLS handshake); the body goes to OUT.
call() {
	local out=$1 method=$2 url=$3
	shift 3
	curl -s -o "$out" -w '%{http_code}' -X "$method" "$@" "$url" || true
}

# expect_code WHAT WANT GOT [FILE]: FILE holds the answer, for the message.
expect_code() {
	[ "$3" = "$2" ] || fail "$1: status $3, expected $2: $(head -c 300 "${4:-/dev/null}" 2>/dev/null)"
}

# register UUID DIR BASE [curl args]: POST /sign for a new key in DIR (made unless there);
# prints the status; a 201's files are written into DIR.
register() {
	local uuid=$1 dir=$2 base=$3 code k
	shift 3
	[ -f "$dir/csr.pem" ] || key_csr "$dir" "$uuid" $FACTORY
	tool_body "$uuid" $HW "$dir/csr.pem" >"$dir/body.json"
	code=$(call "$dir/answer.json" POST "$base/sign" -H 'Content-Type: application/json' \
		--data-binary @"$dir/body.json" "$@")
	if [ "$code" = 201 ]; then
		for k in client.pem client.chained root.crt sota.toml; do
			jq -j --arg k "$k" '.[$k]' "$dir/answer.json" >"$dir/$k"
		done
	fi
	echo "$code"
}

# base ADDR PORT TLS: the URL to reach the server at ADDR (a numeric address); over TLS the
# name is localhost (the gateway certificate's), resolved to ADDR by curl --resolve.
base() {
	if [ "$3" = tls ]; then
		echo "https://localhost:$2"
	else
		case $1 in *:*) echo "http://[$1]:$2" ;; *) echo "http://$1:$2" ;; esac
	fi
}
tls_args() {
	case $1 in *:*) echo "--cacert $pki/factory-root.pem --resolve localhost:$2:[$1]" ;;
	*) echo "--cacert $pki/factory-root.pem --resolve localhost:$2:$1" ;; esac
}

# guarded_by_token ADDR PORT: an HTTPS server with tokens at ADDR answers 401 without the
# token on /sign, /status and /metrics, and serves them with it.
guarded_by_token() {
	local addr=$1 port=$2 b code r u
	b=$(base "$addr" "$port" tls)
	# shellcheck disable=SC2046
	set -- $(tls_args "$addr" "$port")
	for r in status metrics; do
		code=$(call "$T/r.json" GET "$b/$r" "$@")
		expect_code "$addr: GET /$r without a token" 401 "$code" "$T/r.json"
		[ "$(jq -r .error "$T/r.json")" = HTTP_AUTH ] || fail "/$r: $(cat "$T/r.json")"
		code=$(call "$T/r.json" GET "$b/$r" -H @"$T/token.hdr" "$@")
		expect_code "$addr: GET /$r with the token" 200 "$code" "$T/r.json"
	done
	grep -q '^station_registrations_total' "$T/r.json" || fail "/metrics: $(head -3 "$T/r.json")"
	u=$(cat /proc/sys/kernel/random/uuid)
	code=$(register "$u" "$T/d-$u" "$b" "$@")
	expect_code "$addr: POST /sign without a token" 401 "$code" "$T/d-$u/answer.json"
	code=$(register "$u" "$T/d-$u" "$b" -H @"$T/token.hdr" "$@")
	expect_code "$addr: POST /sign with the token" 201 "$code" "$T/d-$u/answer.json"
	code=$(call /dev/null HEAD "$b/sign" -I "$@")
	expect_code "$addr: HEAD /sign (the device tool's probe)" 200 "$code"
}

# guarded_by_cert ADDR PORT DIR [curl args]: an HTTPS server with client_ca at ADDR
# completes no handshake without a client certificate. A device presenting DIR's reads no
# /status, /metrics or console and registers no new id, unless the curl args carry a token.
guarded_by_cert() {
	local addr=$1 port=$2 dev=$3 b code r u read=401 sign=401 extra=("${@:4}")
	[ ${#extra[@]} = 0 ] || { read=200; sign=201; }
	b=$(base "$addr" "$port" tls)
	# shellcheck disable=SC2046
	set -- $(tls_args "$addr" "$port") "${extra[@]}"
	for r in status metrics console/events; do
		code=$(call "$T/r.json" GET "$b/$r" "$@")
		expect_code "$addr: GET /$r without a client certificate" 000 "$code"
		# The event stream, once open, does not end.
		[ "$r" = console/events ] && [ $read = 200 ] && continue
		code=$(call "$T/r.json" GET "$b/$r" --cert "$dev/client.pem" --key "$dev/pkey.pem" "$@")
		expect_code "$addr: GET /$r with a client certificate" $read "$code" "$T/r.json"
	done
	u=$(cat /proc/sys/kernel/random/uuid)
	code=$(register "$u" "$T/d-$u" "$b" "$@")
	expect_code "$addr: POST /sign without a client certificate" 000 "$code"
	code=$(register "$u" "$T/d-$u" "$b" --cert "$dev/client.pem" --key "$dev/pkey.pem" "$@")
	expect_code "$addr: POST /sign of a new id with a client certificate" $sign "$code" "$T/d-$u/answer.json"
}

# ---- Loopback: no authentication needed ----------------------------------------------------
http_config open "listen: localhost:0"
start_server "$pki/open.yaml"
case $URL in http://127.0.0.1:*) ;; *) fail "localhost:0 serves on '$URL'" ;; esac
grep -q "warning: 'reprovision: reissue' applies only to HTTP registrations" "$T/serve.err" ||
	fail "no warning about reissue on the serial line: $(cat "$T/serve.err")"
U1=$(cat /proc/sys/kernel/random/uuid)
code=$(register "$U1" "$T/u1" "$URL")
expect_code "loopback, no authentication: POST /sign" 201 "$code" "$T/u1/answer.json"
# A second device, whose certificate the tests below present.
U2=$(cat /proc/sys/kernel/random/uuid)
code=$(register "$U2" "$T/u2" "$URL")
expect_code "loopback, no authentication: POST /sign, another device" 201 "$code" "$T/u2/answer.json"
code=$(call "$T/r.json" GET "$URL/status")
expect_code "loopback, no authentication: GET /status" 200 "$code"
ok "localhost:0 listens on 127.0.0.1 and serves without authentication"

# Reissue without authentication: the same uuid with another key.
code=$(register "$U1" "$T/u1-k2" "$URL")
expect_code "reissue without authentication" 409 "$code" "$T/u1-k2/answer.json"
[ "$(jq -r .error "$T/u1-k2/answer.json")" = POOL_REISSUE_UNAUTH ] ||
	fail "reissue without authentication: $(cat "$T/u1-k2/answer.json")"
jq -r .message "$T/u1-k2/answer.json" | has "reissues only to authenticated requests" ||
	fail "no clear reason: $(cat "$T/u1-k2/answer.json")"
# Another unauthenticated request in the same class: a third key.
code=$(register "$U1" "$T/u1-k3" "$URL")
expect_code "reissue without authentication, another key" 409 "$code" "$T/u1-k3/answer.json"
stop_server
[ "$("$STATION" ledger -c "$pki/open.yaml" list | grep -c "$U1")" = 1 ] ||
	fail "a refused reissue reached the ledger: $("$STATION" ledger -c "$pki/open.yaml" list)"
[ "$("$STATION" ledger -c "$pki/open.yaml" flags | grep "$U1" | grep -c "reissues only to authenticated")" = 2 ] ||
	fail "refused reissues not flagged: $("$STATION" ledger -c "$pki/open.yaml" flags)"
ok "reissue without a token or certificate: 409 POOL_REISSUE_UNAUTH, flagged, nothing signed"

# A file of secrets that every user of the machine may read or write is refused at start,
# naming it, its mode and the fix; its group may read it (0640, root's, group station).
http_config tokens "listen: '[::1]:0'" "token_file: tokens.txt"
http_config tlskey "listen: 127.0.0.1:0" "${TLS[@]}" "token_file: tokens.txt"
for f in "tokens:tokens.txt:token_file" "tlskey:gateway.key:tls_key"; do
	IFS=: read -r cfg file key <<<"$f"
	for m in 0644:read 0602:write 0606:"read and write" 0604:read; do
		chmod "${m%%:*}" "$pki/$file"
		if timeout 60 "$STATION" serve -c "$pki/$cfg.yaml" >"$T/out" 2>"$T/err"; then
			fail "$key of mode ${m%%:*}: station serve started"
		fi
		grep -qF "$key $pki/$file has mode ${m%%:*}: every user of this machine may ${m#*:} it" "$T/err" &&
			grep -qF "chmod o-rwx $pki/$file" "$T/err" ||
			fail "$key of mode ${m%%:*}: $(cat "$T/err")"
	done
	chmod 0640 "$pki/$file"
	start_server "$pki/$cfg.yaml"
	stop_server
	chmod 0600 "$pki/$file"
done
grep -q "$TOKEN" "$T/err" "$T/serve.err" && fail "a token reached the log"
ok "token_file and tls_key that every user may read or write (4 modes each): refused at start, naming the file, its mode and the fix; 0640 served"

# Tokens written in the configuration itself make it a file of secrets too.
http_config inline "listen: 127.0.0.1:0" "tokens: [$TOKEN]"
for m in 0644:read 0602:write 0606:"read and write" 0604:read; do
	chmod "${m%%:*}" "$pki/inline.yaml"
	if timeout 60 "$STATION" serve -c "$pki/inline.yaml" >"$T/out" 2>"$T/err"; then
		fail "inline tokens in a configuration of mode ${m%%:*}: station serve started"
	fi
	grep -qF "the configuration file, which lists 'tokens', $pki/inline.yaml has mode ${m%%:*}: every user of this machine may ${m#*:} it" "$T/err" &&
		grep -qF "chmod o-rwx $pki/inline.yaml" "$T/err" ||
		fail "inline tokens, configuration of mode ${m%%:*}: $(cat "$T/err")"
done
for m in 0640 0600; do
	chmod $m "$pki/inline.yaml"
	start_server "$pki/inline.yaml"
	code=$(call "$T/r.json" GET "$URL/status")
	expect_code "inline tokens, configuration of mode $m: GET /status" 200 "$code" "$T/r.json"
	stop_server
done
grep -q "$TOKEN" "$T/err" "$T/serve.err" && fail "a token reached the log"
ok "tokens in a configuration that every user may read or write (4 modes): refused at start, naming it, its mode and the fix; 0640 and 0600 served"

# Loopback with tokens over plain HTTP: /sign needs the token; /status and /metrics, which
# only the machine itself can reach, do not.
start_server "$pki/tokens.yaml"
case $URL in "http://[::1]:"*) ;; *) fail "[::1]:0 serves on '$URL'" ;; esac
code=$(call "$T/r.json" GET "$URL/status")
expect_code "loopback with tokens: GET /status" 200 "$code" "$T/r.json"
code=$(register "$U1" "$T/u1-k2" "$URL")
expect_code "loopback with tokens: POST /sign without the token" 401 "$code" "$T/u1-k2/answer.json"
code=$(register "$U1" "$T/u1-k2" "$URL" -H @"$T/token.hdr")
expect_code "reissue with a token" 201 "$code" "$T/u1-k2/answer.json"
s1=$(openssl x509 -in "$T/u1/client.pem" -noout -serial)
s2=$(openssl x509 -in "$T/u1-k2/client.pem" -noout -serial)
[ "$s1" != "$s2" ] || fail "the reissue has the first certificate's serial"
openssl verify -CAfile "$pki/factory-root.pem" -untrusted "$pki/local-ca.pem" \
	"$T/u1-k2/client.pem" >/dev/null || fail "the reissued certificate does not verify"
[ "$(openssl x509 -in "$T/u1-k2/client.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" = \
	"$(openssl pkey -in "$T/u1-k2/pkey.pem" -pubout -outform DER | sha256sum)" ] ||
	fail "the reissued certificate is not for the new key"
stop_server
ok "[::1] with tokens: /status open on loopback, /sign needs the token; reissue with the token: 201, new serial"

# Client certificates alone: a certificate vouches for the device it names and for no other
# id, new or recorded (whoever holds one device's key must not buy certificates for others);
# its own id it may reissue.
http_config certs "listen: 127.0.0.1:0" "${TLS[@]}" "client_ca: device-cas.pem"
start_server "$pki/certs.yaml"
P=${URL##*:}
B=$(base 127.0.0.1 "$P" tls)
# shellcheck disable=SC2046
set -- $(tls_args 127.0.0.1 "$P")
U3=$(cat /proc/sys/kernel/random/uuid)
code=$(register "$U3" "$T/u3" "$B" --cert "$T/u1-k2/client.pem" --key "$T/u1-k2/pkey.pem" "$@")
expect_code "a new device, registered with another device's certificate" 401 "$code" "$T/u3/answer.json"
[ "$(jq -r .error "$T/u3/answer.json")" = HTTP_AUTH ] || fail "$(cat "$T/u3/answer.json")"
jq -r .message "$T/u3/answer.json" |
	has "a client certificate vouches only for the device it names (CN $U1): registering device $U3 needs an OSF-TOKEN" ||
	fail "the refusal does not say why: $(cat "$T/u3/answer.json")"
code=$(register "$U2" "$T/u2-k2" "$B" --cert "$T/u1-k2/client.pem" --key "$T/u1-k2/pkey.pem" "$@")
expect_code "reissue with another device's certificate" 401 "$code" "$T/u2-k2/answer.json"
[ "$(jq -r .error "$T/u2-k2/answer.json")" = HTTP_AUTH ] || fail "$(cat "$T/u2-k2/answer.json")"
code=$(register "$U2" "$T/u2-k2" "$B" --cert "$T/u2/client.pem" --key "$T/u2/pkey.pem" "$@")
expect_code "reissue with the device's own certificate" 201 "$code" "$T/u2-k2/answer.json"
code=$(register "$U1" "$T/u1-k4" "$B" --cert "$T/u1-k2/client.pem" --key "$T/u1-k2/pkey.pem" "$@")
expect_code "reissue with the device's own (reissued) certificate" 201 "$code" "$T/u1-k4/answer.json"
# The certificate the reissue replaced still names the device, but is no longer its own: it
# cannot take the id back (whoever kept or stole it), while the current one can.
code=$(register "$U2" "$T/u2-k3" "$B" --cert "$T/u2/client.pem" --key "$T/u2/pkey.pem" "$@")
expect_code "reissue with the device's replaced certificate" 409 "$code" "$T/u2-k3/answer.json"
[ "$(jq -r .error "$T/u2-k3/answer.json")" = POOL_REISSUE_UNAUTH ] || fail "$(cat "$T/u2-k3/answer.json")"
old=$(openssl x509 -in "$T/u2/client.pem" -noout -serial | cut -d= -f2 | tr A-F a-f)
cur=$(openssl x509 -in "$T/u2-k2/client.pem" -noout -serial | cut -d= -f2 | tr A-F a-f)
jq -r .message "$T/u2-k3/answer.json" | has "(serial $old) is not the device's current one (its current one is serial $cur," ||
	fail "the refusal does not name both serials: $(cat "$T/u2-k3/answer.json")"
code=$(register "$U2" "$T/u2-k4" "$B" --cert "$T/u2-k2/client.pem" --key "$T/u2-k2/pkey.pem" "$@")
expect_code "reissue with the device's current certificate" 201 "$code" "$T/u2-k4/answer.json"
code=$(register "$U2" "$T/u2-k3" "$B" --cert "$T/u2-k2/client.pem" --key "$T/u2-k2/pkey.pem" "$@")
expect_code "reissue with the certificate just replaced" 409 "$code" "$T/u2-k3/answer.json"
stop_server
[ "$("$STATION" ledger -c "$pki/certs.yaml" list | grep -c "$U2")" = 3 ] ||
	fail "ledger rows for $U2: $("$STATION" ledger -c "$pki/certs.yaml" list)"
"$STATION" ledger -c "$pki/certs.yaml" list | grep -q "$U3" &&
	fail "another device's certificate bought a certificate for $U3"
[ "$("$STATION" ledger -c "$pki/certs.yaml" list | grep -c "$U1")" = 3 ] ||
	fail "ledger rows for $U1: $("$STATION" ledger -c "$pki/certs.yaml" list)"
[ "$("$STATION" ledger -c "$pki/certs.yaml" flags | grep "$U2" | grep -c "is not the device's current one")" = 2 ] ||
	fail "refused reissues by a replaced certificate not flagged: $("$STATION" ledger -c "$pki/certs.yaml" flags)"
ok "client certificates alone: another device's certificate registers no new id and reissues none (401); the device's current certificate reissues (201), a replaced one is refused (409, flagged)"

# ---- Beyond loopback: what is allowed really demands its credential --------------------------
if [ -z "$NETNS" ]; then
	echo "skip - listeners beyond loopback: unshare -n (a network namespace) is not available"
	echo "all passed"
	exit 0
fi

http_config any4 "listen: 0.0.0.0:0" "${TLS[@]}" "token_file: tokens.txt"
start_server "$pki/any4.yaml"
P=${URL##*:}
guarded_by_token 127.0.0.1 "$P"
guarded_by_token 192.0.2.1 "$P"
stop_server
ok "0.0.0.0 with tokens over HTTPS: 401 without the token on /sign, /status and /metrics (via 127.0.0.1 and 192.0.2.1)"

http_config any6 "listen: '[::]:0'" "${TLS[@]}" "client_ca: device-cas.pem"
start_server "$pki/any6.yaml"
P=${URL##*:}
guarded_by_cert ::1 "$P" "$T/u2"
guarded_by_cert 2001:db8::1 "$P" "$T/u2"
stop_server
grep -q "takes client certificates only: each registers the device it names" "$T/serve.err" ||
	fail "no notice that client certificates alone register their own devices only: $(cat "$T/serve.err")"
ok "[::] with client certificates: no handshake without one; with one, no /status, /metrics, console or new id (via ::1 and 2001:db8::1)"

http_config ip4 "listen: 192.0.2.1:0" "${TLS[@]}" "tokens: [$TOKEN]"
chmod 0600 "$pki/ip4.yaml"
start_server "$pki/ip4.yaml"
P=${URL##*:}
guarded_by_token 192.0.2.1 "$P"
stop_server
ok "192.0.2.1 with tokens (in the file) over HTTPS: 401 without the token"

http_config ip6 "listen: '[2001:db8::1]:0'" "${TLS[@]}" "client_ca: device-cas.pem" "token_file: tokens.txt"
start_server "$pki/ip6.yaml"
P=${URL##*:}
guarded_by_cert 2001:db8::1 "$P" "$T/u2" -H @"$T/token.hdr"
# shellcheck disable=SC2046
set -- $(tls_args 2001:db8::1 "$P")
code=$(call "$T/r.json" GET "https://localhost:$P/status" --cert "$T/u2/client.pem" --key "$T/u2/pkey.pem" "$@")
expect_code "[2001:db8::1] with both: a client certificate without the token" 401 "$code" "$T/r.json"
stop_server
ok "[2001:db8::1] with client certificates and tokens: both demanded"

http_config anyopen "listen: 0.0.0.0:0" "allow_unauthenticated: true"
start_server "$pki/anyopen.yaml"
P=${URL##*:}
grep -q "answers without authentication (allow_unauthenticated: true)" "$T/serve.err" ||
	fail "no warning for an open listener: $(tail -3 "$T/serve.err")"
for addr in 127.0.0.1 192.0.2.1; do
	b=$(base $addr "$P" plain)
	u=$(cat /proc/sys/kernel/random/uuid)
	code=$(register "$u" "$T/d-$u" "$b")
	expect_code "0.0.0.0 allow_unauthenticated: POST /sign" 201 "$code" "$T/d-$u/answer.json"
	code=$(call "$T/r.json" GET "$b/status")
	expect_code "0.0.0.0 allow_unauthenticated: GET /status" 200 "$code" "$T/r.json"
done
# Open, yet a reissue is still not authenticated.
code=$(register "$U2" "$T/u2-k3" "$b")
expect_code "reissue on an open listener" 409 "$code" "$T/u2-k3/answer.json"
stop_server
ok "0.0.0.0 with allow_unauthenticated: true: serves anyone, with a warning; reissue still refused"

grep -q "$TOKEN" "$T/serve.err" && fail "the token appears in the log"
grep -q "AddressSanitizer\|runtime error" "$T/serve.err" && fail "sanitizer report: $(cat "$T/serve.err")"
echo "all passed"
