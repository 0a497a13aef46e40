#!/usr/bin/env bash
# Crash consistency: `station run` is killed with SIGKILL at 20 moments of a run (after a
# random number of events: while boards say hello, send CSRs, wait for signing, receive
# files, prove their keys), each time restarted on the same ledger and the same boards.
# Then: `station ledger check` passes, no serial and no device id was certified twice, no
# certificate reached a board without a ledger row, and every board ends provisioned with
# exactly one certificate, the one the ledger holds.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=24
KILLS=${CRASH_KILLS:-20}
line_setup
# Boards paced at a real rate so the kills land in every phase of a board's life.
start_simboard "$N" --seed 5 --baud 230400

RANDOM=4242
kills=0
for run in $(seq 1 "$KILLS"); do
	ev="$T/events.$run.jsonl"
	: >"$ev"
	"$STATION" run -c "$pki/run.yaml" --events "$ev" --no-view --until-idle \
		>"$T/run.$run.out" 2>"$T/run.$run.err" &
	pid=$!
	# Kill after k events; most runs die mid-line, some after a few transitions only.
	k=$((1 + RANDOM % (N * 12)))
	n=0
	for ((i = 0; i < 60 * 20; i++)); do
		n=$(wc -l <"$ev")
		[ "$n" -ge "$k" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if kill -KILL "$pid" 2>/dev/null; then
		kills=$((kills + 1))
		# Where the line was: the state the last transition entered.
		grep -o '"to":"[a-z_]*"' "$ev" | tail -1 | cut -d'"' -f4 >>"$T/kill-states"
	fi
	wait "$pid" 2>/dev/null || true
	# After every crash the ledger is whole and consistent, and every certificate a board
	# has committed is recorded there.
	"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.$run" 2>&1 ||
		fail "ledger check after kill $run (at event $n): $(cat "$T/check.$run")"
	"$STATION" ledger -c "$pki/run.yaml" export --format csv --cert none >"$T/ledger.$run.csv"
	for f in "$T"/line/board*/files/client.pem; do
		[ -e "$f" ] || continue
		serial=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
		grep -q ",$serial," "$T/ledger.$run.csv" ||
			fail "kill $run: $f holds serial $serial, which the ledger does not record"
	done
done
ok "$kills kills with SIGKILL, ledger check passed after each; last transitions before the kills: $(sort "$T/kill-states" | uniq -c | awk '{printf "%s%s x%d", sep, $2, $1; sep=", "}')"

# A last run to the end: every board is handled.
"$STATION" run -c "$pki/run.yaml" --events "$T/final.jsonl" --no-view --boards "$N" \
	--max-seconds 240 >"$T/final.out" 2>"$T/final.err" ||
	fail "final run: $(tail -20 "$T/final.err")"
[ "$(grep -c '"event":"pass"' "$T/final.jsonl")" = "$N" ] ||
	fail "final run: $(grep -c '"event":"pass"' "$T/final.jsonl") of $N boards passed: $(grep -m3 '"event":"fail"' "$T/final.jsonl")"
ok "final run: all $N boards pass"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.final" 2>&1 ||
	fail "final ledger check: $(cat "$T/check.final")"
"$STATION" ledger -c "$pki/run.yaml" export --format csv --cert none >"$T/ledger.csv"
header=$(head -1 "$T/ledger.csv")
col() { # col NAME: the column number of NAME in the CSV header
	echo "$header" | tr ',' '\n' | grep -nx "$1" | cut -d: -f1
}
c_serial=$(col serial)
c_dev=$(col device_id)
c_state=$(col state)
[ -n "$c_serial" ] && [ -n "$c_dev" ] && [ -n "$c_state" ] || fail "ledger export header: $header"
tail -n +2 "$T/ledger.csv" | awk -F, -v s="$c_serial" -v d="$c_dev" -v st="$c_state" \
	'$st == "signed" || $st == "delivered" { print $s, $d }' >"$T/certified"
[ -z "$(cut -d' ' -f1 "$T/certified" | sort | uniq -d)" ] || fail "a serial was certified twice"
[ -z "$(cut -d' ' -f2 "$T/certified" | sort | uniq -d)" ] ||
	fail "a device id holds two certificates: $(cut -d' ' -f2 "$T/certified" | sort | uniq -d)"
[ "$(wc -l <"$T/certified")" = "$N" ] || fail "$(wc -l <"$T/certified") certified rows for $N boards"
ok "no serial or device id twice; $N certified rows"

for i in $(seq 0 $((N - 1))); do
	b="$T/line/board$i"
	"$SIMBOARD" verify "$b" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "board$i: $(cat "$T/verify.out")"
	serial=$(openssl x509 -in "$b/files/client.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
	dev=$(cat "$b/device-id")
	grep -qx "$serial $dev" "$T/certified" ||
		fail "board$i holds serial $serial that the ledger does not record for $dev"
done
ok "every board holds exactly the certificate the ledger records for it"
echo "all passed"
