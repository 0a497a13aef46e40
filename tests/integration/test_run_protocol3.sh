#!/usr/bin/env bash
# Protocol version 3 (drivers/PROTOCOL.md section 7) on one line with boards of versions 1
# and 2: boards of every version pass with the right files (simboard verify); a board of
# version 3 takes fewer round trips than one of version 2 (COMMIT and VERIFY ride on the last
# WRITE) and no more bytes; the bytes and round trips per board of each version are printed.
# Boards of version 3 that lose power or their link at the WRITE that carries COMMIT and
# VERIFY, or whose every answer is damaged on its first transmission (the combined answer
# is sent again from the kept one), still end with the right files.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=4
line_setup

more_simboard one "$N" --protocol 1 --seed 3
more_simboard two "$N" --protocol 2 --seed 3
LINE_DIR=$T/three
start_simboard "$N" --name-prefix three --seed 3
line_config "$pki/run.yaml" <<YAML
station: test-station
slots:
  - board_map: $T/one/map.yaml
  - board_map: $T/two/map.yaml
  - board_map: $T/three/map.yaml
pool:
  workers: 2
YAML

line_run_all "$pki/run.yaml" "$T/events.jsonl" $((3 * N))
for i in $(seq 0 $((N - 1))); do
	for v in one two three; do
		"$SIMBOARD" verify "$T/$v/$v$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
			fail "simboard verify $v$i: $(cat "$T/verify.out")"
	done
	cmp -s "$T/two/two$i/files/root.crt" "$T/three/three$i/files/root.crt" || fail "root.crt differs between versions"
done
# Every state of a board of version 3 is in the event stream, as for the others.
for st in written committed verified; do
	grep '"event":"state"' "$T/events.jsonl" | grep '"slot":"three0"' | grep -q "\"to\":\"$st\"" ||
		fail "three0 never entered $st: $(grep '"slot":"three0"' "$T/events.jsonl" | head -20)"
done
ok "$N boards each of versions 1, 2 and 3 on one line: all pass, simboard verify, every state seen"

# Per board of each version, from the HELLO that found it to DONE: the average of a pass
# event's field (the bytes: both directions).
per_board() {
	grep '"event":"pass"' "$T/events.jsonl" | grep "\"slot\":\"$1[0-9]" |
		jq -r "$2" | awk '{ s += $1; n++ } END { if (n) printf "%d", s / n }'
}
for v in one two three; do
	declare "b_$v=$(per_board $v '.tx_bytes + .rx_bytes')" "r_$v=$(per_board $v .requests)"
done
[ -n "$b_three" ] && [ -n "$r_three" ] && [ -n "$r_two" ] || fail "no bytes or requests in the pass events: $(grep -m1 '"event":"pass"' "$T/events.jsonl")"
[ "$r_three" -eq $((r_two - 2)) ] || fail "a board of version 3 took $r_three round trips, one of version 2 $r_two (2 fewer expected)"
[ "$b_three" -le "$b_two" ] || fail "a board of version 3 took $b_three bytes, one of version 2 $b_two"
ok "per board: version 1 $r_one round trips, $b_one bytes; version 2 $r_two, $b_two; version 3 $r_three, $b_three"

# Version 3 boards that lose power (three0) or their link (three1) at the WRITE that carries
# COMMIT and VERIFY (the fifth: root.crt, sota.toml, client.pem, the copy in client.chained,
# its rest), or whose answers all lose a byte on their first transmission (three2).
stop_more_simboards
stop_simboard
LINE_DIR=$T/faults
start_simboard 3 --name-prefix three --seed 5 --fault power-loss=WRITE/5:three0 \
	--fault disconnect=WRITE/5:three1 --fault drop:three2
faults_run 3 three
grep -q "three0: power lost" "$T/simboard.log" && grep -q "three1: disconnected" "$T/simboard.log" ||
	fail "the faults did not happen: $(cat "$T/simboard.log")"
grep '"event":"pass"' "$T/faults.jsonl" | grep '"slot":"three2"' | grep -q '"retransmits":[1-9]' ||
	fail "three2: no retransmission: $(grep '"slot":"three2"' "$T/faults.jsonl" | tail -1)"
ok "version 3 boards that lost power or their link at the folded WRITE, or every first answer: pass, simboard verify"
