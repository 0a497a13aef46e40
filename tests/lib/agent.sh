# Sourced by station-agent's integration tests (after common.sh): a cable of two PTYs
# (ptylink), the agent on one end, the station (or raw frames from this shell) on the other,
# a development PKI in SoftHSM2 and a station configuration with one slot on the cable.
AGENT=$BUILD_DIR/drivers/board/agent/station-agent
PTYLINK=$BUILD_DIR/fixtures/ptylink/ptylink
[ -x "$AGENT" ] || fail "no station-agent at $AGENT"
[ -x "$PTYLINK" ] || fail "no ptylink at $PTYLINK"
LINKPID=
AGENTPID=

stop_agent() {
	stop_bg "$AGENTPID"
	AGENTPID=
}

stop_link() {
	stop_bg "$LINKPID"
	LINKPID=
}
trap 'rc=$?; ! declare -F agent_cleanup >/dev/null || agent_cleanup || true; stop_agent; stop_link; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT

# start_link [--pace] [--strict]: $T/agent-end and $T/station-end, joined (ptylink: bytes
# paced at the sender's rate, garbled while the two ends' rates differ).
start_link() {
	exec 4< <(exec "$PTYLINK" "$@" "$T/agent-end" "$T/station-end")
	LINKPID=$!
	local line
	read -r -t 30 -u 4 line || fail "ptylink did not start"
	case $line in "ptylink: ready"*) ;; *) fail "ptylink: $line" ;; esac
}

# start_agent ROOT CONF [options]: the agent on $T/agent-end, its log in $T/agent.log.
start_agent() {
	local root=$1 conf=$2
	shift 2
	"$AGENT" --tty "$T/agent-end" --config "$conf" --root "$root" "$@" 2>>"$T/agent.log" &
	AGENTPID=$!
}

# agent_pki: $pki with the development PKI, a profile for hardware id agent-board whose
# device ids the station makes (the agent adopts them), and $pki/run.yaml with one slot on
# the cable, or on AGENT_PORT when set (max_baud 921600, or MAX_BAUD).
agent_pki() {
	pki="$T/pki"
	dev_pki "$pki" acme-factory
	cat >"$pki/agent-gw.yaml" <<'YAML'
sku: agent-gw
match:
  hardware_ids: [agent-board]
factory: acme-factory
device_id:
  source: uuid4
sota:
  gateway: https://gateway.example:8443
  ostree_server: https://ostree.example:8443
files:
  - set: foundries
YAML
	cp "$pki/station.yaml" "$pki/run.yaml"
	cat >>"$pki/run.yaml" <<YAML
profiles: [agent-gw.yaml]
station: test-station
slots:
  - port: ${AGENT_PORT:-$T/station-end}
    name: dev0
    backend: pty
    max_baud: ${MAX_BAUD:-921600}
pool:
  workers: 2
YAML
}

# crc32 TEXT: the frame CRC (IEEE CRC-32, as gzip's trailer carries it), 8 hex digits.
crc32() {
	printf '%s' "$1" | gzip -c | tail -c8 | head -c4 | od -An -tx4 | tr -d ' \n' | tr a-f A-F
}

# raw_open / raw_close: this shell speaks frames on $T/station-end through fd 5, at 115200
# (a station run before may have left that end at the rate it switched to).
raw_open() {
	exec 5<>"$T/station-end"
	stty -F "$T/station-end" 115200 raw -echo || fail "stty $T/station-end"
}
raw_close() {
	exec 5>&-
}

# raw_boot: waits for the agent's E 0 BOOT (it drops what came before it opened the line).
raw_boot() {
	local line
	while read -r -t 20 -u 5 line; do
		case $line in *"~@P1 E 0 BOOT "*) return 0 ;; esac
	done
	fail "no BOOT from the agent: $(tail -3 "$T/agent.log")"
}

# raw_send SEQ TYPE [FIELDS]: sends a request (its answer is left unread).
raw_send() {
	local body="~@P1 Q $1 $2${3:+ $3} "
	printf '%s%s\n' "$body" "$(crc32 "$body")" >&5
}

# raw_q SEQ TYPE [FIELDS]: sends a request, prints the answer with that seq (or seq 0).
raw_q() {
	local seq=$1 type=$2 line
	raw_send "$@"
	while read -r -t 20 -u 5 line; do
		line=${line%$'\r'}
		case $line in *"~@P1 A $seq "* | *"~@P1 A 0 "*)
			echo "~@P1 ${line#*~@P1 }"
			return 0
			;;
		esac
	done
	fail "no answer to $type (seq $seq)"
}

# raw_line TEXT: a line sent as is (a frame damaged on purpose).
raw_line() {
	printf '%s\n' "$1" >&5
}

# raw_write SEQ PATH FILE [OFF [SIZE_OVERRIDE]]: WRITE of FILE's bytes from OFF (one chunk of
# at most 2048 bytes).
raw_write() {
	local seq=$1 path=$2 file=$3 off=${4:-0} size sha data
	size=${5:-$(stat -c %s "$file")}
	sha=$(sha256sum "$file" | cut -c1-64 | tr a-f A-F)
	data=$(head -c $((off + 2048)) "$file" | tail -c +$((off + 1)) | base64 -w0)
	raw_q "$seq" WRITE "path=$path mode=0644 size=$size sha=$sha off=$off data=$data"
}

# files_check DIR ROOTCA: the installed set under DIR (a configuration directory) is whole:
# every file of .manifest is there with its size and SHA-256, the generation line first.
files_check() {
	local dir=$1 gen sha size mode path
	read -r _ gen <"$dir/.manifest" || return 1
	[ "$gen" -ge 1 ] || return 1
	[ ! -e "$dir/.commit" ] || {
		echo "a commit journal is left: $(cat "$dir/.commit")"
		return 1
	}
	tail -n +2 "$dir/.manifest" | while read -r sha size mode path; do
		[ -f "$dir/$path" ] && [ ! -L "$dir/$path" ] || {
			echo "$path: missing"
			return 1
		}
		[ "$(stat -c %s "$dir/$path")" = "$size" ] || {
			echo "$path: size"
			return 1
		}
		[ "$(sha256sum "$dir/$path" | cut -c1-64)" = "$sha" ] || {
			echo "$path: content is not what was committed"
			return 1
		}
	done
}

# check_board NAME DIR: the files the station installed in DIR (a configuration directory),
# as a device boots with them: whole as committed, client.pem chaining to the factory root of
# $pki for TLS client use, root.crt that root, client.chained starting with client.pem.
check_board() {
	local name=$1 dir=$2 out
	for f in client.pem client.chained root.crt sota.toml; do
		[ -f "$dir/$f" ] || fail "$name: no $f in $dir"
	done
	out=$(files_check "$dir") || fail "$name: $out"
	openssl verify -x509_strict -purpose sslclient -CAfile "$pki/factory-root.pem" \
		-untrusted "$pki/local-ca.pem" "$dir/client.pem" >/dev/null ||
		fail "$name: openssl verify"
	cmp -s "$dir/root.crt" "$pki/factory-root.pem" || fail "$name: root.crt is not the factory root"
	[ "$(openssl x509 -in "$dir/client.chained" -outform DER | sha256sum)" = \
		"$(openssl x509 -in "$dir/client.pem" -outform DER | sha256sum)" ] ||
		fail "$name: client.chained does not start with client.pem"
	grep -q 'primary_ecu_hardware_id = "agent-board"' "$dir/sota.toml" || fail "$name: sota.toml"
}
