#!/usr/bin/env bash
# A file the station configuration names that is missing (CA certificates, the CA key file,
# the PIN file, SoftHSM2's configuration, profiles, board maps, the registration server's TLS
# files) is reported at the file:line:col of the key that names it, by every command that
# reads it, before anything starts. A slots glob that matches no port is named with its
# place: a warning for a station that runs until stopped (ports may come later), an error
# under --until-idle (at once when there is no other slot, else a non-zero exit at the end).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"

line_setup
missing="$T/no-such-dir/missing"

# at_key FILE KEY: "FILE:LINE:COL" of the first line of FILE that holds "KEY:".
at_key() {
	local line text
	line=$(grep -n -m1 -E "^[ -]*$2:" "$1" | cut -d: -f1)
	text=$(sed -n "${line}p" "$1")
	text=${text%%"$2:"*}
	echo "$1:$line:$((${#text} + 1))"
}

# expect_named WHAT FILE KEY DOTTED CMD...: CMD fails naming the key's place and the path.
expect_named() {
	local what=$1 file=$2 key=$3 dotted=$4 want
	shift 4
	want="$(at_key "$file" "$key"): '$dotted' names $missing, which does not exist"
	if "$@" >"$T/out" 2>"$T/err"; then
		fail "$what: succeeded with $dotted missing"
	fi
	grep -qF -- "$want" "$T/err" || fail "$what: no '$want' in: $(cat "$T/err")"
	ok "$what: $want"
}

uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/dev" "$uuid" acme-factory
cat "$pki/local-ca.pem" >"$pki/chain.pem"
sed -i "s#^  root: .*#&\n  chain: chain.pem#" "$pki/station.yaml"
"$STATION" sign -c "$pki/station.yaml" --csr "$T/dev/csr.pem" --device-id "$uuid" >/dev/null ||
	fail "sign with every file there"

# The CA section's files, for sign, run and serve alike.
for key in cert root chain pin_file softhsm2_conf; do
	sed "s#^  $key: .*#  $key: $missing#" "$pki/station.yaml" >"$pki/ca-$key.yaml"
	cp "$pki/ca-$key.yaml" "$pki/run-$key.yaml"
	printf 'profiles: [sim-gw.yaml]\nslots:\n  - board_map: %s\n' "$LINE_DIR/map.yaml" \
		>>"$pki/run-$key.yaml"
	expect_named "sign, ca.$key" "$pki/ca-$key.yaml" "$key" "ca.$key" \
		"$STATION" sign -c "$pki/ca-$key.yaml" --csr "$T/dev/csr.pem" --device-id "$uuid"
	expect_named "run, ca.$key" "$pki/run-$key.yaml" "$key" "ca.$key" \
		"$STATION" run -c "$pki/run-$key.yaml" --until-idle --no-view
	expect_named "serve, ca.$key" "$pki/ca-$key.yaml" "$key" "ca.$key" \
		"$STATION" serve -c "$pki/ca-$key.yaml"
done

# The file signer's key.
mkdir -p "$T/filepki"
"$STATION" ca init --dir "$T/filepki/pki" --factory acme-factory --file >/dev/null
sed -i "s#^  key: .*#  key: $missing#" "$T/filepki/pki/station.yaml"
expect_named "sign, the file signer's key" "$T/filepki/pki/station.yaml" key ca.key \
	"$STATION" sign -c "$T/filepki/pki/station.yaml" --csr "$T/dev/csr.pem" --device-id "$uuid"

# What `station run` reads besides: profiles (a directory or a list), a slot's profile, a
# board map; and the registration server's files.
start_simboard 1 --seed 3
run_yaml() {
	cp "$pki/station.yaml" "$1"
	cat >>"$1"
}
run_yaml "$pki/r1.yaml" <<EOF
profiles: $missing
slots:
  - board_map: $LINE_DIR/map.yaml
EOF
expect_named "run, profiles directory" "$pki/r1.yaml" profiles profiles \
	"$STATION" run -c "$pki/r1.yaml" --until-idle --no-view
run_yaml "$pki/r2.yaml" <<EOF
profiles:
  - sim-gw.yaml
  - $missing
slots:
  - board_map: $LINE_DIR/map.yaml
