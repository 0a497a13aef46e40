#!/usr/bin/env bash
# A development PKI whose keys are in a SoftHSM2 token works from any working directory, also
# when `station ca init` was given a relative --dir; and when SoftHSM2 cannot start because
# its configuration or its token directory is missing (or is no directory), the error names
# what is missing and where it is configured instead of a bare CKR_GENERAL_ERROR.
. "$(dirname "$0")/../lib/common.sh"

FACTORY=acme-factory
mkdir -p "$T/work/sub" "$T/elsewhere"
(umask 077 && head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/pin")

# ca init with relative directories of several shapes, run from $T/work.
n=0
for rel in pki sub/pki ./sub/../pki3; do
	n=$((n + 1))
	(cd "$T/work" && "$STATION" ca init --dir "$rel" --factory $FACTORY --softhsm \
		--pkcs11 "pkcs11:token=rel$n-$$;object=local-ca?module-path=$SOFTHSM_MODULE" \
		--pin-file "$T/pin" >/dev/null 2>"$T/err") || fail "ca init --dir $rel: $(cat "$T/err")"
	dir=$(cd "$T/work/$rel" && pwd)
	grep -q "^directories.tokendir = /" "$dir/softhsm2.conf" ||
		fail "ca init --dir $rel wrote a relative token directory: $(grep tokendir "$dir/softhsm2.conf")"
	for cwd in / "$T/elsewhere" "$dir"; do
		uuid=$(cat /proc/sys/kernel/random/uuid)
		device_csr "$T/dev" "$uuid" $FACTORY
		(cd "$cwd" && "$STATION" sign -c "$dir/station.yaml" --csr "$T/dev/csr.pem" \
			--device-id "$uuid" -o "$T/dev/client.pem" 2>"$T/err") ||
			fail "PKI made with --dir $rel, sign from $cwd: $(cat "$T/err")"
		openssl verify -CAfile "$dir/factory-root.pem" -untrusted "$dir/local-ca.pem" \
			"$T/dev/client.pem" >/dev/null || fail "certificate from $cwd does not verify"
	done
done
ok "ca init with a relative --dir: the PKI signs from any working directory"

pki="$T/work/pki"
uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/dev" "$uuid" $FACTORY
sign() {
	(cd "${CWD:-/}" && "$STATION" sign -c "$pki/station.yaml" --csr "$T/dev/csr.pem" \
		--device-id "$uuid" -o "$T/dev/out.pem")
}
# expect_sign_error DESCRIPTION TEXT...: sign fails with one line holding every TEXT.
expect_sign_error() {
	local what=$1 text
	shift
	if sign >"$T/out" 2>"$T/err"; then
		fail "$what: sign succeeded"
	fi
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "$what: not one line: $(cat "$T/err")"
	for text in "$@"; do
		grep -qF -- "$text" "$T/err" || fail "$what: the error lacks '$text': $(cat "$T/err")"
	done
	ok "$what: $(cat "$T/err")"
}

mv "$pki/tokens" "$pki/tokens.away"
expect_sign_error "token directory gone" "token directory $pki/tokens" \
	"directories.tokendir in $pki/softhsm2.conf" "does not exist"
touch "$pki/tokens"
expect_sign_error "token directory is a file" "token directory $pki/tokens" "not a directory"
rm "$pki/tokens"
mv "$pki/tokens.away" "$pki/tokens"
sign 2>"$T/err" || fail "token directory back, sign still fails: $(cat "$T/err")"

# The configuration SoftHSM2 reads: from the environment, which ca.softhsm2_conf does not
# override.
SOFTHSM2_CONF="$T/no-such.conf" expect_sign_error "SOFTHSM2_CONF names a missing file" \
	"SoftHSM2 configuration $T/no-such.conf" "cannot be read"
# A relative token directory (as ca init wrote it before) is relative to the working
# directory: the error says so and names it.
printf 'directories.tokendir = pki/tokens\nobjectstore.backend = file\n' >"$T/relative.conf"
SOFTHSM2_CONF="$T/relative.conf" CWD="$T/elsewhere" expect_sign_error \
	"relative token directory from elsewhere" "token directory pki/tokens" \
	"relative to the working directory $T/elsewhere" "does not exist"
SOFTHSM2_CONF="$T/relative.conf" CWD="$T/work" sign 2>"$T/err" ||
	fail "relative token directory from its own directory: $(cat "$T/err")"
ok "a relative token directory still works from the directory it is relative to"
