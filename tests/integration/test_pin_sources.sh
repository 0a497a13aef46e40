#!/usr/bin/env bash
# The HSM PIN as the real program takes it: a PIN file that group or others may access, or a
# symbolic link, is refused with the file, its mode and the fix; a PIN in the environment is
# used (by every signer the process opens) and then gone from what others can see: the
# running station's /proc/PID/environ and the environment of what it starts; the running
# station writes no core file.
. "$(dirname "$0")/../lib/common.sh"
FACTORY=acme-factory
SERVE_PID=
test_cleanup() {
	[ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null
}

# ca init opens four signers in one process: with the PIN in the environment, all of them
# get it.
pin="env-pin-$RANDOM$RANDOM"
STATION_TEST_PIN=$pin "$STATION" ca init --dir "$T/pki" --factory $FACTORY --softhsm \
	--pkcs11 "pkcs11:token=env-$$;object=local-ca?module-path=$SOFTHSM_MODULE" \
	--pin-env STATION_TEST_PIN >/dev/null 2>"$T/err" || fail "ca init --pin-env: $(cat "$T/err")"
grep -q "^  pin_env: STATION_TEST_PIN$" "$T/pki/station.yaml" || fail "station.yaml lacks pin_env"
ok "ca init with the PIN in the environment"

uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/dev" "$uuid" $FACTORY
STATION_TEST_PIN=$pin "$STATION" sign -c "$T/pki/station.yaml" --csr "$T/dev/csr.pem" \
	--device-id "$uuid" -o "$T/dev/client.pem" 2>"$T/err" || fail "sign with pin_env: $(cat "$T/err")"

# A running station: its environment as the kernel shows it no longer holds the PIN.
cp "$T/pki/station.yaml" "$T/pki/serve.yaml"
printf 'profiles: [%s]\nhttp:\n  listen: 127.0.0.1:0\n' "$SOURCE_DIR/profiles/lmp-gateway.yaml" \
	>>"$T/pki/serve.yaml"
# It starts allowed core files up to the hard limit, so that turning them off is seen.
exec 3< <(ulimit -S -c "$(ulimit -H -c)" && STATION_TEST_PIN=$pin exec "$STATION" serve \
	-c "$T/pki/serve.yaml" 2>"$T/serve.err")
SERVE_PID=$!
read -r -t 60 -u 3 line || fail "station serve did not start: $(cat "$T/serve.err")"
# Not dumpable (outside a sanitizer build), the station's environ is root's alone to read.
if tr '\0' '\n' 2>/dev/null <"/proc/$SERVE_PID/environ" >"$T/environ"; then
	grep -q "^PATH=" "$T/environ" || fail "could not read the station's environment"
	grep -qF "$pin" "$T/environ" && fail "/proc/PID/environ of the running station shows the PIN"
	grep -q "^STATION_TEST_PIN=." "$T/environ" && fail "the PIN variable still has a value"
elif [ "$(id -u)" -eq 0 ]; then
	fail "root cannot read the station's /proc/PID/environ"
fi
ok "the running station's /proc/PID/environ no longer holds the PIN"
# The PIN stays in the station's memory: no core file may hold it.
grep -Eq "^Max core file size +0 +0 +bytes" "/proc/$SERVE_PID/limits" ||
	fail "the station may write core files: $(grep -i core "/proc/$SERVE_PID/limits")"
kill "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null || true
SERVE_PID=
ok "the running station writes no core file (RLIMIT_CORE 0)"

# The PIN file: refused unless only its owner may access it, never through a link.
(umask 077 && echo "$pin" >"$T/pin")
sed "s#^  pin_env: .*#  pin_file: $T/pin#" "$T/pki/station.yaml" >"$T/pki/file.yaml"
sign_pin() {
	"$STATION" sign -c "$T/pki/file.yaml" --csr "$T/dev/csr.pem" --device-id "$uuid" \
		-o "$T/dev/again.pem"
}
for mode in 600 400; do
	chmod "$mode" "$T/pin"
	sign_pin 2>"$T/err" || fail "PIN file mode $mode refused: $(cat "$T/err")"
done
for mode in 640 604 644 660 620 602 666 440; do
	chmod "$mode" "$T/pin"
	if sign_pin 2>"$T/err"; then
		fail "PIN file mode $mode accepted"
	fi
	grep -qF "PIN file $T/pin has mode 0$mode" "$T/err" || fail "mode $mode: $(cat "$T/err")"
	grep -qF "chmod 600 $T/pin" "$T/err" || fail "mode $mode: no fix named: $(cat "$T/err")"
	grep -qF "$pin" "$T/err" && fail "mode $mode: the error shows the PIN"
done
ok "PIN file modes: 0600 and 0400 taken; any group or other access refused with the fix"
chmod 600 "$T/pin"
ln -s "$T/pin" "$T/pin-link"
sed "s#^  pin_file: .*#  pin_file: $T/pin-link#" "$T/pki/file.yaml" >"$T/pki/link.yaml"
expect_fail "a PIN file that is a symbolic link" "PIN file $T/pin-link is a symbolic link" \
	"$STATION" sign -c "$T/pki/link.yaml" --csr "$T/dev/csr.pem" --device-id "$uuid"
