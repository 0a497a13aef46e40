# Sourced by integration tests (after common.sh): a device gateway's mutual TLS, as a
# Foundries-style gateway checks a device: `openssl s_server -Verify 1` trusting the
# station's device CAs, and the device connecting with `openssl s_client`.

# gateway_connect CAS CERT KEY ROOT: starts a gateway on a free port with $pki/gateway.pem
# and $pki/gateway.key that requires a client certificate chaining to the CAs in CAS, then
# connects once as a device presenting CERT and KEY and verifying the gateway against ROOT.
# Returns 0 when the gateway answered over mutual TLS, 1 when it did not (s_client's stderr
# is in $T/gw-client.err, the gateway's log in $T/gw-server.log); fails the test when the
# gateway does not start. The gateway has ended when it returns. It serves until then, not one
# connection only: another test's free_port probe that happened on its port would have used
# that one connection up.
gateway_connect() {
	local cas=$1 cert=$2 key=$3 root=$4 port gw i rc=0
	port=$(free_port) || fail "no free port"
	# The log of an earlier call says ACCEPT until the new gateway's shell has truncated
	# it, which happens after `&` returns: it goes first.
	rm -f "$T/gw-server.log"
	openssl s_server -accept "127.0.0.1:$port" -cert "$pki/gateway.pem" -key "$pki/gateway.key" \
		-CAfile "$cas" -Verify 1 -verify_return_error -www \
		>"$T/gw-server.log" 2>&1 &
	gw=$!
	for ((i = 0; i < 400; i++)); do
		grep -q ACCEPT "$T/gw-server.log" && break
		kill -0 "$gw" 2>/dev/null || fail "s_server exited: $(cat "$T/gw-server.log")"
		sleep 0.05
	done
	if ! grep -q ACCEPT "$T/gw-server.log"; then
		kill "$gw" 2>/dev/null || true
		fail "s_server did not start: $(cat "$T/gw-server.log")"
	fi
	printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" \
		-cert "$cert" -key "$key" -CAfile "$root" -verify_return_error -servername localhost \
		-quiet >"$T/gw-client.out" 2>"$T/gw-client.err" || rc=1
	[ "$rc" = 1 ] || grep -q "HTTP/1.0 200" "$T/gw-client.out" || rc=1
	kill "$gw" 2>/dev/null || true
	wait "$gw" 2>/dev/null || true
	return $rc
}
