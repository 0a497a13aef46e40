#!/usr/bin/env bash
# Protocol version 2 (drivers/PROTOCOL.md section 6) on one line with boards of version 1:
# boards of both versions pass and end up with the same files (simboard verify), a board of
# version 2 costs fewer bytes on the wire than one of version 1 (the ratio is printed, not
# held to a figure), and boards of version 2 that lose power or their link in the middle of a
# file (staged files gone, or kept) still end with the right files.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=4
line_setup

# Two fixtures of one line: boards of version 2 and boards that speak version 1 only,
# standing in for boards of before version 2.
more_simboard old "$N" --protocol 1 --seed 3
LINE_DIR=$T/line
start_simboard "$N" --name-prefix new --protocol 2 --seed 3
line_config "$pki/run.yaml" <<YAML
station: test-station
slots:
  - board_map: $T/line/map.yaml
  - board_map: $T/old/map.yaml
pool:
  workers: 2
outputs:
  console_dir: $T/consoles
YAML

line_run_all "$pki/run.yaml" "$T/events.jsonl" $((2 * N))
for i in $(seq 0 $((N - 1))); do
	for v in old line; do
		b="$T/$v/$([ $v = old ] && echo old || echo new)$i"
		"$SIMBOARD" verify "$b" --root "$pki/factory-root.pem" >"$T/verify.out" ||
			fail "simboard verify $b: $(cat "$T/verify.out")"
	done
	# What a board holds does not depend on the version: the same files, byte for byte,
	# but for the device's own certificate.
	for f in root.crt; do
		cmp -s "$T/old/old$i/files/$f" "$T/line/new$i/files/$f" || fail "$f differs between versions"
	done
	cmp -s <(sed -n '/^-----BEGIN/,/^-----END/p' "$T/line/new$i/files/client.pem") \
		<(sed -n '1,/^-----END/p' "$T/line/new$i/files/client.chained") ||
		fail "new$i: client.chained does not start with client.pem"
	cmp -s <(sed '1,/^-----END/d' "$T/old/old$i/files/client.chained") \
		<(sed '1,/^-----END/d' "$T/line/new$i/files/client.chained") ||
		fail "new$i: client.chained's chain differs from a version 1 board's ($T)"
done
ok "$N boards of version 1 and $N of version 2 on one line: all pass, simboard verify, same files"

# Bytes on the wire per board (both directions, from HELLO to DONE), per version.
# bytes PREFIX: their average over the boards PREFIX* that passed with no request sent again
# (a retransmission's bytes count too, and a stall of the machine could cause one).
bytes() {
	grep '"event":"pass"' "$T/events.jsonl" | grep "\"slot\":\"$1" |
		jq -r 'select(.retransmits == 0) | .tx_bytes + .rx_bytes' |
		awk '{ s += $1; n++ } END { if (n) printf "%d", s / n }'
}
b1=$(bytes old)
b2=$(bytes new)
[ -n "$b1" ] && [ -n "$b2" ] || fail "no bytes in pass events without retransmissions: $(grep '"event":"pass"' "$T/events.jsonl" | jq -c '{slot, retransmits}' | paste -sd' ')"
[ "$b2" -lt "$b1" ] || fail "a board of version 2 took $b2 bytes, one of version 1 $b1"
ok "bytes per board: version 1 $b1, version 2 $b2 ($(awk -v a="$b2" -v b="$b1" 'BEGIN { printf "%.2f", a / b }') of version 1)"

# Version 2 boards that lose power on the copy of client.pem into client.chained (WRITE 4,
# after root.crt, sota.toml and client.pem), or on the chunk after it that does not name its
# file (WRITE 5), or lose their link there:
# the station greets them again, starts the files over or resumes, and they end right.
stop_more_simboards
stop_simboard
LINE_DIR=$T/faults
start_simboard 3 --name-prefix new --protocol 2 --seed 5 --fault power-loss=WRITE/4:new0 \
	--fault power-loss=WRITE/5:new1 --fault disconnect=WRITE/5:new2
faults_run 3 new
sim_logged "new0: power lost" && sim_logged "new1: power lost" &&
	sim_logged "new2: disconnected" || fail "the faults did not happen: $(cat "$T/simboard.log")"
ok "version 2 boards that lost power or their link in the middle of a file: pass, simboard verify"
