# Sourced by integration tests of `station run` (after common.sh): a development PKI in
# SoftHSM2, the simulated boards' profile, a run configuration over simboard's board map,
# and simboard started and stopped around the test.
SIMBOARD=$BUILD_DIR/fixtures/simboard/simboard
[ -x "$SIMBOARD" ] || fail "no simboard at $SIMBOARD"
SIMPID=
# simboard's options in every test: no fsync. Its fsyncs guard the simulated boards' files
# against the host losing power, which no test does (a simulated power loss keeps the page
# cache). Yet one slow fsync on a loaded disk blocks simboard's one loop, and with it every
# board it serves, for as long as it takes: a test with short timeouts then fails boards
# that did nothing wrong (test_console once saw a healthy board's WRITE go unanswered three
# times in a second each, with a benchmark's fsyncs beside it). test_simboard keeps them.
SIM_OPTS=(--no-fsync)
# Where start_simboard makes its boards and line_setup's run.yaml finds their map; a test
# with a second line sets it before starting that one.
LINE_DIR=$T/line

stop_simboard() {
	stop_bg "$SIMPID"
	SIMPID=
}
# A test with processes of its own (a station, a gateway) defines line_cleanup to end them;
# it runs on exit before simboard is stopped.
trap 'rc=$?; ! declare -F line_cleanup >/dev/null || line_cleanup || true; stop_more_simboards; stop_simboard; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT

# start_simboard N [options]: serves N boards from $LINE_DIR, waits for the ready line.
# simboard's stderr goes to the file SIM_STDERR names, when set.
start_simboard() {
	local n=$1 line
	shift
	exec 3< <([ -z "${SIM_STDERR:-}" ] || exec 2>"$SIM_STDERR"
		exec "$SIMBOARD" --dir "$LINE_DIR" --boards "$n" "${SIM_OPTS[@]}" "$@")
	SIMPID=$!
	read -r -t 60 -u 3 line || fail "simboard did not start"
	case $line in "simboard: ready: $n boards"*) ;; *) fail "simboard: $line" ;; esac
	# Keep draining its event lines: a full pipe would stall every board. Appended, so that
	# a test that starts simboard again keeps the earlier lines.
	cat <&3 >>"$T/simboard.log" &
}

# sim_logged PATTERN [COUNT]: simboard's log has PATTERN (an extended regex), COUNT times,
# within 10 s. The log reaches $T/simboard.log through a copy nothing waits for: a line
# simboard wrote before the station finished may land in the file a moment later.
sim_logged() {
	wait_for_line "$T/simboard.log" "$1" 10 "$SIMPID" "${2:-1}"
}

# more_simboard NAME N [options]: another fixture of the line, a simboard of its own serving N
# boards named NAME0, NAME1, ... from $T/NAME (map $T/NAME/map.yaml, log
# $T/simboard-NAME.log); stop_more_simboards ends them all (on exit too).
MORE_PIDS=
more_simboard() {
	local name=$1 n=$2 line fd
	shift 2
	exec {fd}< <(exec "$SIMBOARD" --dir "$T/$name" --boards "$n" --name-prefix "$name" "${SIM_OPTS[@]}" "$@")
	MORE_PIDS="$MORE_PIDS $!"
	read -r -t 60 -u "$fd" line || fail "simboard $name did not start"
	case $line in "simboard: ready: $n boards"*) ;; *) fail "simboard $name: $line" ;; esac
	cat <&"$fd" >>"$T/simboard-$name.log" &
}
stop_more_simboards() {
	local pid
	for pid in $MORE_PIDS; do
		stop_bg "$pid"
	done
	MORE_PIDS=
}

# line_run_all CONFIG EVENTS N: `station run -c CONFIG` until N boards are done, events in
# EVENTS (its output in EVENTS.out and EVENTS.err): all N pass.
line_run_all() {
	timeout 300 "$STATION" run -c "$1" --events "$2" --boards "$3" --no-view >"$2.out" 2>"$2.err" ||
		fail "station run -c $1 failed: $(tail -20 "$2.err")"
	[ "$(grep -c '"event":"pass"' "$2")" = "$3" ] ||
		fail "$(grep -c '"event":"pass"' "$2") boards passed of $3: $(grep -m3 '"event":"fail"' "$2")"
}

# faults_run N PREFIX: the N boards PREFIX0, PREFIX1, ... that start_simboard serves from
# $T/faults (with the faults it was given) on a line of their own and a new ledger,
# reconnects waited for 5 s (simboard's come after 0.5 s): every board passes (events in
# $T/faults.jsonl) and holds the right files (simboard verify).
faults_run() {
	local n=$1 prefix=$2 i
	rm -f "$pki/ledger.db" "$pki/ledger.db-wal" "$pki/ledger.db-shm"
	line_config "$pki/faults.yaml" <<YAML
station: test-station
slots:
  - board_map: $T/faults/map.yaml
pool:
  workers: 2
timeouts:
  reconnect: 5000
YAML
	line_run_all "$pki/faults.yaml" "$T/faults.jsonl" "$n"
	for i in $(seq 0 $((n - 1))); do
		"$SIMBOARD" verify "$T/faults/$prefix$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
			fail "simboard verify $prefix$i: $(cat "$T/verify.out")"
	done
}

