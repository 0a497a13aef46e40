# Sourced by integration tests of `station run` (after common.sh): a development PKI in
# SoftHSM2, the simulated boards' profile, a run configuration over simboard's board map,
# and simboard started and stopped around the test.
SIMBOARD=$BUILD_DIR/fixtures/simboard/simboard
[ -x "$SIMBOARD" ] || fail "no simboard at $SIMBOARD"
SIMPID=

stop_simboard() {
	if [ -n "$SIMPID" ]; then
		kill -TERM "$SIMPID" 2>/dev/null || true
		wait "$SIMPID" 2>/dev/null || true
		SIMPID=
	fi
}
trap 'rc=$?; stop_simboard; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT

# start_simboard N [options]: serves N boards from $T/line, waits for the ready line.
start_simboard() {
	local n=$1 line
	shift
	exec 3< <(exec "$SIMBOARD" --dir "$T/line" --boards "$n" "$@")
	SIMPID=$!
	read -r -t 60 -u 3 line || fail "simboard did not start"
	case $line in "simboard: ready: $n boards"*) ;; *) fail "simboard: $line" ;; esac
	# Keep draining its event lines: a full pipe would stall every board.
	cat <&3 >"$T/simboard.log" &
}

# line_setup [extra run.yaml text]: $pki with the dev PKI, sim-gw.yaml, run.yaml.
line_setup() {
	pki="$T/pki"
	dev_pki "$pki" acme-factory
	cat >"$pki/sim-gw.yaml" <<'YAML'
sku: sim-gw
match:
  hardware_ids: [sim-board]
factory: acme-factory
device_id:
  source: board
sota:
  gateway: https://gateway.example:8443
  ostree_server: https://ostree.example:8443
files:
  - set: foundries
YAML
	cp "$pki/station.yaml" "$pki/run.yaml"
	cat >>"$pki/run.yaml" <<YAML
station: test-station
profiles: [sim-gw.yaml]
slots:
  - board_map: $T/line/map.yaml
pool:
  workers: 2
outputs:
  console_dir: $T/consoles
${1:-}
YAML
}

# wait_for_line FILE PATTERN TIMEOUT_S PID: waits until FILE has a line matching PATTERN
# (grep -E), failing when PID exits first or the timeout (a failure bound, not a
# synchronisation) passes. Returns 0 when found.
wait_for_line() {
	local file=$1 pattern=$2 limit=$3 pid=$4 i
	for ((i = 0; i < limit * 20; i++)); do
		grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 2
		sleep 0.05
	done
	return 1
}
