#!/usr/bin/env bash
# Messages carry their cause once, whole. A registration refused over HTTP (409: the device id
# already has a certificate for another key; the key already certified for another device)
# gets the whole reason in its JSON body, however long the client's name, down to "refused
# and flagged", with no "slot ...: device ...:" in front of it; the log says who once, and the
# ledger's flags keep the cause alone. On a line, a board refused by the signing pool fails
# with the same cause alone in its event and the view, and its log line names the slot and
# the device once.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
for tool in curl jq openssl sqlite3; do
	command -v $tool >/dev/null || fail "$tool is needed (tests/lib/deps.sh installs it)"
done
SERVE_PID=
line_cleanup() {
	[ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
}

# once FILE TEXT: TEXT occurs exactly once on every line of FILE that has it, and FILE has
# such a line.
once() {
	local n
	grep -qF -- "$2" "$1" || fail "no '$2' in $1"
	n=$(grep -F -- "$2" "$1" | awk -v t="$2" '{ if (split($0, a, t) != 2) print }' | head -1)
	[ -z "$n" ] || fail "'$2' more than once on a line: $n"
}

# ---- A line: a board refused by the pool.
line_setup
# board0 first, alone: then board1, reporting board0's device id, is the one refused.
start_simboard 1 --seed 31
timeout 120 "$STATION" run -c "$pki/run.yaml" --events "$T/ev0.jsonl" --boards 1 --no-view \
	>"$T/run0.out" 2>"$T/run0.err" || fail "board0 alone: $(tail -3 "$T/run0.err")"
stop_simboard
start_simboard 2 --seed 31 --fault dup-id=board0:board1
timeout 120 "$STATION" run -c "$pki/run.yaml" --events "$T/ev.jsonl" --boards 2 --no-view \
	>"$T/run.out" 2>"$T/run.err" || true
err1=$(jq -r 'select(.event == "fail" and .slot == "board1") | .error' "$T/ev.jsonl")
reason1=$(jq -r 'select(.event == "fail" and .slot == "board1") | .reason' "$T/ev.jsonl")
[ "$reason1" = POOL_ID_OTHER_KEY ] || fail "board1: reason '$reason1': $(tail -3 "$T/run.err")"
case $err1 in
"device id already has certificate "*"; refused and flagged") ;;
*) fail "board1's error is not the cause alone, whole: $err1" ;;
esac
grep "failed in" "$T/run.err" >"$T/fails"
once "$T/fails" "slot board1"
once "$T/fails" "$(jq -r 'select(.event == "fail") | .device_id' "$T/ev.jsonl")"
sqlite3 -readonly "$pki/ledger.db" "SELECT slot, reason FROM flags" >"$T/flags"
grep -q "^board1|device id already has certificate .*; refused and flagged$" "$T/flags" ||
	fail "ledger flag: $(cat "$T/flags")"
ok "line: the refused board's cause once, whole, in its event, the log and the ledger's flags"
stop_simboard

# ---- The registration API.
mkdir -p "$T/profiles"
gateway_profile "$T/profiles/gw.yaml" http-gateway-with-a-rather-long-product-name-for-the-message \
	sim-http acme-factory
http_token
# The dev PKI's configuration (its paths relative to $pki, where this file goes too), with
# a ledger of its own.
{
	grep -v '^ledger:' "$pki/station.yaml"
	cat <<EOF
ledger: $T/http.db
profiles: $T/profiles
pool:
  workers: 1
http:
  listen: 127.0.0.1:0
  token_file: $T/tokens.txt
EOF
} >"$pki/serve.yaml"
exec 3< <(exec "$STATION" serve -c "$pki/serve.yaml" 2>>"$T/serve.err")
SERVE_PID=$!
read -r -t 60 -u 3 line || fail "station serve did not start: $(cat "$T/serve.err")"
URL=${line#station: serving on }

# post UUID KEYDIR NAME OUT: registers UUID with the key in KEYDIR (made when absent) under
# NAME; prints the status.
post() {
	local uuid=$1 dir=$2 name=$3 out=$4
	if [ ! -f "$dir/pkey.pem" ]; then
		mkdir -p "$dir"
		openssl ecparam -name prime256v1 -genkey -noout -out "$dir/pkey.pem" 2>/dev/null
	fi
	openssl req -new -key "$dir/pkey.pem" -subj "/CN=$uuid/OU=acme-factory" -out "$dir/csr.pem"
	jq -n --rawfile csr "$dir/csr.pem" --arg uuid "$uuid" --arg name "$name" \
		'{name: $name, uuid: $uuid, csr: $csr, "hardware-id": "sim-http"}' >"$dir/body.json"
	curl -s -o "$out" -w '%{http_code}' -H @"$T/token.hdr" -H 'Content-Type: application/json' \
		--data-binary @"$dir/body.json" "$URL/sign"
}
name=$(printf 'line-7-fixture-%0113d' 0) # 128 bytes, the longest name
u1=6f1c1a5e-2d3b-4c4d-8e9f-0a1b2c3d4e5f
u2=7a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d
[ "$(post $u1 "$T/k1" "$name" "$T/r1.json")" = 201 ] || fail "first registration: $(cat "$T/r1.json")"

# refused DESC UUID KEYDIR MESSAGE: the registration is refused with 409 and MESSAGE (a case
# pattern), the whole cause alone.
refused() {
	local code msg
	code=$(post "$2" "$3" "$name" "$T/r.json")
	[ "$code" = 409 ] || fail "$1: status $code: $(cat "$T/r.json")"
	msg=$(jq -r .message "$T/r.json")
	# shellcheck disable=SC2254
	case $msg in $4) ;; *) fail "$1: 409 message is not the whole cause alone: $msg" ;; esac
	ok "$1: 409 with the whole reason ($(echo -n "$msg" | wc -c) bytes), no prefix"
}
refused "another key for the device id" $u1 "$T/k2" "device id already has certificate *\
 (ledger row 1) for a different public key; profile \
http-gateway-with-a-rather-long-product-name-for-the-message refuses reprovisioning; \
refused and flagged"
refused "the key of another device" $u2 "$T/k1" "public key is already recorded for device \
$u1 (serial *, ledger row 1); refused and flagged"

kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || fail "station serve did not exit cleanly: $(tail -5 "$T/serve.err")"
SERVE_PID=
grep "refused" "$T/serve.err" >"$T/refusals"
[ "$(wc -l <"$T/refusals")" = 2 ] || fail "refusals logged: $(cat "$T/refusals")"
grep -F "device $u1" "$T/refusals" | grep -vF "device $u1 (serial" >"$T/refusals-u1"
once "$T/refusals-u1" "$u1"
once "$T/refusals" "$u2"
if grep -q "slot http:" "$T/refusals"; then fail "the log repeats the slot: $(cat "$T/refusals")"; fi
grep -q "refused and flagged$" "$T/refusals" || fail "log lines cut: $(cat "$T/refusals")"
sqlite3 -readonly "$T/http.db" "SELECT reason FROM flags" >"$T/http-flags"
[ "$(grep -c 'refused and flagged$' "$T/http-flags")" = 2 ] || fail "flags: $(cat "$T/http-flags")"
if grep -q "slot http:" "$T/http-flags"; then fail "flags repeat the slot: $(cat "$T/http-flags")"; fi
ok "log: who once, the cause whole; ledger flags: the cause alone"
echo "all passed"
