#!/usr/bin/env bash
# Per-board time through station-agent on a paced cable of two PTYs (ptylink --pace
# --strict: bytes cross at the sending end's termios rate), against the wire bound: the
# bytes a board exchanged x 10 / rate. N fresh boards (new key, CSR, certificate each) at a
# line of 115200 baud, then N with the station switching each to 921600 with BAUD.
#   tests/bench/agent_wire.sh [N]     (BUILD_DIR, STATION as for the integration tests)
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/agent.sh"
N=${1:-5}
printf 'hardware_id = agent-board\nsku = agent-gw\nbauds = 115200,921600\n' >"$T/agent.conf"
for max in ${RATES:-115200 921600}; do
	MAX_BAUD=$max agent_pki
	start_link --pace --strict
	: >"$T/ev.$max"
	for i in $(seq 1 "$N"); do
		: >"$T/e"
		start_agent "$T/root.$max.$i" "$T/agent.conf"
		timeout 120 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view --events "$T/e" \
			>/dev/null 2>"$T/err" || fail "station run: $(tail -3 "$T/err")"
		grep '"event":"pass"' "$T/e" >>"$T/ev.$max"
		wait "$AGENTPID" || true
		AGENTPID=
	done
	stop_link
	rm -rf "$pki"
	# The bytes before the switch (two HELLOs and BAUD) cross at 115200 in either case.
	jq -rs --argjson max "$max" '
		map({ms: .ms.total, bytes: (.tx_bytes + .rx_bytes), baud: .baud}) as $r |
		($r | map(.ms) | add / length) as $ms |
		($r | map(.bytes) | add / length) as $b |
		($r | map(if .baud == 115200 then .bytes * 10 / 115200
			  else 516 * 10 / 115200 + (.bytes - 516) * 10 / .baud end) | add / length * 1000) as $wire |
		"line max \($max): \($r | length) boards at \($r | map(.baud) | unique | map(tostring) | join(",")) baud, \($b | floor) B/board, \($ms | floor) ms/board, wire bound \($wire | floor) ms: \(($wire / $ms * 100) | floor)% of the wire bound"' \
		"$T/ev.$max"
done
