#!/usr/bin/env bash
# `station ca csr` + `station ca import`: a local CA whose key is made inside the HSM and whose
# certificate the factory root's owner signs elsewhere. The CSR holds the token's key; the
# signed certificate is installed as ca.cert only when it is a CA, holds the configured HSM
# key and chains to the configured root; each refusal names the file and why, and leaves
# ca.cert as it was. The station then signs with the imported CA and the chain verifies.
. "$(dirname "$0")/../lib/common.sh"

pki="$T/pki"
dev_pki "$pki" acme-factory
export SOFTHSM2_CONF=$pki/softhsm2.conf
uri="pkcs11:token=test-$$;object=line-ca-2?module-path=$SOFTHSM_MODULE"

# The factory root's owner: a root of its own, outside the station.
openssl ecparam -name prime256v1 -genkey -noout -out "$T/root2.key" 2>/dev/null
openssl req -new -x509 -key "$T/root2.key" -subj "/CN=Factory-CA-2/OU=acme-factory" -days 30 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out "$T/root2.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/other.key" 2>/dev/null
openssl req -new -x509 -key "$T/other.key" -subj "/CN=Other-Root/OU=acme-factory" -days 30 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out "$T/other.pem"

"$STATION" ca csr --pkcs11 "$uri" --pin-file "$pki/pin" --factory acme-factory --cn Line-CA-2 \
	-o "$T/ca2.csr" 2>"$T/csr.err" || fail "ca csr: $(cat "$T/csr.err")"
openssl req -in "$T/ca2.csr" -noout -verify 2>/dev/null || fail "the CSR's signature does not verify"
if grep -qa "$(cat "$pki/pin")" "$T/ca2.csr" "$T/csr.err"; then fail "the PIN was printed"; fi
ok "ca csr: a CSR for a key made inside the token"

# sign_ca ROOT OUT [CA]: the CSR signed by ROOT, a CA (pathlen 0) unless CA is "leaf".
sign_ca() {
	local root=$1 out=$2 kind=${3:-ca}
	if [ "$kind" = leaf ]; then
		printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$T/ext"
	else
		printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$T/ext"
	fi
	openssl x509 -req -in "$T/ca2.csr" -CA "$root.pem" -CAkey "$root.key" -CAcreateserial \
		-days 30 -extfile "$T/ext" -out "$out" 2>/dev/null
}
sign_ca "$T/root2" "$T/ca2.pem"
sign_ca "$T/other" "$T/ca2-other-root.pem"
sign_ca "$T/root2" "$T/ca2-leaf.pem" leaf
printf 'not a certificate\n' >"$T/garbage.pem"

# The station's configuration for the new CA: its key in the token, the root of its owner.
sed -e "s|object=local-ca|object=line-ca-2|" -e "s|^  root: .*|  root: $T/root2.pem|" \
	-e "s|^  cert: .*|  cert: $T/installed.pem|" "$pki/station.yaml" >"$pki/s2.yaml"
grep -q "object=line-ca-2" "$pki/s2.yaml" && grep -q "root: $T/root2.pem" "$pki/s2.yaml" ||
	fail "could not write the configuration: $(cat "$pki/s2.yaml")"

# refused FILE WHY: ca import refuses FILE naming it and WHY; ca.cert stays absent.
refused() {
	local file=$1 why=$2 rc=0
	"$STATION" ca import -c "$pki/s2.yaml" --cert "$file" >"$T/imp.out" 2>"$T/imp.err" || rc=$?
	[ "$rc" != 0 ] || fail "ca import accepted $file"
	has -F -- "$file" <"$T/imp.err" || fail "the refusal of $file does not name it: $(cat "$T/imp.err")"
	has -E -- "$why" <"$T/imp.err" || fail "the refusal of $file does not say /$why/: $(cat "$T/imp.err")"
	[ ! -e "$T/installed.pem" ] || fail "ca.cert was written for $file"
}
refused "$pki/local-ca.pem" "not the key of"
refused "$T/ca2-other-root.pem" "does not chain to the factory root"
refused "$T/ca2-leaf.pem" "not a CA certificate"
refused "$T/garbage.pem" "certificate"
refused "$T/absent.pem" "No such file|cannot|not found"
ok "ca import refuses another key, another root, a leaf, garbage and a missing file"

"$STATION" ca import -c "$pki/s2.yaml" --cert "$T/ca2.pem" >"$T/imp.out" 2>"$T/imp.err" ||
	fail "ca import: $(cat "$T/imp.err")"
cmp -s <(openssl x509 -in "$T/installed.pem" -outform DER) <(openssl x509 -in "$T/ca2.pem" -outform DER) ||
	fail "the installed certificate is not the one imported"
uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/dev" "$uuid" acme-factory
"$STATION" sign -c "$pki/s2.yaml" --csr "$T/dev/csr.pem" --device-id "$uuid" -o "$T/dev/client.pem" 2>"$T/sign.err" ||
	fail "sign with the imported CA: $(cat "$T/sign.err")"
openssl verify -x509_strict -purpose sslclient -CAfile "$T/root2.pem" -untrusted "$T/installed.pem" \
	"$T/dev/client.pem" >/dev/null || fail "the device certificate does not chain to the new root"
ok "ca import installed the certificate; the station signs with it and the chain verifies"
