#!/usr/bin/env bash
# A line of three stations on one PostgreSQL ledger (a server of the test's own): each
# `station run` with its own simboard lines, all at once.
# - Every board passes; `station ledger check` is clean; no serial, key or device id twice.
# - Sequence device ids (SEQ-...) come from the database: the three stations numbering
#   their boards at the same time never hand out one number twice.
# - Two boards claiming one device id with different keys on two lines at once: exactly one
#   gets a certificate, the other is refused with the reason, and flagged.
# - Boards moved between lines (the same board directories served by another simboard
#   process for another station): one unplugged during its write, after its certificate
#   was recorded, one that passed; at the second station both get their recorded
#   certificate again, and nothing new is signed.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/pgline.sh"
N=8
pg_start
line_setup
seq_profile "$pki"
X=$(cat /proc/sys/kernel/random/uuid)

for s in a b c; do
	sim_start "$T/seq-$s" "$N" --device-id none --hardware-id sim-seq --name-prefix "$s"
done
# Unplugged during its first WRITE once its certificate is recorded (the third: root.crt and
# sota.toml go while it is signed), and away for longer than the test.
sim_start "$T/moved" 2 --name-prefix m --fault disconnect=WRITE/3:m0 --reconnect-ms 600000
moved_sim=$SIM_PID
sim_start "$T/race-b" 1 --device-id "$X" --name-prefix rb
sim_start "$T/race-c" 1 --device-id "$X" --name-prefix rc

station_config line-a "$pki/a.yaml" "$T/seq-a/map.yaml" "$T/moved/map.yaml" <<YAML
timeouts:
  reconnect: 300
YAML
station_config line-b "$pki/b.yaml" "$T/seq-b/map.yaml" "$T/race-b/map.yaml" </dev/null
station_config line-c "$pki/c.yaml" "$T/seq-c/map.yaml" "$T/race-c/map.yaml" </dev/null
pids=()
for s in a b c; do
	station_start "line-$s" "$pki/$s.yaml" --until-idle --max-seconds 120
	pids+=("$STATION_PID")
done
rcs=()
for p in "${pids[@]}"; do
	rc=0
	wait "$p" || rc=$?
	rcs+=("$rc")
done
STATIONS=()
# Every station failed one board: line-a the unplugged one, line-b or line-c the race's loser.
for i in 0 1 2; do
	s=line-$(echo a b c | cut -d' ' -f$((i + 1)))
	[ "${rcs[$i]}" -le 1 ] || fail "$s exited ${rcs[$i]}: $(tail -5 "$T/$s.err")"
	if grep -q "<3>.*ledger" "$T/$s.err"; then fail "$s: ledger errors: $(grep -m3 "<3>" "$T/$s.err")"; fi
done
ok "three stations ran at once on one database"

passes() { grep -c '"event":"pass"' "$T/$1.events" || true; }
fails() { grep -c '"event":"fail"' "$T/$1.events" || true; }
[ "$(passes line-a)" = $((N + 1)) ] && [ "$(fails line-a)" = 1 ] ||
	fail "line-a: $(passes line-a) passed, $(fails line-a) failed: $(tail -5 "$T/line-a.err")"
grep '"event":"fail"' "$T/line-a.events" | has '"slot":"m0"' || fail "line-a: not m0 failed"
for s in b c; do
	[ "$(passes line-$s)" -ge "$N" ] || fail "line-$s: $(passes line-$s) passed: $(tail -5 "$T/line-$s.err")"
done
[ $(($(passes line-b) + $(passes line-c))) = $((2 * N + 1)) ] ||
	fail "the race: $(passes line-b) + $(passes line-c) passed, expected $((2 * N + 1))"
loser=$(grep -l '"event":"fail"' "$T/line-b.events" "$T/line-c.events")
grep '"event":"fail"' "$loser" | has -E 'device id|another key' ||
	fail "the race's loser was not told why: $(grep '"event":"fail"' "$loser")"