# line_profile DIR [SOURCE [YAML]]: the simulated boards' profile, DIR/sim-gw.yaml
# (Foundries-style, the device id from the board unless SOURCE names another device_id
# source), with more top-level YAML keys appended.
line_profile() {
	cat >"$1/sim-gw.yaml" <<YAML
sku: sim-gw
match:
  hardware_ids: [sim-board]
factory: acme-factory
device_id:
  source: ${2:-board}
sota:
  gateway: https://gateway.example:8443
  ostree_server: https://ostree.example:8443
files:
  - set: foundries
${3:-}
YAML
}

# line_config FILE: a station configuration: the dev PKI's station.yaml ($pki), the
# simulated boards' profile, then the YAML text on stdin (slots and the rest).
line_config() {
	cp "$pki/station.yaml" "$1"
	{
		echo "profiles: [sim-gw.yaml]"
		cat
	} >>"$1"
}

# own_hsm NAME FILE: station NAME's configuration FILE (made from $pki/station.yaml) gets an
# HSM of its own, as on a real line: a copy of the SoftHSM2 token, with the same keys.
# Stations starting together on one token directory trip over SoftHSM2's files: one
# rewrites the token's file while another reads it and finds no token.
own_hsm() {
	local hsm=$pki/hsm-$1
	if [ ! -d "$hsm" ]; then
		mkdir -p "$hsm"
		cp -a "$pki/tokens" "$hsm/tokens"
		sed "s|^directories.tokendir = .*|directories.tokendir = $hsm/tokens|" \
			"$pki/softhsm2.conf" >"$hsm/softhsm2.conf"
	fi
	sed -i "s|^  softhsm2_conf: .*|  softhsm2_conf: $hsm/softhsm2.conf|" "$2"
	grep -q "softhsm2_conf: $hsm/softhsm2.conf" "$2" || fail "own_hsm: no softhsm2_conf in $2"
}

# line_setup [extra run.yaml text]: $pki with the dev PKI, sim-gw.yaml, run.yaml.
line_setup() {
	pki="$T/pki"
	dev_pki "$pki" acme-factory
	line_profile "$pki"
	line_config "$pki/run.yaml" <<YAML
station: test-station
slots:
  - board_map: $LINE_DIR/map.yaml
pool:
  workers: 2
outputs:
  console_dir: $T/consoles
${1:-}
YAML
}

# glob_config IN OUT BAUD: IN with its slot over simboard's map ($LINE_DIR/map.yaml) as a glob
# over the same boards' ports ($LINE_DIR/*/tty, named after their boards, at BAUD), looked for
# every 200 ms: a station on OUT can start before simboard makes the ports, and a test can
# act on it between its start and the first board.
glob_config() {
	grep -q "^  - board_map: $LINE_DIR/map.yaml\$" "$1" || fail "glob_config: no board_map slot in $1"
	sed "s#^  - board_map: $LINE_DIR/map.yaml\$#  - glob: $LINE_DIR/*/tty\n    name: \"{parent}\"\n    baud: $3#" \
		"$1" >"$2"
	printf 'timeouts:\n  rescan: 200\n' >>"$2"
}

# run_hsm_away N SEED [run args...]: `station run --boards N` in the background ($pid, events
# in $ev, output in $T/run.out and $T/run.err) on $pki/run.yaml with the boards' ports found
# by a glob ($pki/away.yaml), whose signer loses all module state before its first signature
# (the STATION_TEST_FAIL hook). The station starts first and opens the token; the token
# directory is moved away once its loop runs, and only then do N paced simulated boards
# come: nothing can be signed before the token is gone. Signing pauses until the test moves
# $pki/tokens.away back to $pki/tokens.
run_hsm_away() {
	local n=$1 seed=$2
	shift 2
	glob_config "$pki/run.yaml" "$pki/away.yaml" 9600
	ev="$T/events.jsonl"
	: >"$ev"
	STATION_TEST_FAIL=signer.finalize:1 "$STATION" run -c "$pki/away.yaml" --events "$ev" \
		--no-view --boards "$n" --max-seconds 300 "$@" >"$T/run.out" 2>"$T/run.err" &
	pid=$!
	wait_for_line "$T/run.err" "station test-station: 0 slots" 60 "$pid" ||
		fail "the station did not start: $(tail "$T/run.err")"
	mv "$pki/tokens" "$pki/tokens.away"
	start_simboard "$n" --seed "$seed" --baud 9600
}
