#!/usr/bin/env bash
# Protocol versions 3 to 7 (drivers/PROTOCOL.md sections 7 to 11) on one line with boards of
# versions 1 and 2: boards of every version pass with the right files (simboard verify); a
# board of version 3 takes fewer round trips than one of version 2 (COMMIT and VERIFY ride on
# the last WRITE), one of version 4 one fewer again (the copy in client.chained and the bytes
# after it go in one WRITE, which carries COMMIT and VERIFY), each no more bytes than the
# version before; one of version 5 as many round trips as version 4 and fewer bytes (PEM
# blocks go as their text). Version 6 (several files a WRITE): with frames of 1024 bytes, as
# many round trips as version 5 (no two files fit); with frames of 4096, two fewer than a
# board of version 5 with such frames (root.crt with sota.toml, client.pem with
# client.chained), and no more bytes. The bytes and round trips per board of each version
# are printed. Version 7 (a WRITE sent behind another): the requests and bytes of version 6
# in one to three turns fewer, each counted in the pass event. Boards of versions 3 to 7 that lose
# power or their link at the WRITE that carries COMMIT and VERIFY (in version 7 the second
# of a pair), or whose every answer is damaged on its first transmission (the answer is sent
# again from the kept one; in version 7 the pair is sent again), still end with the right
# files, and so does a board of version 6 whose WRITE of several files is answered ERROR
# once (the files go one a WRITE then).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=4
line_setup

more_simboard one "$N" --protocol 1 --seed 3
more_simboard two "$N" --protocol 2 --seed 3
more_simboard three "$N" --protocol 3 --seed 3
more_simboard four "$N" --protocol 4 --seed 3
more_simboard five "$N" --protocol 5 --seed 3
more_simboard bigfive "$N" --protocol 5 --max-frame 4096 --seed 3
more_simboard bigsix "$N" --protocol 6 --max-frame 4096 --seed 3
more_simboard six "$N" --protocol 6 --seed 3
more_simboard seven "$N" --protocol 7 --seed 3
LINE_DIR=$T/eight
# Version 8's fixtures get a second board each once the first is done: that one boots while
# the station watches the line, and its BOOT stands for HELLO's answer.
start_simboard "$N" --name-prefix eight --seed 3 --total $((2 * N))
line_config "$pki/run.yaml" <<YAML
station: test-station
slots:
  - board_map: $T/one/map.yaml
  - board_map: $T/two/map.yaml
  - board_map: $T/three/map.yaml
  - board_map: $T/four/map.yaml
  - board_map: $T/five/map.yaml
  - board_map: $T/six/map.yaml
  - board_map: $T/bigfive/map.yaml
  - board_map: $T/bigsix/map.yaml
  - board_map: $T/seven/map.yaml
  - board_map: $T/eight/map.yaml
pool:
  workers: 2
YAML

line_run_all "$pki/run.yaml" "$T/events.jsonl" $((11 * N))
for i in $(seq 0 $((N - 1))); do
	for v in one two three four five six bigfive bigsix seven eight; do
		"$SIMBOARD" verify "$T/$v/$v$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
			fail "simboard verify $v$i: $(cat "$T/verify.out")"
	done
	for v in three four five six bigfive bigsix seven eight; do
		cmp -s "$T/two/two$i/files/root.crt" "$T/$v/$v$i/files/root.crt" ||
			fail "root.crt differs between versions"
	done
done
# Every state of a board of versions 3 to 6 is in the event stream, as for the others.
for b in three0 four0 five0 six0 bigsix0 seven0 eight0; do
	for st in written committed verified; do
		grep '"event":"state"' "$T/events.jsonl" | grep "\"slot\":\"$b\"" | has "\"to\":\"$st\"" ||
			fail "$b never entered $st: $(grep "\"slot\":\"$b\"" "$T/events.jsonl" | head -20)"
	done
done
ok "$N boards each of versions 1 to 8 (5 and 6 also with frames of 4096 bytes) on one line: all pass, simboard verify, every state seen"

# Per board of each version, from the HELLO that found it to DONE: the average of a pass
# event's field (the bytes: both directions), over the boards with no request sent again (a
# retransmission's bytes count too, and a stall of the machine could cause one).
per_board() {
	grep '"event":"pass"' "$T/events.jsonl" | grep "\"slot\":\"$1[0-9]" |
		jq -r "select(.retransmits == 0) | $2" | awk '{ s += $1; n++ } END { if (n) printf "%d", s / n }'
}
for v in one two three four five six bigfive bigsix seven; do
	declare "b_$v=$(per_board $v '.tx_bytes + .rx_bytes')" "r_$v=$(per_board $v .requests)" \
		"t_$v=$(per_board $v .turns)"
