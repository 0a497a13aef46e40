#!/usr/bin/env bash
# `station serve` reloads its profiles on SIGHUP the way `station run` does (one loading
# path): a profile added to the directory serves the boards it describes from then on, and
# the log says how many profiles are in force; a reload that meets a broken profile (or a
# configuration that no longer loads) says why and keeps the profiles it had, which go on
# serving.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/http.sh"
. "$(dirname "$0")/../lib/line.sh"
FACTORY=reload-factory
pki="$T/pki"
dev_pki "$pki" $FACTORY
mkdir -p "$pki/profiles"
gateway_profile "$pki/profiles/a.yaml" reload-a hw-a $FACTORY
make_token "$T"
cp "$pki/station.yaml" "$pki/serve.yaml"
printf 'profiles: profiles\nhttp:\n  listen: 127.0.0.1:0\n  token_file: %s\n' "$T/tokens.txt" \
	>>"$pki/serve.yaml"
start_server "$pki/serve.yaml"

# register NAME HWID: a device of HWID asks; prints the status.
register() {
	local d="$T/$1" u
	u=$(cat /proc/sys/kernel/random/uuid)
	key_csr "$d" "$u" $FACTORY
	tool_body "$u" "$2" "$d/csr.pem" >"$d/body.json"
	post "$d/body.json" "$d/answer.json"
}

# hup COUNT: SIGHUP, then the COUNT-th SIGHUP line of the log.
hup() {
	kill -HUP "$SERVE_PID"
	wait_for_line "$T/serve.err" 'SIGHUP: ' 60 "$SERVE_PID" "$1" || fail "no SIGHUP line: $(cat "$T/serve.err")"
	grep 'SIGHUP: ' "$T/serve.err" | sed -n "${1}p"
}

[ "$(register d1 hw-a)" = 201 ] || fail "hw-a before the reload: $(cat "$T/d1/answer.json")"
code=$(register d2 hw-b)
[ "$code" = 400 ] && grep -q PROFILE_NOMATCH "$T/d2/answer.json" ||
	fail "hw-b without its profile: $code $(cat "$T/d2/answer.json")"

# A broken profile in the directory: the reload is refused, the old set stays.
gateway_profile "$pki/profiles/b.yaml" reload-b hw-b $FACTORY "unknown_key: 1"
line=$(hup 1)
case $line in *"keeping the profiles in force"*) ;; *) fail "broken reload: $line" ;; esac
grep -q "b.yaml:[0-9]*:[0-9]*: unknown key 'unknown_key'" "$T/serve.err" ||
	fail "the broken profile is not named at file:line:col: $(cat "$T/serve.err")"
[ "$(register d3 hw-a)" = 201 ] || fail "hw-a after a refused reload: $(cat "$T/d3/answer.json")"
ok "a reload that meets a broken profile is refused at file:line:col; the old profiles serve on"

# The profile fixed: the reload takes it, counted as run counts it.
gateway_profile "$pki/profiles/b.yaml" reload-b hw-b $FACTORY
line=$(hup 2)
case $line in *"SIGHUP: 2 profiles reloaded"*) ;; *) fail "reload: $line" ;; esac
[ "$(register d4 hw-b)" = 201 ] || fail "hw-b after the reload: $(cat "$T/d4/answer.json")"
[ "$(register d5 hw-a)" = 201 ] || fail "hw-a after the reload: $(cat "$T/d5/answer.json")"
ok "SIGHUP: 2 profiles reloaded; the new profile serves its boards, the old one its own"

# A configuration that no longer loads: refused, the profiles in force stay.
cp "$pki/serve.yaml" "$T/serve.yaml.good"
echo "no_such_key: 1" >>"$pki/serve.yaml"
line=$(hup 3)
case $line in *"keeping the profiles in force"*) ;; *) fail "bad configuration: $line" ;; esac
[ "$(register d6 hw-b)" = 201 ] || fail "hw-b after a refused reload: $(cat "$T/d6/answer.json")"
ok "a configuration that does not load keeps the profiles in force"
stop_server

# A SIGHUP while serve still sets up (its CA key in a module slow to start: fixtures/slowhsm,
# whose C_Initialize waits 1.5 s and says so first) is carried out once it serves; it does
# not end it.
cp "$T/serve.yaml.good" "$pki/serve.yaml"
sed "/^  key: /s#module-path=[^\"]*#module-path=$BUILD_DIR/fixtures/slowhsm/libslowhsm.so#" \
	"$pki/serve.yaml" >"$pki/slow.yaml"
grep -q "libslowhsm.so" "$pki/slow.yaml" || fail "slow.yaml: no slow module: $(cat "$pki/slow.yaml")"
exec 3< <(SLOWHSM_INIT_MS=1500 exec "$STATION" serve -c "$pki/slow.yaml" 2>>"$T/slow.err")
SERVE_PID=$!
wait_for_line "$T/slow.err" "slowhsm: C_Initialize waits" 30 "$SERVE_PID" ||
	fail "serve did not reach its signer: $(cat "$T/slow.err")"
kill -HUP "$SERVE_PID"
read -r -t 60 -u 3 line || fail "serve ended after a SIGHUP during set-up: $(cat "$T/slow.err")"
case $line in "station: serving on "*) ;; *) fail "unexpected first line: $line" ;; esac
wait_for_line "$T/slow.err" 'SIGHUP: 2 profiles reloaded' 30 "$SERVE_PID" ||
	fail "the SIGHUP sent during set-up was not carried out: $(cat "$T/slow.err")"
stop_server
ok "a SIGHUP during set-up is carried out once serve runs"
