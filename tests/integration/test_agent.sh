#!/usr/bin/env bash
# station-agent end to end: the agent on one end of a cable of two real PTYs (ptylink), the
# real station on the other, files under a temporary --root.
#  1. Key in a SoftHSM2 token acting as the device's secure element: the board passes (after
#     switching the line to 921600 with BAUD); its files are whole as committed, chain to the
#     factory root for TLS client use (openssl verify -x509_strict -purpose sslclient), the
#     token's key is the certificate's and is not extractable, and the board gets through
#     openssl s_server's mutual TLS with its files and the key in the token (libp11's
#     pkcs11 engine). Again: the recorded certificate is delivered, the CSR is the same.
#  2. Raw frames: ERROR HELLO before HELLO, a damaged frame answered at once with seq 0, the
#     kept answer for a retransmission, paths with '..', absolute, hidden, outside the
#     prefixes, through a symlink (a directory or the file) refused with ERROR PATH and
#     nothing written outside; an oversize file refused with SIZE; regen on the provisioned
#     board refused. Where it is allowed, regen cut by a power loss after the new pair is
#     made (the old key stays the board's), after the old pair is destroyed and between
#     relabelling the new pair's halves (the next start finishes the switch), and a
#     generation that fails (the old key stays): each time one private key under the label,
#     and the CSR and VERIFY the board answers are for it. A full disk (a tiny tmpfs)
#     answered with STORAGE, no space.
#  3. Key in a PEM file: the board passes, the key file is 0600, and mutual TLS works with the
#     agent's files and key.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/softhsm.sh"
server=
mounted=
agent_cleanup() {
	[ -z "$server" ] || kill "$server" 2>/dev/null
	[ -z "$mounted" ] || umount "$mounted" 2>/dev/null
}
agent_pki
start_link --pace --strict
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"

# The gateway: openssl s_server asking for a client certificate from the device CAs.
# mtls NAME CLIENT-ARGS...: one request through it.
mtls() {
	local name=$1 port
	shift
	port=$(free_port) || fail "no free port"
	# An earlier call's log says ACCEPT until the new server's shell has truncated it, after
	# `&` returns: it goes first. The server serves until stopped, not one connection only,
	# which another test's free_port probe could use up.
	rm -f "$T/server.log"
	openssl s_server -accept "127.0.0.1:$port" -cert "$pki/gateway.pem" -key "$pki/gateway.key" \
		-CAfile "$T/device-cas.pem" -Verify 1 -verify_return_error -www \
		>"$T/server.log" 2>&1 &
	server=$!
	wait_for_line "$T/server.log" ACCEPT 20 "$server" || fail "s_server did not start: $(cat "$T/server.log")"
	printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" "$@" \
		-verify_return_error -servername localhost -quiet >"$T/client.out" 2>"$T/client.err" ||
		fail "$name: the gateway refused the board: $(cat "$T/client.err")"
	grep -q "HTTP/1.0 200" "$T/client.out" || fail "$name: no answer over mutual TLS: $(cat "$T/client.out")"
	stop_bg "$server"
	server=
}

# run_station NAME: one board through `station run`, the agent exiting 0 after DONE pass.
run_station() {
	local name=$1
	timeout 120 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view --events "$T/$name.jsonl" \
		>"$T/$name.out" 2>"$T/$name.err" || fail "$name: station run: $(tail -5 "$T/$name.err")"
	wait "$AGENTPID" || fail "$name: the agent exited $? after the run: $(tail -5 "$T/agent.log")"
	AGENTPID=
	grep -q '"event":"pass"' "$T/$name.jsonl" || fail "$name: no pass: $(tail -3 "$T/$name.jsonl")"
}