done
# Version 8: the second board of each fixture (the first was there before the station, and
# the station's HELLO found it, as for any version). Counted from its BOOT.
per_second_board() {
	grep '"event":"pass"' "$T/events.jsonl" | grep "\"slot\":\"$1[0-9]" |
		jq -s -r "group_by(.slot) | map(.[1:]) | flatten | .[] | select(.retransmits == 0) | $2" |
		awk '{ s += $1; n++ } END { if (n) printf "%d", s / n }'
}
b_eight=$(per_second_board eight '.tx_bytes + .rx_bytes')
r_eight=$(per_second_board eight .requests)
t_eight=$(per_second_board eight .turns)
r_eight1=$(grep '"event":"pass"' "$T/events.jsonl" | grep '"slot":"eight[0-9]' |
	jq -s -r 'group_by(.slot) | map(.[0]) | .[] | select(.retransmits == 0) | .requests' |
	sort -u | paste -sd' ')
[ -n "$b_five" ] && [ -n "$r_five" ] && [ -n "$b_four" ] && [ -n "$r_four" ] && [ -n "$r_three" ] && [ -n "$r_two" ] || fail "no bytes or requests in pass events without retransmissions: $(grep '"event":"pass"' "$T/events.jsonl" | jq -c '{slot, retransmits}' | paste -sd' ')"
[ "$r_three" -eq $((r_two - 2)) ] || fail "a board of version 3 took $r_three round trips, one of version 2 $r_two (2 fewer expected)"
[ "$r_four" -eq $((r_three - 1)) ] || fail "a board of version 4 took $r_four round trips, one of version 3 $r_three (1 fewer expected)"
[ "$b_three" -le "$b_two" ] || fail "a board of version 3 took $b_three bytes, one of version 2 $b_two"
[ "$b_four" -le "$b_three" ] || fail "a board of version 4 took $b_four bytes, one of version 3 $b_three"
[ "$r_five" -eq "$r_four" ] || fail "a board of version 5 took $r_five round trips, one of version 4 $r_four"
# Three PEM blocks a board (client.pem, the device CA in client.chained, root.crt), each
# about 90 bytes shorter as its text: line feeds (%0A on the line) and armor left out.
[ "$b_five" -le $((b_four - 200)) ] || fail "a board of version 5 took $b_five bytes, one of version 4 $b_four (200 fewer expected)"
[ -n "$r_six" ] && [ -n "$r_bigfive" ] && [ -n "$r_bigsix" ] || fail "no requests for the boards of version 6 or of frames of 4096"
# (A certificate's DER varies by a byte or two with its serial and signature: the bytes of
# two boards of the same requests differ by that much.)
[ "$r_six" -eq "$r_five" ] && [ "$b_six" -le $((b_five + 20)) ] && [ "$b_six" -ge $((b_five - 20)) ] ||
	fail "frames of 1024: a board of version 6 took $r_six round trips and $b_six bytes, one of version 5 $r_five and $b_five"
[ "$r_bigsix" -eq $((r_bigfive - 2)) ] ||
	fail "frames of 4096: a board of version 6 took $r_bigsix round trips, one of version 5 $r_bigfive (2 fewer expected)"
[ "$b_bigsix" -le "$b_bigfive" ] || fail "frames of 4096: a board of version 6 took $b_bigsix bytes, one of version 5 $b_bigfive"
# Version 7: the same requests and bytes as version 6; root.crt has sota.toml behind it and
# client.pem has client.chained (with COMMIT and VERIFY): two turns fewer; three when the
# certificate is signed before the answer to root.crt, and client.pem goes behind sota.toml
# too. One when the request is accepted only after root.crt's answer (root.crt, public, goes
# as the CSR comes in, sota.toml once accepted): on this unpaced line root.crt is answered
# within a millisecond, on a paced one it takes some 65 ms. Up to version 6 every request is
# a turn.
[ -n "$r_seven" ] && [ -n "$t_seven" ] || fail "no requests or turns for the boards of version 7"
[ "$t_six" -eq "$r_six" ] || fail "a board of version 6 took $t_six turns for $r_six requests"
[ "$r_seven" -eq "$r_six" ] && [ "$b_seven" -le $((b_six + 20)) ] && [ "$b_seven" -ge $((b_six - 20)) ] ||
	fail "frames of 1024: a board of version 7 took $r_seven requests and $b_seven bytes, one of version 6 $r_six and $b_six"
[ "$t_seven" -le $((r_seven - 1)) ] && [ "$t_seven" -ge $((r_seven - 3)) ] ||
	fail "a board of version 7 took $t_seven turns for $r_seven requests (1 to 3 fewer expected)"
