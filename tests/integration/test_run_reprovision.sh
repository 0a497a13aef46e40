#!/usr/bin/env bash
# Boards that hold files already (a retry, a board provisioned again): a board of version 2
# or 3 is sent each file it may hold as a copy of its installed file under the same path,
# which its hash check confirms, so the file's bytes do not cross the line again. A board
# whose installed file differs (another root), is shorter, or is gone gets the bytes, and
# every board ends with exactly the files a fresh board gets. A certificate signed anew is
# never tried as a copy; a board of version 1 gets every byte as before.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=6
line_setup

more_simboard old 1 --protocol 1 --seed 12
start_simboard "$N" --seed 11
line_config "$pki/run.yaml" <<YAML
station: test-station
slots:
  - board_map: $T/line/map.yaml
  - board_map: $T/old/map.yaml
pool:
  workers: 2
YAML

# tx BOARD EVENTS: the bytes the station sent to BOARD in its pass outcome in EVENTS.
tx() {
	grep '"event":"pass"' "$2" | grep "\"slot\":\"$1\"" |
		sed -E 's/.*"tx_bytes":([0-9]+).*/\1/'
}
# check_board DIR: simboard verify, and the files a fresh board gets.
check_board() {
	"$SIMBOARD" verify "$1" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "simboard verify $1: $(cat "$T/verify.out")"
	cmp -s "$1/files/root.crt" "$pki/factory-root.pem" || fail "$1: root.crt is not the factory root"
	cmp -s "$1/files/sota.toml" "$T/sota.toml" || fail "$1: sota.toml differs from a fresh board's"
}

line_run_all "$pki/run.yaml" "$T/ev1.jsonl" $((N + 1))
cp "$T/line/board0/files/sota.toml" "$T/sota.toml"
for i in $(seq 0 $((N - 1))); do check_board "$T/line/board$i"; done
ok "first run: $N boards of version 3 and one of version 1, fresh"

# What the boards hold now, changed behind the station's back: another root.crt of the same
# size (board1), a sota.toml cut short (board2), root.crt gone (board3), sota.toml a few
# bytes longer (board4: its first bytes, all a copy reads, are the right file). root.crt
# gone is ERROR STORAGE to the copy: the board cannot read it.
python3 - "$T/line" <<'EOF'
import sys
d = sys.argv[1]
p = f"{d}/board1/files/root.crt"
b = bytearray(open(p, "rb").read())
b[100] = ord("A") if b[100] != ord("A") else ord("B")
open(p, "wb").write(b)
p = f"{d}/board2/files/sota.toml"
b = open(p, "rb").read()
open(p, "wb").write(b[: len(b) // 2])
EOF
rm "$T/line/board3/files/root.crt"
printf '# local\n' >>"$T/line/board4/files/sota.toml"
serial0=$(openssl x509 -in "$T/line/board0/files/client.pem" -noout -serial)

# The same boards on the same ledger: each gets its recorded certificate again, and files it
# holds the same are not sent.
timeout 300 "$STATION" run -c "$pki/run.yaml" --events "$T/ev2.jsonl" --boards $((N + 1)) --no-view -v \
	>"$T/run2.out" 2>"$T/run2.err" || fail "second run: $(tail -20 "$T/run2.err")"
grep -c '"event":"pass"' "$T/ev2.jsonl" | has "^$((N + 1))\$" || fail "second run: $(grep -m3 '"event":"fail"' "$T/ev2.jsonl")"
# Each changed file was tried as a copy, refused by the board, and then sent.
for want in "board1: .* root.crt is not installed as written \(ERROR HASH" \
	"board2: .* sota.toml is not installed as written \(ERROR SOURCE" \
	"board3: .* root.crt is not installed as written \(ERROR STORAGE"; do
	grep -qE "$want" "$T/run2.err" || fail "no '$want' in the log: $(grep 'not installed' "$T/run2.err")"
done
[ "$(grep -c '"event":"pass".*"reused":true' "$T/ev2.jsonl")" = $((N + 1)) ] ||
	fail "second run: not every board was delivered its recorded certificate"
for i in $(seq 0 $((N - 1))); do check_board "$T/line/board$i"; done
"$SIMBOARD" verify "$T/old/old0" --root "$pki/factory-root.pem" >"$T/verify.out" ||
	fail "simboard verify old0: $(cat "$T/verify.out")"
[ "$(openssl x509 -in "$T/line/board0/files/client.pem" -noout -serial)" = "$serial0" ] ||
	fail "board0 got another certificate"
first=$(tx board0 "$T/ev1.jsonl")
again=$(tx board0 "$T/ev2.jsonl")
[ -n "$first" ] && [ -n "$again" ] || fail "no tx_bytes in the pass outcomes"
# Every file of board0 went as copies: what the station sent is the requests' framing, far
# less than one copy of the files.
files=$(cat "$T/line/board0/files/"* | wc -c)
[ "$again" -lt $((files / 2)) ] ||
	fail "board0, holding every file: the station sent $again bytes the second time ($first the first, files $files bytes)"
for i in 1 2 3; do
	b=$(tx "board$i" "$T/ev2.jsonl")
	[ "$b" -gt "$again" ] && [ "$b" -lt "$first" ] ||
		fail "board$i, one file changed: $b bytes sent, holding all $again, fresh $first"
done
# board4's files all went as copies too: board0's count, give or take a retransmitted copy
# request (about 100 bytes; sota.toml sent whole would be 550 more).
[ "$(tx board4 "$T/ev2.jsonl")" -le $((again + 256)) ] ||
	fail "board4 (sota.toml with more after it) was sent $(tx board4 "$T/ev2.jsonl") bytes, board0 $again"
old1=$(tx old0 "$T/ev1.jsonl")
old2=$(tx old0 "$T/ev2.jsonl")
[ "$old2" -ge $((old1 * 9 / 10)) ] || fail "a version 1 board was sent $old2 bytes the second time, $old1 the first"
ok "second run: board0 sent $again bytes, $(awk -v a="$again" -v b="$first" 'BEGIN { printf "%.2f", a / b }') of the first run's $first; changed, short and missing files sent whole; version 1 board $old2 bytes (was $old1)"

# A new ledger: every board gets a new certificate. client.pem and client.chained hold it and
# go as bytes; root.crt and sota.toml go as copies.
mv "$pki/ledger.db" "$pki/ledger1.db"
rm -f "$pki/ledger.db-wal" "$pki/ledger.db-shm"
line_run_all "$pki/run.yaml" "$T/ev3.jsonl" $((N + 1))
if grep -q '"event":"pass".*"reused":true' "$T/ev3.jsonl"; then fail "a new ledger delivered a recorded certificate"; fi
for i in $(seq 0 $((N - 1))); do check_board "$T/line/board$i"; done
[ "$(openssl x509 -in "$T/line/board0/files/client.pem" -noout -serial)" != "$serial0" ] ||
	fail "board0 kept its certificate with a new ledger"
new=$(tx board0 "$T/ev3.jsonl")
[ "$new" -gt "$again" ] && [ "$new" -lt "$first" ] ||
	fail "board0 with a new certificate: $new bytes sent, holding all $again, fresh $first"
ok "a new ledger: new certificates sent, root.crt and sota.toml copied: $new bytes for board0 ($first fresh)"

stop_more_simboards
stop_simboard
echo "all passed"