# 1. The secure element: a SoftHSM2 token of the device's own (its own configuration, so
# the station's CA token stays apart).
R1=$T/se-root
mkdir -p "$R1/etc"
(softhsm_init_token "$T/devhsm" device "$R1/etc/device.pin") || fail "device token"
DEVHSM="SOFTHSM2_CONF=$T/devhsm/softhsm2.conf"
cat >"$T/se.conf" <<CONF
# a board with a secure element
hardware_id = agent-board
sku = agent-gw
key = pkcs11:token=device;object=device-key?module-path=$SOFTHSM_MODULE
pin_file = /etc/device.pin
bauds = 115200,460800,921600
max_file = 65536
CONF
env "$DEVHSM" "$AGENT" --tty "$T/agent-end" --config "$T/se.conf" --root "$R1" 2>>"$T/agent.log" &
AGENTPID=$!
run_station se
# BAUD: the line went to 921600, or (when this loaded machine kept the agent from switching
# before the station's first frame at the new rate crossed: ptylink --strict garbles it)
# both ends fell back to 115200 together, as the protocol wants.
rate=$(grep '"event":"pass"' "$T/se.jsonl" | grep -o '"baud":[0-9]*' | cut -d: -f2)
grep -q "switched to 921600 baud" "$T/agent.log" || fail "se: the agent never switched: $(cat "$T/agent.log")"
if [ "$rate" != 921600 ]; then
	[ "$rate" = 115200 ] && grep -q "back to 115200 baud" "$T/agent.log" &&
		grep -q "back to 115200" "$T/se.err" || fail "se: the two ends disagree on the rate ($rate)"
fi
# Protocol version 6 and later with the agent's frames of 4096 bytes: HELLO, BAUD, HELLO at the
# new rate, CSR, two WRITEs of two files each (the second with COMMIT and VERIFY) and DONE,
# when nothing had to be sent again; in version 8 without the first HELLO when the station
# read the agent's BOOT (the agent starts first: whether its BOOT crosses the link before
# the station opens the port is up to the machine).
reqs=$(grep '"event":"pass"' "$T/se.jsonl" | jq -r 'select(.retransmits == 0 and .baud == 921600) | .requests')
[ -z "$reqs" ] || [ "$reqs" = 7 ] || [ "$reqs" = 6 ] ||
	fail "se: $reqs requests, 7 (6 after a BOOT of version 8) expected (two files a WRITE)"
dev=$(cat "$R1/var/lib/station-agent/device-id")
[ -n "$dev" ] || fail "se: the board adopted no device id"
check_board se "$R1/var/sota"
[ "$(openssl x509 -in "$R1/var/sota/client.pem" -noout -subject -nameopt RFC2253)" = "subject=OU=acme-factory,CN=$dev" ] ||
	fail "se: subject"
grep -q "^pass provisioned $dev" "$R1/var/lib/station-agent/result" || fail "se: the agent was not told pass"
[ ! -e "$R1/var/lib/station-agent/key.pem" ] || fail "se: a key file next to the token"
ok "secure element: the board passed at $rate (BAUD through termios on a --strict cable), adopted $dev; files whole, openssl verify -x509_strict -purpose sslclient, root.crt, client.chained"

# The token's key is the certificate's, and it cannot leave the token.
env "$DEVHSM" GNUTLS_PIN="$(cat "$R1/etc/device.pin")" p11tool --batch --provider "$SOFTHSM_MODULE" \
	--export-pubkey "pkcs11:token=device;object=device-key" --login --outfile "$T/token-pub.pem" 2>"$T/p11.err" ||
	fail "p11tool export-pubkey: $(cat "$T/p11.err")"
cmp -s <(openssl pkey -pubin -in "$T/token-pub.pem" -outform DER) \
	<(openssl x509 -in "$R1/var/sota/client.pem" -noout -pubkey | openssl pkey -pubin -outform DER) ||
	fail "se: the certificate carries another key than the token's"
env "$DEVHSM" GNUTLS_PIN="$(cat "$R1/etc/device.pin")" p11tool --batch --provider "$SOFTHSM_MODULE" \
	--list-privkeys --login "pkcs11:token=device" >"$T/privkeys" 2>&1 || fail "p11tool list: $(cat "$T/privkeys")"
grep -q "CKA_SENSITIVE" "$T/privkeys" || fail "se: the private key is not sensitive: $(cat "$T/privkeys")"
if grep -q "CKA_EXTRACTABLE" "$T/privkeys"; then fail "se: the private key is extractable"; fi
ok "secure element: the token's key is the certificate's, sensitive and not extractable"

