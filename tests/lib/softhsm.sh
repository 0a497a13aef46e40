# Sourceable helper: SoftHSM2 tokens in a test's own directory, PINs never on a command line.
#
#   softhsm_conf DIR
#       Writes DIR/softhsm2.conf and the token directory DIR/tokens and exports SOFTHSM2_CONF.
#       Enough when the token is then created through PKCS#11 (drv_pkcs11_init_token, as
#       `station ca init` does).
#   softhsm_init_token DIR LABEL PINFILE [SOPINFILE]
#       softhsm_conf DIR, then initialises a token labelled LABEL with the user PIN on the
#       first line of PINFILE. A missing PINFILE (or SOPINFILE) is created with a random PIN,
#       mode 0600; without SOPINFILE the SO PIN goes to DIR/so.pin. softhsm2-util only takes
#       PINs on argv or a terminal, so the token is initialised with GnuTLS p11tool, which
#       reads them from its environment (GNUTLS_SO_PIN, GNUTLS_PIN).
#   softhsm_uri LABEL OBJECT
#       Prints the signer URI of key OBJECT on token LABEL with the SoftHSM2 module path.
#
# SOFTHSM_MODULE may name another module build; the default is Debian's.
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

softhsm_conf() {
	local dir=$1
	mkdir -p "$dir/tokens" || return 1
	chmod 700 "$dir" "$dir/tokens"
	cat >"$dir/softhsm2.conf" <<EOF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
	export SOFTHSM2_CONF="$dir/softhsm2.conf"
}

# Writes a random 8-digit PIN to a new 0600 file, unless the file exists.
softhsm_make_pin() {
	local file=$1
	[ -e "$file" ] && return 0
	(
		umask 077
		od -An -N4 -tu4 /dev/urandom | tr -d ' \n' | cut -c1-8 >"$file"
	)
	# A number shorter than 8 digits is still a valid PIN (SoftHSM2 wants 4 or more).
	[ "$(wc -c <"$file")" -ge 4 ] || echo 12345678 >"$file"
}

softhsm_init_token() {
	local dir=$1 label=$2 pinfile=$3 sopinfile=${4:-$1/so.pin}
	local pin sopin
	if [ -z "$dir" ] || [ -z "$label" ] || [ -z "$pinfile" ]; then
		echo "usage: softhsm_init_token DIR LABEL PINFILE [SOPINFILE]" >&2
		return 2
	fi
	softhsm_conf "$dir" || return 1
	softhsm_make_pin "$pinfile" || return 1
	softhsm_make_pin "$sopinfile" || return 1
	IFS= read -r pin <"$pinfile"
	IFS= read -r sopin <"$sopinfile"
	if p11tool --batch --provider "$SOFTHSM_MODULE" --list-token-urls 2>/dev/null |
		grep -q "[;:]token=$label\(;\|\$\)"; then
		echo "softhsm_init_token: a token labelled $label exists already in $dir" >&2
		return 1
	fi
	# The free slot's token has an empty serial and label; no initialised token matches that.
	# p11tool chats on stderr even when it works: show that only when it fails.
	local out
	out=$(GNUTLS_SO_PIN="$sopin" p11tool --batch --provider "$SOFTHSM_MODULE" --initialize \
		--label "$label" \
		"pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=;token=" \
		</dev/null 2>&1 >/dev/null) || {
		echo "softhsm_init_token: initialising token $label failed: $out" >&2
		return 1
	}
	# LABEL goes into a URI here: keep labels to letters, digits, '-', '_' and '.'.
	out=$(GNUTLS_SO_PIN="$sopin" GNUTLS_PIN="$pin" p11tool --batch \
		--provider "$SOFTHSM_MODULE" --initialize-pin "pkcs11:token=$label" \
		</dev/null 2>&1 >/dev/null) || {
		echo "softhsm_init_token: setting the user PIN of token $label failed: $out" >&2
		return 1
	}
}

softhsm_uri() {
	printf 'pkcs11:token=%s;object=%s?module-path=%s\n' "$1" "$2" "$SOFTHSM_MODULE"
}
