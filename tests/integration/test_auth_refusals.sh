#!/usr/bin/env bash
# Authorization documents a station must refuse, each with its own reason and the file
# named: forged (signed under another factory root of the same name), expired, for another
# factory, for another station, signed by a key the root certified for something else (the
# gateway's TLS key, through openssl cms), changed after signing, and not a document at
# all. `station auth check` says why for each; `station serve` (like `station run`) logs
# each refusal at start and loads only the good one. `station sign`, which keeps no ledger,
# refuses a profile that requires an authorization.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/http.sh"
pki="$T/pki"
. "$(dirname "$0")/../lib/auth.sh"
dev_pki "$pki" acme-factory
mkdir -p "$T/profiles"
gateway_profile "$T/profiles/gw.yaml" sim-gw sim-board acme-factory "authorization: required"
{
	cat "$pki/station.yaml"
	echo "profiles: $T/profiles"
	echo "station: line-1"
	echo "http:"
	echo "  listen: 127.0.0.1:0"
} >"$pki/serve.yaml"
auth_config "$pki/serve.yaml"
A="$pki/authorizations"

auth_issue LOT-GOOD 10 "$A/good.auth" --station line-1
auth_issue LOT-OLD 10 "$A/expired.auth" --not-before 2020-01-01 --not-after 2020-02-01
auth_issue LOT-F 10 "$A/factory.auth" --factory other-factory
auth_issue LOT-S 10 "$A/station.auth" --station line-2
# Forged: another root that calls itself the same (Factory-CA, OU acme-factory).
other="$T/other"
dev_pki "$other" acme-factory
SOFTHSM2_CONF="$other/softhsm2.conf" "$STATION" auth issue \
	--pkcs11 "pkcs11:token=test-$$;object=factory-authz?module-path=$SOFTHSM_MODULE" \
	--pin-file "$other/pin" --cert "$other/authz.pem" --sku sim-gw --lot LOT-X --units 10 \
	--days 30 -o "$A/forged.auth" >"$T/issue.out" 2>&1 || fail "forged issue: $(cat "$T/issue.out")"
# The gateway's key: certified by the root, for TLS servers.
openssl cms -verify -inform DER -in "$A/good.auth" -noverify -out "$T/content.json" 2>/dev/null ||
	fail "cannot read the good document's content"
openssl cms -sign -binary -nodetach -outform DER -signer "$pki/gateway.pem" \
	-inkey "$pki/gateway.key" -econtent_type 2.25.336218952107473821428368367930796673490.2.1 \
	-in "$T/content.json" -out "$A/purpose.auth" 2>"$T/cms.err" || fail "openssl cms -sign: $(cat "$T/cms.err")"
# Changed after signing: 10 units made 99, same length.
cp "$A/good.auth" "$A/tampered.auth"
perl -0777 -pi -e 's/"units": 10,/"units": 99,/' "$A/tampered.auth"
cmp -s "$A/good.auth" "$A/tampered.auth" && fail "the tampered copy is unchanged"
echo "not a signed document" >"$A/garbage.auth"

declare -A want=(
	[good]=OK [expired]=AUTH_EXPIRED [factory]=AUTH_FACTORY [station]=AUTH_STATION
	[forged]=AUTH_UNTRUSTED [purpose]=AUTH_PURPOSE [tampered]=AUTH_SIGNATURE
	[garbage]=AUTH_FORMAT
)
if "$STATION" auth check -c "$pki/serve.yaml" "$A"/*.auth >"$T/check.out" 2>"$T/check.err"; then
	fail "auth check passed although documents are bad"
fi
for name in "${!want[@]}"; do
	line=$(grep "^$A/$name.auth: " "$T/check.out") || fail "auth check says nothing of $name.auth"
	case ${want[$name]} in
	OK) [[ $line == *": OK: "* ]] || fail "$name.auth: $line" ;;
	*) [[ $line == *": REFUSED: ${want[$name]}: $A/$name.auth: "* ]] || fail "$name.auth: $line" ;;
	esac
done
ok "auth check: each document refused with its own reason, naming the file"

start_server "$pki/serve.yaml"
stop_server
for name in "${!want[@]}"; do
	[ "${want[$name]}" = OK ] && continue
	grep -q "authorization refused: ${want[$name]}: $A/$name.auth: " "$T/serve.err" ||
		fail "station serve did not refuse $name.auth with ${want[$name]}: $(grep refused "$T/serve.err")"
done
grep -q "authorizations $A: 1 loaded, 7 refused" "$T/serve.err" ||
	fail "station serve: $(grep authorizations "$T/serve.err")"
ok "the station logs each refusal with its reason and file, and loads only the good document"

# `station sign` keeps no ledger: it cannot count units, so it refuses such a profile.
device_csr "$T/dev" 11111111-2222-4333-8444-555555555555 acme-factory
expect_fail "station sign refuses a profile that requires an authorization" \
	"requires a production authorization" "$STATION" sign -c "$pki/serve.yaml" \
	--csr "$T/dev/csr.pem" --device-id 11111111-2222-4333-8444-555555555555 \
	--profile "$T/profiles/gw.yaml"
echo "all passed"
