#!/usr/bin/env bash
# A device whose UUID is written in upper case (lmp-device-register accepts it) is the same
# device as in lower case: the station takes it in either case, from an HTTP request's uuid,
# its CSR's CN and a board's HELLO, and records it in lower case, so one device has one
# ledger identity. Over HTTP the same key under another spelling gets its recorded
# certificate again, another key under another spelling is the recorded device's conflict;
# on the line a board that reports its UUID in upper case is provisioned, and comes back
# under the lower-case spelling to its recorded certificate.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/http.sh"
for tool in curl jq openssl; do
	command -v $tool >/dev/null || fail "$tool is needed (tests/lib/deps.sh installs it)"
done
line_cleanup() {
	[ -z "${SERVE_PID:-}" ] || kill "$SERVE_PID" 2>/dev/null
}
line_setup
HW=sim-board
upper() { tr 'a-f' 'A-F' <<<"$1"; }
# mixed UUID: every other hex letter in upper case.
mixed() { sed 's/\([a-f]\)\([^a-f]*\)\([a-f]\)/\U\1\E\2\3/g' <<<"$1"; }
serial_of() { openssl x509 -in "$1" -noout -serial; }
# rows UUID: how many ledger rows name the device, in any case.
rows() { "$STATION" ledger -c "$pki/run.yaml" list | grep -ci -- "$1" || true; }

# ---- HTTP: the uuid and the CSR's CN in any spelling --------------------------------------
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && echo "$TOKEN" >"$T/tokens.txt" && echo "OSF-TOKEN: $TOKEN" >"$T/token.hdr")
cp "$pki/run.yaml" "$pki/serve.yaml"
printf 'http:\n  listen: 127.0.0.1:0\n  token_file: %s\n' "$T/tokens.txt" >>"$pki/serve.yaml"
start_server "$pki/serve.yaml"
U=$(cat /proc/sys/kernel/random/uuid)
[ "$(mixed "$U")" != "$U" ] || U=6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f

# request NAME UUID CN [KEYDIR]: a body for uuid UUID with a CSR whose CN is CN, made with
# KEYDIR's key (a new key in $T/NAME without it); prints the status, the answer in
# $T/NAME/answer.json.
request() {
	local d="$T/$1" uuid=$2 cn=$3 keydir=${4:-}
	mkdir -p "$d"
	if [ -n "$keydir" ]; then
		openssl req -new -key "$keydir/pkey.pem" -subj "/CN=$cn/OU=acme-factory" -out "$d/csr.pem"
	else
		key_csr "$d" "$cn" acme-factory
	fi
	tool_body "$uuid" $HW "$d/csr.pem" >"$d/body.json"
	post "$d/body.json" "$d/answer.json"
}

code=$(request up "$(upper "$U")" "$(upper "$U")")
[ "$code" = 201 ] || fail "upper-case uuid: status $code: $(cat "$T/up/answer.json")"
jq -j '.["client.pem"]' "$T/up/answer.json" >"$T/up/client.pem"
subj=$(openssl x509 -in "$T/up/client.pem" -noout -subject -nameopt RFC2253)
[ "$subj" = "subject=OU=acme-factory,CN=$U" ] || fail "upper-case uuid: subject '$subj'"
"$STATION" ledger -c "$pki/run.yaml" list | has -- "$U" || fail "the ledger lacks $U in lower case"
ok "upper-case uuid and CN: 201, certificate and ledger in lower case"

for spelling in lower:"$U":"$U" mixed:"$(mixed "$U")":"$(mixed "$U")" cn-upper:"$U":"$(upper "$U")" \
	uuid-upper:"$(upper "$U")":"$U"; do
	IFS=: read -r name uuid cn <<<"$spelling"
	code=$(request "$name" "$uuid" "$cn" "$T/up")
	[ "$code" = 201 ] || fail "$name spelling, same key: status $code: $(cat "$T/$name/answer.json")"
	jq -j '.["client.pem"]' "$T/$name/answer.json" >"$T/$name/client.pem"
	[ "$(serial_of "$T/$name/client.pem")" = "$(serial_of "$T/up/client.pem")" ] ||
		fail "$name spelling, same key: another certificate"
done
code=$(request other "$(mixed "$U")" "$(mixed "$U")")
[ "$code" = 409 ] && [ "$(jq -r .error "$T/other/answer.json")" = POOL_ID_OTHER_KEY ] ||
	fail "another key under another spelling: $code $(cat "$T/other/answer.json")"
[ "$(rows "$U")" = 1 ] || fail "the device has $(rows "$U") ledger rows"
ok "same key in lower, mixed and upper spellings: the recorded certificate; another key: 409; one ledger row"
stop_server

# The command line is a source of device ids too.
S=$(cat /proc/sys/kernel/random/uuid)
key_csr "$T/sign" "$(upper "$S")" acme-factory
"$STATION" sign -c "$pki/run.yaml" --profile "$pki/sim-gw.yaml" --csr "$T/sign/csr.pem" \
	--device-id "$(mixed "$S")" -o "$T/sign/client.pem" 2>"$T/sign.err" ||
	fail "station sign with a mixed-case device id: $(cat "$T/sign.err")"
subj=$(openssl x509 -in "$T/sign/client.pem" -noout -subject -nameopt RFC2253)
[ "$subj" = "subject=OU=acme-factory,CN=$S" ] || fail "station sign: subject '$subj'"
"$STATION" profile render "$pki/sim-gw.yaml" --device-id "$(upper "$S")" --hardware-id $HW \
	>"$T/render.out" 2>/dev/null || fail "profile render with an upper-case device id"
ok "station sign and profile render take a UUID in any case as the lower-case device id"

# ---- The line: a board that reports its UUID in upper case ----------------------------------
B=$(cat /proc/sys/kernel/random/uuid)
start_simboard 1 --device-id "$(upper "$B")" --seed 5
timeout 120 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view >"$T/run1.out" 2>"$T/run1.err" ||
	fail "run with an upper-case device id: $(tail -5 "$T/run1.err")"
grep -q "^  1 passed (0 delivered again), 0 failed" "$T/run1.out" || fail "first run: $(cat "$T/run1.out")"
subj=$(openssl x509 -in "$LINE_DIR/board0/files/client.pem" -noout -subject -nameopt RFC2253)
[ "$subj" = "subject=OU=acme-factory,CN=$B" ] || fail "board subject '$subj'"
stop_simboard
ok "a board reporting its UUID in upper case is provisioned as the lower-case device"

start_simboard 1 --device-id "$B" --seed 5
timeout 120 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view >"$T/run2.out" 2>"$T/run2.err" ||
	fail "run with the lower-case device id: $(tail -5 "$T/run2.err")"
grep -q "^  1 passed (1 delivered again), 0 failed" "$T/run2.out" || fail "second run: $(cat "$T/run2.out")"
stop_simboard
[ "$(rows "$B")" = 1 ] || fail "the board has $(rows "$B") ledger rows"
ok "the same board under the lower-case spelling: its recorded certificate again, one ledger row"