ok "every board passed but the unplugged one and the race's loser ($(grep -o '"reason":"[^"]*"' "$loser" | head -1))"

pg_unique_checks
[ "$(pg_q "SELECT count(*) FROM certificates WHERE device_id = '$X' AND cert_der IS NOT NULL")" = 1 ] ||
	fail "the raced device id has $(pg_q "SELECT count(*) FROM certificates WHERE device_id = '$X' AND cert_der IS NOT NULL") certificates"
[ "$(pg_q "SELECT count(*) FROM flags WHERE device_id = '$X'")" -ge 1 ] || fail "the race's loser was not flagged"
[ "$(pg_q "SELECT count(DISTINCT station) FROM certificates")" = 3 ] || fail "rows do not name three stations"
# Three stations numbered their boards at once: 3N numbers, none twice.
[ "$(pg_q "SELECT count(DISTINCT device_id) FROM certificates WHERE device_id LIKE 'SEQ-%' AND state = 'delivered'")" = $((3 * N)) ] ||
	fail "sequence ids: $(pg_q "SELECT string_agg(device_id || '@' || station, ' ') FROM certificates WHERE device_id LIKE 'SEQ-%'")"
[ "$(pg_q "SELECT count(DISTINCT station) FROM certificates WHERE device_id LIKE 'SEQ-%'")" = 3 ] ||
	fail "not every station numbered boards"
for s in a b c; do
	for b in $(seq 0 $((N - 1))); do
		id=$(cat "$T/seq-$s/$s$b/device-id")
		case $id in SEQ-[0-9][0-9][0-9][0-9][0-9][0-9]) ;; *) fail "board $s$b holds device id '$id'" ;; esac
	done
done
ok "no serial, key or device id twice; one certificate for the raced id; $((3 * N)) sequence ids, none twice"

for s in a b c; do
	"$STATION" ledger -c "$pki/$s.yaml" check >"$T/check-$s.out" ||
		fail "ledger check (line-$s): $(cat "$T/check-$s.out")"
done
rows=$(pg_q "SELECT count(*) FROM certificates")
grep -q "$rows rows, $rows certificates verified" "$T/check-a.out" || fail "ledger check: $(cat "$T/check-a.out")"
ok "station ledger check: clean, $rows rows of the whole line"

# The moved boards: their directories served again, by another process, for line-b.
cert_m0=$(pg_q "SELECT encode(cert_der, 'base64') FROM certificates WHERE slot = 'm0'" | tr -d '\n')
[ -n "$cert_m0" ] || fail "m0's certificate was not recorded before it was unplugged"
[ "$(pg_q "SELECT state FROM certificates WHERE slot = 'm0'")" = failed ] || fail "m0 is not failed"
before=$(pg_q "SELECT count(*) FROM certificates")
sim_stop "$moved_sim"
sim_start "$T/moved" 2 --name-prefix m --map "$T/moved/map2.yaml"
station_config line-b "$pki/b2.yaml" "$T/moved/map2.yaml" </dev/null
station_start line-b2 "$pki/b2.yaml" --until-idle --max-seconds 60
wait "$STATION_PID" || fail "line-b with the moved boards: $(tail -5 "$T/line-b2.err")"
STATIONS=()
grep -q "2 passed (2 delivered again), 0 failed" "$T/line-b2.out" || fail "moved boards: $(cat "$T/line-b2.out")"
[ "$(pg_q "SELECT count(*) FROM certificates")" = "$before" ] || fail "the moved boards got new rows"
[ "$(base64 -w0 <(openssl x509 -in "$T/moved/m0/files/client.pem" -outform DER))" = "$cert_m0" ] ||
	fail "m0 holds another certificate than the one line-a recorded"
[ "$(pg_q "SELECT state || ' ' || station FROM certificates WHERE slot = 'm0'")" = "delivered line-a" ] ||
	fail "m0's row: $(pg_q "SELECT state, station FROM certificates WHERE slot = 'm0'")"
"$SIMBOARD" verify "$T/moved/m0" --root "$pki/factory-root.pem" >/dev/null || fail "simboard verify m0"
ok "moved boards got their recorded certificates at the second station, nothing signed anew"
echo "all passed"
