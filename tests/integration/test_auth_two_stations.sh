#!/usr/bin/env bash
# Two stations on one ledger database share an authorization's count exactly: 20 boards,
# 10 on each station's line, race for 10 units at the same time. 10 certificates, 10
# boards refused with AUTH_EXHAUSTED, nothing signed for them, and `station auth status`
# splits the 10 by station. Here the shared database is one SQLite file that both station
# processes open (the embedded ledger's multi-process locking); a line on PostgreSQL runs
# the same test with `ledger:` naming the shared database instead.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/auth.sh"
line_setup
line_profile "$pki" board "authorization: required"
auth_issue LOT-2 10 "$pki/authorizations/lot-2.auth"
grep -q "lot-2.auth names no station: each ledger counts its units, so every station with a ledger of its own could spend all 10" \
	"$T/issue.out" || fail "auth issue without --station gave no notice: $(cat "$T/issue.out")"
# One configuration per station, the same ledger, an HSM each (own_hsm: both start at once);
# station B's boards are a second line.
for st in a b; do
	line_config "$pki/run-$st.yaml" <<YAML
station: line-$st
slots:
  - board_map: $T/line-$st/map.yaml
pool:
  workers: 1
YAML
	own_hsm "line-$st" "$pki/run-$st.yaml"
	auth_config "$pki/run-$st.yaml"
done
LINE_DIR=$T/line-a start_simboard 10 --seed 31
exec 4< <(exec "$SIMBOARD" --dir "$T/line-b" --boards 10 "${SIM_OPTS[@]}" --seed 32 --name-prefix bboard)
BPID=$!
read -r -t 60 -u 4 line || fail "the second line did not start"
cat <&4 >>"$T/simboard-b.log" &
line_cleanup() { kill -TERM "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; }

for st in a b; do
	"$STATION" run -c "$pki/run-$st.yaml" --events "$T/ev-$st.jsonl" --no-view --until-idle \
		--max-seconds 120 >"$T/run-$st.out" 2>"$T/run-$st.err" &
	eval "pid_$st=$!"
done
wait "$pid_a" || true
wait "$pid_b" || true
# A document for any station, on ledger files: each station says that only the stations on
# its file share the count.
for st in a b; do
	grep -q "authorization .* (lot LOT-2) names no station: only the stations on this ledger share its 10 units" \
		"$T/run-$st.err" || fail "station $st: no warning of a document for any station on a ledger file"
done
# grep -c exits 1 on none: say what happened rather than end silently.
pass=$(cat "$T"/ev-?.jsonl | grep -c '"event":"pass"' || true)
refused=$(cat "$T"/ev-?.jsonl | grep '"event":"fail"' | grep -c '"reason":"AUTH_EXHAUSTED"' || true)
others=$(cat "$T"/ev-?.jsonl | grep '"event":"fail"' | grep -vc '"reason":"AUTH_EXHAUSTED"' || true)
[ "$pass" = 10 ] && [ "$refused" = 10 ] && [ "$others" = 0 ] ||
	fail "20 boards for 10 units: $pass passed, $refused refused, $others failed otherwise: $(tail -n 2 "$T"/run-?.err)"
auth_counts LOT-2 10 10 "two stations"
for f in "$T"/ev-?.jsonl; do
	dir=$T/line-${f: -7:1}
	for slot in $(grep '"event":"fail"' "$f" | jq -r .slot); do
		[ ! -e "$dir/$slot/files/client.pem" ] || fail "refused board $slot holds a certificate"
	done
done
"$STATION" auth status -c "$pki/run-a.yaml" --json >"$T/status.json" || fail "auth status"
a=$(jq '.stations["line-a"].certificates // 0' "$T/status.json")
b=$(jq '.stations["line-b"].certificates // 0' "$T/status.json")
[ $((a + b)) = 10 ] && [ "$(jq .left "$T/status.json")" = 0 ] ||
	fail "auth status: $(cat "$T/status.json")"
ok "two stations, 20 boards, 10 units: 10 certificates ($a at line-a, $b at line-b), 10 refused with AUTH_EXHAUSTED"
echo "all passed"
