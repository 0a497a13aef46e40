#!/usr/bin/env bash
# HTTP registrations at the same time as busy serial slots: `station run` drives simulated
# boards paced at a real baud rate while device-tool clients register over HTTP on the same
# loop, pool and ledger. The clients keep registering for as long as boards are unfinished
# (GET /status says so), whatever the machine's speed. Every board passes, every HTTP device
# gets a certificate that verifies, GET /status shows the slots beside the HTTP counters,
# and the ledger holds exactly one certificate per board and per device, serials unique.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
for tool in curl jq openssl; do
	command -v $tool >/dev/null || fail "$tool is needed (tests/lib/deps.sh installs it)"
done
N=16       # boards
CLIENTS=4  # HTTP clients at once
MAX_EACH=50 # registrations per client at most
FACTORY=acme-factory
RUNPID=
line_cleanup() {
	if [ -n "$RUNPID" ]; then
		kill -TERM "$RUNPID" 2>/dev/null
		wait "$RUNPID" 2>/dev/null
	fi
}

pki="$T/pki"
dev_pki "$pki" $FACTORY
line_profile "$pki"
gateway_profile "$pki/http-gw.yaml" http-gw imx8mm-lpddr4-evk acme-factory
http_token
port=$(free_port) || fail "no free port"
URL="http://127.0.0.1:$port"
cp "$pki/station.yaml" "$pki/run.yaml"
cat >>"$pki/run.yaml" <<EOF
station: line-http
profiles: [sim-gw.yaml, http-gw.yaml]
slots:
  - board_map: $T/line/map.yaml
pool:
  workers: 2
http:
  listen: 127.0.0.1:$port
  token_file: $T/tokens.txt
EOF

# Boards paced at 19200 baud: each takes a while on the wire, as on a real line.
start_simboard "$N" --baud 19200 --seed 11

"$STATION" run -c "$pki/run.yaml" --events "$T/events.jsonl" --no-view >"$T/run.out" 2>"$T/run.err" &
RUNPID=$!
# The server is up once a connection is accepted (curl retries only refused connections).
curl -s --retry 120 --retry-connrefused --retry-max-time 120 -o /dev/null "$URL/status" ||
	fail "the registration API did not come up: $(tail -5 "$T/run.err")"
ok "station run serves the registration API on $URL"

finished() {
	curl -s "$URL/status" | jq -r '.boards.finished'
}

# One device-tool client: registers new devices until every board has finished. Each line
# of its log: the HTTP status and the boards finished before the request.
client() {
	local c=$1 i u d before code
	for i in $(seq 1 $MAX_EACH); do
		before=$(finished)
		[ "$before" -lt "$N" ] || break
		u=$(cat /proc/sys/kernel/random/uuid)
		d="$T/http/c$c-$i"
		mkdir -p "$d"
		openssl ecparam -name prime256v1 -genkey -noout -out "$d/pkey.pem" 2>/dev/null
		openssl req -new -key "$d/pkey.pem" -subj "/CN=$u/OU=$FACTORY" \
			-addext "keyUsage=critical,digitalSignature" \
			-addext "extendedKeyUsage=critical,clientAuth" -out "$d/csr.pem"
		jq -n --indent 4 --rawfile csr "$d/csr.pem" --arg uuid "$u" '
			{name: "http-dev", uuid: $uuid, csr: $csr, "hardware-id": "imx8mm-lpddr4-evk",
			 "sota-config-dir": "/var/sota", overrides: {pacman: {tags: "\"main\""}},
			 "use-ostree-server": "true"}' | sed 's#/#\\/#g' >"$d/body.json"
		code=$(curl -s -o "$d/answer.json" -w '%{http_code}' -H @"$T/token.hdr" \
			-H 'Content-Type: application/json' --data-binary @"$d/body.json" "$URL/sign")
		echo "$code $before $u $d" >>"$T/client$c.log"
	done
}
mkdir -p "$T/http"
pids=()
for c in $(seq 1 $CLIENTS); do
	client "$c" &
	pids+=($!)