EOF
want="$pki/r2.yaml:$(grep -n -m1 -F -- "  - $missing" "$pki/r2.yaml" | cut -d: -f1):5: 'profiles' names $missing, which does not exist"
"$STATION" run -c "$pki/r2.yaml" --until-idle --no-view >"$T/out" 2>"$T/err" &&
	fail "run with a profile of the list missing succeeded"
grep -qF -- "$want" "$T/err" || fail "profile list: no '$want' in: $(cat "$T/err")"
ok "run, a profile of the list: $want"
run_yaml "$pki/r3.yaml" <<EOF
profiles: [sim-gw.yaml]
slots:
  - board_map: $LINE_DIR/map.yaml
    profile: $missing
EOF
expect_named "run, a slot's profile" "$pki/r3.yaml" profile slots.profile \
	"$STATION" run -c "$pki/r3.yaml" --until-idle --no-view
run_yaml "$pki/r4.yaml" <<EOF
profiles: [sim-gw.yaml]
slots:
  - board_map: $missing
EOF
expect_named "run, a board map" "$pki/r4.yaml" board_map slots.board_map \
	"$STATION" run -c "$pki/r4.yaml" --until-idle --no-view
: >"$pki/tokens.txt"
for key in tls_cert tls_key client_ca token_file; do
	run_yaml "$pki/h-$key.yaml" <<EOF
profiles: [sim-gw.yaml]
http:
  listen: 127.0.0.1:0
  tls_cert: gateway.pem
  tls_key: gateway.key
  client_ca: local-ca.pem
  token_file: tokens.txt
EOF
	sed -i "s#^  $key: .*#  $key: $missing#" "$pki/h-$key.yaml"
	expect_named "serve, http.$key" "$pki/h-$key.yaml" "$key" "http.$key" \
		"$STATION" serve -c "$pki/h-$key.yaml"
done

# Slots globs that match nothing, of several shapes.
for pattern in "$T/nothing/*/tty" "/dev/station-test-none-$$*" "$T/line/*/ttyX"; do
	run_yaml "$pki/g.yaml" <<EOF
profiles: [sim-gw.yaml]
slots:
  - glob: $pattern
EOF
	where="$pki/g.yaml:$(($(grep -c '' "$pki/station.yaml") + 3)):5"
	"$STATION" run -c "$pki/g.yaml" --until-idle --no-view --max-seconds 60 \
		>"$T/out" 2>"$T/err" && fail "--until-idle with glob $pattern alone succeeded"
	grep -qF "$where: no slot to run: slots glob $pattern matches no port" "$T/err" ||
		fail "--until-idle, glob $pattern: $(cat "$T/err")"
	# A station that runs until stopped waits for the ports, and says what it waits for.
	"$STATION" run -c "$pki/g.yaml" --no-view --max-seconds 0.5 >"$T/out" 2>"$T/err" ||
		fail "run with glob $pattern and no --until-idle: $(cat "$T/err")"
	grep -qF "$where: slots glob $pattern matches no port yet" "$T/err" ||
		fail "no warning for glob $pattern: $(cat "$T/err")"
done
ok "a slots glob that matches no port: an error under --until-idle, a warning else"

# With other slots, --until-idle provisions them and still exits non-zero for the glob.
run_yaml "$pki/g2.yaml" <<EOF
profiles: [sim-gw.yaml]
slots:
  - board_map: $LINE_DIR/map.yaml
  - glob: $T/nothing/*
EOF
where="$pki/g2.yaml:$(($(grep -c '' "$pki/station.yaml") + 4)):5"
ev="$T/g2.jsonl"
if "$STATION" run -c "$pki/g2.yaml" --until-idle --no-view --events "$ev" --max-seconds 120 \
	>"$T/out" 2>"$T/err"; then
	fail "--until-idle with an unmatched glob beside other slots exited 0"
fi
[ "$(grep -c '"event":"pass"' "$ev")" = 1 ] || fail "the board beside the glob did not pass: $(cat "$T/err")"
grep -qF "$where: slots glob $T/nothing/* matches no port" "$T/err" ||
	fail "no warning at start: $(cat "$T/err")"
grep -qF "$where: slots glob $T/nothing/* matched no port during the run" "$T/err" ||
	fail "no error at the end: $(cat "$T/err")"
ok "--until-idle with an unmatched glob beside other slots: boards provisioned, exit non-zero"
