#!/usr/bin/env bash
# Two stations on one PostgreSQL ledger (a server of the test's own) share an
# authorization's count exactly: 20 boards, 10 on each station's line, race for 10 units at
# the same time. 10 certificates, 10 boards refused with AUTH_EXHAUSTED and nothing signed
# for them; the database counts 10 units used, equal to its rows that hold a certificate;
# `station auth status` splits the 10 by station; the ledger's integrity check (the count
# trigger there, every count equal to its rows) passes.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/pgline.sh"
. "$(dirname "$0")/../lib/auth.sh"
pg_start
line_setup
line_profile "$pki" board "authorization: required"
seq_profile "$pki"
auth_issue LOT-PG 10 "$pki/authorizations/lot-pg.auth"
sim_start "$T/line-a" 10 --seed 31
sim_start "$T/line-b" 10 --seed 32 --name-prefix bboard
for s in a b; do
	station_config "line-$s" "$pki/$s.yaml" "$T/line-$s/map.yaml" <<YAML
pool:
  workers: 1
YAML
	auth_config "$pki/$s.yaml"
done
pids=()
for s in a b; do
	station_start "line-$s" "$pki/$s.yaml" --until-idle --max-seconds 120
	pids+=("$STATION_PID")
done
for p in "${pids[@]}"; do
	wait "$p" || true
done
STATIONS=()
for s in a b; do
	if grep -q "<3>.*ledger" "$T/line-$s.err"; then
		fail "line-$s: ledger errors: $(grep -m3 "<3>" "$T/line-$s.err")"
	fi
	# The line's database is shared by design: no warning of a document for any station.
	if grep -q "names no station" "$T/line-$s.err"; then
		fail "line-$s warned of a document for any station on the line's database"
	fi
done
pass=$(cat "$T"/line-?.events | grep -c '"event":"pass"' || true)
refused=$(cat "$T"/line-?.events | grep '"event":"fail"' | grep -c '"reason":"AUTH_EXHAUSTED"' || true)
others=$(cat "$T"/line-?.events | grep '"event":"fail"' | grep -vc '"reason":"AUTH_EXHAUSTED"' || true)
[ "$pass" = 10 ] && [ "$refused" = 10 ] && [ "$others" = 0 ] ||
	fail "20 boards for 10 units: $pass passed, $refused refused, $others failed otherwise: $(tail -3 "$T/line-a.err" "$T/line-b.err")"
# Both stations consumed units: the count is shared, not each station's own.
for s in a b; do
	grep -q '"event":"pass"' "$T/line-$s.events" || fail "line-$s certified no board"
done
ok "20 boards for 10 units on two stations: 10 passed, 10 refused with AUTH_EXHAUSTED"

used=$(pg_q "SELECT used FROM authorizations WHERE lot = 'LOT-PG'")
certs=$(pg_q "SELECT count(*) FROM certificates c JOIN authorizations a ON a.id = c.auth_id
	WHERE a.lot = 'LOT-PG' AND c.cert_der IS NOT NULL")
live=$(pg_q "SELECT count(*) FROM certificates c JOIN authorizations a ON a.id = c.auth_id
	WHERE a.lot = 'LOT-PG' AND (c.state <> 'failed' OR c.cert_der IS NOT NULL)")
[ "$used" = 10 ] && [ "$certs" = 10 ] && [ "$live" = 10 ] ||
	fail "the database counts $used units used, $certs certificates, $live live rows"
[ "$(pg_q "SELECT count(DISTINCT station) FROM certificates WHERE cert_der IS NOT NULL")" = 2 ] ||
	fail "the certificates do not name both stations"
pg_unique_checks
for s in a b; do
	for slot in $(grep '"event":"fail"' "$T/line-$s.events" | jq -r .slot); do
		[ ! -e "$T/line-$s/$slot/files/client.pem" ] || fail "refused board $slot holds a certificate"
	done
done
# The database refuses a count beyond the units, whoever writes it.
if pg_q "UPDATE authorizations SET used = units + 1 WHERE lot = 'LOT-PG'" 2>/dev/null; then
	fail "the database took a count beyond the units"
fi
ok "the database counts 10 units used, 10 certificates under the authorization, none beyond"

"$STATION" auth status -c "$pki/a.yaml" --json >"$T/status.json" 2>"$T/status.err" ||
	fail "auth status: $(cat "$T/status.err")"
a=$(jq '.stations["line-a"].certificates // 0' "$T/status.json")
b=$(jq '.stations["line-b"].certificates // 0' "$T/status.json")
[ $((a + b)) = 10 ] && [ "$a" -ge 1 ] && [ "$b" -ge 1 ] && [ "$(jq .left "$T/status.json")" = 0 ] ||
	fail "auth status: $(cat "$T/status.json")"
"$STATION" ledger -c "$pki/a.yaml" check >"$T/verify.out" 2>&1 ||
	fail "ledger integrity: $(cat "$T/verify.out")"
ok "auth status: $a certificates at line-a, $b at line-b, none left; the ledger's integrity holds"
echo "all passed"
