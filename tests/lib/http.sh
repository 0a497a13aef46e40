# Sourced by integration tests of the registration API (after common.sh): `station serve`
# started and stopped around a test, and a client that behaves like the device tool
# (lmp-device-register).
for tool in curl jq openssl; do
	command -v $tool >/dev/null || fail "$tool is needed (tests/lib/deps.sh installs it)"
done
SERVE_PID=
# A test with processes of its own defines http_cleanup to end them; it runs on exit before
# the server is stopped.
# Sourced after line.sh, it ends that file's processes too (line_cleanup, the simulated boards),
# or a failing test would leave them holding its output open.
trap 'rc=$?; ! declare -F http_cleanup >/dev/null || http_cleanup || true; ! declare -F line_cleanup >/dev/null || line_cleanup || true; ! declare -F stop_simboard >/dev/null || stop_simboard; [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT


# make_token DIR: a random token in $TOKEN, accepted from DIR/tokens.txt, and sent by curl
# -H @$T/token.hdr.
make_token() {
	TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	(umask 077 && echo "$TOKEN" >"$1/tokens.txt" && echo "OSF-TOKEN: $TOKEN" >"$T/token.hdr")
}

# start_server CONFIG: starts `station serve -c CONFIG` (its log appended to $T/serve.err)
# and waits for its ready line (an event on the pipe); sets URL.
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

# stop_server: SIGTERM, and a clean exit expected.
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
