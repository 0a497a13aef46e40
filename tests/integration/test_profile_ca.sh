#!/usr/bin/env bash
# `station profile check -c STATION.yaml` checks profiles against the station's CA: a profile
# whose factory is not the CA certificate's OU is refused (its boards' CSRs would all be),
# for files and directories alike; one with the CA's OU passes.
. "$(dirname "$0")/../lib/common.sh"
pki="$T/pki"
dev_pki "$pki" acme-factory

run() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "$* exited $rc, expected $want: $(cat "$T/err")"
}

mkdir -p "$T/good" "$T/bad"
cp "$SOURCE_DIR/profiles/mcu-sensor.yaml" "$T/good/"
sed 's/^factory: acme-factory$/factory: other-factory/' "$SOURCE_DIR/profiles/mcu-sensor.yaml" \
	>"$T/bad/other.yaml"
grep -q '^factory: other-factory$' "$T/bad/other.yaml" || fail "fixture: no factory line"

run 0 "$STATION" profile check -c "$pki/station.yaml" "$T/good/mcu-sensor.yaml" "$T/good"
grep -q "mcu-sensor.yaml: ok" "$T/out" || fail "good profile not listed: $(cat "$T/out")"
grep -q "^$T/good: ok (1 profiles)$" "$T/out" || fail "good directory: $(cat "$T/out")"
ok "a profile whose factory is the CA's OU passes"

want="factory 'other-factory' is not the station CA's OU 'acme-factory'"
run 1 "$STATION" profile check -c "$pki/station.yaml" "$T/bad/other.yaml"
grep -q "^$T/bad/other.yaml: $want" "$T/err" || fail "file: $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "reported ok: $(cat "$T/out")"
run 1 "$STATION" profile check --config "$pki/station.yaml" "$T/bad"
grep -q "other.yaml: $want" "$T/err" || fail "directory: $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "directory reported ok: $(cat "$T/out")"
# Without -c the same profile is valid: the CA is what it does not fit.
run 0 "$STATION" profile check "$T/bad/other.yaml"
ok "a factory that is not the CA's OU is refused, for a file and a directory"

run 1 "$STATION" profile check -c "$T/nope.yaml" "$T/good"
grep -q "nope.yaml" "$T/err" || fail "missing configuration: $(cat "$T/err")"
run 2 "$STATION" profile check -c "$pki/station.yaml"
ok "a missing configuration and no profile are refused"
