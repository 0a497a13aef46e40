#!/usr/bin/env bash
# Sequence device ids are the ledger's to give. A board that already holds one keeps it
# (a retry, a crash) only when the ledger issued it: its number from 1 to below the
# sequence's next. A board that names a number ahead of the counter (or 0) is refused with
# SLOT_ID_UNISSUED, told why, flagged, and nothing is signed for it; the number stays free
# for the board the ledger later gives it to, which passes.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
line_profile "$pki" "sequence
  prefix: SN-
  digits: 6"
ev="$T/events.jsonl"

# run NAME N: the fixture in $T/NAME (made by the caller's simboard), one station run of N
# boards.
run() {
	sed "s#$T/line/map.yaml#$T/$1/map.yaml#" "$pki/run.yaml" >"$pki/$1.yaml"
	timeout 120 "$STATION" run -c "$pki/$1.yaml" --events "$ev" --boards "$2" --no-view \
		>"$T/$1.out" 2>"$T/$1.err" || true
}
outcome() {
	grep "\"event\":\"\\(pass\\|fail\\)\",\"station\":\"[^\"]*\",\"slot\":\"$1\"" "$ev" | tail -1
}
ledger_ids() {
	"$STATION" ledger -c "$pki/run.yaml" export --format csv | cut -d, -f3 | grep '^SN-' |
		sort | paste -sd' ' || true
}

# Two boards without an id: the ledger numbers them.
LINE_DIR=$T/first
start_simboard 2 --seed 31 --device-id none
run first 2
stop_simboard
[ "$(grep -c '"event":"pass"' "$ev")" = 2 ] || fail "first boards: $(grep '"event"' "$ev" | tail -3)"
[ "$(ledger_ids)" = "SN-000001 SN-000002" ] || fail "ledger ids: $(ledger_ids)"
ok "two boards numbered SN-000001 and SN-000002 by the ledger"

# Boards that name numbers the ledger never issued: ahead of the counter, far ahead, 0.
LINE_DIR=$T/squat
i=0
for id in SN-000004 SN-999999 SN-000000; do
	mkdir -p "$T/squat/squat$i"
	printf '%s' "$id" >"$T/squat/squat$i/device-id"
	i=$((i + 1))
done
start_simboard 3 --seed 32 --device-id none --name-prefix squat
run squat 3
for i in 0 1 2; do
	wait_for_line "$T/squat/squat$i/result" "^fail SLOT_ID_UNISSUED" 30 "$SIMPID" ||
		fail "squat$i was not told why: $(cat "$T/squat/squat$i/result" 2>&1)"
done
stop_simboard
for i in 0 1 2; do
	o=$(outcome "squat$i")
	case $o in *'"event":"fail"'*'"reason":"SLOT_ID_UNISSUED"'*) ;;
	*) fail "squat$i: expected SLOT_ID_UNISSUED, got: ${o:-nothing}" ;; esac
	[ ! -e "$T/squat/squat$i/files/client.pem" ] || fail "squat$i holds a certificate"
done
outcome squat0 | jq -e '.error | test("device id SN-000004, which the ledger never issued: sequence SN- has issued 2 numbers")' \
	>/dev/null || fail "squat0's error: $(outcome squat0)"
[ "$(ledger_ids)" = "SN-000001 SN-000002" ] || fail "squatters reached the ledger: $(ledger_ids)"
"$STATION" ledger -c "$pki/run.yaml" flags >"$T/flags"
for id in SN-000004 SN-999999 SN-000000; do
	grep "$id" "$T/flags" | grep -q "not issued by this ledger" || fail "$id not flagged: $(cat "$T/flags")"
done
ok "boards naming SN-000004, SN-999999 and SN-000000: refused (SLOT_ID_UNISSUED), told, flagged, nothing signed"

# New boards take the next numbers, SN-000004 among them.
LINE_DIR=$T/next
start_simboard 3 --seed 33 --device-id none --name-prefix next
run next 3
stop_simboard
[ "$(grep -c '"event":"pass"' "$ev")" = 5 ] || fail "next boards: $(grep '"event":"fail"' "$ev" | tail -3)"
[ "$(ledger_ids)" = "SN-000001 SN-000002 SN-000003 SN-000004 SN-000005" ] ||
	fail "ledger ids: $(ledger_ids)"
ok "the next boards are SN-000003 to SN-000005: the number a board named is the ledger's to give"

# A board the ledger numbered keeps its id: the first fixture again, its recorded certificate.
LINE_DIR=$T/first
start_simboard 2 --seed 31 --device-id none
run first 2
stop_simboard
for b in board0 board1; do
	case $(outcome "$b") in *'"event":"pass"'*'"reused":true'*) ;;
	*) fail "$b kept its issued id: $(outcome "$b")" ;; esac
done
[ "$(ledger_ids)" = "SN-000001 SN-000002 SN-000003 SN-000004 SN-000005" ] ||
	fail "ledger ids: $(ledger_ids)"
ok "boards holding issued ids keep them and get their recorded certificates again"
grep -q "AddressSanitizer\|runtime error" "$T"/*.err && fail "sanitizer report"
echo "all passed"