# Mutual TLS with the key in the token: libp11's pkcs11 engine, configured in a file (the
# PIN never on a command line).
cat >"$T/p11-openssl.cnf" <<CNF
openssl_conf = init
[init]
engines = engines
[engines]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
MODULE_PATH = $SOFTHSM_MODULE
PIN = $(cat "$R1/etc/device.pin")
init = 0
CNF
chmod 600 "$T/p11-openssl.cnf"
[ -e /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ] || fail "libengine-pkcs11-openssl is not installed"
(
	export OPENSSL_CONF=$T/p11-openssl.cnf SOFTHSM2_CONF=$T/devhsm/softhsm2.conf
	mtls "se" -engine pkcs11 -keyform engine -key "pkcs11:token=device;object=device-key;type=private" \
		-cert "$R1/var/sota/client.pem" -CAfile "$R1/var/sota/root.crt"
) || exit 1
ok "secure element: mutual TLS against openssl s_server with the agent's files and the token's key (pkcs11 engine)"

# The same board again: recognised, its recorded certificate delivered, the same CSR.
serial=$(openssl x509 -in "$R1/var/sota/client.pem" -noout -serial)
csr=$(sha256sum <"$R1/var/lib/station-agent/csr.der")
env "$DEVHSM" "$AGENT" --tty "$T/agent-end" --config "$T/se.conf" --root "$R1" 2>>"$T/agent.log" &
AGENTPID=$!
run_station again
grep -q '"event":"pass".*"reused":true' "$T/again.jsonl" || fail "again: not delivered again: $(grep pass "$T/again.jsonl")"
[ "$(openssl x509 -in "$R1/var/sota/client.pem" -noout -serial)" = "$serial" ] || fail "again: another certificate"
[ "$(sha256sum <"$R1/var/lib/station-agent/csr.der")" = "$csr" ] || fail "again: the CSR changed"
[ "$(head -1 "$R1/var/sota/.manifest")" = "gen 2" ] || fail "again: $(head -1 "$R1/var/sota/.manifest")"
"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "1 rows, 1 certificates verified" "$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
ok "the same board again: its recorded certificate delivered (generation 2), the same CSR, one ledger row"

# 2. Raw frames on the provisioned board.
mkdir -p "$T/elsewhere"
ln -s "$T/elsewhere" "$R1/var/sota/link"
ln -s "$T/elsewhere/target" "$R1/var/sota/client.key"
raw_open
env "$DEVHSM" "$AGENT" --tty "$T/agent-end" --config "$T/se.conf" --root "$R1" --serve 2>>"$T/agent.log" &
AGENTPID=$!
raw_boot
a=$(raw_q 1 CSR "cn=$dev alg=ec-p256")
case $a in *"A 1 ERROR code=HELLO "*) ;; *) fail "CSR before HELLO: $a" ;; esac
raw_line "~@P1 Q 2 HELLO v=1 max=4096 00000000"
a=$(raw_q 2 HELLO "v=1 max=4096")
case $a in *"A 0 ERROR code=FRAME text=bad%20CRC"*) ;; *) fail "damaged frame: $a" ;; esac
a=$(raw_q 2 HELLO "v=1 max=4096")
case $a in *"A 2 HELLO v=1 dev=$dev hw=agent-board sku=agent-gw "*"key=se "*"gen=2 "*) ;; *) fail "HELLO: $a" ;; esac
b=$(raw_q 2 HELLO "v=1 max=4096")
[ "$a" = "$b" ] || fail "the retransmission got another answer: $b"
ok "raw frames: ERROR HELLO before HELLO, a damaged frame answered with seq 0 FRAME, the kept answer for a retransmission"

printf 'x%.0s' $(seq 1 100) >"$T/small"
seq=10
for p in ../etc/passwd /etc/passwd .hidden a//b sub/../../x "a b" link/x client.key; do
	seq=$((seq + 1))
	a=$(raw_write "$seq" "$(printf '%s' "$p" | sed 's/ /%20/g')" "$T/small")
	case $a in *"A $seq ERROR code=PATH "*) ;; *) fail "path '$p' was not refused: $a" ;; esac
