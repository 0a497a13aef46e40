#!/usr/bin/env bash
# `station ledger supersede`, the remedy ledger.h promises for a stranded intent: an intent
# for one key (left by a crash) keeps its device id from an intent for another key
# (LEDGER_DUP_ID) until it is superseded; then the device id may be issued again. Only an
# intent is superseded: a row with a certificate, an intent superseded already, a row that
# is not there and a missing argument are refused, naming the row, and change nothing.
. "$(dirname "$0")/../lib/common.sh"

HELPER="$BUILD_DIR/tests/test_ledger"
[ -x "$HELPER" ] || fail "helper $HELPER is not built"
led="$T/ledger.db"
dev=$(cat /proc/sys/kernel/random/uuid)
openssl ecparam -name prime256v1 -genkey -noout -out "$T/ca.key" 2>/dev/null
openssl req -x509 -new -key "$T/ca.key" -subj "/CN=ca/OU=acme" -days 30 -out "$T/ca.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/d.key" 2>/dev/null
openssl req -new -key "$T/d.key" -subj "/CN=$(cat /proc/sys/kernel/random/uuid)/OU=acme" \
	-out "$T/d.csr"
openssl x509 -req -in "$T/d.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -set_serial 0x4001 \
	-days 30 -out "$T/d.pem" 2>/dev/null
"$HELPER" fill "$led" delivered A1 "$T/d.pem"
"$HELPER" intent "$led" "$dev" 00c0ffee00c0ffee

# The stranded intent blocks the device id for another key.
"$HELPER" intent "$led" "$dev" 00beef00beef00be 2>"$T/err" &&
	fail "a second intent for $dev was accepted while the first stands"
grep -q "LEDGER_DUP_ID\|intent" "$T/err" || fail "second intent refused for another reason: $(cat "$T/err")"
ok "a stranded intent blocks its device id for another key"

"$STATION" ledger --ledger "$led" supersede 2 >"$T/out" || fail "supersede 2: $(cat "$T/out")"
grep -q "^row 2 (serial 00c0ffee00c0ffee, device id $dev) superseded" "$T/out" ||
	fail "supersede says: $(cat "$T/out")"
"$STATION" ledger --ledger "$led" list >"$T/list"
grep -q "^2 .*00c0ffee00c0ffee .*$dev .*failed .*superseded" "$T/list" ||
	fail "row 2 is not failed, superseded: $(cat "$T/list")"
"$STATION" ledger --ledger "$led" check --ca "$T/ca.pem" >"$T/check" 2>&1 ||
	fail "check after supersede: $(cat "$T/check")"
if grep -q "possibly signed: row 2" "$T/check"; then fail "row 2 is still possibly signed"; fi
"$HELPER" intent "$led" "$dev" 00beef00beef00be || fail "the device id is still blocked"
ok "supersede ID: the intent is failed \"superseded\" and the device id is free again"

# What is not an intent, or not there, is refused and nothing changes.
sqlite3 "$led" "SELECT id, state, coalesce(reason, '') FROM certificates ORDER BY id" >"$T/before"
expect_fail "a delivered row" "row 1.*an intent|an intent.*row 1" \
	"$STATION" ledger --ledger "$led" supersede 1
expect_fail "an intent superseded already (by serial)" "an intent" \
	"$STATION" ledger --ledger "$led" supersede 00c0ffee00c0ffee
expect_fail "a row that is not there" "no row with id or serial '99'" \
	"$STATION" ledger --ledger "$led" supersede 99
sqlite3 "$led" "SELECT id, state, coalesce(reason, '') FROM certificates ORDER BY id" >"$T/after"
cmp -s "$T/before" "$T/after" || fail "a refused supersede changed the ledger: $(diff "$T/before" "$T/after")"
rc=0
"$STATION" ledger --ledger "$led" supersede >"$T/out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "supersede without an id: exit status $rc"
grep -q "expected one row id or serial" "$T/out" || fail "supersede without an id: $(cat "$T/out")"
ok "refused for a row with a certificate, one superseded already, one not there, no id"
