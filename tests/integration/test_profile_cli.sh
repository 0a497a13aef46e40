#!/usr/bin/env bash
# `station profile check` and `station profile render` as a profile author runs them: the
# example profiles pass, every broken profile prints exactly its expected file:line:col
# lines and fails, and render writes the golden files byte for byte with their modes.
set -euo pipefail
: "${SOURCE_DIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${BUILD_DIR:=$SOURCE_DIR/build}"
: "${STATION:=$BUILD_DIR/station/station}"

T=$(mktemp -d "${TMPDIR:-/tmp}/station-profile.XXXXXX")
trap 'rc=$?; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok - $*"
}

# run EXPECTED_STATUS CMD...: runs CMD with stdout in $T/out, stderr in $T/err.
run() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$T/err")"
}

GOLDEN="$SOURCE_DIR/tests/profiles/golden"
INPUTS="$SOURCE_DIR/tests/profiles/inputs"

# --- help is true ---------------------------------------------------------------------------
run 0 "$STATION" profile --help
grep -q "station profile check FILE" "$T/out" || fail "profile --help lacks check"
run 0 "$STATION" profile check --help
grep -q "file:line:col" "$T/out" || fail "check --help does not describe its output"
run 0 "$STATION" profile render --help
grep -q -- "--out DIR" "$T/out" || fail "render --help lacks --out"
run 2 "$STATION" profile
run 2 "$STATION" profile check
run 2 "$STATION" profile frobnicate
ok "help and usage"