done
[ -z "$(ls -A "$T/elsewhere")" ] || fail "a file was written through a symlink: $(ls -A "$T/elsewhere")"
head -c 70000 /dev/zero >"$T/big"
a=$(raw_write 30 big.bin "$T/big")
case $a in *"A 30 ERROR code=SIZE "*"65536"*) ;; *) fail "oversize file: $a" ;; esac
pub=$(openssl x509 -in "$R1/var/sota/client.pem" -noout -pubkey)
a=$(raw_q 31 CSR "cn=$dev ou=acme-factory alg=ec-p256 regen=1")
case $a in *"A 31 ERROR code=KEYGEN text=regen%20refused"*) ;; *) fail "regen on a provisioned board: $a" ;; esac
env "$DEVHSM" GNUTLS_PIN="$(cat "$R1/etc/device.pin")" p11tool --batch --provider "$SOFTHSM_MODULE" \
	--export-pubkey "pkcs11:token=device;object=device-key" --login --outfile "$T/token-pub2.pem" 2>/dev/null
cmp -s "$T/token-pub.pem" "$T/token-pub2.pem" || fail "the refused regen changed the key"
a=$(raw_q 32 VERIFY "nonce=$(head -c 32 /dev/urandom | base64 -w0)")
case $a in *"A 32 VERIFY gen=2 files=4 "*) ;; *) fail "VERIFY after the refusals: $a" ;; esac
# A file and a directory of one name in one set (clash/b, then clash): COMMIT refuses the set
# before its commit point, so no journal is left that no start could finish; the set
# installed stays whole and the agent goes on. A mode every user of the device may write is
# refused at WRITE.
printf 'inner\n' >"$T/inner"
printf 'outer\n' >"$T/outer"
a=$(raw_write 33 clash/b "$T/inner")
case $a in *"A 33 WRITE "*"done=1"*) ;; *) fail "WRITE clash/b: $a" ;; esac
a=$(raw_write 34 clash "$T/outer")
case $a in *"A 34 WRITE "*"done=1"*) ;; *) fail "WRITE clash: $a" ;; esac
a=$(raw_q 35 COMMIT "count=2")
case $a in *"A 35 ERROR code=PATH "*"cannot%20also%20be%20a%20directory"*) ;;
*) fail "COMMIT of a file and its directory: $a" ;; esac
[ ! -e "$R1/var/sota/clash" ] && [ ! -e "$R1/var/sota/.commit" ] ||
	fail "the refused set left: $(ls -A "$R1/var/sota")"
a=$(raw_q 36 VERIFY "nonce=$(head -c 32 /dev/urandom | base64 -w0)")
case $a in *"A 36 VERIFY gen=2 files=4 "*) ;; *) fail "VERIFY after the refused set: $a" ;; esac
sha=$(sha256sum "$T/inner" | cut -c1-64 | tr a-f A-F)
a=$(raw_q 37 WRITE "path=ww mode=0666 size=6 sha=$sha off=0 data=$(base64 -w0 <"$T/inner")")
case $a in *"A 37 ERROR code=FIELD "*"every%20user"*) ;; *) fail "WRITE of mode 0666: $a" ;; esac
raw_close
stop_agent
out=$(files_check "$R1/var/sota") || fail "after the refusals: $out"
ok "refused: '..', absolute, hidden, empty component, space, symlinked directory and file (PATH, nothing written outside); 70000 bytes over max_file 65536 (SIZE); regen on the provisioned board (KEYGEN, key kept); a file and its directory in one set (PATH at COMMIT, the set kept); mode 0666 (FIELD)"

