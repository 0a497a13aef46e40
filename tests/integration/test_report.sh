#!/usr/bin/env bash
# Production records of a run with failures: boards with bad CSRs (a broken self-signature,
# another CN, an RSA key), a board that stops answering once asked for its CSR (a timeout
# before the CSR) and boards no profile matches, beside good boards under an authorization.
# Every board leaves an attempt row with its reason; `station report` gives the yield and
# the failures by reason exactly as the run's events count them, in CSV (RFC 4180) and JSON
# Lines, per day, lot, SKU and station. The signed job-end report verifies with the factory
# root and the authorization, with `openssl cms` too, and fails after a byte is changed.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/auth.sh"
N=10
line_setup "timeouts:
  csr: 2000
retries:
  request: 2"
line_profile "$pki" board "authorization: required"
auth_config "$pki/run.yaml"
# A second line of boards whose hardware id no profile matches.
sed -i "s#^  - board_map: $LINE_DIR/map.yaml#&\n  - board_map: $T/other/map.yaml#" "$pki/run.yaml"
auth_issue LOT-R 20 "$pki/authorizations/lot-r.auth"
start_simboard "$N" --seed 23 --firmware 4.2.1 \
	--fault bad-csr=bad-sig:board1 --fault bad-csr=wrong-cn:board2 \
	--fault bad-csr=rsa:board3 --fault hang=CSR:board4
# Their firmware is named to run a command in the spreadsheet that opens the attempts' CSV.
FORMULA="=cmd|' /C calc'!A0;@SUM(1+1)"
exec 4< <(exec "$SIMBOARD" --dir "$T/other" --boards 2 "${SIM_OPTS[@]}" --hardware-id unknown-hw \
	--name-prefix other --firmware "$FORMULA")
OTHERPID=$!
read -r -t 60 -u 4 line || fail "second simboard did not start"
cat <&4 >>"$T/other.log" &
line_cleanup() { kill -TERM "$OTHERPID" 2>/dev/null; wait "$OTHERPID" 2>/dev/null; }

"$STATION" run -c "$pki/run.yaml" --events "$T/ev.jsonl" --no-view --until-idle \
	--max-seconds 120 >"$T/run.out" 2>"$T/run.err" || true
passed=$(grep -c '"event":"pass"' "$T/ev.jsonl")
failed=$(grep -c '"event":"fail"' "$T/ev.jsonl")
[ "$passed" = 6 ] && [ "$failed" = 6 ] ||
	fail "run: $passed passed, $failed failed, expected 6 and 6: $(grep '"event":"fail"' "$T/ev.jsonl" | jq -c '[.slot,.reason]')"
# The failures by reason as the events count them, most frequent first, then by name.
grep '"event":"fail"' "$T/ev.jsonl" | jq -r .reason | sort | uniq -c |
	awk '{print $2 "=" $1}' | sort -t= -k2,2nr -k1,1 | paste -sd';' >"$T/ev.reasons"
grep -q "PROFILE_NOMATCH=2" "$T/ev.reasons" && grep -q "PROTO_TIMEOUT=1" "$T/ev.reasons" &&
	grep -q "CSR_SIGNATURE=1" "$T/ev.reasons" || fail "the run's failures: $(cat "$T/ev.reasons")"
ok "a run with failures: 6 passed, 6 failed ($(cat "$T/ev.reasons"))"

# ---- The summary: yield and failures match the events --------------------------------
"$STATION" report -c "$pki/run.yaml" --by all --format jsonl >"$T/all.jsonl" 2>"$T/rep.err" ||
	fail "report: $(cat "$T/rep.err")"
[ "$(jq -r '[.attempts,.passed,.failed,.abandoned] | @csv' "$T/all.jsonl")" = "12,6,6,0" ] ||
	fail "report --by all: $(cat "$T/all.jsonl")"
[ "$(jq -r .yield "$T/all.jsonl")" = 0.5 ] || fail "yield: $(cat "$T/all.jsonl")"
[ "$(jq -r '.failures | to_entries | map("\(.key)=\(.value)") | join(";")' "$T/all.jsonl")" = "$(cat "$T/ev.reasons")" ] ||
	fail "failures by reason: report $(jq -c .failures "$T/all.jsonl"), events $(cat "$T/ev.reasons")"
