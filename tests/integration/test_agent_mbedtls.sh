#!/usr/bin/env bash
# The board core and the agent without OpenSSL: station-agent-mbedtls (the crypto port on
# mbedTLS: key file, RFC 6979 signatures, mbedTLS's random generator) provisions a board
# through the real station on a paced cable of two PTYs; its binary links no OpenSSL, the
# files pass openssl verify -x509_strict -purpose sslclient, the certificate is for the key
# mbedTLS made, and the same board run again gets its recorded certificate with the same
# CSR. Debian's libmbedtls-dev is installed (as root) and the agent built when missing.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/agent.sh"
MBAGENT=$BUILD_DIR/drivers/board/agent/station-agent-mbedtls
# By its header, not dpkg's database: another test may be installing a package right now.
if [ ! -e /usr/include/mbedtls/ecdsa.h ]; then
	[ "$(id -u)" = 0 ] || { echo "skip - libmbedtls-dev is not installed and this is not root"; exit 0; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
		--no-install-recommends libmbedtls-dev >/dev/null ||
		fail "apt-get install libmbedtls-dev"
fi
if [ ! -x "$MBAGENT" ]; then
	cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" >/dev/null && cmake --build "$BUILD_DIR" --target station-agent-mbedtls >/dev/null ||
		fail "cannot build station-agent-mbedtls"
fi
# Read whole first: `ldd | has` under pipefail fails when grep stops reading early.
libs=$(ldd "$MBAGENT") || fail "ldd $MBAGENT"
if grep -E 'libcrypto|libssl' <<<"$libs"; then fail "station-agent-mbedtls links OpenSSL"; fi
grep -q libmbedcrypto <<<"$libs" || fail "station-agent-mbedtls does not link mbedTLS: $libs"

agent_pki
start_link --pace --strict
R=$T/root
printf 'hardware_id = agent-board\nsku = agent-gw\nbauds = 115200,921600\n' >"$T/agent.conf"
for run in first again; do
	"$MBAGENT" --tty "$T/agent-end" --config "$T/agent.conf" --root "$R" 2>>"$T/agent.log" &
	AGENTPID=$!
	timeout 120 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view --events "$T/$run.jsonl" \
		>"$T/$run.out" 2>"$T/$run.err" || fail "$run: station run: $(tail -5 "$T/$run.err")"
	wait "$AGENTPID" || fail "$run: the agent exited $?: $(tail -5 "$T/agent.log")"
	AGENTPID=
	grep -q '"event":"pass"' "$T/$run.jsonl" || fail "$run: no pass: $(tail -3 "$T/$run.jsonl")"
	out=$(files_check "$R/var/sota") || fail "$run: $out"
	[ "$run" = again ] || csr=$(sha256sum <"$R/var/lib/station-agent/csr.der")
done
grep -q '"event":"pass".*"reused":true' "$T/again.jsonl" || fail "again: not delivered again"
[ "$(sha256sum <"$R/var/lib/station-agent/csr.der")" = "$csr" ] || fail "again: the CSR changed"
openssl verify -x509_strict -purpose sslclient -CAfile "$pki/factory-root.pem" \
	-untrusted "$pki/local-ca.pem" "$R/var/sota/client.pem" >/dev/null || fail "openssl verify"
key=$R/var/lib/station-agent/key.pem
[ "$(stat -c %a "$key")" = 600 ] || fail "key.pem is mode $(stat -c %a "$key")"
cmp -s <(openssl pkey -in "$key" -pubout -outform DER) \
	<(openssl x509 -in "$R/var/sota/client.pem" -noout -pubkey | openssl pkey -pubin -outform DER) ||
	fail "the certificate is not for the key mbedTLS made"
ok "station-agent-mbedtls (no OpenSSL linked): the board passed, files whole and verified, certificate for its mbedTLS key (0600), delivered again with the same CSR"
echo "all passed"