# Regeneration where the board allows it (allow_regen = yes), cut by a power loss: the agent
# stopped for good right after the new pair is made (the old one whole), right after the old
# pair is destroyed (the new one not yet under the key's label) and between the relabelling
# of the new pair's halves, killed there and started again; and a generation that fails.
# Needs the agent's test hooks.
if grep -qa STATION_AGENT_TEST_STOP "$AGENT"; then
	cp "$T/se.conf" "$T/regen.conf"
	echo "allow_regen = yes" >>"$T/regen.conf"
	subject="cn=$dev ou=acme-factory alg=ec-p256"
	tok() {
		env "$DEVHSM" GNUTLS_PIN="$(cat "$R1/etc/device.pin")" p11tool --batch \
			--provider "$SOFTHSM_MODULE" --login "$@" 2>>"$T/p11.err"
	}
	# pub_sha: the SHA-256 of the DER of a public key given in PEM on stdin.
	pub_sha() { openssl pkey -pubin -outform DER | sha256sum | cut -c1-64; }
	# objects URI: the token's objects matching URI, one URI a line (p11tool fails on none).
	objects() { tok --list-all --only-urls "$1" || true; }
	# token_pubs: pub_sha of every public key on the token, one a line.
	token_pubs() {
		local url
		objects "pkcs11:token=device;type=public" | while read -r url; do
			# --export, the object as it is (--export-pubkey looks for a private key), to
			# --outfile (p11tool sleeps 3 s after warning that a key goes to stdout).
			tok --export "$url" --outfile "$T/export.pem" || fail "export $url"
			pub_sha <"$T/export.pem"
		done
	}
	cert_pub=$(openssl x509 -in "$R1/var/sota/client.pem" -noout -pubkey | pub_sha)
	regen_agent() {
		env "$DEVHSM" "$@" "$AGENT" --tty "$T/agent-end" --config "$T/regen.conf" --root "$R1" \
			--serve 2>>"$T/agent.log" &
		AGENTPID=$!
		raw_boot
		seq=$((seq + 1))
		raw_q "$seq" HELLO "v=1 max=4096" >/dev/null
	}
	# regen_cut POINT: CSR regen=1 to an agent that stops for good at POINT; the token's
	# public keys there in $T/pubs.POINT; the agent killed (the power cut) and started again.
	regen_cut() {
		local point=$1 rc=0
		regen_agent STATION_AGENT_TEST_STOP="$point"
		seq=$((seq + 1))
		raw_send "$seq" CSR "$subject regen=1"
		wait_for_line "$T/agent.log" "test stop at $point\$" 60 "$AGENTPID" || rc=$?
		[ "$rc" = 0 ] || fail "$point: the agent did not stop there ($rc): $(tail -3 "$T/agent.log")"
		kill -KILL "$AGENTPID"
		wait "$AGENTPID" 2>/dev/null || true
		AGENTPID=
		token_pubs >"$T/pubs.$point" || fail "$point: cannot read the token's public keys"
		regen_agent
	}
	# board_key NAME: the board's key as the running agent reports it, which is then stopped
	# (the token is looked at without it): its CSR for the board's subject is for the token's
	# one key (exactly one private key under the label, nothing left under the temporary one)
	# and VERIFY's proof of possession verifies with it. Sets board_pub (pub_sha of that key).
	board_key() {
		local name=$1 a n
		seq=$((seq + 1))
		a=$(raw_q "$seq" CSR "$subject")
		case $a in *"A $seq CSR total="*) ;; *) fail "$name: CSR: $a" ;; esac
		sed -n 's/.* data=\([^ ]*\).*/\1/p' <<<"$a" | base64 -d >"$T/$name.csr"
		openssl req -inform DER -in "$T/$name.csr" -noout -pubkey >"$T/$name.pub" ||
			fail "$name: the board's CSR does not parse"
		board_pub=$(pub_sha <"$T/$name.pub")
		head -c 32 /dev/urandom >"$T/$name.nonce"
		seq=$((seq + 1))
		a=$(raw_q "$seq" VERIFY "nonce=$(base64 -w0 "$T/$name.nonce")")
		stop_agent
		sed -n 's/.* sig=\([^ ]*\).*/\1/p' <<<"$a" | base64 -d >"$T/$name.sig"
		openssl dgst -sha256 -verify "$T/$name.pub" -signature "$T/$name.sig" \
			<(printf 'station-pop-v1'; cat "$T/$name.nonce") >/dev/null ||
			fail "$name: VERIFY's signature is not by the CSR's key: $a"
		n=$(tok --list-privkeys "pkcs11:token=device;object=device-key" | grep -c "Type: Private key") || true
		[ "$n" = 1 ] || fail "$name: $n private keys under the key's label"
		[ -z "$(objects "pkcs11:token=device;object=device-key.new")" ] ||
			fail "$name: objects left under device-key.new"
		[ "$(token_pubs)" = "$board_pub" ] ||
			fail "$name: the board's CSR is not for the token's key ($(token_pubs | tr '\n' ' '))"
	}
	raw_open
	regen_agent
	board_key before
	[ "$board_pub" = "$cert_pub" ] || fail "before: the board's key is not its certificate's"
	cmp -s "$T/before.csr" "$R1/var/lib/station-agent/csr.der" || fail "before: not the recorded CSR"

	# Cut right after the new pair is made: the old pair is still the board's.
	regen_cut keygen-generated
	[ "$(wc -l <"$T/pubs.keygen-generated")" = 2 ] ||
		fail "keygen-generated: not the old and the new public key at the stop: $(cat "$T/pubs.keygen-generated")"
	board_key generated
	[ "$board_pub" = "$cert_pub" ] || fail "keygen-generated: the board lost the key its certificate is for"
	ok "regen cut after the new pair was made: the old key is still the board's (its certificate's, its CSR, VERIFY), the new pair gone, one private key under the label"

	# A generation that fails (a full token): the old pair is untouched, and the answer says so.
	regen_agent STATION_AGENT_TEST_FAIL=keygen
	seq=$((seq + 1))
	a=$(raw_q "$seq" CSR "$subject regen=1")
	case $a in *"A $seq ERROR code=KEYGEN "*"kept"*) ;; *) fail "a failed generation: $a" ;; esac
	board_key failed
	[ "$board_pub" = "$cert_pub" ] || fail "failed generation: the board lost the key its certificate is for"
	ok "regen whose generation fails: KEYGEN saying the old pair is kept, and it is (its certificate's, its CSR, VERIFY)"

	# Cut right after the old pair is destroyed, and between the relabelling of the new pair's
	# halves: the next start finishes the switch to the pair made before the cut, and the CSR
	# the board answers is for it.
	prev=$cert_pub
	for point in keygen-destroyed keygen-relabelled; do
		regen_cut "$point"
		board_key "$point"
		grep -qx "$board_pub" "$T/pubs.$point" ||
			fail "$point: the board's key was not on the token at the cut ($(cat "$T/pubs.$point"))"
		[ "$board_pub" != "$prev" ] || fail "$point: the old key came back"
		prev=$board_pub
	done
	raw_close
	ok "regen cut after the old pair was destroyed, and between relabelling the new pair's halves: the next start puts the new pair under the label, the board's CSR and VERIFY are for it, one private key"
