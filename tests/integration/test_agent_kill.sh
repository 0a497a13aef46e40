#!/usr/bin/env bash
# station-agent killed with SIGKILL at random moments of a run (after a random number of the
# station's events: while the board says hello, makes its key and CSR, receives its files,
# commits them, proves its key), restarted each time at once, at least 50 times: every
# station run still ends with the board passed; after every run the installed set is whole
# (the manifest's files, sizes and hashes, no journal left: the old set or the new one) and
# the ledger checks out; at the end the board holds exactly one certificate, the one the
# ledger records for it, for its own key.
# labels: slow
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/agent.sh"
KILLS=${AGENT_KILLS:-50}
STPID=
agent_cleanup() {
	stop_bg "$STPID"
}
agent_pki
# Paced like a UART at the line's rate, so the kills land in every phase of a board. Not
# --strict: a PTY cannot show the rate a killed agent's last bytes left at, so ptylink would
# let the new agent's BOOT through at the station's switched rate (test_agent.sh and
# test_run_baud.sh cover the rates).
start_link --pace
R=$T/root
printf 'hardware_id = agent-board\nsku = agent-gw\nbauds = 115200,921600\n' >"$T/agent.conf"

RANDOM=1414
kills=0
runs=0
: >"$T/kill-states"
while [ "$kills" -lt "$KILLS" ] && [ "$runs" -lt $((KILLS * 3)) ]; do
	runs=$((runs + 1))
	ev=$T/events.$runs.jsonl
	: >"$ev"
	timeout 120 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view --events "$ev" \
		>"$T/run.$runs.out" 2>"$T/run.$runs.err" &
	STPID=$!
	start_agent "$R" "$T/agent.conf"
	# Kill up to 15 ms after k of the station's events, up to the board's "signed" (the 8th),
	# so that kills land after it too: the board holds its files from the run before and
	# gets them as copies, and the rest of its run may take only a few milliseconds. The
	# events are followed as they are written (tail -f), not polled.
	k=$((1 + RANDOM % 9))
	delay=$(printf '0.%03d' $((RANDOM % 16)))
	rm -f "$T/landed"
	(
		n=0
		tail --pid="$STPID" -n +1 -f "$ev" 2>/dev/null | while read -r _; do
			n=$((n + 1))
			if [ "$n" -ge "$k" ]; then
				sleep "$delay"
				kill -KILL "$AGENTPID" 2>/dev/null && : >"$T/landed"
				exit 0
			fi
		done
	) &
	watcher=$!
	# The agent ends killed, or by itself after DONE when the board passed in fewer events.
	# Whether the kill landed is the agent's status (128 + SIGKILL): the watcher's mark comes
	# after its kill returns, and may not be there yet when the agent is reaped.
	st=0
	wait "$AGENTPID" 2>/dev/null || st=$?
	landed=0
	if [ "$st" = 137 ]; then
		kills=$((kills + 1))
		landed=1
	fi
	AGENTPID=
	# Restarted at once: it finishes a commit the kill cut short, then says BOOT.
	start_agent "$R" "$T/agent.conf"
	wait "$STPID" || fail "run $runs (killed after event $k): station run failed: $(tail -5 "$T/run.$runs.err")"
	STPID=
	wait "$watcher" 2>/dev/null || true
	# Where the kill landed, as the station saw the board come back (its events go out
	# gathered, a few milliseconds late).
	if [ "$landed" = 1 ]; then
		st=$(grep -o 'rebooted in state [a-z_]*' "$T/run.$runs.err" | head -1 | cut -d' ' -f4 || true)
		echo "${st:-idle}" >>"$T/kill-states"
	fi
	grep -q '"event":"pass"' "$ev" || fail "run $runs: the board did not pass: $(tail -3 "$ev")"
	stop_agent
	out=$(files_check "$R/var/sota") || fail "run $runs (killed after event $k): $out"
	"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.$runs" 2>&1 ||
		fail "run $runs: ledger check: $(cat "$T/check.$runs")"
done
[ "$kills" -ge "$KILLS" ] || fail "only $kills kills landed in $runs runs"
ok "$kills kills of the agent with SIGKILL in $runs runs, each restarted: every run passed, the installed set whole after each; states the board was in at the kills: $(sort "$T/kill-states" | uniq -c | awk '{printf "%s%s x%d", sep, $2, $1; sep=", "}')"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "1 rows, 1 certificates verified" "$T/check.out" || fail "ledger: $(cat "$T/check.out")"
dev=$(cat "$R/var/lib/station-agent/device-id")
"$STATION" ledger -c "$pki/run.yaml" export --format csv --cert none >"$T/ledger.csv"
serial=$(openssl x509 -in "$R/var/sota/client.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
grep -q ",$serial," "$T/ledger.csv" || fail "the board's serial $serial is not the ledger's: $(cat "$T/ledger.csv")"
grep -q "$dev" "$T/ledger.csv" || fail "the ledger does not record device $dev"
cmp -s <(openssl pkey -in "$R/var/lib/station-agent/key.pem" -pubout -outform DER) \
	<(openssl x509 -in "$R/var/sota/client.pem" -noout -pubkey | openssl pkey -pubin -outform DER) ||
	fail "the board's certificate is not for its key"
openssl verify -x509_strict -purpose sslclient -CAfile "$pki/factory-root.pem" \
	-untrusted "$pki/local-ca.pem" "$R/var/sota/client.pem" >/dev/null || fail "openssl verify"
ok "provisioned exactly once: one ledger row, the board's certificate is it, for the board's key"
echo "all passed"
