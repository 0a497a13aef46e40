#!/usr/bin/env bash
# `station run` against every fault simboard can inject, all at once on one line with boot
# noise and 1% CRC errors on every board: each faulty board ends as expected for its fault,
# with the right reason, while the others pass; nothing is half-written and the ledger checks
# out. A board that comes back after its certificate was delivered gets that certificate
# again; another board claiming its device id with another key is refused.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
# Short timeouts: the hung board fails in seconds, not minutes. Generous enough for a
# loaded machine: nothing here depends on speed but the run time.
cat >>"$pki/run.yaml" <<EOF
timeouts:
  hello: 2000
  csr: 3000
  write: 1500
  commit: 3000
  verify: 3000
  done: 2000
  reconnect: 20000
retries:
  request: 4
EOF
ev="$T/events.jsonl"

# outcome SLOT: the slot's outcome event line.
outcome() {
	grep "\"event\":\"\\(pass\\|fail\\)\",\"station\":\"[^\"]*\",\"slot\":\"$1\"" "$ev" || true
}

expect_pass() {
	local o
	o=$(outcome "$1")
	case $o in *'"event":"pass"'*) ;; *) fail "$1 ($2): expected pass, got: ${o:-nothing}" ;; esac
	"$SIMBOARD" verify "$T/line/$1" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "$1 ($2): $(cat "$T/verify.out")"
	ok "$1 ($2): pass, files verified"
}

expect_fail_reason() {
	local o
	o=$(outcome "$1")
	case $o in *'"event":"fail"'*'"reason":"'$2'"'*) ;; *) fail "$1 ($3): expected failure $2, got: ${o:-nothing}" ;; esac
	# Nothing half-written: a failed board has no committed files.
	if "$SIMBOARD" verify "$T/line/$1" --root "$pki/factory-root.pem" >/dev/null; then
		fail "$1 ($3): failed, yet it has a complete file set"
	fi
	ok "$1 ($3): failed with $2"
}

# Phase 1: board0 alone gets its certificate.
start_simboard 1 --seed 11
timeout 120 "$STATION" run -c "$pki/run.yaml" --events "$T/first.jsonl" --boards 1 --no-view \
	>"$T/first.out" 2>"$T/first.err" || fail "first run: $(tail -5 "$T/first.err")"
grep -q '"event":"pass"' "$T/first.jsonl" || fail "board0 did not pass in the first run"
serial0=$(openssl x509 -in "$T/line/board0/files/client.pem" -noout -serial)
stop_simboard
ok "board0 provisioned alone first"

# Phase 2: the whole line with every fault.
start_simboard 15 --seed 11 --noise \
	--fault crc:board12 \
	--fault crc:1% \
	--fault disconnect:board2 \
	--fault hang=WRITE:board3 \
	--fault bad-csr=wrong-cn:board4 \
	--fault bad-csr=bad-sig:board5 \
	--fault bad-csr=rsa:board6 \
	--fault bad-csr=extra-attr:board7 \
	--fault dup-id=board0:board8 \
	--fault power-loss:board9 \
	--fault slow=300:board10 \
	--fault drop:board11 \
	--fault bad-pop:board14
if timeout 300 "$STATION" run -c "$pki/run.yaml" --events "$ev" --boards 15 --no-view \
	>"$T/run.out" 2>"$T/run.err"; then
	fail "station run exited 0 although boards failed"
fi
[ "$(grep -c '"event":"\(pass\|fail\)"' "$ev")" = 15 ] || fail "not 15 outcomes: $(grep -c '"event":"\(pass\|fail\)"' "$ev")"
grep '"event":"summary"' "$ev" | has '"boards":15,"passed":8,"failed":7' ||
	fail "summary: $(grep summary "$ev")"
# The run ends when the last board is done, often the hung one failing: a slot whose board
# failed is not a board abandoned in flight, in the tally or in the list of slots.
grep '"event":"summary"' "$ev" | jq -e '.abandoned == 0 and ((.abandoned_slots // []) | length) == 0' >/dev/null ||
	fail "summary names abandoned boards: $(grep summary "$ev")"
if grep -q "abandoned (\|abandoned [0-9]* board" "$T/run.out" "$T/run.err"; then
	fail "boards called abandoned: $(grep "abandoned" "$T/run.out" "$T/run.err")"
fi
ok "15 boards: 8 passed, 7 failed, none abandoned, exit status 1"

expect_pass board0 "delivered before"
case $(outcome board0) in *'"reused":true'*) ;; *) fail "board0 was not given its recorded certificate" ;; esac
[ "$(openssl x509 -in "$T/line/board0/files/client.pem" -noout -serial)" = "$serial0" ] ||
	fail "board0 got a second certificate"
