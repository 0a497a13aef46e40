#!/usr/bin/env bash
# `station ca init` + `station sign` through a SoftHSM2 token: issued certificates pass
# OpenSSL's strict client verification and GnuTLS's chain check; bad CSRs and bad command
# lines are refused with one clear line and nothing written.
. "$(dirname "$0")/../lib/common.sh"

pki="$T/pki"
dev_pki "$pki" acme-factory
for f in factory-root.pem local-ca.pem station.yaml gateway.pem gateway.key; do
	[ -s "$pki/$f" ] || fail "ca init did not write $f"
done
[ "$(stat -c %a "$pki/gateway.key")" = 600 ] || fail "gateway.key is not 0600"
openssl x509 -in "$pki/factory-root.pem" -noout -subject -nameopt RFC2253 | has 'CN=Factory-CA' ||
	fail "root subject is not CN=Factory-CA"
openssl x509 -in "$pki/local-ca.pem" -noout -text | has 'CA:TRUE, pathlen:0' ||
	fail "local CA lacks pathlen 0"
ok "ca init wrote the development PKI"

# Several certificates, each checked by two independent verifiers.
for i in 1 2 3; do
	uuid=$(cat /proc/sys/kernel/random/uuid)
	d="$T/dev$i"
	device_csr "$d" "$uuid" acme-factory
	"$STATION" sign -c "$pki/station.yaml" --csr "$d/csr.pem" --device-id "$uuid" -o "$d/client.pem"
	openssl verify -x509_strict -purpose sslclient -CAfile "$pki/factory-root.pem" \
		-untrusted "$pki/local-ca.pem" "$d/client.pem" >/dev/null || fail "openssl verify $i"
	cat "$pki/factory-root.pem" "$pki/local-ca.pem" >"$T/trust.pem"
	cat "$d/client.pem" "$pki/local-ca.pem" >"$d/client.chained"
	certtool --verify --verify-profile high --load-ca-certificate "$T/trust.pem" --infile "$d/client.chained" >"$T/ct" 2>&1 ||
		fail "certtool verify $i: $(cat "$T/ct")"
	subj=$(openssl x509 -in "$d/client.pem" -noout -subject -nameopt RFC2253)
	[ "$subj" = "subject=OU=acme-factory,CN=$uuid" ] || fail "subject is '$subj'"
	# The certificate's key is the CSR's key.
	[ "$(openssl x509 -in "$d/client.pem" -noout -pubkey)" = "$(openssl ec -in "$d/pkey.pem" -pubout 2>/dev/null)" ] ||
		fail "certificate key differs from the CSR key"
done
ok "3 certificates verified by openssl -x509_strict -purpose sslclient and certtool --verify-chain"

# Printing to stdout without -o.
uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/stdout" "$uuid" acme-factory
"$STATION" sign -c "$pki/station.yaml" --csr "$T/stdout/csr.pem" --device-id "$uuid" >"$T/stdout/cert.pem"
openssl x509 -in "$T/stdout/cert.pem" -noout || fail "stdout output is not a certificate"
ok "certificate printed on stdout"

# Refusals: one line on stderr naming the problem, non-zero exit, no output file.
uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/bad1" "$uuid" other-factory
expect_fail "wrong OU refused" "OU|organizational" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/bad1/csr.pem" --device-id "$uuid" -o "$T/bad1/out.pem"
[ ! -e "$T/bad1/out.pem" ] || fail "an output file was written for a refused CSR"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "refusal is not one line: $(cat "$T/err")"

device_csr "$T/bad2" "$uuid" acme-factory
expect_fail "CN not the device id refused" "CN|common name" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/bad2/csr.pem" --device-id "00000000-0000-4000-8000-000000000000"

openssl req -in "$T/bad2/csr.pem" -outform DER -out "$T/bad2/csr.der"
flip_last_bit "$T/bad2/csr.der"
expect_fail "corrupted self-signature refused" "signature" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/bad2/csr.der" --device-id "$uuid"

mkdir -p "$T/bad3"
openssl genrsa -out "$T/bad3/rsa.pem" 1024 2>/dev/null
openssl req -new -key "$T/bad3/rsa.pem" -subj "/CN=$uuid/OU=acme-factory" -out "$T/bad3/csr.pem"
expect_fail "RSA-1024 refused" "RSA" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/bad3/csr.pem" --device-id "$uuid"

device_csr "$T/bad4" "$uuid" acme-factory
openssl req -new -key "$T/bad4/pkey.pem" -subj "/CN=$uuid/OU=acme-factory/businessCategory=production" -out "$T/bad4/csr.pem"
expect_fail "businessCategory=production asked for by the device refused" "businessCategory" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/bad4/csr.pem" --device-id "$uuid"

expect_fail "missing CSR file named" "nonexistent.pem" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/nonexistent.pem" --device-id "$uuid"
expect_fail "missing --device-id" "device-id" \
	"$STATION" sign -c "$pki/station.yaml" --csr "$T/bad4/csr.pem"
expect_fail "unknown option" "--bogus" \
	"$STATION" sign --bogus
expect_fail "missing config named" "nope.yaml" \
	"$STATION" sign -c "$T/nope.yaml" --csr "$T/bad4/csr.pem" --device-id "$uuid"

# --help is true: every option it lists is accepted by the parser.
"$STATION" sign --help >"$T/help"
grep -q -- "--device-id" "$T/help" || fail "sign --help does not mention --device-id"
"$STATION" ca --help >/dev/null
"$STATION" --help | has sign || fail "station --help lists no sign"
ok "help texts"

# A wrong PIN is reported, not retried.
echo wrong >"$T/wrongpin"
chmod 600 "$T/wrongpin"
# Beside the original, so its relative paths still resolve.
sed "s#pin_file: .*#pin_file: $T/wrongpin#" "$pki/station.yaml" >"$pki/wrongpin.yaml"
device_csr "$T/pin" "$uuid" acme-factory
expect_fail "wrong PIN reported" "PIN" \
	"$STATION" sign -c "$pki/wrongpin.yaml" --csr "$T/pin/csr.pem" --device-id "$uuid"
grep -q wrong "$T/err" && fail "the PIN appears in the error output"
echo "all passed"
