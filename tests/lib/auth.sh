# Sourced by integration tests of production authorizations (after common.sh, with the
# development PKI of dev_pki in $pki): the brand owner's documents, signed with the
# authorization key `station ca init` made in the PKI's token, and the ledger's counts.
command -v sqlite3 >/dev/null || fail "sqlite3 is needed (tests/lib/deps.sh installs it)"

# auth_config FILE: the configuration FILE (beside the PKI) reads the authorizations of
# $pki/authorizations and signs job-end reports with the PKI's report key, as `station ca
# init` suggests.
auth_config() {
	cat >>"$1" <<YAML
authorizations: authorizations
report: {key: "pkcs11:token=test-$$;object=station-report?module-path=$SOFTHSM_MODULE", cert: report.pem}
YAML
}

# auth_issue LOT UNITS FILE [options of `station auth issue`]: an authorization of UNITS
# certificates of SKU sim-gw in lot LOT, valid 30 days from now unless the options say
# --not-after, written to FILE.
auth_issue() {
	local lot=$1 units=$2 out=$3 days=(--days 30)
	shift 3
	[[ " $* " == *" --not-after "* ]] && days=()
	SOFTHSM2_CONF="$pki/softhsm2.conf" "$STATION" auth issue \
		--pkcs11 "pkcs11:token=test-$$;object=factory-authz?module-path=$SOFTHSM_MODULE" \
		--pin-file "$pki/pin" --cert "$pki/authz.pem" --sku sim-gw --lot "$lot" \
		--units "$units" "${days[@]}" -o "$out" "$@" >"$T/issue.out" 2>&1 ||
		fail "auth issue $lot: $(cat "$T/issue.out")"
}

# auth_counts LOT USED CERTS WHAT: the ledger counts USED units of the authorization of lot
# LOT and holds CERTS certificates under it (WHAT names the moment in the message).
auth_counts() {
	local used certs
	used=$(sqlite3 "$pki/ledger.db" "SELECT used FROM authorizations WHERE lot = '$1'")
	certs=$(sqlite3 "$pki/ledger.db" "SELECT count(*) FROM certificates c JOIN \
authorizations a ON a.id = c.auth_id WHERE a.lot = '$1' AND c.cert_der IS NOT NULL")
	[ "$used" = "$2" ] || fail "$4: lot $1: $used units used, expected $2"
	[ "$certs" = "$3" ] || fail "$4: lot $1: $certs certificates, expected $3"
}
