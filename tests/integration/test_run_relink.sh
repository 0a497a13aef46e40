#!/usr/bin/env bash
# A board whose port goes away in the middle of its run and comes back under a link made
# again at the same name, while nothing else on the machine makes a file: the file system may
# give the new link the inode number of the one just removed (ext4 does, at once), and the
# pseudo-terminal its number. The station must take it for the port come back, not for the
# name that hung up, and the board passes. Each case is a line of one board, so that no other
# board's files take the freed inode number first. Whether the number was given again is
# printed: on a file system that never gives one again (tmpfs) the case cannot arise.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
reused=0
# Request (protocol version: VERIFY is a request of its own up to version 2).
for c in CSR/1:5 WRITE/2:5 VERIFY/1:2; do
	cmd=${c%:*}
	name=${cmd%%/*}
	name=${name,,}
	LINE_DIR=$T/$name
	start_simboard 1 --name-prefix "$name" --seed 7 --protocol "${c##*:}" \
		--fault "disconnect=$cmd:${name}0" --reconnect-ms 300
	ino0=$(stat -c %i "$LINE_DIR/${name}0/tty")
	line_config "$pki/$name.yaml" <<YAML
station: test-station
slots:
  - board_map: $LINE_DIR/map.yaml
pool:
  workers: 2
timeouts:
  reconnect: 5000
YAML
	line_run_all "$pki/$name.yaml" "$T/$name.jsonl" 1
	sim_logged "${name}0: disconnected" && sim_logged "${name}0: reconnected" ||
		fail "$cmd: the link did not go and come back: $(cat "$T/simboard.log")"
	grep -q '"event":"port","station":"[^"]*","slot":"'"${name}0"'","status":"back"' "$T/$name.jsonl" ||
		fail "$cmd: no port event saying the port is back: $(grep '"event":"port"' "$T/$name.jsonl")"
	"$SIMBOARD" verify "$LINE_DIR/${name}0" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "$cmd: simboard verify: $(cat "$T/verify.out")"
	ino1=$(stat -c %i "$LINE_DIR/${name}0/tty")
	if [ "$ino0" = "$ino1" ]; then
		reused=$((reused + 1))
		how="the new link had the old one's inode number"
	else
		how="the new link had another inode number"
	fi
	ok "link gone at $cmd and made again ($how): the station took the port back, pass, simboard verify"
	stop_simboard
done
ok "the new link had the old one's inode number in $reused of 3 cases on this file system"
echo "all passed"