# --- the example profiles pass ----------------------------------------------------------------
(cd "$SOURCE_DIR" && run 0 "$STATION" profile check profiles/*.yaml)
for p in "$SOURCE_DIR"/profiles/*.yaml; do
	grep -q "^profiles/$(basename "$p"): ok" "$T/out" || fail "$p not reported ok"
done
[ ! -s "$T/err" ] || fail "check of the examples wrote to stderr: $(cat "$T/err")"
ok "station profile check profiles/*.yaml"
run 0 "$STATION" profile check "$SOURCE_DIR/profiles"
grep -q "profiles: ok (3 profiles)$" "$T/out" || fail "directory check: $(cat "$T/out")"
ok "station profile check profiles/ (as a set)"

# The complete example of profiles/README.md is a valid profile.
mkdir -p "$T/readme"
# A copy: profiles read no file through a symbolic link.
cp -r "$SOURCE_DIR/profiles/templates" "$T/readme/templates"
awk '/^```yaml$/ { f = 1; next } /^```$/ { if (f) exit } f' "$SOURCE_DIR/profiles/README.md" \
	>"$T/readme/example.yaml"
run 0 "$STATION" profile check "$T/readme/example.yaml"
ok "the README's example profile"

# --- every broken profile fails with exactly its expected lines -----------------------------------
cd "$SOURCE_DIR/tests/profiles/bad"
count=0
for f in *.yaml; do
	sed -n 's/^# expect: //p' "$f" | while IFS= read -r line; do
		case "$line" in
		[0-9]*) echo "$f:$line" ;;
		*) echo "$line" ;;
		esac
	done >"$T/want"
	# Indented lines are the source line and caret under a syntax error, not errors.
	n=$(grep -vc '^ ' "$T/want")
	[ "$n" -gt 0 ] || fail "$f has no expectation"
	if [ "$n" -eq 1 ]; then
		echo "1 error in $f" >>"$T/want"
	else
		echo "$n errors in $f" >>"$T/want"
	fi
	run 1 "$STATION" profile check "$f"
	diff -u "$T/want" "$T/err" >"$T/diff" || fail "$f: $(cat "$T/diff")"
	[ ! -s "$T/out" ] || fail "$f reported ok: $(cat "$T/out")"
	count=$((count + 1))
done
[ "$count" -ge 25 ] || fail "only $count broken profiles"
ok "$count broken profiles, each with its file:line:col messages"

# One bad file among good ones: all are checked, the status says something failed.
run 1 "$STATION" profile check "$SOURCE_DIR/profiles/mcu-sensor.yaml" unknown-key.yaml \
	"$SOURCE_DIR/profiles/lmp-gateway.yaml"
grep -q "mcu-sensor.yaml: ok" "$T/out" || fail "good profile before a bad one not checked"
grep -q "lmp-gateway.yaml: ok" "$T/out" || fail "good profile after a bad one not checked"
grep -q "^unknown-key.yaml:5:3: unknown key 'vaildity_days' (did you mean 'validity_days'?)$" \
	"$T/err" || fail "mixed check lacks the error: $(cat "$T/err")"
run 1 "$STATION" profile check does-not-exist.yaml
grep -q "^does-not-exist.yaml:1:1: cannot read profile: No such file or directory$" "$T/err" ||
	fail "missing file: $(cat "$T/err")"
ok "good and bad profiles together"
cd "$T"

# --- render: golden files, byte for byte, with their modes -------------------------------------------
for g in lmp-gateway lmp-gateway-production mcu-sensor; do
	read -r -a args <"$GOLDEN/$g.args"
	rm -rf "$T/out-$g"
	run 0 "$STATION" profile render "$SOURCE_DIR/profiles/$g.yaml" "${args[@]}" \
		--cert "$INPUTS/cert.pem" --chain "$INPUTS/chain.pem" --root "$INPUTS/root.pem" \
		--out "$T/out-$g"
	diff -r "$GOLDEN/$g" "$T/out-$g" >"$T/diff" || fail "$g: $(cat "$T/diff")"
	while read -r mode path; do
		got=$(stat -c %a "$T/out-$g$path")
		[ "$got" = "${mode#0}" ] || fail "$g: $path has mode $got, expected $mode"
	done <"$GOLDEN/$g.files"
	[ "$(find "$T/out-$g" -type f | wc -l)" -eq "$(wc -l <"$GOLDEN/$g.files")" ] ||
		fail "$g: unexpected files"
done
ok "golden renders (files, bytes and modes)"

# The rendered files are a working device PKI: client.pem verifies against root.crt with
# client.chained, as the device's TLS stack will check it.
sota="$T/out-lmp-gateway/var/sota"
openssl verify -CAfile "$sota/root.crt" -untrusted "$sota/client.chained" "$sota/client.pem" \
	>/dev/null || fail "rendered certificate files do not verify"
ok "rendered client.pem verifies with client.chained and root.crt"

# --- render to stdout with placeholders -------------------------------------------------------------
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id imx8mm-lpddr4-evk
grep -q "^==> /var/sota/client.pem (mode 0644, [0-9]* bytes) <==$" "$T/out" ||
	fail "no header for client.pem: $(head -3 "$T/out")"
grep -q "^==> /var/sota/sota.toml (mode 0644, 579 bytes) <==$" "$T/out" ||
	fail "no header for sota.toml"
grep -q "PLACEHOLDER" "$T/out" || fail "placeholder certificate not marked"
grep -q "PLACEHOLDER" "$T/err" || fail "no notice about placeholder certificates"
grep -q '^primary_ecu_hardware_id = "imx8mm-lpddr4-evk"$' "$T/out" || fail "sota.toml not printed"
ok "render to stdout with PLACEHOLDER certificates"

# --- render names the CSR subject and warns when the board would not get this profile ----------------
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" \
	--device-id 6B3C7C2E-4F1A-4C1E-9D2B-2F0C8A1E5D3F --hardware-id imx8mm-lpddr4-evk --sku any
grep -qx "station profile render: the board's CSR must have the subject CN=6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f, OU=acme-factory" "$T/err" ||
	fail "no subject: $(cat "$T/err")"
! grep -q "warning" "$T/err" || fail "warning for a matching board: $(cat "$T/err")"
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway-production.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id imx8mm-lpddr4-evk \
	--sku acme-gw100-prod
grep -q "subject CN=6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f, OU=acme-factory, businessCategory=production$" "$T/err" ||
	fail "no production subject: $(cat "$T/err")"
! grep -q "warning" "$T/err" || fail "warning for a matching sku: $(cat "$T/err")"
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway-production.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id imx8mm-lpddr4-evk --sku acme-gw100
grep -q "warning: --sku 'acme-gw100' does not match .*: its match.sku is 'acme-gw100-prod'$" "$T/err" ||
	fail "no sku warning: $(cat "$T/err")"
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway-production.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id imx8mm-lpddr4-evk
grep -q "warning: .* applies only to boards reporting sku 'acme-gw100-prod'; no --sku given$" "$T/err" ||
	fail "no missing-sku warning: $(cat "$T/err")"
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/mcu-sensor.yaml" --device-id SN10-000042 \
	--hardware-id sn10-nrf9162
grep -q "warning: --hardware-id 'sn10-nrf9162' does not match .*: its match.hardware_ids are 'sn10-nrf9160', 'sn10-nrf9161'$" "$T/err" ||
	fail "no hardware id warning: $(cat "$T/err")"
ok "render names the CSR subject and warns about a hardware id or sku the profile does not match"

# --- request-style overrides and config dir ------------------------------------------------------------
run 0 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway-production.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id imx8mm-lpddr4-evk \
	--config-dir /data/sota --override 'pacman.tags="qa"' --override 'extra.note=' \
	--out "$T/out-ovr"
toml="$T/out-ovr/data/sota/sota.toml"
[ -f "$toml" ] || fail "config dir not applied: $(find "$T/out-ovr" -type f)"
grep -q '^tags = "qa"$' "$toml" || fail "request override did not win"
grep -q '^path = "/data/sota/"$' "$toml" || fail "config dir not in sota.toml"
[ "$(tail -2 "$toml")" = "$(printf '[extra]\n# note is not set')" ] || fail "new section: $(tail -3 "$toml")"
grep -q '^config = /data/sota/sota.toml$' "$T/out-ovr/etc/acme/device.conf" ||
	fail "template did not see the config dir"
ok "overrides and config dir"

# --- render --out never writes through a symbolic link inside DIR ---------------------------------
# A link below DIR (first level, deeper, or the file itself) pointing outside is refused and
# named; nothing is written where it points. DIR itself is the operator's and may be a link.
render_to() {
	run "$1" "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" \
		--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id imx8mm-lpddr4-evk \
		--out "$2"
}
mkdir -p "$T/elsewhere" "$T/link-first" "$T/link-deep/var" "$T/link-file/var/sota" \
	"$T/link-top-real"
echo keep >"$T/elsewhere/victim"
ln -s "$T/elsewhere" "$T/link-first/var"
ln -s "$T/elsewhere" "$T/link-deep/var/sota"
ln -s "$T/elsewhere/victim" "$T/link-file/var/sota/client.pem"
for c in "link-first/var" "link-deep/var/sota" "link-file/var/sota/client.pem"; do
	render_to 1 "$T/${c%%/*}"
	grep -qx "station profile render: cannot write $T/${c%%/*}/var/sota/client.pem: '$T/$c' is a symbolic link, which is not followed" "$T/err" ||
		fail "link $c not refused: $(cat "$T/err")"
done
[ "$(ls -A "$T/elsewhere")" = victim ] || fail "written through a link: $(ls -A "$T/elsewhere")"
[ "$(cat "$T/elsewhere/victim")" = keep ] || fail "the linked file was overwritten"
ln -s "$T/link-top-real" "$T/link-top"
render_to 0 "$T/link-top"
[ -f "$T/link-top-real/var/sota/client.pem" ] || fail "DIR given as a link not written"
ok "render --out refuses symbolic links inside DIR"

# --- render refuses what a board must not get -----------------------------------------------------------
run 1 "$STATION" profile render "$SOURCE_DIR/profiles/mcu-sensor.yaml" --device-id SN10-42 \
	--hardware-id sn10-nrf9160
grep -q "device id 'SN10-42' is not 'SN10-' followed by 6 digits" "$T/err" ||
	fail "bad sequence id: $(cat "$T/err")"
run 1 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" --device-id not-a-uuid \
	--hardware-id imx8mm-lpddr4-evk
grep -q "does not match" "$T/err" || fail "bad uuid: $(cat "$T/err")"
run 1 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id 'imx8"mm'
grep -q "hardware id" "$T/err" || fail "quote in hardware id: $(cat "$T/err")"
run 1 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" \
	--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f --hardware-id hw --cert "$T/nope.pem"
grep -q "cannot read $T/nope.pem" "$T/err" || fail "missing cert: $(cat "$T/err")"
run 2 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" --hardware-id hw
grep -q -- "--device-id is required" "$T/err" || fail "missing --device-id: $(cat "$T/err")"
run 2 "$STATION" profile render "$SOURCE_DIR/profiles/lmp-gateway.yaml" --device-id x \
	--hardware-id hw --override nodot
ok "render refusals"
