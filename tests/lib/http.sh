# Sourced by integration tests of the registration API (after common.sh): `station serve`
# started and stopped, and what lmp-device-register sends: its key and CSR, its JSON body,
# its POST with the OSF-TOKEN header. The server's ready line is read from fd 3; SERVE_PID
# and URL name the running server.

# Starts `station serve -c CONFIG` and waits for its ready line (an event on the pipe).
start_server() {
	exec 3< <(exec "$STATION" serve -c "$1" 2>>"$T/serve.err")
	SERVE_PID=$!
	local line
	read -r -t 60 -u 3 line || fail "station serve did not start: $(cat "$T/serve.err")"
	case $line in
	"station: serving on "*) URL=${line#station: serving on } ;;
	*) fail "unexpected first line: $line" ;;
	esac
}
stop_server() {
	kill -TERM "$SERVE_PID"
	wait "$SERVE_PID" || fail "station serve did not exit cleanly: $(tail -5 "$T/serve.err")"
	SERVE_PID=
	exec 3<&-
}

# key_csr DIR CN OU [openssl req args]: what the device tool makes: a P-256 key and a CSR
# asking for keyUsage digitalSignature and extendedKeyUsage clientAuth.
key_csr() {
	local dir=$1 cn=$2 ou=$3
	shift 3
	mkdir -p "$dir"
	openssl ecparam -name prime256v1 -genkey -noout -out "$dir/pkey.pem" 2>/dev/null
	openssl req -new -key "$dir/pkey.pem" -subj "/CN=$cn/OU=$ou" \
		-addext "keyUsage=critical,digitalSignature" \
		-addext "extendedKeyUsage=critical,clientAuth" -out "$dir/csr.pem" "$@"
}

# tool_body UUID HWID CSRFILE [GROUP]: the JSON the device tool sends: pretty-printed with
# four spaces, every value a string, "/" written "\/".
tool_body() {
	jq -n --indent 4 --rawfile csr "$3" --arg uuid "$1" --arg hw "$2" --arg group "${4:-}" \
		--arg name "device-${1:0:8}" '
		{name: $name, uuid: $uuid, csr: $csr, "hardware-id": $hw,
		 "sota-config-dir": "/var/sota", overrides: {pacman: {tags: "\"main\""}},
		 "use-ostree-server": "true"} + (if $group == "" then {} else {group: $group} end)' |
		sed 's#/#\\/#g'
}

# post BODY OUT [curl args...]: POST /sign with the token; prints the status code.
post() {
	local body=$1 out=$2
	shift 2
	curl -s -o "$out" -w '%{http_code}' -H @"${TOKEN_HDR:-$T/token.hdr}" -H 'Content-Type: application/json' \
		--data-binary @"$body" "$@" "$URL/sign"
}
