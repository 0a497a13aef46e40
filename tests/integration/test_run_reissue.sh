#!/usr/bin/env bash
# `reprovision: reissue` on the serial line. A board that presents a device id already
# recorded with another key (a new board claiming it, the same id with a new key) gets a new
# certificate only when the profile takes the id from the board's secure element; with an id
# the board names itself (source: board, or an id it kept under uuid4 or sequence) it is
# refused with POOL_REISSUE_UNAUTH, told why, flagged in the ledger, and nothing is signed.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
ev="$T/events.jsonl"
ID=$(cat /proc/sys/kernel/random/uuid)

# profile SOURCE STORAGE: the simulated boards' profile, reissuing, with this device id
# source and key storage.
profile() {
	line_profile "$pki" "$1" "key: {storage: $2}
certificate: {reprovision: reissue}"
}

# one_board NAME OUTCOME [simboard options]: a fixture of its own (a new board, so a new
# key) presenting device id $ID, one station run; OUTCOME is pass or the failure reason.
one_board() {
	local name=$1 want=$2 o
	shift 2
	LINE_DIR=$T/$name
	sed "s#$T/line/map.yaml#$LINE_DIR/map.yaml#" "$pki/run.yaml" >"$pki/$name.yaml"
	start_simboard 1 --seed 7 --device-id "$ID" "$@"
	timeout 120 "$STATION" run -c "$pki/$name.yaml" --events "$ev" --boards 1 --no-view \
		>"$T/$name.out" 2>"$T/$name.err" || true
	# A refused board is told why by a DONE the station sends as it stops: simboard may
	# still be reading it.
	if [ "$want" != pass ]; then
		wait_for_line "$LINE_DIR/board0/result" "^fail $want" 30 "$SIMPID" ||
			fail "$name: the board was not told why: $(cat "$LINE_DIR/board0/result" 2>&1)"
	fi
	stop_simboard
	o=$(grep '"event":"\(pass\|fail\)"' "$ev" | tail -1)
	if [ "$want" = pass ]; then
		case $o in *'"event":"pass"'*) ;; *) fail "$name: expected pass, got: ${o:-nothing}: $(tail -3 "$T/$name.err")" ;; esac
		"$SIMBOARD" verify "$LINE_DIR/board0" --root "$pki/factory-root.pem" >"$T/verify.out" ||
			fail "$name: $(cat "$T/verify.out")"
	else
		case $o in *'"event":"fail"'*'"reason":"'$want'"'*) ;; *) fail "$name: expected failure $want, got: ${o:-nothing}" ;; esac
		if "$SIMBOARD" verify "$LINE_DIR/board0" --root "$pki/factory-root.pem" >/dev/null; then
			fail "$name: refused, yet the board has a complete file set"
		fi
	fi
}

rows() {
	"$STATION" ledger -c "$pki/run.yaml" export --format csv | grep -c ",$ID," || true
}
flags() {
	"$STATION" ledger -c "$pki/run.yaml" flags | grep "$ID" | grep -c "reissues only to authenticated" || true
}

# The first board with this id: a certificate, as under any policy.
profile board any
one_board first pass
grep -q "warning: 'reprovision: reissue' applies only to HTTP registrations" "$T/first.err" ||
	fail "no warning that serial boards cannot reissue: $(cat "$T/first.err")"
[ "$(rows)" = 1 ] || fail "first board: $(rows) ledger rows"
ok "first board with device id $ID: certificate issued; the profile load warned"

# Boards naming the id themselves, each with a new key: refused, flagged, nothing signed.
one_board board-id POOL_REISSUE_UNAUTH
grep -q "reissues only to authenticated requests" "$T/board-id.err" || fail "no reason logged: $(tail -3 "$T/board-id.err")"
ok "source: board, the id with a new key: refused (POOL_REISSUE_UNAUTH), the board told why"
profile uuid4 any
one_board uuid4-id POOL_REISSUE_UNAUTH
ok "source: uuid4, a board keeping the id: refused"
profile board any
one_board sw-board POOL_REISSUE_UNAUTH --key-storage sw
ok "source: board, key storage sw: refused"
[ "$(rows)" = 1 ] || fail "refused boards reached the ledger: $(rows) rows"
[ "$(flags)" = 3 ] || fail "refusals flagged: $(flags), expected 3: $("$STATION" ledger -c "$pki/run.yaml" flags)"
ok "nothing signed for them; each refusal is flagged in the ledger"

# The id read from the secure element: the board's own, so a new key gets a new certificate.
profile secure-element secure-element
one_board se-id pass
[ "$(rows)" = 2 ] || fail "secure-element reissue: $(rows) ledger rows, expected 2"
s1=$(openssl x509 -in "$T/first/board0/files/client.pem" -noout -serial)
s2=$(openssl x509 -in "$T/se-id/board0/files/client.pem" -noout -serial)
[ "$s1" != "$s2" ] || fail "the reissue has the first certificate's serial"
ok "source: secure-element: the same id with a new key gets a new certificate"

# A board that does not report a secure element is not believed to read its id from one.
one_board se-sw SLOT_KEY_STORAGE --key-storage sw
[ "$(rows)" = 2 ] || fail "a board without a secure element was signed for"
ok "source: secure-element, a board reporting key storage sw: refused, nothing signed"

# A profile whose reissue no request could ever authenticate does not load.
profile board secure-element
expect_fail "reissue with an id the board names and a secure-element key" \
	"sim-gw.yaml:[0-9]+:[0-9]+: 'reprovision: reissue' can never apply" \
	"$STATION" profile check "$pki/sim-gw.yaml"
grep -q "AddressSanitizer\|runtime error" "$T"/*.err && fail "sanitizer report"
echo "all passed"