ok "report --by all: 12 attempts, 6 passed, 6 failed, yield 0.5, reasons as the events count them"

"$STATION" report -c "$pki/run.yaml" --format csv >"$T/day.csv" || fail "report csv"
printf 'day,attempts,passed,failed,abandoned,reused,yield,failures\r\n' >"$T/header"
head -1 "$T/day.csv" | cmp -s - "$T/header" || fail "CSV header: $(head -1 "$T/day.csv" | od -c | head -3)"
today=$(date -u +%F)
# The reasons hold ';', a list separator in some locales: the field is quoted.
grep -q "^$today,12,6,6,0,0,0.5000,\"$(cat "$T/ev.reasons")\""$'\r'"\$" "$T/day.csv" ||
	fail "report per day: $(cat "$T/day.csv")"
"$STATION" report -c "$pki/run.yaml" --by lot --format jsonl >"$T/lot.jsonl"
[ "$(jq -r 'select(.lot == "LOT-R") | [.attempts,.passed,.failed] | @csv' "$T/lot.jsonl")" = "6,6,0" ] ||
	fail "report per lot: $(cat "$T/lot.jsonl")"
"$STATION" report -c "$pki/run.yaml" --by sku --format jsonl >"$T/sku.jsonl"
[ "$(jq -r 'select(.sku == "sim-gw") | .attempts' "$T/sku.jsonl")" = 10 ] ||
	fail "report per sku: $(cat "$T/sku.jsonl")"
"$STATION" report -c "$pki/run.yaml" --by station --format csv >"$T/station.csv"
grep -q "^test-station,12,6,6," "$T/station.csv" || fail "report per station: $(cat "$T/station.csv")"
# The range: nothing before the run, nothing from tomorrow on.
"$STATION" report -c "$pki/run.yaml" --by all --format jsonl --until "$today" >"$T/before.jsonl"
[ ! -s "$T/before.jsonl" ] || fail "--until today: $(cat "$T/before.jsonl")"
"$STATION" report -c "$pki/run.yaml" --by all --format jsonl --since "$today" \
	--until "$(date -u -d tomorrow +%F)" | jq -e '.attempts == 12' >/dev/null ||
	fail "--since today --until tomorrow"
ok "report per day (CSV, RFC 4180 CRLF), lot, SKU, station and over a time range"

# ---- The attempts: one row per board, with what it reported and why it failed ---------
"$STATION" report attempts -c "$pki/run.yaml" --format jsonl >"$T/attempts.jsonl" ||
	fail "report attempts"
[ "$(wc -l <"$T/attempts.jsonl")" = 12 ] || fail "attempts: $(wc -l <"$T/attempts.jsonl") rows"
jq -se 'map(select(.slot == "board4"))[0] | .outcome == "fail" and
	.reason == "PROTO_TIMEOUT" and .board_sn != null and .firmware == "4.2.1" and
	.authorization == null' "$T/attempts.jsonl" >/dev/null ||
	fail "board4: $(grep board4 "$T/attempts.jsonl")"
jq -se 'map(select(.slot == "other0"))[0] | .reason == "PROFILE_NOMATCH" and
	.hardware_id == "unknown-hw"' "$T/attempts.jsonl" >/dev/null ||
	fail "other0: $(grep other0 "$T/attempts.jsonl")"
[ "$(jq -r 'select(.outcome == "pass" and .lot == "LOT-R" and .serial != null and
	.ledger_row != null) | .slot' "$T/attempts.jsonl" | wc -l)" = 6 ] ||
	fail "passed attempts lack their serial, lot or ledger row"
"$STATION" report attempts -c "$pki/run.yaml" --format csv >"$T/attempts.csv"
[ "$(head -1 "$T/attempts.csv" | tr -d '\r')" = "id,time,station,slot,outcome,reason,error,device_id,serial,board_sn,hardware_id,sku,firmware,profile,authorization,lot,ledger_row,reused,ms" ] ||
	fail "attempts CSV header: $(head -1 "$T/attempts.csv")"
