#!/usr/bin/env bash
# A board that passed VERIFY and was told DONE pass is provisioned, whoever answers next and
# whatever becomes of its DONE answer: recorded as passed in the events, the summary and the
# ledger (delivered, never failed), for every way the answer can go missing:
#  - damaged (CRC) while the operator has already put the next board in the fixture;
#  - a byte lost on the wire, the next board in the fixture;
#  - the port gone for good before the answer (unplugged after VERIFY).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
printf 'timeouts:\n  reconnect: 1000\n' >>"$pki/run.yaml"

# run_case NAME BOARDS SIMBOARD-ARGS...: a fresh line (and ledger); the station runs until
# BOARDS boards finished; every one must pass and every ledger row be delivered.
run_case() {
	local name=$1 n=$2 states
	shift 2
	stop_simboard
	LINE_DIR=$T/$name
	rm -f "$pki/ledger.db" "$pki/ledger.db-wal" "$pki/ledger.db-shm"
	sed "s#$T/line/map.yaml#$LINE_DIR/map.yaml#" "$pki/run.yaml" >"$pki/$name.yaml"
	start_simboard 1 --seed 7 "$@"
	timeout 120 "$STATION" run -c "$pki/$name.yaml" --events "$T/$name.jsonl" --boards "$n" \
		--no-view >"$T/$name.out" 2>"$T/$name.err" ||
		fail "$name: station run exited $?: $(grep -E 'warning|error' "$T/$name.err" | tail -3)"
	grep '"event":"summary"' "$T/$name.jsonl" | has "\"boards\":$n,\"passed\":$n,\"failed\":0" ||
		fail "$name: $(grep summary "$T/$name.jsonl"): $(grep -E 'warning|error' "$T/$name.err" | tail -3)"
	states=$(sqlite3 -readonly "$pki/ledger.db" "SELECT state FROM certificates" | sort | uniq -c | xargs)
	[ "$states" = "$n delivered" ] || fail "$name: ledger rows: $states"
	"$STATION" ledger -c "$pki/$name.yaml" check >"$T/$name.check" ||
		fail "$name: ledger check: $(cat "$T/$name.check")"
}

run_case crc 2 --total 2 --fault crc:board0
grep -q "verified, then: another board" "$T/crc.err" || fail "crc: no word on what happened: $(cat "$T/crc.err")"
ok "DONE answer damaged, the next board in the fixture: 2 passed, both rows delivered"

run_case drop 2 --total 2 --fault drop:board0
ok "DONE answer with a byte lost, the next board in the fixture: 2 passed, both rows delivered"

# The link goes away at DONE and stays away longer than the station waits for it.
run_case unplugged 1 --fault disconnect=DONE/1:board0 --reconnect-ms 60000
grep -q "verified, then: the port hung up" "$T/unplugged.err" ||
	fail "unplugged: no word on what happened: $(cat "$T/unplugged.err")"
ok "port gone for good after VERIFY: passed, its row delivered"
stop_simboard
echo "all passed"
