# Sourced by the tests of a line of stations on one PostgreSQL ledger (after common.sh,
# line.sh and pg.sh): several simboard processes and several `station run` processes at
# once, each remembered so that the EXIT trap ends them (line_cleanup), station
# configurations on the shared ledger, and queries of the ledger database.
SIMS=()
STATIONS=()

line_cleanup() {
	local p
	for p in "${STATIONS[@]}" "${SIMS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${STATIONS[@]}" "${SIMS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
}

# sim_start DIR N [simboard options]: serves N boards from DIR (map DIR/map.yaml, unless
# --map says otherwise), its lines appended to DIR.log; waits for its ready line (a new one,
# when DIR was served before). SIM_PID is its PID.
sim_start() {
	local dir=$1 n=$2 before
	shift 2
	before=$(grep -c "simboard: ready: $n boards" "$dir.log" 2>/dev/null) || before=0
	"$SIMBOARD" --dir "$dir" --boards "$n" "${SIM_OPTS[@]}" "$@" >>"$dir.log" 2>&1 &
	SIM_PID=$!
	SIMS+=("$SIM_PID")
	wait_for_line "$dir.log" "simboard: ready: $n boards" 60 "$SIM_PID" $((before + 1)) ||
		fail "simboard $dir did not start: $(tail -3 "$dir.log")"
}

# sim_stop PID: stops one simboard (SIGTERM) and waits for it.
sim_stop() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# station_config NAME FILE MAP...: a configuration for station NAME with the dev PKI ($pki),
# the ledger on the test's PostgreSQL ($PG_CONN), the profiles sim-gw.yaml and sim-seq.yaml,
# a slot per board map, then the YAML text on stdin. Each station has an HSM of its own
# (own_hsm).
station_config() {
	local name=$1 file=$2 map
	shift 2
	{
		grep -v '^ledger:' "$pki/station.yaml"
		echo "ledger: \"$PG_CONN\""
		echo "station: $name"
		echo "profiles: [sim-gw.yaml, sim-seq.yaml]"
		echo "slots:"
		for map in "$@"; do
			echo "  - board_map: $map"
		done
		cat
	} >"$file"
	own_hsm "$name" "$file"
}

# seq_profile DIR: DIR/sim-seq.yaml, boards with hardware id sim-seq numbered by the ledger
# (SEQ-000001, ...), the boards' files as sim-gw's.
seq_profile() {
	sed -e 's/^sku: sim-gw/sku: sim-seq/' -e 's/hardware_ids: \[sim-board\]/hardware_ids: [sim-seq]/' \
		-e 's/^  source: board/  source: sequence\n  prefix: SEQ-\n  digits: 6/' \
		"$1/sim-gw.yaml" >"$1/sim-seq.yaml"
}

# station_start NAME CONFIG [station run options]: runs station NAME in the background, its
# events in $T/NAME.events, output in $T/NAME.out and .err. STATION_PID is its PID.
station_start() {
	local name=$1 cfg=$2
	shift 2
	: >"$T/$name.events"
	"$STATION" run -c "$cfg" --events "$T/$name.events" --no-view "$@" \
		>"$T/$name.out" 2>"$T/$name.err" &
	STATION_PID=$!
	STATIONS+=("$STATION_PID")
}

# pg_q SQL: the result of SQL on the ledger database (one value per line).
pg_q() {
	pg_psql "SET search_path = station_ledger; $1"
}

# pg_unique_checks: no live serial or key twice, no device id with two certificates.
pg_unique_checks() {
	local dup
	dup=$(pg_q "SELECT serial FROM certificates WHERE state <> 'failed' OR cert_der IS NOT NULL
		GROUP BY serial HAVING count(*) > 1")
	[ -z "$dup" ] || fail "serial recorded twice: $dup"
	dup=$(pg_q "SELECT encode(pubkey_sha256, 'hex') FROM certificates
		WHERE state <> 'failed' OR cert_der IS NOT NULL GROUP BY 1 HAVING count(*) > 1")
	[ -z "$dup" ] || fail "public key recorded twice: $dup"
	dup=$(pg_q "SELECT device_id FROM certificates WHERE cert_der IS NOT NULL
		GROUP BY device_id HAVING count(*) > 1")
	[ -z "$dup" ] || fail "device id with two certificates: $dup"
}
