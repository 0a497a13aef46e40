#!/usr/bin/env bash
# The proof of possession goes to a signing worker only when one waits for work; with every
# worker busy the loop verifies it at once: boards never wait on the HSM for their proof, nor
# pass without it. One worker, an HSM of 2.5 s a signature (fixtures/slowhsm) and four boards,
# two of which prove with another key than their CSR's (simboard's bad-pop): the worker signs
# the boards one after another, a batch each, so every proof but the last comes while it
# signs; the two good boards pass, the two others fail with SLOT_VERIFY_POP, whichever way
# their proof went.
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

# Which proofs went to the worker: only one that came while it waited for work, so at most
# the last board's (the others came while it signed the next board), never one that would
# have waited behind a signature of 2.5 s.
tasks=$(sed -n 's/.*signing pool: .*; \([0-9]*\) tasks run.*/\1/p' "$T/run.err")
[ -n "$tasks" ] || fail "no pool summary: $(tail -3 "$T/run.err")"
[ "$tasks" -le 1 ] || fail "$tasks proofs went to the busy worker"
# And none waited: every passing board's verify took less than a signature.
for b in board0 board3; do
	ms=$(grep "\"event\":\"pass\",\"station\":\"[^\"]*\",\"slot\":\"$b\"" "$ev" | jq '.ms.verify')
	awk -v v="$ms" 'BEGIN { exit !(v < 2000) }' || fail "$b: verify took $ms ms, as if behind a signature"
done
ok "$tasks of 4 proofs went to the worker, the others were verified on the loop at once"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
[ "$("$STATION" ledger -c "$pki/run.yaml" export --format csv | grep -c ",failed,")" = 2 ] ||
	fail "not two rows marked failed: $("$STATION" ledger -c "$pki/run.yaml" export --format csv)"
ok "ledger check passes; the two boards' rows are marked failed"
stop_simboard