ok "board0: the recorded certificate again, no second one"
expect_pass board1 "noise and 1% CRC errors"
expect_pass board2 "disconnected mid-write"
case $(outcome board2) in *'"resyncs":0'*) fail "board2: no reconnect was seen" ;; esac
expect_fail_reason board3 PROTO_TIMEOUT "hung at WRITE"
expect_fail_reason board4 CSR_CN_MISMATCH "CSR with another CN"
expect_fail_reason board5 CSR_SIGNATURE "CSR with a broken self-signature"
expect_fail_reason board6 CSR_KEY_TYPE "RSA-1024 CSR"
expect_fail_reason board7 CSR_SUBJECT_EXTRA "CSR with an extra subject attribute"
expect_fail_reason board8 POOL_ID_OTHER_KEY "board0's device id with another key"
expect_pass board9 "power lost mid-write"
case $(outcome board9) in *'"resyncs":0'*) fail "board9: no reboot was seen" ;; esac
expect_pass board10 "slow answers"
expect_pass board11 "bytes dropped on the wire"
expect_pass board12 "every answer's first copy damaged"
case $(outcome board12) in *'"retransmits":0'*) fail "board12: no retransmission" ;; esac
expect_pass board13 "noise only"
# A board whose proof of possession is made with another key than its CSR's: it holds the
# committed files by then (VERIFY follows COMMIT), so the check is the reason, the words and
# the ledger's mark, not the files.
case $(outcome board14) in
*'"event":"fail"'*'"reason":"SLOT_VERIFY_POP"'*) ;;
*) fail "board14 (proof with another key): expected failure SLOT_VERIFY_POP, got: $(outcome board14)" ;;
esac
outcome board14 | jq -e '.error | test("nonce signature does not verify under the public key of certificate [0-9a-f]+")' >/dev/null ||
	fail "board14: the error does not say why: $(outcome board14)"
grep -q "^fail SLOT_VERIFY_POP" "$T/line/board14/result" || fail "board14 was not told why"
id14=$(cat "$T/line/board14/device-id")
"$STATION" ledger -c "$pki/run.yaml" export --format csv | grep ",$id14," | grep -q ",failed," ||
	fail "board14's ledger row is not marked failed: $("$STATION" ledger -c "$pki/run.yaml" export --format csv | grep ",$id14,")"
ok "board14 (proof with another key): failed with SLOT_VERIFY_POP, told, its row marked failed"

# The refused board is flagged, the boards were told their outcome, consoles were kept.
grep -q "^fail POOL_ID_OTHER_KEY" "$T/line/board8/result" || fail "board8 was not told why"
grep -q "^fail CSR_SIGNATURE" "$T/line/board5/result" || fail "board5 was not told why"
for b in board3 board4 board5 board6 board7 board8; do
	ls "$T/consoles/$b-"*.log >/dev/null 2>&1 || fail "no console log for $b"
done
grep -q "failed in csr: CSR_CN_MISMATCH" "$T/consoles/board4-"*.log || fail "board4's console log lacks its reason"
ok "failed boards told why; their consoles saved"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
id0=$(cat "$T/line/board0/device-id")
[ "$("$STATION" ledger -c "$pki/run.yaml" export --format csv | grep -c ",$id0,")" = 1 ] ||
	fail "board0's device id has more than one ledger row"
ok "ledger check passes; one certificate for the duplicated device id"

stop_simboard

# --until-idle ends although one fixture's board never says a word (an empty fixture looks
# the same): that slot counts as empty once it has heard nothing for a while.
LINE_DIR=$T/idle
sed "s#$T/line/map.yaml#$LINE_DIR/map.yaml#" "$pki/run.yaml" >"$pki/idle.yaml"
start_simboard 3 --seed 12 --fault hang:board1
timeout 120 "$STATION" run -c "$pki/idle.yaml" --events "$T/idle.jsonl" --until-idle --no-view \
	>"$T/idle.out" 2>"$T/idle.err" || fail "station run --until-idle: $(tail -5 "$T/idle.err")"
grep '"event":"summary"' "$T/idle.jsonl" | has '"boards":2,"passed":2,"failed":0' ||
	fail "until-idle summary: $(grep summary "$T/idle.jsonl")"
grep -q "heard none" "$T/idle.err" "$T/idle.out" || fail "no stop reason: $(tail -3 "$T/idle.err")"
ok "--until-idle ends with a silent fixture"
stop_simboard
echo "all passed"
