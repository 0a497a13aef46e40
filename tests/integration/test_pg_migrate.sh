#!/usr/bin/env bash
# `station ledger` on a PostgreSQL ledger, and `station ledger migrate` moving a station's
# SQLite ledger into it:
# - a station runs on its own SQLite ledger (sequence ids, a refused board flagged);
# - migrate --from ledger.db --to postgresql://...: every row, flag, sequence and attempt,
#   with the station's name; run again: nothing added twice; --help says what is carried;
# - the station then runs on the line's database: its boards are recognised there and get
#   their recorded certificates; new boards are numbered after the migrated ones;
# - another station's ledger holding the same serials and keys: every conflicting row is
#   reported and nothing of that ledger is migrated;
# - list, show, export, check and flags on the database; backup refuses it, naming pg_dump.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/pgline.sh"
pg_start
line_setup
seq_profile "$pki"
db=$pki/old.db

# The station on its own ledger file: 4 numbered boards, 2 with their own ids, and a third
# one of those claiming board0's id with another key (refused and flagged).
sim_start "$T/seq" 4 --device-id none --hardware-id sim-seq --name-prefix s
sim_start "$T/own" 3 --name-prefix u --fault dup-id=u0:u2
station_config old-st "$pki/old.yaml" "$T/seq/map.yaml" "$T/own/map.yaml" </dev/null
sed -i "s|^ledger: .*|ledger: $db|" "$pki/old.yaml"
station_start old-st "$pki/old.yaml" --until-idle --max-seconds 120
wait "$STATION_PID" && fail "the refused board did not fail"
STATIONS=()
[ "$(grep -c '"event":"pass"' "$T/old-st.events")" = 6 ] || fail "old-st: $(grep -c '"event":"pass"' "$T/old-st.events") passed"
rows=$(sqlite3 "$db" "SELECT count(*) FROM certificates")
flags=$(sqlite3 "$db" "SELECT count(*) FROM flags")
attempts=$(sqlite3 "$db" "SELECT count(*) FROM attempts")
[ "$flags" -ge 1 ] || fail "no flag in the station's ledger"
[ "$attempts" -ge 7 ] || fail "$attempts attempts in the station's ledger"
ok "a station's SQLite ledger: $rows rows, $flags flags, $attempts attempts"

expect_fail "migrate without --from" "give --from" "$STATION" ledger migrate --to "$PG_CONN"
"$STATION" ledger migrate --help >"$T/help" || fail "migrate --help"
for w in "every production authorization" "every attempt" "counts no unit twice"; do
	tr '\n' ' ' <"$T/help" | grep -q "$w" || fail "migrate --help does not say: $w"
done
expect_fail "migrate into a file" "takes no imports" "$STATION" ledger migrate --from "$db" --to "$T/x.db"
# A delivered mark lost in a crash (it rides with a later commit): s1's row reads signed.
s1_at=$(sqlite3 "$db" "SELECT delivered_at FROM certificates WHERE slot = 's1'")
sqlite3 "$db" "UPDATE certificates SET state = 'signed', delivered_at = NULL WHERE slot = 's1'"
"$STATION" ledger migrate --from "$db" --to "$PG_CONN" >"$T/m1.out" 2>"$T/m1.err" ||
	fail "migrate: $(cat "$T/m1.err")"
grep -q "0 authorizations (0 added), $rows rows ($rows added, 0 brought up to date, 0 there already), $flags flags ($flags added), 1 sequences, $attempts attempts ($attempts added)" "$T/m1.out" ||
	fail "migrate: $(cat "$T/m1.out")"
[ "$(pg_q "SELECT count(*) FROM attempts WHERE station = 'old-st'")" = "$attempts" ] || fail "attempts not in the database"
# Every attempt as it was, a certificate's naming that row on the database.
q="SELECT t.outcome, coalesce(t.device_id, ''), coalesce(t.serial, ''), coalesce(c.serial, '')
	FROM attempts t LEFT JOIN certificates c ON c.id = t.certificate"
