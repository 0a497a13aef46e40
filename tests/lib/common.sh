# Sourced by integration tests: a private work directory, failure helpers, and the paths of
# the binaries under test (CTest passes STATION, BUILD_DIR and SOURCE_DIR).
set -euo pipefail
: "${SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${BUILD_DIR:=$SOURCE_DIR/build}"
: "${STATION:=$BUILD_DIR/station/station}"
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

T=$(mktemp -d "${TMPDIR:-/tmp}/station-it.XXXXXX")
chmod 700 "$T"
# A test with processes of its own defines test_cleanup to end them; it runs on exit.
trap 'rc=$?; ! declare -F test_cleanup >/dev/null || test_cleanup || true; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT
trap 'exit 130' INT TERM

# has [GREP ARGS] PATTERN: grep -q for the end of a pipeline. It reads its input to the end:
# grep -q stops at the first match, and under pipefail the writer's SIGPIPE would fail the
# pipeline when the writer had more to say.
has() { grep "$@" >/dev/null; }

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok - $*"
}

# needs_test_hooks: a test that drives the signer's fault hooks (STATION_TEST_FAIL) skips
# (CTest's SKIP_RETURN_CODE) when the station under test was built without them
# (-DSTATION_TEST_HOOKS=ON; tests/run.sh builds with them). A binary that has them names
# the variable; one that does not never reads it.
needs_test_hooks() {
	if ! grep -qa STATION_TEST_FAIL "$STATION"; then
		echo "SKIP: $STATION has no test hooks; configure with -DSTATION_TEST_HOOKS=ON"
		exit 77
	fi
}

# expect_fail DESCRIPTION PATTERN CMD...: CMD must exit non-zero and print PATTERN on stderr.
expect_fail() {
	local what=$1 pattern=$2
	shift 2
	if "$@" >"$T/out" 2>"$T/err"; then
		fail "$what: succeeded, expected failure"
	fi
	grep -qE -- "$pattern" "$T/err" || fail "$what: stderr lacks /$pattern/: $(cat "$T/err")"
	ok "$what"
}

# flip_last_bit FILE: corrupts the last byte of FILE (inside a DER signature).
flip_last_bit() {
	local size last
	size=$(stat -c %s "$1")
	last=$(od -An -tu1 -j $((size - 1)) "$1" | tr -d ' ')
	printf "\\$(printf %o $((last ^ 1)))" | dd of="$1" bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
}

# dev_pki DIR FACTORY [ARGS...]: a development PKI with its CA keys in a SoftHSM2 token
# inside DIR; ARGS go to `station ca init` (--ca-days N, ...).
dev_pki() {
	local dir=$1 factory=$2
	shift 2
	mkdir -p "$dir"
	chmod 700 "$dir"
	(umask 077 && head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/pin")
	"$STATION" ca init --dir "$dir" --factory "$factory" --softhsm \
		--pkcs11 "pkcs11:token=test-$$;object=local-ca?module-path=$SOFTHSM_MODULE" \
		--pin-file "$dir/pin" "$@" >/dev/null
}

# device_csr DIR CN OU [extra openssl req args]: a P-256 key and CSR in DIR.
device_csr() {
	local dir=$1 cn=$2 ou=$3
	shift 3
	mkdir -p "$dir"
	openssl ecparam -name prime256v1 -genkey -noout -out "$dir/pkey.pem" 2>/dev/null
	openssl req -new -key "$dir/pkey.pem" -subj "/CN=$cn/OU=$ou" -out "$dir/csr.pem" "$@"
}

# free_port: a TCP port on loopback nothing listens on now, below the kernel's range of
# ephemeral ports: there, any outgoing connection of a test running beside this one could
# take it between this probe and the listener's bind.
free_port() {
	local p low=32768
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	[ "$low" -gt 11024 ] 2>/dev/null || low=32768
	for _ in $(seq 1 50); do
		p=$((low - 10000 + RANDOM % 10000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# gateway_profile FILE SKU HWID FACTORY: a Foundries-style gateway profile for the HTTP
# registration API: SKU matching HWID, the sota section, the foundries file set, then the
# YAML of more top-level keys when given.
gateway_profile() {
	cat >"$1" <<EOF
sku: $2
match:
  hardware_ids: [$3]
factory: $4
sota:
  gateway: https://ota-lite.foundries.io:8443
  ostree_server: https://ostree.foundries.io:8443
files:
  - set: foundries
${5:-}
EOF
}

# http_token: a fresh OSF-TOKEN in $TOKEN, the station's token file $T/tokens.txt and the
# client's header file $T/token.hdr (both 0600).
http_token() {
	TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	(umask 077 && echo "$TOKEN" >"$T/tokens.txt" && echo "OSF-TOKEN: $TOKEN" >"$T/token.hdr")
}

# wait_for_line FILE PATTERN TIMEOUT_S PID [COUNT]: waits until FILE has a line matching
# PATTERN (grep -E), or COUNT such lines, failing when PID exits first or the timeout (a
# failure bound, not a synchronisation) passes. Returns 0 when found, 2 when PID exited,
# 1 on the timeout.
wait_for_line() {
	local file=$1 pattern=$2 limit=$3 pid=$4 count=${5:-1} i n
	for ((i = 0; i < limit * 20; i++)); do
		n=$(grep -cE -- "$pattern" "$file" 2>/dev/null) || n=0
		[ "$n" -ge "$count" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 2
		sleep 0.05
	done
	return 1
}

# stop_bg PID: ends a background process of the test (SIGTERM) and reaps it; no PID, no-op.
stop_bg() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
