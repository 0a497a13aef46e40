#!/usr/bin/env bash
# The proof of possession is verified on the signing workers, not the loop. When the workers
# do not get to it within the VERIFY wait (every one of them held by a slow HSM's signature),
# the station verifies it itself: boards neither wait on the HSM for their proof nor pass
# without it. One worker, an HSM of 2.5 s a signature (fixtures/slowhsm), a VERIFY wait of
# 0.8 s and four boards, two of which prove with another key than their CSR's (simboard's
# bad-pop): the worker signs the boards one after another, a batch each, so the proofs of all
# but the last wait behind a signature and are verified on the loop; the two good boards pass, the two
# others fail with SLOT_VERIFY_POP, whichever way their proof went.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
# One worker, a batch a board: each board's certificate is recorded as the worker starts on
# the next board's signature, which its proof then waits behind.
sed -i "s/^  workers: 2$/  workers: 1\n  batch_max: 1/" "$pki/run.yaml"
grep -q "^  batch_max: 1$" "$pki/run.yaml" || fail "run.yaml: no pool.workers: $(cat "$pki/run.yaml")"
sed -i "/^  key: /s#module-path=[^\"]*#module-path=$BUILD_DIR/fixtures/slowhsm/libslowhsm.so#" \
	"$pki/run.yaml"
grep -q "libslowhsm.so" "$pki/run.yaml" || fail "run.yaml: no slow module: $(cat "$pki/run.yaml")"
cat >>"$pki/run.yaml" <<EOF
timeouts:
  verify: 800
EOF
ev="$T/events.jsonl"
start_simboard 4 --seed 23 --fault bad-pop:board1,board2
SLOWHSM_LATENCY_MS=2500 timeout 120 "$STATION" run -c "$pki/run.yaml" --events "$ev" --boards 4 \
	--no-view >"$T/run.out" 2>"$T/run.err" && fail "station run exited 0 although two boards failed"
grep '"event":"summary"' "$ev" | has '"boards":4,"passed":2,"failed":2' ||
	fail "summary: $(grep summary "$ev"); $(tail -5 "$T/run.err")"
for b in board0 board3; do
	grep "\"event\":\"pass\",\"station\":\"[^\"]*\",\"slot\":\"$b\"" "$ev" >/dev/null ||
		fail "$b did not pass"
	"$SIMBOARD" verify "$T/line/$b" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "$b: $(cat "$T/verify.out")"
done
for b in board1 board2; do
	o=$(grep "\"event\":\"fail\",\"station\":\"[^\"]*\",\"slot\":\"$b\"" "$ev" || true)
	case $o in *'"reason":"SLOT_VERIFY_POP"'*) ;; *) fail "$b: expected SLOT_VERIFY_POP, got: ${o:-nothing}" ;; esac
done
ok "the boards that prove their key pass, the two that cannot fail with SLOT_VERIFY_POP"

# Which proofs the loop verified itself: at least the first three boards' (the last one's
# may also wait, behind nothing but the machine), among them at least one of the bad ones.
late=$(grep -c "did not verify its proof of possession within 800 ms; verified here" "$T/run.err" || true)
[ "$late" -ge 3 ] || fail "the loop verified $late proofs itself, expected 3 or 4: $(grep -i "proof" "$T/run.err")"
found=0
for b in board1 board2; do
	id=$(cat "$T/line/$b/device-id")
	grep -q "device $id: the signing workers did not verify" "$T/run.err" && found=1
done
[ "$found" = 1 ] || fail "neither bad board's proof was verified on the loop: $(grep "verified here" "$T/run.err")"
ok "$late proofs waiting behind a signature were verified on the loop, a bad one failed there"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
[ "$("$STATION" ledger -c "$pki/run.yaml" export --format csv | grep -c ",failed,")" = 2 ] ||
	fail "not two rows marked failed: $("$STATION" ledger -c "$pki/run.yaml" export --format csv)"
ok "ledger check passes; the two boards' rows are marked failed"
stop_simboard
