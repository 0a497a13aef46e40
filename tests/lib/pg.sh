# A PostgreSQL server of the test's own (Debian's postgresql package, version 15 or the
# one installed): initdb into a fresh directory as the unprivileged user postgres (or as the
# user running the test when that is not root), listening on a Unix socket in that
# directory only (listen_addresses='': no TCP at all), stopped by its PID when the test ends.
#
# Sourced by an integration test after common.sh (and line.sh): pg_start makes and starts
# the server and sets
#   PG_DIR   the server's directory (data, socket, log, the password file)
#   PG_CONN  a libpq connection string to the database "ledger" as role "station", whose
#            password is in a password file (passfile=...), never on a command line
#   PG_ADMIN psql's arguments to connect as the superuser postgres (no password)
# and pg_stop, pg_start_again and pg_restart stop and start it within the test (fast mode:
# open connections are cut). pg_psql SQL runs SQL as the superuser on the ledger database.
#
# Run as a command it wraps another one: bash tests/lib/pg.sh run CMD [ARGS...] starts a
# server, runs CMD with STATION_TEST_PG set to PG_CONN, stops the server and exits with
# CMD's status (tests/CMakeLists.txt runs the ledger's unit tests on PostgreSQL that way).

PG_BINDIR=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PG_DIR=
PG_CONN=
PG_ADMIN=()
PG_PID=

# As the server's user: postgres when running as root (initdb refuses root), else oneself.
pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_fail() {
	echo "FAIL: $*" >&2
	[ -n "$PG_DIR" ] && [ -r "$PG_DIR/log" ] && tail -20 "$PG_DIR/log" >&2
	exit 1
}

pg_psql() {
	"$PG_BINDIR/psql" "${PG_ADMIN[@]}" -d ledger -v ON_ERROR_STOP=1 -qAt -c "$1"
}

pg_start_again() {
	pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
		-o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR' -c port=5432" \
		start >/dev/null || pg_fail "PostgreSQL did not start"
	PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
}

pg_stop() {
	pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null ||
		pg_fail "PostgreSQL did not stop"
	PG_PID=
}

pg_restart() {
	pg_stop
	pg_start_again
}

# Stops the server by its PID (SIGINT: fast shutdown) and removes its directory; for the
# EXIT trap, so it never fails.
pg_cleanup() {
	local i
	if [ -n "$PG_PID" ] && kill -INT "$PG_PID" 2>/dev/null; then
		for ((i = 0; i < 600; i++)); do
			kill -0 "$PG_PID" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$PG_PID" 2>/dev/null || true
	fi
	PG_PID=
	if [ -n "$PG_DIR" ] && [ -z "${KEEP_TMP:-}" ]; then
		rm -rf "$PG_DIR"
	fi
}

pg_start() {
	local pw
	[ -x "$PG_BINDIR/initdb" ] || pg_fail "no PostgreSQL server programs (install the Debian package postgresql)"
	# Outside the test's private directory, which the server's user may not enter.
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/station-pg.XXXXXX")
	chmod 700 "$PG_DIR"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$PG_DIR"
	pg_as "$PG_BINDIR/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust \
		--auth-host=reject --no-sync -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 ||
		pg_fail "initdb: $(tail -5 "$PG_DIR/initdb.log")"
	# The superuser over the socket without a password; every other role with one.
	cat >"$PG_DIR/data/pg_hba.conf" <<EOF
local all postgres trust
local all all scram-sha-256
EOF
	cat >>"$PG_DIR/data/postgresql.conf" <<EOF
fsync = on
synchronous_commit = on
shared_buffers = 32MB
max_connections = 60
deadlock_timeout = 100ms
EOF
	pg_start_again
	PG_ADMIN=(-h "$PG_DIR" -p 5432 -U postgres)
	pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
	(umask 077 && echo "*:*:*:station:$pw" >"$PG_DIR/pgpass")
	# The password goes to the server on psql's standard input, not its command line.
	"$PG_BINDIR/psql" "${PG_ADMIN[@]}" -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<EOF ||
\\set pw '$pw'
CREATE ROLE station LOGIN CREATEDB PASSWORD :'pw';
CREATE DATABASE ledger OWNER station;
EOF
		pg_fail "cannot create the role and database"
	PG_CONN="host=$PG_DIR port=5432 dbname=ledger user=station passfile=$PG_DIR/pgpass"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	[ "${1:-}" = run ] && [ $# -ge 2 ] || {
		echo "usage: pg.sh run CMD [ARGS...]" >&2
		exit 2
	}
	shift
	trap 'rc=$?; pg_cleanup; exit $rc' EXIT
	trap 'exit 130' INT TERM
	pg_start
	STATION_TEST_PG=$PG_CONN "$@"
else
	# The test's own EXIT trap (common.sh, line.sh) with the server stopped before the test
	# directory goes: processes of the test first, then the server, then the files.
	trap 'rc=$?; ! declare -F line_cleanup >/dev/null || line_cleanup || true; ! declare -F stop_simboard >/dev/null || stop_simboard; pg_cleanup; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT
fi