done
wait "${pids[@]}" || fail "an HTTP client failed"
# Bounded: every client stops after MAX_EACH; then the boards are waited for.
for _ in $(seq 1 600); do
	[ "$(finished)" -ge "$N" ] && break
	kill -0 "$RUNPID" 2>/dev/null || fail "station run exited: $(tail -20 "$T/run.err")"
	sleep 0.5
done
[ "$(finished)" -ge "$N" ] || fail "the boards did not finish"
curl -s "$URL/status" >"$T/status.json"
cat "$T"/client*.log >"$T/clients.log"
total=$(wc -l <"$T/clients.log")
during=$(awk -v n="$N" '$2 < n' "$T/clients.log" | wc -l)
[ "$total" -ge 1 ] || fail "no HTTP registration was made"
if grep -qv '^201 ' "$T/clients.log"; then fail "an HTTP registration failed: $(grep -v '^201 ' "$T/clients.log" | head -3)"; fi
[ "$during" -ge 1 ] || fail "no HTTP registration overlapped the serial slots"
ok "$total HTTP registrations, all 201; $during of them started while boards were unfinished"

kill -TERM "$RUNPID"
wait "$RUNPID" || fail "station run: exit status $? after SIGTERM: $(tail -20 "$T/run.err")"
RUNPID=
[ "$(grep -c '"event":"pass"' "$T/events.jsonl")" = "$N" ] ||
	fail "$(grep -c '"event":"pass"' "$T/events.jsonl") boards passed, expected $N"
if grep -q '"event":"fail"' "$T/events.jsonl"; then fail "a board failed: $(grep -m3 '"event":"fail"' "$T/events.jsonl")"; fi
ok "station run: all $N boards passed beside the HTTP clients; clean exit on SIGTERM"

# /status carried the engine's slots and tallies beside the HTTP and pool counters.
[ "$(jq '.slots | length' "$T/status.json")" = "$N" ] || fail "status slots: $(jq -c .slots "$T/status.json" | cut -c1-300)"
[ "$(jq -r .station "$T/status.json")" = line-http ] || fail "status station"
[ "$(jq .registrations.signed "$T/status.json")" = "$total" ] || fail "status: $(jq -c .registrations "$T/status.json")"
[ "$(jq .pool.signed "$T/status.json")" = $((N + total)) ] || fail "status pool: $(jq -c .pool "$T/status.json")"
ok "GET /status: $N slots, board tallies, HTTP and pool counters"

# Every HTTP certificate verifies and names its device.
while read -r code before u d; do
	jq -j '.["client.pem"]' "$d/answer.json" >"$d/client.pem"
	openssl verify -x509_strict -purpose sslclient -CAfile "$pki/factory-root.pem" \
		-untrusted "$pki/local-ca.pem" "$d/client.pem" >/dev/null || fail "HTTP device $u: verify"
	[ "$(openssl x509 -in "$d/client.pem" -noout -subject -nameopt RFC2253)" = "subject=OU=$FACTORY,CN=$u" ] ||
		fail "HTTP device $u: subject"
done <"$T/clients.log"
for i in $(seq 0 $((N - 1))); do
	"$SIMBOARD" verify "$T/line/board$i" --root "$pki/factory-root.pem" >"$T/verify.out" ||
		fail "simboard verify board$i: $(cat "$T/verify.out")"
done
ok "every HTTP certificate and every board verifies"

"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "$((N + total)) rows, $((N + total)) certificates verified" "$T/check.out" ||
	fail "ledger check: $(cat "$T/check.out")"
"$STATION" ledger -c "$pki/run.yaml" list >"$T/ledger.txt"
[ "$(awk 'NR > 1 { print $2 }' "$T/ledger.txt" | sort -u | wc -l)" = $((N + total)) ] ||
	fail "serials are not unique"
[ "$(grep -c ' http:http-dev ' "$T/ledger.txt")" = "$total" ] || fail "ledger: HTTP rows"
ok "ledger: $((N + total)) certificates ($N boards, $total HTTP devices), serials unique, all verified"
echo "all passed"