else
	echo "skip - regen cut by a power loss: $AGENT has no test hooks (-DSTATION_TEST_HOOKS=ON)"
fi

# Prefixes: a board that lets the station write only below /var/sota/certs.
R2=$T/prefix-root
cat >"$T/prefix.conf" <<CONF
hardware_id = agent-board
prefix = /var/sota/certs
CONF
raw_open
start_agent "$R2" "$T/prefix.conf" --serve
raw_boot
raw_q 1 HELLO "v=1" >/dev/null
a=$(raw_write 2 sota.toml "$T/small")
case $a in *"A 2 ERROR code=PATH text="*"outside"*) ;; *) fail "a path outside the prefixes: $a" ;; esac
a=$(raw_write 3 certs/client.pem "$T/small")
case $a in *"A 3 WRITE path=certs/client.pem have=100 done=1 "*) ;; *) fail "a path inside the prefix: $a" ;; esac
a=$(raw_q 4 COMMIT "count=1")
case $a in *"A 4 COMMIT gen=1 files=1 "*) ;; *) fail "COMMIT: $a" ;; esac
raw_close
stop_agent
cmp -s "$T/small" "$R2/var/sota/certs/client.pem" || fail "certs/client.pem not installed"
[ ! -e "$R2/var/sota/sota.toml" ] || fail "sota.toml written outside the prefix"
ok "prefixes: sota.toml outside /var/sota/certs refused, certs/client.pem installed"

