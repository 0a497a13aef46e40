#!/usr/bin/env bash
# simboard --store memory, the store `station bench` gives its boards: 4 fixtures, 12 boards
# swapped through them, frames of 4096 (two WRITEs of two files a board), one board losing
# power in the middle of its files. While simboard runs, no board's key, records or files
# are in its directory; when it ends, each fixture's last board is there in the file
# store's layout: simboard verify passes, its key matches its certificate, its device id
# and result are the station's; one that cannot take its files says so and keeps its key
# and records. A bad --store value is refused.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=4
TOTAL=12
line_setup

expect_fail "--store names a kind" 'bad value "disk"' "$SIMBOARD" --dir "$T/x" --store disk

# An earlier board's files in a fixture's directory go at start: what is there at exit is
# this process's board.
mkdir -p "$LINE_DIR/board2/.gen/7"
ln -s .gen/7 "$LINE_DIR/board2/files"
echo stale >"$LINE_DIR/board2/key.pem"
SIM_STDERR=$T/simboard.err start_simboard "$N" --store memory --total "$TOTAL" --max-frame 4096 --seed 3 \
	--fault power-loss=WRITE/2:board1
[ ! -e "$LINE_DIR/board2/key.pem" ] && [ ! -e "$LINE_DIR/board2/.gen/7" ] ||
	fail "an earlier board's files were kept"

line_run_all "$pki/run.yaml" "$T/events.jsonl" "$TOTAL"
ok "$TOTAL boards through $N fixtures pass, one after a power loss in its WRITEs"
sim_logged "board1: .*power" || fail "the power loss did not happen: $(tail -5 "$T/simboard.log")"

for i in $(seq 0 $((N - 1))); do
	for f in key.pem csr.der device-id result files; do
		[ ! -e "$LINE_DIR/board$i/$f" ] || fail "board$i has $f on disk while simboard runs"
	done
done
ok "nothing of a board on disk while simboard runs"

# A fixture whose directory cannot take its files (.gen is a file): simboard says so at exit
# and still writes the board's key and records, with no `files` link to half a set.
rm -rf "$LINE_DIR/board3/.gen"
touch "$LINE_DIR/board3/.gen"
stop_simboard
grep -q "board3: cannot save .gen/[0-9]*: Not a directory" "$T/simboard.err" ||
	fail "no word of board3's files: $(cat "$T/simboard.err")"
for f in key.pem csr.der device-id result; do
	[ -s "$LINE_DIR/board3/$f" ] || fail "board3's $f was not saved beside its failed files"
done
[ ! -e "$LINE_DIR/board3/files" ] || fail "board3 has a files link to a set not saved"
ok "a board whose files cannot be saved: said on stderr, its key and records saved"

for i in $(seq 0 $((N - 2))); do
	b="$LINE_DIR/board$i"
	# The files as committed, chained to the root, client.pem carrying key.pem's key.
	"$SIMBOARD" verify "$b" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "simboard verify board$i: $(cat "$T/verify.out")"
	id=$(cat "$b/device-id")
	grep -q "^pass provisioned $id" "$b/result" || fail "board$i result: $(cat "$b/result")"
	# The last board of the fixture: its certificate is the last pass on its slot.
	serial=$(grep '"event":"pass"' "$T/events.jsonl" | grep "\"slot\":\"board$i\"" | tail -1 |
		sed -n 's/.*"serial":"\([0-9A-Fa-f]*\)".*/\1/p')
	[ -n "$serial" ] || fail "no pass with a serial on board$i's slot"
	got=$(openssl x509 -in "$b/files/client.pem" -noout -serial | cut -d= -f2)
	[ "${got^^}" = "${serial^^}" ] || fail "board$i holds serial $got, its slot's last pass was $serial"
	[ "$(stat -c %a "$b/key.pem")" = 600 ] || fail "board$i: key.pem mode $(stat -c %a "$b/key.pem")"
done
ok "at exit the other fixtures' last boards are on disk: verify, result, serial, key"
echo "all passed"
