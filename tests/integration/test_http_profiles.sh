#!/usr/bin/env bash
# Which profile a registration request gets, with the shipped example profiles: the gateway
# (lmp-gateway.yaml) and its production build (lmp-gateway-production.yaml) share a hardware
# id and differ by match.sku, which a request does not carry. What the request carries
# decides: a production device (its CSR asks for businessCategory=production) gets the
# production profile and a development device the other, each registering as
# lmp-device-register does. Two production profiles that only a sku tells apart are refused
# as ambiguous, naming both, and nothing is signed for it.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/http.sh"
for tool in curl jq openssl; do
	command -v $tool >/dev/null || fail "$tool is needed (tests/lib/deps.sh installs it)"
done
trap 'rc=$?; [ -z "${SERVE_PID:-}" ] || kill "$SERVE_PID" 2>/dev/null || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT
FACTORY=acme-factory
HW=imx8mm-lpddr4-evk
pki="$T/pki"
# A PKI as `station ca init` makes it by default: the shipped profiles issue under it as
# they are (the production profile's certificates end before its device CA does).
dev_pki "$pki" $FACTORY
cp -r "$SOURCE_DIR/profiles" "$pki/profiles"
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && echo "$TOKEN" >"$T/tokens.txt" && echo "OSF-TOKEN: $TOKEN" >"$T/token.hdr")
cp "$pki/station.yaml" "$pki/serve.yaml"
printf 'profiles: profiles\nhttp:\n  listen: 127.0.0.1:0\n  token_file: %s\n' "$T/tokens.txt" \
	>>"$pki/serve.yaml"

# device NAME [production]: a device's key, CSR and request body in $T/NAME, its uuid in
# $T/NAME/uuid.
device() {
	local d="$T/$1" u
	u=$(cat /proc/sys/kernel/random/uuid)
	mkdir -p "$d"
	echo "$u" >"$d/uuid"
	if [ "${2:-}" = production ]; then
		key_csr "$d" "$u" $FACTORY -subj "/CN=$u/OU=$FACTORY/businessCategory=production"
	else
		key_csr "$d" "$u" $FACTORY
	fi
	tool_body "$u" $HW "$d/csr.pem" >"$d/body.json"
}

# registers NAME SKU: NAME's request is answered 201 with a certificate that carries
# businessCategory=production exactly when SKU is the production profile, and the ledger
# records it under SKU.
registers() {
	local d="$T/$1" code subj want
	code=$(post "$d/body.json" "$d/answer.json")
	[ "$code" = 201 ] || fail "$1: status $code: $(cat "$d/answer.json")"
	jq -j '.["client.pem"]' "$d/answer.json" >"$d/client.pem"
	subj=$(openssl x509 -in "$d/client.pem" -noout -subject -nameopt RFC2253)
	want="subject=OU=$FACTORY,CN=$(cat "$d/uuid")"
	[ "$2" != acme-gw100-prod ] || want="subject=businessCategory=production,OU=$FACTORY,CN=$(cat "$d/uuid")"
	[ "$subj" = "$want" ] || fail "$1: profile $2, subject '$subj'"
	"$STATION" ledger -c "$pki/serve.yaml" list >"$T/ledger.txt"
	grep "$(cat "$d/uuid")" "$T/ledger.txt" | has -w -- "$2" ||
		fail "$1 not recorded under $2: $(cat "$T/ledger.txt")"
}

start_server "$pki/serve.yaml"
device prod production
device dev
registers prod acme-gw100-prod
registers dev acme-gw100
ok "shipped profiles: a production device gets acme-gw100-prod, a development one acme-gw100"
stop_server

# A second production build of the same hardware, told apart only by its sku.
sed -e 's/^sku: acme-gw100-prod$/sku: acme-gw100-prod2/' \
	-e 's/^  sku: acme-gw100-prod$/  sku: acme-gw100-prod2/' \
	"$pki/profiles/lmp-gateway-production.yaml" >"$pki/profiles/lmp-gateway-production2.yaml"
start_server "$pki/serve.yaml"
device prod2 production
code=$(post "$T/prod2/body.json" "$T/prod2/answer.json")
[ "$code" = 400 ] || fail "ambiguous choice: status $code: $(cat "$T/prod2/answer.json")"
[ "$(jq -r .error "$T/prod2/answer.json")" = SLOT_PROFILE_AMBIGUOUS ] ||
	fail "ambiguous choice: $(cat "$T/prod2/answer.json")"
msg=$(jq -r .message "$T/prod2/answer.json")
case $msg in
*"hardware id '$HW' with a production CSR matches 2 profiles: acme-gw100-prod ("*"lmp-gateway-production.yaml), acme-gw100-prod2 ("*"lmp-gateway-production2.yaml)"*) ;;
*) fail "ambiguous choice: message '$msg'" ;;
esac
device dev2
registers dev2 acme-gw100
stop_server
"$STATION" ledger -c "$pki/serve.yaml" list >"$T/ledger.txt"
if grep -q "$(cat "$T/prod2/uuid")" "$T/ledger.txt"; then fail "the ambiguous request was recorded"; fi
ok "two production profiles for one hardware id: 400 naming both, nothing signed; development devices still register"