# A full disk: the configuration directory on a 64 KiB tmpfs.
R3=$T/full-root
mkdir -p "$R3/var/sota"
if mount -t tmpfs -o size=64k tmpfs "$R3/var/sota" 2>/dev/null; then
	mounted=$R3/var/sota
	printf 'hardware_id = agent-board\n' >"$T/full.conf"
	raw_open
	start_agent "$R3" "$T/full.conf" --serve
	raw_boot
	raw_q 1 HELLO "v=1 max=4096" >/dev/null
	head -c 200000 /dev/urandom >"$T/huge"
	seq=2
	off=0
	a=
	while [ "$off" -lt 200000 ]; do
		a=$(raw_write "$seq" firmware.bin "$T/huge" "$off")
		case $a in
		*"A $seq WRITE "*) off=$((off + 2048)) ;;
		*) break ;;
		esac
		seq=$((seq + 1))
	done
	case $a in *"A $seq ERROR code=STORAGE text="*"no%20space"*) ;; *) fail "full disk: $a" ;; esac
	a=$(raw_q $((seq + 1)) COMMIT)
	case $a in *"COMMIT gen=0 files=0 "*) ;; *) fail "COMMIT after the full disk: $a" ;; esac
	raw_close
	stop_agent
	# A file that fits (15 pages) on a disk then too full for the commit's own files: the
	# commit completes or is refused before its commit point. Either way no journal is left
	# that no start could finish (the manifest once came after it), and the agent starts.
	head -c 61440 /dev/urandom >"$T/fits"
	raw_open
	start_agent "$R3" "$T/full.conf" --serve
	raw_boot
	raw_q 1 HELLO "v=1 max=4096" >/dev/null
	seq=2
	for o in $(seq 0 2048 61439); do
		a=$(raw_write "$seq" fits.bin "$T/fits" "$o")
		case $a in *"A $seq WRITE "*) ;; *) fail "WRITE fits.bin at $o: $a" ;; esac
		seq=$((seq + 1))
	done
	a=$(raw_q "$seq" COMMIT "count=1")
	case $a in *"COMMIT gen=1 files=1 "* | *"ERROR code=STORAGE "*) ;;
	*) fail "COMMIT on a full disk: $a" ;; esac
	raw_close
	stop_agent
	[ ! -e "$R3/var/sota/.commit" ] || fail "COMMIT on a full disk left its journal: $a"
	raw_open
	start_agent "$R3" "$T/full.conf" --serve
	raw_boot
	a=$(raw_q 1 HELLO "v=1 max=4096")
	case $a in *"A 1 HELLO "*) ;; *) fail "the agent after a full disk at COMMIT: $a" ;; esac
	raw_close
	stop_agent
	if [ -e "$R3/var/sota/.manifest" ]; then
		out=$(files_check "$R3/var/sota") || fail "after a full disk at COMMIT: $out"
	fi
	umount "$mounted"
	mounted=
	ok "full disk: STORAGE (no space) after $off bytes on a 64 KiB tmpfs, nothing installed; a COMMIT with no room left for its own files leaves no journal, and the agent starts again"
else
	echo "skip - full disk: cannot mount a tmpfs here (not root?)"
fi

# 3. A board without a secure element: the key in a PEM file.
R4=$T/sw-root
printf 'hardware_id = agent-board\nsku = agent-gw\nbauds = 115200,921600\n' >"$T/sw.conf"
start_agent "$R4" "$T/sw.conf"
run_station sw
check_board sw "$R4/var/sota"
key=$R4/var/lib/station-agent/key.pem
[ "$(stat -c %a "$key")" = 600 ] || fail "sw: key.pem is mode $(stat -c %a "$key")"
cmp -s <(openssl pkey -in "$key" -pubout -outform DER) \
	<(openssl x509 -in "$R4/var/sota/client.pem" -noout -pubkey | openssl pkey -pubin -outform DER) ||
	fail "sw: the certificate carries another key than key.pem"
mtls sw -cert "$R4/var/sota/client.pem" -key "$key" -CAfile "$R4/var/sota/root.crt"
ok "key file: the board passed, key.pem 0600 matches the certificate, mutual TLS with the agent's files"
echo "all passed"
