#!/usr/bin/env bash
# What a profile reads and what it writes stays where it belongs, in every command that loads
# profiles: `station profile check`, `profile render`, `serve` and `run` refuse, at the
# file:line:col of the key, a template or parent profile outside the profile's directory
# (a '..', an absolute path, a symbolic link to a file or a directory, at any depth), and a
# board path the wire protocol cannot carry (a space, a component starting with '.'). No
# PIN is ever printed, and `run` records no certificate for a profile it cannot deliver.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
PIN=$(cat "$pki/pin")
P="$T/profiles"
mkdir -p "$P/templates/deeper"
echo "id={device_id}" >"$P/templates/deeper/ok.tmpl"
ln -s ../pki/pin "$P/pin-link"
ln -s ../pki "$P/pki-link"
ln -s "$pki" "$P/templates/deeper/abs-link"
ln -s ../../../pki/pin "$P/templates/deeper/pin-link"

# profile NAME LINE3 LINE4: P/NAME.yaml, a valid profile but for its file entry's two lines
# (at lines 7 and 8, values at column 11 / 15).
profile() {
	cat >"$P/$1.yaml" <<EOF
sku: $1
factory: acme-factory
sota:
  gateway: https://gateway.example:8443
  ostree_server: https://ostree.example:8443
files:
  - $2
    $3
EOF
}

# refused NAME LINE COL MESSAGE: check and render of P/NAME.yaml fail with FILE:LINE:COL:
# MESSAGE (MESSAGE a prefix of the whole), and print no PIN.
refused() {
	local f="$P/$1.yaml" cmd
	local -a args
	for cmd in check render; do
		args=(profile check "$f")
		[ $cmd = check ] || args=(profile render "$f" --hardware-id sim-board
			--device-id 6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f)
		if "$STATION" "${args[@]}" >"$T/out" 2>"$T/err"; then
			fail "profile $cmd $1: accepted: $(cat "$T/out")"
		fi
		grep -qF -- "$f:$2:$3: $4" "$T/err" || fail "profile $cmd $1: $(cat "$T/err")"
		if grep -qF -- "$PIN" "$T/out" "$T/err"; then fail "profile $cmd $1 printed the PIN"; fi
	done
	ok "$1: check and render refuse it at $2:$3"
}

# refuse NAME ENTRY1 ENTRY2 LINE COL MESSAGE: profile, then refused.
refuse() {
	profile "$1" "$2" "$3"
	refused "$1" "$4" "$5" "$6"
}

refuse tmpl-dotdot "path: /etc/x" "template: ../pki/pin" \
	8 15 "cannot read template '../pki/pin': '..' leads out of the directory"
refuse tmpl-deep-dotdot "path: /etc/x" "template: templates/deeper/../../../pki/pin" \
	8 32 "cannot read template 'templates/deeper/../../../pki/pin': '..'"
refuse tmpl-absolute "path: /etc/x" "template: $pki/pin" \
	8 15 "cannot read template '$pki/pin': an absolute path leads out"
refuse tmpl-link "path: /etc/x" "template: pin-link" \
	8 15 "cannot read template 'pin-link': 'pin-link' is a symbolic link"
refuse tmpl-dir-link "path: /etc/x" "template: pki-link/pin" \
	8 15 "cannot read template 'pki-link/pin': 'pki-link' is a symbolic link"
refuse tmpl-deep-link "path: /etc/x" "template: templates/deeper/pin-link" \
	8 32 "cannot read template 'templates/deeper/pin-link': 'templates/deeper/pin-link' is a symbolic link"
refuse tmpl-deep-dir-link "path: /etc/x" "template: templates/deeper/abs-link/pin" \
	8 32 "cannot read template 'templates/deeper/abs-link/pin': 'templates/deeper/abs-link' is a symbolic link"
printf 'extends: ../pki/run.yaml\n' >"$P/parent-outside.yaml"
cat "$P/tmpl-link.yaml" >>"$P/parent-outside.yaml"
sed -i 's/^sku: tmpl-link/sku: parent-outside/' "$P/parent-outside.yaml"
refused parent-outside 1 10 "cannot read parent profile '../pki/run.yaml': '..' leads out"
refuse wire-space "path: /var/sota/my notes.txt" "content: x" \
	7 23 "path '/var/sota/my notes.txt' cannot be written over the board protocol: 'my notes.txt' has a character"
refuse wire-hidden "path: /var/sota/.hidden" "content: x" \
	7 21 "path '/var/sota/.hidden' cannot be written over the board protocol: '.hidden' has a component that starts with '.'"
refuse wire-hidden-dir "path: /etc/acme/.d/x" "content: x" \
	7 21 "path '/etc/acme/.d/x' cannot be written over the board protocol: 'etc/acme/.d/x' has a component that starts with '.'"

# Inside the profile's directory, a template at any depth is read.
profile tmpl-inside "path: /etc/x" "template: templates/deeper/ok.tmpl"
"$STATION" profile check "$P/tmpl-inside.yaml" >"$T/out" 2>&1 || fail "inside: $(cat "$T/out")"
ok "a template inside the profile's directory is read"

# serve: a profiles directory with one such profile does not start, and says where.
mkdir -p "$T/serve-profiles"
cp "$P/tmpl-link.yaml" "$T/serve-profiles/"
ln -s ../pki/pin "$T/serve-profiles/pin-link"
cp "$pki/station.yaml" "$pki/serve.yaml"
cat >>"$pki/serve.yaml" <<EOF
profiles: $T/serve-profiles
http:
  listen: 127.0.0.1:0
EOF
if timeout 60 "$STATION" serve -c "$pki/serve.yaml" >"$T/out" 2>"$T/err"; then
	fail "serve started with a profile that reads outside its directory"
fi
grep -qF "$T/serve-profiles/tmpl-link.yaml:8:15: cannot read template 'pin-link': 'pin-link' is a symbolic link" "$T/err" ||
	fail "serve: $(cat "$T/err")"
if grep -qF -- "$PIN" "$T/out" "$T/err"; then fail "serve printed the PIN"; fi
ok "serve refuses to start, naming the profile's line and column"

# run: the board's profile writes a path no board can be sent. The station says so at once,
# and no certificate is issued for the board that waits in its fixture.
sed -i 's#^  - set: foundries#  - set: foundries\n  - path: /var/sota/my notes.txt\n    content: x#' "$pki/sim-gw.yaml"
start_simboard 1 --seed 3
if timeout 120 "$STATION" run -c "$pki/run.yaml" --until-idle --no-view >"$T/out" 2>"$T/err"; then
	fail "run started with a path the board protocol cannot carry"
fi
grep -qF "$pki/sim-gw.yaml:12:23: path '/var/sota/my notes.txt' cannot be written over the board protocol" "$T/err" ||
	fail "run: $(cat "$T/err")"
[ ! -e "$LINE_DIR/board0/files/client.pem" ] || fail "run: the board received a certificate"
if "$STATION" ledger -c "$pki/run.yaml" list >"$T/ledger.txt" 2>/dev/null; then
	if grep -q "sim-gw" "$T/ledger.txt"; then fail "run recorded a certificate: $(cat "$T/ledger.txt")"; fi
fi
ok "run refuses the profile before any board is signed"