diff <(sqlite3 -separator '|' "$db" "$q" | sort) \
	<(pg_psql "SET search_path = station_ledger; $q" | tr '\t' '|' | sort) >"$T/diff" ||
	fail "attempts differ: $(head "$T/diff")"
[ "$(pg_q "SELECT count(*) FROM certificates WHERE station = 'old-st'")" = "$rows" ] || fail "rows not in the database"
# Every row as it was: serial, device id, state, certificate and times.
q="SELECT serial, device_id, state, encode(cert_der, 'hex'), created, coalesce(signed_at, 0),
	coalesce(delivered_at, 0) FROM certificates ORDER BY serial"
diff <(sqlite3 -separator '|' "$db" "SELECT serial, device_id, state, lower(hex(cert_der)), created,
	coalesce(signed_at, 0), coalesce(delivered_at, 0) FROM certificates ORDER BY serial") \
	<(pg_psql "SET search_path = station_ledger; $q" | tr '\t' '|') >"$T/diff" ||
	fail "rows differ: $(head "$T/diff")"
[ "$(pg_q "SELECT next FROM sequences WHERE prefix = 'SEQ-'")" = "$(sqlite3 "$db" "SELECT next FROM sequences WHERE prefix = 'SEQ-'")" ] ||
	fail "the sequence did not move"
ok "migrated: $rows rows as they were, $flags flags, the sequence, $attempts attempts"

# The station went on a little before it was stopped for good: s1 came back and was
# delivered, a state on from the database's copy.
sqlite3 "$db" "UPDATE certificates SET state = 'delivered', delivered_at = $s1_at WHERE slot = 's1'"
"$STATION" ledger -c "$pki/old.yaml" migrate --from "$db" --to "$PG_CONN" >"$T/m2.out" 2>&1 ||
	fail "migrate again: $(cat "$T/m2.out")"
grep -q "$rows rows (0 added, 1 brought up to date, $((rows - 1)) there already), $flags flags (0 added), 1 sequences, $attempts attempts (0 added)" "$T/m2.out" ||
	fail "migrate again: $(cat "$T/m2.out")"
[ "$(pg_q "SELECT count(*) FROM certificates")" = "$rows" ] || fail "the second migration added rows"
[ "$(pg_q "SELECT count(*) FROM flags")" = "$flags" ] || fail "the second migration added flags"
[ "$(pg_q "SELECT count(*) FROM attempts")" = "$attempts" ] || fail "the second migration added attempts"
[ "$(pg_q "SELECT state || ': ' || delivered_at FROM certificates WHERE slot = 's1'")" = "delivered: $s1_at" ] ||
	fail "the row that moved on was not brought up to date"
# The database's copy ahead of the file (the file set back by hand, as a stale copy would
# be): migrated again, nothing is taken back.
sqlite3 "$db" "UPDATE certificates SET state = 'signed', delivered_at = NULL WHERE slot = 's1'"
"$STATION" ledger -c "$pki/old.yaml" migrate --from "$db" --to "$PG_CONN" >"$T/m3.out" 2>&1 ||
	fail "migrate a stale file: $(cat "$T/m3.out")"
grep -q "$rows rows (0 added, 0 brought up to date, $rows there already)" "$T/m3.out" ||
	fail "migrate a stale file: $(cat "$T/m3.out")"
[ "$(pg_q "SELECT state || ': ' || delivered_at FROM certificates WHERE slot = 's1'")" = "delivered: $s1_at" ] ||
	fail "a stale file took the row back: $(pg_q "SELECT state FROM certificates WHERE slot = 's1'")"
sqlite3 "$db" "UPDATE certificates SET state = 'delivered', delivered_at = $s1_at WHERE slot = 's1'"
ok "migrated again: rows, flags and attempts once, the row that moved on brought up to date, a stale file takes nothing back"

# The station on the line's database: the same boards come back and are recognised; new
# boards get numbers after the station's old ones.
station_config old-st "$pki/new.yaml" "$T/seq/map.yaml" "$T/own/map.yaml" "$T/more/map.yaml" </dev/null
sim_start "$T/more" 2 --device-id none --hardware-id sim-seq --name-prefix n
station_start old-st2 "$pki/new.yaml" --until-idle --max-seconds 120
wait "$STATION_PID" && fail "the refused board passed on the database"
STATIONS=()
grep -q "delivered again" "$T/old-st2.out" || fail "no board recognised: $(cat "$T/old-st2.out")"
grep -q "^  8 passed (6 delivered again), 1 failed" "$T/old-st2.out" || fail "on the database: $(cat "$T/old-st2.out")"
for b in 0 1; do
	[ "$(cat "$T/more/n$b/device-id")" \> "$(pg_q "SELECT max(device_id) FROM certificates WHERE device_id LIKE 'SEQ-%' AND slot LIKE 's%'")" ] ||
		fail "new board n$b got $(cat "$T/more/n$b/device-id"), not after the migrated numbers"
done
pg_unique_checks
ok "on the database: 6 migrated boards delivered again, 2 new ones numbered after them, the duplicate refused again"

# Another station's ledger with the same serials and keys: conflicts, nothing migrated.
cp "$db" "$pki/other.db"
sqlite3 "$pki/other.db" "UPDATE certificates SET station = 'other-st'; UPDATE flags SET station = 'other-st'"
before=$(pg_q "SELECT count(*) FROM certificates")
if "$STATION" ledger migrate --from "$pki/other.db" --to "$PG_CONN" >"$T/m3.out" 2>"$T/m3.err"; then
	fail "conflicting ledger migrated: $(cat "$T/m3.out")"
fi
[ "$(grep -c '^conflict: ' "$T/m3.err")" = "$rows" ] || fail "conflicts: $(cat "$T/m3.err")"
grep -q "conflict: .*serial .* is already recorded (row [0-9]*, device id .*station old-st)" "$T/m3.err" ||
	fail "a conflict does not name the row it meets: $(head -3 "$T/m3.err")"
grep -q "nothing was imported" "$T/m3.err" || fail "$(tail -1 "$T/m3.err")"
[ "$(pg_q "SELECT count(*) FROM certificates")" = "$before" ] || fail "rows of the conflicting ledger were migrated"
[ "$(pg_q "SELECT count(*) FROM flags WHERE station = 'other-st'")" = 0 ] || fail "flags of the conflicting ledger were migrated"
ok "a ledger with the same serials and keys: $rows conflicts reported, nothing migrated"

# The commands on the database.
L=(--ledger "$PG_CONN")
"$STATION" ledger "${L[@]}" list >"$T/list" || fail "list"
[ "$(($(wc -l <"$T/list") - 1))" = "$before" ] || fail "list: $(wc -l <"$T/list") lines"
serial=$(pg_q "SELECT serial FROM certificates WHERE slot = 's0'")
"$STATION" ledger "${L[@]}" show "$serial" >"$T/show" || fail "show"
grep -q "station:       old-st" "$T/show" && grep -q "BEGIN CERTIFICATE" "$T/show" || fail "show: $(cat "$T/show")"
"$STATION" ledger "${L[@]}" export --format jsonl -o "$T/export.jsonl" || fail "export"
[ "$(wc -l <"$T/export.jsonl")" = "$before" ] || fail "export: $(wc -l <"$T/export.jsonl") lines"
jq -e 'select(.station == "old-st")' "$T/export.jsonl" >/dev/null || fail "export lacks the station"
"$STATION" ledger "${L[@]}" check --ca "$pki/local-ca.pem" >"$T/check" || fail "check: $(cat "$T/check")"
"$STATION" ledger "${L[@]}" flags >"$T/flags" || fail "flags"
grep -q "station old-st" "$T/flags" || fail "flags: $(cat "$T/flags")"
expect_fail "backup of the database" "pg_dump" "$STATION" ledger "${L[@]}" backup "$T/copy.db"
[ ! -e "$T/copy.db" ] || fail "backup left a file"
expect_fail "a password in the connection string" "password file" \
	"$STATION" ledger --ledger "$PG_CONN password=wrong" list
ok "list, show, export, check, flags on the database; backup refused, naming pg_dump"
echo "all passed"
