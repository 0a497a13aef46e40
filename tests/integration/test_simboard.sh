#!/bin/bash
# simboard and `station ports` from the command line: options and their errors, the map file
# a station configuration reads, stable port names, clean shutdown. The protocol itself is
# driven over the PTYs by tests/unit/test_simboard.c.
. "$(dirname "$0")/../lib/common.sh"
SIMBOARD=$BUILD_DIR/fixtures/simboard/simboard
[ -x "$SIMBOARD" ] || fail "no simboard at $SIMBOARD"

"$SIMBOARD" --help | has -- "--fault SPEC" || fail "--help lacks --fault"
ok "simboard --help"

expect_fail "--boards 0 refused" "bad value \"0\"" "$SIMBOARD" --dir "$T/x" --boards 0
expect_fail "--boards 1025 refused" "bad value \"1025\"" "$SIMBOARD" --dir "$T/x" --boards 1025
expect_fail "--dir required" "--dir is required" "$SIMBOARD" --boards 2
expect_fail "unknown fault named" "unknown fault \"nope\"; known: crc" \
	"$SIMBOARD" --dir "$T/x" --fault nope
expect_fail "fault on a missing board" "no board \"board9\" \\(boards are board0 .. board1\\)" \
	"$SIMBOARD" --dir "$T/x" --boards 2 --fault crc:board9
expect_fail "bad-csr needs a variant" "bad-csr needs" "$SIMBOARD" --dir "$T/x" --fault bad-csr
expect_fail "bad rate" "rate \"150%\"" "$SIMBOARD" --dir "$T/x" --fault crc:150%
# A fault's milliseconds are a number, or the fault is refused by name (atoi took "abc" for 0).
for spec in slow=abc latency=5x latency=-1 latency=700000 babble=0 slow=; do
	expect_fail "--fault $spec refused" "--fault $spec: expected ${spec%%=*}=MS" \
		"$SIMBOARD" --dir "$T/x" --fault "$spec"
done
expect_fail "one UUID for many boards" "needs --boards 1" \
	"$SIMBOARD" --dir "$T/x" --boards 2 --device-id 0c1a5e3a-7f7e-4c43-9b1b-0a8c1f2f6d10
expect_fail "verify needs --root" "usage: simboard verify" "$SIMBOARD" verify "$T/x"

# Three boards with a map in a place of our choosing; wait for the ready line (an event on
# the pipe, not a delay).
exec 3< <(exec "$SIMBOARD" --dir "$T/boards" --boards 3 --map "$T/map.yaml" --noise \
	--fault hang:50% --seed 5 --hardware-id hw-1 --sku sku-1)
SIMPID=$!
read -r -t 30 -u 3 line || fail "simboard did not start"
case $line in
"simboard: ready: 3 boards, map $T/map.yaml, seed 5") ok "ready line" ;;
*) fail "unexpected first line: $line" ;;
esac

[ "$(grep -c '^  - name: ' "$T/map.yaml")" = 3 ] || fail "map does not list 3 boards"
for i in 0 1 2; do
	grep -q "name: \"board$i\"" "$T/map.yaml" || fail "board$i missing from the map"
	port=$(grep -A1 "name: \"board$i\"" "$T/map.yaml" | sed -n 's/^    port: "\(.*\)"$/\1/p')
	[ "$port" = "$T/boards/board$i/tty" ] || fail "board$i port is '$port'"
	pty=$(readlink "$port")
	case $pty in /dev/pts/*) ;; *) fail "board$i: $port -> '$pty' is not a PTY" ;; esac
	[ -c "$pty" ] || fail "board$i: $pty is not a character device"
	grep -q "pty: \"$pty\"" "$T/map.yaml" || fail "board$i: map pty differs from $pty"
	[ "$(wc -c <"$T/boards/board$i/device-id")" = 36 ] || fail "board$i has no preset id"
done
grep -q 'hardware_id: "hw-1"' "$T/map.yaml" || fail "map lacks the hardware id"
ok "map file names every board, its stable port and its PTY"

# Nothing committed yet: verify says so and fails.
if "$SIMBOARD" verify "$T/boards/board0" --root /dev/null >"$T/out" 2>&1; then
	fail "verify passed on an empty board"
fi
grep -q "FAILED: .*no readable manifest" "$T/out" || fail "verify message: $(cat "$T/out")"
ok "verify fails on a board with nothing committed"

kill -TERM "$SIMPID"
wait "$SIMPID" || fail "simboard did not exit cleanly on SIGTERM"
ok "clean exit on SIGTERM"

"$STATION" ports >"$T/ports" 2>"$T/ports.err" || fail "station ports failed: $(cat "$T/ports.err")"
"$STATION" ports --json >"$T/ports.json" || fail "station ports --json failed"
head -c1 "$T/ports.json" | has '\[' || fail "station ports --json is not an array"
if grep -q /dev/pts/ "$T/ports"; then fail "station ports lists PTYs"; fi
ok "station ports"