# Version 8: a board's BOOT stands for HELLO's answer: one request and one turn fewer than
# version 7 (no HELLO), and no more bytes (the BOOT, counted for the board, says what HELLO's
# answer said; the first request carries v, max and boot). A board the station's HELLO found
# (the first of each fixture, there before the station) takes version 7's requests.
[ -n "$r_eight" ] && [ -n "$t_eight" ] || fail "no second board of version 8 passed without a retransmission"
[ "$r_eight" -eq $((r_seven - 1)) ] ||
	fail "a board of version 8 took $r_eight requests after its BOOT, one of version 7 $r_seven (1 fewer expected)"
[ "$t_eight" -le $((r_eight - 1)) ] && [ "$t_eight" -ge $((r_eight - 3)) ] ||
	fail "a board of version 8 took $t_eight turns for $r_eight requests (1 to 3 fewer expected)"
[ "$b_eight" -le $((b_seven + 20)) ] ||
	fail "a board of version 8 took $b_eight bytes, one of version 7 $b_seven"
[ "$r_eight1" = "$r_seven" ] ||
	fail "the first boards of version 8 (found by HELLO) took $r_eight1 requests, one of version 7 $r_seven"
ok "per board: version 1 $r_one round trips, $b_one bytes; version 2 $r_two, $b_two; version 3 $r_three, $b_three; version 4 $r_four, $b_four; version 5 $r_five, $b_five; version 6 $r_six, $b_six; version 7 $r_seven requests in $t_seven round trips, $b_seven bytes; version 8 $r_eight requests in $t_eight round trips, $b_eight bytes; frames of 4096: version 5 $r_bigfive, $b_bigfive; version 6 $r_bigsix, $b_bigsix"

# Boards that lose power (0) or their link (1) at the WRITE that carries COMMIT and VERIFY, or
# whose answers all lose a byte on their first transmission (2). Version 3: the fifth WRITE
# (root.crt, sota.toml, client.pem, the copy in client.chained, its rest); versions 4 and 5:
# the fourth (the copy in client.chained and its rest together); version 6 with frames of
# 4096: the second (client.pem and client.chained, after root.crt and sota.toml).
stop_more_simboards
stop_simboard
for v in 3:three:5:1024 4:four:4:1024 5:five:4:1024 6:bigsix:2:4096 7:seven:4:1024 8:eight:4:1024; do
	IFS=: read -r ver name w frame <<<"$v"
	stop_simboard
	rm -rf "$T/faults" "$T/faults.jsonl"
	LINE_DIR=$T/faults
	start_simboard 3 --name-prefix "$name" --seed 5 --protocol "$ver" --max-frame "$frame" \
		--fault "power-loss=WRITE/$w:${name}0" --fault "disconnect=WRITE/$w:${name}1" \
		--fault "drop:${name}2"
	faults_run 3 "$name"
	sim_logged "${name}0: power lost" && sim_logged "${name}1: disconnected" ||
		fail "version $ver: the faults did not happen: $(cat "$T/simboard.log")"
	grep '"event":"pass"' "$T/faults.jsonl" | grep "\"slot\":\"${name}2\"" | has '"retransmits":[1-9]' ||
		fail "${name}2: no retransmission: $(grep "\"slot\":\"${name}2\"" "$T/faults.jsonl" | tail -1)"
	ok "version $ver boards that lost power or their link at the folded WRITE (WRITE $w), or every first answer: pass, simboard verify"
done

# Version 6, frames of 4096: an ERROR (once) to the WRITE of several files, client.pem with
# client.chained: the station sends them one a WRITE, and the board passes with the right
# files, in two requests more than the five of a board that had no error (HELLO, CSR, the
# early files, the ERROR, client.pem, client.chained with COMMIT and VERIFY, DONE).
stop_simboard
rm -rf "$T/faults" "$T/faults.jsonl"
LINE_DIR=$T/faults
start_simboard 2 --name-prefix err --seed 5 --protocol 6 --max-frame 4096 --fault "error=WRITE/2:err0" \
	--error-text "storage hiccup"
faults_run 2 err
sim_logged "err0: error at WRITE" || fail "the error fault did not happen: $(cat "$T/simboard.log")"
seen=""
for b in err0:7 err1:5; do
	IFS=: read -r name want <<<"$b"
	got=$(grep '"event":"pass"' "$T/faults.jsonl" | grep "\"slot\":\"$name\"" |
		jq -r 'select(.retransmits == 0) | .requests')
	[ -z "$got" ] || [ "$got" = "$want" ] || fail "$name: $got requests, $want expected"
	seen="$seen $name ${got:-(sent something twice)}"
done
ok "version 6: an ERROR to the WRITE of several files: the files one a WRITE, the board passes (requests:$seen)"