# The CSV makes the firmware text ('), in a locale that separates by ',' or ';'; JSON keeps it.
[ "$(grep -c ",unknown-hw,sim-sku,\"'=cmd|' /C calc'!A0;'@SUM(1+1)\"," "$T/attempts.csv")" = 2 ] ||
	fail "a formula in the attempts CSV: $(grep other "$T/attempts.csv")"
[ "$(jq -r --arg f "$FORMULA" 'select(.firmware == $f) | .hardware_id' "$T/attempts.jsonl" |
	sort -u)" = unknown-hw ] || fail "the firmware in JSON: $(grep other "$T/attempts.jsonl")"
ok "every board has an attempt row: serial number, hardware id, firmware, slot, reason, authorization"

# ---- The signed job-end report ------------------------------------------------------
"$STATION" report job -c "$pki/run.yaml" --authorization "$pki/authorizations/lot-r.auth" \
	-o "$T/job.p7m" >"$T/job.out" 2>"$T/job.err" || fail "report job: $(cat "$T/job.err")"
grep -q "6 certificates under authorization" "$T/job.out" || fail "report job: $(cat "$T/job.out")"
"$STATION" report verify "$T/job.p7m" --root "$pki/factory-root.pem" \
	--authorization "$pki/authorizations/lot-r.auth" >"$T/verify.out" ||
	fail "report verify: $(cat "$T/verify.out")"
grep -q ": OK: station test-station .*lot LOT-R: 6 certificates of 20 units (checked against the document)" "$T/verify.out" ||
	fail "report verify: $(cat "$T/verify.out")"
openssl cms -verify -inform DER -in "$T/job.p7m" -CAfile "$pki/factory-root.pem" -purpose any \
	-out "$T/job.json" 2>"$T/cms.err" || fail "openssl cms -verify: $(cat "$T/cms.err")"
# Its serials are the ledger's, and the boards'.
for f in "$LINE_DIR"/board*/files/client.pem; do
	serial=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
	jq -e --arg s "$serial" '.certificates | map(.serial) | index($s) != null' "$T/job.json" \
		>/dev/null || fail "$f: serial $serial is not in the job-end report"
done
ok "the job-end report verifies (station and openssl cms) and lists every board's serial"

# Any byte changed: refused. A sample across the whole file (every byte: test_report.c).
size=$(stat -c %s "$T/job.p7m")
for off in $(seq 0 $((size / 47 + 1)) $((size - 1))) $((size - 1)); do
	cp "$T/job.p7m" "$T/bad.p7m"
	b=$(od -An -tu1 -j "$off" -N1 "$T/bad.p7m" | tr -d ' ')
	printf "\\$(printf %o $((b ^ 0x20)))" | dd of="$T/bad.p7m" bs=1 seek="$off" conv=notrunc 2>/dev/null
	if "$STATION" report verify "$T/bad.p7m" --root "$pki/factory-root.pem" >"$T/bad.out" 2>&1; then
		fail "byte $off of $size changed and the report still verifies"
	fi
	grep -q "REFUSED: REPORT_" "$T/bad.out" || fail "byte $off: $(cat "$T/bad.out")"
done
ok "the job-end report is refused after any of $(seq 0 $((size / 47 + 1)) $((size - 1)) | wc -l) sampled bytes is changed"

# Another factory's root, and another authorization than the one reported on.
other="$T/other-pki"
dev_pki "$other" acme-factory
"$STATION" report verify "$T/job.p7m" --root "$other/factory-root.pem" >"$T/v.out" 2>&1 &&
	fail "verified against another root"
grep -q "REFUSED: REPORT_UNTRUSTED" "$T/v.out" || fail "another root: $(cat "$T/v.out")"
auth_issue LOT-S 5 "$pki/authorizations/lot-s.auth"
"$STATION" report verify "$T/job.p7m" --root "$pki/factory-root.pem" \
	--authorization "$pki/authorizations/lot-s.auth" >"$T/v.out" 2>&1 &&
	fail "verified against another authorization"
grep -q "REFUSED: REPORT_COUNT" "$T/v.out" || fail "another authorization: $(cat "$T/v.out")"
ok "refused against another factory root (REPORT_UNTRUSTED) and another authorization (REPORT_COUNT)"
echo "all passed"
