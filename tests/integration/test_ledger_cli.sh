#!/usr/bin/env bash
# `station ledger` list/show/export/check over ledgers holding real certificates: a PKI and
# device certificates made with the openssl CLI, recorded through the ledger API by the
# test_ledger helper, then read back by the real station binary. check must pass on a clean
# ledger and name the row of every tampered certificate, mismatched hash or duplicate.
. "$(dirname "$0")/../lib/common.sh"

HELPER="$BUILD_DIR/tests/test_ledger"
[ -x "$HELPER" ] || fail "helper $HELPER is not built"

# A factory root and a local (device) CA, as the station's ca: section expects them.
pki="$T/pki"
mkdir -p "$pki"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/root.key" 2>/dev/null
openssl req -x509 -new -key "$pki/root.key" -subj "/CN=Factory-CA/OU=acme" -days 7300 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectKeyIdentifier=hash" -out "$pki/factory-root.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/local-ca.key" 2>/dev/null
openssl req -new -key "$pki/local-ca.key" -subj "/CN=local-ca/OU=acme" -out "$pki/local-ca.csr"
cat >"$pki/ca.ext" <<EOF
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
openssl x509 -req -in "$pki/local-ca.csr" -CA "$pki/factory-root.pem" -CAkey "$pki/root.key" \
	-set_serial 0x1001 -days 3650 -extfile "$pki/ca.ext" -out "$pki/local-ca.pem" 2>/dev/null
cat >"$pki/dev.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=critical,clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
cat >"$T/station.yaml" <<EOF
ca:
  signer: file
  key: pki/local-ca.key
  cert: pki/local-ca.pem
  root: pki/factory-root.pem
ledger: ledger.db
EOF

# device_cert NAME CN [CA_CERT CA_KEY]: a P-256 key and a certificate in $T/NAME.pem.
device_cert() {
	local name=$1 cn=$2 ca=${3:-$pki/local-ca.pem} cakey=${4:-$pki/local-ca.key}
	openssl ecparam -name prime256v1 -genkey -noout -out "$T/$name.key" 2>/dev/null
	openssl req -new -key "$T/$name.key" -subj "/CN=$cn/OU=acme" -out "$T/$name.csr"
	openssl x509 -req -in "$T/$name.csr" -CA "$ca" -CAkey "$cakey" \
		-set_serial "0x$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^./4/')" \
		-days 7300 -extfile "$pki/dev.ext" -out "$T/$name.pem" 2>/dev/null
}

uuid() { cat /proc/sys/kernel/random/uuid; }

for i in 1 2 3 4; do
	device_cert "dev$i" "$(uuid)"
done
led="$T/ledger.db"
"$HELPER" fill "$led" delivered A1 "$T/dev1.pem" "$T/dev2.pem"
"$HELPER" fill "$led" signed A2 "$T/dev3.pem"
"$HELPER" fill "$led" failed A3 "$T/dev4.pem"
intent_id=$(uuid)
"$HELPER" intent "$led" "$intent_id" 00c0ffee00c0ffee
"$HELPER" flag "$led" "$(uuid)" "device id recorded with another key"
ok "ledger with 4 certificates, 1 intent and 1 flag recorded"

# --help for the command and every subcommand.
for sub in "" list show export check flags; do
	# shellcheck disable=SC2086
	"$STATION" ledger $sub --help >"$T/help" || fail "ledger $sub --help failed"
	grep -q "usage: station ledger" "$T/help" || fail "ledger $sub --help prints no usage"
done
ok "--help for ledger and its 5 commands"

# list: a header and one line per row, --state filters.
"$STATION" ledger -c "$T/station.yaml" list >"$T/list"
[ "$(wc -l <"$T/list")" -eq 6 ] || fail "list: expected 6 lines: $(cat "$T/list")"
head -1 "$T/list" | has "^ID .*SERIAL .*DEVICE ID .*PROFILE .*SLOT .*STATE .*CREATED .*REASON" ||
	fail "list header: $(head -1 "$T/list")"
dev1_cn=$(openssl x509 -in "$T/dev1.pem" -noout -subject -nameopt multiline | sed -n 's/ *commonName *= //p')
grep -q "^1 .*$dev1_cn .*acme-gw .*A1 .*delivered" "$T/list" || fail "list lacks row 1: $(cat "$T/list")"
grep -q "^4 .*failed .*board left during write$" "$T/list" || fail "list lacks the failed row"
grep -q "^5 .*00c0ffee00c0ffee .*$intent_id .*intent " "$T/list" || fail "list lacks the intent"
"$STATION" ledger -c "$T/station.yaml" list --state delivered >"$T/list"
[ "$(wc -l <"$T/list")" -eq 3 ] || fail "list --state delivered: $(cat "$T/list")"
expect_fail "list --state with an unknown state" "unknown state 'gone'" \
	"$STATION" ledger -c "$T/station.yaml" list --state gone
ok "list and list --state"

# show by id and by serial: every field, and the certificate exactly as issued.
"$STATION" ledger -c "$T/station.yaml" show 1 >"$T/show"
for f in "id: *1" "serial:" "device id: *$dev1_cn" "profile: *acme-gw" "station: *it-station" \
	"slot: *A1" "state: *delivered" "pubkey sha256: *[0-9a-f]{64}" "not after: *20"; do
	grep -qE "^$f" "$T/show" || fail "show 1 lacks '$f': $(cat "$T/show")"
done
sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$T/show" >"$T/show.pem"
[ "$(openssl x509 -in "$T/show.pem" -outform DER | od -An -tx1)" = \
	"$(openssl x509 -in "$T/dev1.pem" -outform DER | od -An -tx1)" ] || fail "show 1: certificate differs"
serial3=$(openssl x509 -in "$T/dev3.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
"$STATION" ledger --ledger "$led" show "$serial3" | has "^id: *3$" || fail "show by serial"
"$STATION" ledger --ledger "$led" show 5 | has "possibly signed" || fail "show intent"
expect_fail "show of an unknown row" "no row with id or serial '999'" \
	"$STATION" ledger --ledger "$led" show 999
ok "show by id and by serial"

# export csv: RFC 4180 (CRLF), header + 5 rows, the certificate as base64 DER.
"$STATION" ledger -c "$T/station.yaml" export --format csv -o "$T/export.csv"
[ "$(wc -l <"$T/export.csv")" -eq 6 ] || fail "csv: expected 6 lines"
[ "$(grep -c $'\r$' "$T/export.csv")" -eq 6 ] || fail "csv: lines do not end in CRLF"
head -1 "$T/export.csv" | tr -d '\r' | has -x \
	"id,serial,device_id,profile,station,slot,state,reason,csr_sha256,pubkey_sha256,created,signed_at,delivered_at,not_before,not_after,cert_der_base64" ||
	fail "csv header: $(head -1 "$T/export.csv")"
sed -n 2p "$T/export.csv" | tr -d '\r' | cut -d, -f16 | base64 -d >"$T/row1.der"
cmp -s "$T/row1.der" <(openssl x509 -in "$T/dev1.pem" -outform DER) || fail "csv: row 1 certificate differs"
[ "$(sed -n 2p "$T/export.csv" | cut -d, -f10)" = \
	"$(openssl x509 -in "$T/dev1.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -c1-64)" ] ||
	fail "csv: row 1 pubkey_sha256 is not the SHA-256 of the certificate's SubjectPublicKeyInfo"
ok "export --format csv"

# export jsonl: one object per line.
"$STATION" ledger -c "$T/station.yaml" export --format jsonl --cert pem >"$T/export.jsonl"
[ "$(wc -l <"$T/export.jsonl")" -eq 5 ] || fail "jsonl: expected 5 lines"
[ "$(grep -c '^{"id":[0-9]*,"serial":".*}$' "$T/export.jsonl")" -eq 5 ] || fail "jsonl: lines are not objects"
if command -v jq >/dev/null; then
	jq -e -s 'length == 5 and .[0].state == "delivered" and (.[0].cert_pem | startswith("-----BEGIN CERTIFICATE-----\n"))
		and .[4].state == "intent" and .[4].cert_pem == null and .[3].reason == "board left during write"' \
		"$T/export.jsonl" >/dev/null || fail "jsonl: jq finds wrong values"
	jq -r 'select(.id == 1) | .cert_pem' "$T/export.jsonl" | openssl x509 -noout -subject | has "$dev1_cn" ||
		fail "jsonl: row 1 PEM"
fi
"$STATION" ledger -c "$T/station.yaml" export --format jsonl --cert none --state failed >"$T/failed.jsonl"
[ "$(wc -l <"$T/failed.jsonl")" -eq 1 ] && ! grep -q cert_ "$T/failed.jsonl" || fail "jsonl --cert none --state failed"
expect_fail "export without --format" "--format must be csv or jsonl" \
	"$STATION" ledger -c "$T/station.yaml" export
ok "export --format jsonl"

# check on a clean ledger: passes, lists the intent as possibly signed.
"$STATION" ledger -c "$T/station.yaml" check >"$T/check" || fail "check failed on a clean ledger: $(cat "$T/check")"
grep -q "^possibly signed: row 5 (serial 00c0ffee00c0ffee, device id $intent_id" "$T/check" ||
	fail "check does not list the intent: $(cat "$T/check")"
grep -q "4 certificates verified.*1 possibly signed, 0 problems" "$T/check" || fail "check summary: $(cat "$T/check")"
grep -q "1 refused board flagged" "$T/check" || fail "check does not mention the flag"
"$STATION" ledger --ledger "$led" check --ca "$pki/local-ca.pem" >/dev/null || fail "check --ledger --ca"
expect_fail "check without a CA" "no CA certificate" "$STATION" ledger --ledger "$led" check
"$STATION" ledger -c "$T/station.yaml" flags | has "slot Z8 .*device id recorded with another key" ||
	fail "flags"
ok "check passes on a clean ledger"

# Tampering: one byte of row 2's certificate, row 3's key hash.
cp "$led" "$T/clean.db"
hex=$(sqlite3 "$led" "SELECT hex(cert_der) FROM certificates WHERE id = 2")
last=${hex: -2}
new=$(printf '%02X' $((0x$last ^ 0x01)))
sqlite3 "$led" "UPDATE certificates SET cert_der = x'${hex:0:${#hex}-2}$new' WHERE id = 2"
sqlite3 "$led" "UPDATE certificates SET pubkey_sha256 = randomblob(32) WHERE id = 3"
if "$STATION" ledger -c "$T/station.yaml" check >"$T/check" 2>"$T/err"; then
	fail "check passed on a tampered ledger"
fi
grep -q "^problem: row 2 (serial .*): certificate signature does not verify" "$T/check" ||
	fail "check does not name row 2: $(cat "$T/check")"
grep -q "^problem: row 3 (serial $serial3, .*public key sha256:.* differs" "$T/check" ||
	fail "check does not name row 3: $(cat "$T/check")"
[ "$(grep -c '^problem:' "$T/check")" -eq 2 ] || fail "check: expected 2 problems: $(cat "$T/check")"
grep -q "2 problems in $led" "$T/err" || fail "check stderr: $(cat "$T/err")"
ok "check names a tampered certificate and a mismatched key hash"

# A certificate signed by another CA, and a device id certified twice.
cp "$T/clean.db" "$T/dup.db"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/rogue-ca.key" 2>/dev/null
openssl req -x509 -new -key "$T/rogue-ca.key" -subj "/CN=local-ca/OU=acme" -days 30 -out "$T/rogue-ca.pem"
device_cert rogue "$(uuid)" "$T/rogue-ca.pem" "$T/rogue-ca.key"
device_cert again "$dev1_cn"
"$HELPER" fill "$T/dup.db" delivered B1 "$T/rogue.pem" "$T/again.pem"
if "$STATION" ledger --ledger "$T/dup.db" check --ca "$pki/local-ca.pem" >"$T/check" 2>/dev/null; then
	fail "check passed with a rogue certificate and a duplicate device id"
fi
grep -q "^problem: row 6 .*signature does not verify" "$T/check" || fail "rogue row 6: $(cat "$T/check")"
grep -q "^problem: device id $dev1_cn is in 2 rows: 1 7$" "$T/check" || fail "duplicate device id: $(cat "$T/check")"
"$STATION" ledger --ledger "$T/dup.db" check --ca "$pki/local-ca.pem" --allow-reissue >"$T/check" 2>/dev/null &&
	fail "check passed with a rogue certificate"
grep -q "^note: device id $dev1_cn is in 2 rows" "$T/check" || fail "--allow-reissue: $(cat "$T/check")"
[ "$(grep -c '^problem:' "$T/check")" -eq 1 ] || fail "--allow-reissue: $(cat "$T/check")"
ok "check reports a foreign signature and a device id certified twice"

# Files that are not ledgers, and a ledger from a newer station.
printf 'serial,device\n%0200d\n' 0 >"$T/not-a-ledger.db"
expect_fail "a CSV file as ledger" "not-a-ledger.db: .*not a SQLite database" \
	"$STATION" ledger --ledger "$T/not-a-ledger.db" list
cp "$T/clean.db" "$T/future.db"
sqlite3 "$T/future.db" "PRAGMA user_version = 7"
expect_fail "a ledger from a newer station" "future.db: schema version 7 is newer" \
	"$STATION" ledger --ledger "$T/future.db" list
expect_fail "a missing ledger" "missing.db: No such file" "$STATION" ledger --ledger "$T/missing.db" list
[ ! -e "$T/missing.db" ] || fail "reading a missing ledger created it"
expect_fail "no ledger named" "give -c STATION.yaml or --ledger FILE" "$STATION" ledger list
ok "foreign, newer and missing files refused with the file named"

# A ledger of an older schema is upgraded on opening, with a word on stderr (version 4
# rebuilds its tables: a pause for a large ledger), its rows as they were. A row that the
# rebuilt table's CHECK refuses (a hand-edited file) stops the upgrade, which names the
# constraint and the first such row of either table, and leaves the file as it was.
cp "$T/clean.db" "$T/old.db"
sqlite3 "$T/old.db" "PRAGMA user_version = 3"
"$STATION" ledger --ledger "$T/clean.db" list >"$T/list.clean" 2>/dev/null
"$STATION" ledger --ledger "$T/old.db" list >"$T/list.old" 2>"$T/err.old" ||
	fail "old ledger: $(cat "$T/err.old")"
grep -q "old.db: upgrading its schema from version 3 to 4" "$T/err.old" ||
	fail "no word of the upgrade: $(cat "$T/err.old")"
cmp -s "$T/list.clean" "$T/list.old" || fail "rows changed: $(diff "$T/list.clean" "$T/list.old")"
[ "$(sqlite3 "$T/old.db" "PRAGMA user_version")" = 4 ] || fail "old.db not at version 4"
"$STATION" ledger --ledger "$T/old.db" list >/dev/null 2>"$T/err.old"
[ ! -s "$T/err.old" ] || fail "upgraded twice: $(cat "$T/err.old")"
cp "$T/clean.db" "$T/odd.db"
last=$(sqlite3 "$T/odd.db" "SELECT max(id) FROM certificates")
[ "$last" -gt 2 ] || fail "clean.db has $last certificates; the test wants three or more"
sqlite3 "$T/odd.db" "PRAGMA ignore_check_constraints = ON;
	UPDATE certificates SET state = 'lost' WHERE id IN (2, $last); PRAGMA user_version = 3"
expect_fail "an upgrade over a row its CHECK refuses" \
	"odd.db: migrating the schema from version 3: CHECK constraint failed: state.* \(row 2 of certificates\)" \
	"$STATION" ledger --ledger "$T/odd.db" list
[ "$(sqlite3 "$T/odd.db" "PRAGMA user_version; SELECT state FROM certificates WHERE id = 2")" = \
	"$(printf '3\nlost')" ] || fail "a refused upgrade changed the ledger"
cp "$T/clean.db" "$T/odd2.db"
attempt=$(sqlite3 "$T/odd2.db" "PRAGMA ignore_check_constraints = ON;
	INSERT INTO attempts (time, station, outcome) VALUES (1, 'st', 'pass');
	INSERT INTO attempts (time, station, outcome) VALUES (2, 'st', 'maybe');
	INSERT INTO attempts (time, station, outcome) VALUES (3, 'st', 'maybe');
	PRAGMA user_version = 3; SELECT min(id) FROM attempts WHERE outcome = 'maybe'")
expect_fail "an upgrade over an attempt its CHECK refuses" \
	"odd2.db: migrating the schema from version 3: CHECK constraint failed: outcome.* \(row $attempt of attempts\)" \
	"$STATION" ledger --ledger "$T/odd2.db" list
[ "$(sqlite3 "$T/odd2.db" "PRAGMA user_version; SELECT outcome FROM attempts WHERE id = $attempt")" = \
	"$(printf '3\nmaybe')" ] || fail "a refused upgrade changed the ledger"
ok "an older ledger upgraded with a word, its rows kept; a refused upgrade leaves it as it was"

# check judges a device id certified more than once by the reprovision policy of the profile
# each certificate was issued under, as the configuration's profiles say it: not a problem
# when each later certificate's profile reissues; a problem when it refuses, is not in the
# configuration, or is not recorded.
mkdir -p "$T/profiles"
# profile SKU REPROVISION: a profile file in $T/profiles.
profile() {
	cat >"$T/profiles/$1.yaml" <<EOF
sku: $1
match:
  hardware_ids: [hw-$1]
factory: acme
certificate:
  reprovision: $2
files:
  - path: /etc/device.crt
    content: "{cert_pem}"
EOF
}
profile gw-reissue reissue
profile gw-refuse refuse
# reissued DB PROFILE_BEFORE PROFILE_AFTER: a device id certified twice into $T/DB.db, under
# these profiles ("": none recorded); prints the id.
reissued() {
	local id
	id=$(uuid)
	device_cert "$1-a" "$id"
	device_cert "$1-b" "$id"
	TEST_LEDGER_PROFILE=$2 "$HELPER" fill "$T/$1.db" delivered C1 "$T/$1-a.pem"
	TEST_LEDGER_PROFILE=$3 "$HELPER" fill "$T/$1.db" delivered C1 "$T/$1-b.pem"
	echo "$id"
}
# The profiles as a directory, and as a list with a default.
cat "$T/station.yaml" - >"$T/dir.yaml" <<EOF
profiles: profiles
EOF
cat "$T/station.yaml" - >"$T/list.yaml" <<EOF
profiles: [profiles/gw-refuse.yaml]
default_profile: profiles/gw-reissue.yaml
EOF
# config_for CFG DB: CFG's configuration with DB as its ledger; prints its path.
config_for() {
	local out="$T/$1-$(basename "$2" .db).yaml"
	sed "s|^ledger: .*|ledger: $2|" "$T/$1.yaml" >"$out"
	echo "$out"
}
for cfg in dir list; do
	# Allowed: reissued under gw-reissue, also after a first certificate under gw-refuse.
	rm -f "$T/ok.db"*
	reissued ok gw-reissue gw-reissue >/dev/null
	again=$(reissued ok gw-refuse gw-reissue)
	"$STATION" ledger -c "$(config_for "$cfg" "$T/ok.db")" check >"$T/check" 2>&1 ||
		fail "$cfg: check flags device ids that profile gw-reissue reissued: $(cat "$T/check")"
	grep -q "^note: device id $again is in 2 rows: [0-9]* [0-9]* (profile gw-reissue reissues)$" "$T/check" ||
		fail "$cfg: no note for the reissued device id: $(cat "$T/check")"
	# Refused: a later certificate under gw-refuse, under a profile the configuration does not
	# have, and under none recorded.
	for bad in gw-refuse gw-gone ""; do
		rm -f "$T/bad.db"*
		id=$(reissued bad gw-reissue "$bad")
		if "$STATION" ledger -c "$(config_for "$cfg" "$T/bad.db")" check >"$T/check" 2>&1; then
			fail "$cfg: check passed a device id certified again under '${bad:-no profile}'"
		fi
		case $bad in
		gw-refuse) why=": profile gw-refuse refuses reprovisioning" ;;
		gw-gone) why=": profile gw-gone is not in the configuration" ;;
		*) why=" records no profile: the default refuses reprovisioning" ;;
		esac
		grep -q "^problem: device id $id is in 2 rows: [0-9]* [0-9]* (row [0-9]*$why)$" "$T/check" ||
			fail "$cfg: '${bad:-no profile}': $(cat "$T/check")"
		[ "$(grep -c '^problem:' "$T/check")" -eq 1 ] || fail "$cfg: $(cat "$T/check")"
	done
done
ok "check -c judges reissued device ids by each row's profile: reissue allowed; refuse, unknown and none flagged"

# Without a configuration: a problem, a note with --allow-reissue; -c with it: a note.
if "$STATION" ledger --ledger "$T/bad.db" check --ca "$pki/local-ca.pem" >"$T/check" 2>&1; then
	fail "--ledger check passed a device id certified twice"
fi
"$STATION" ledger --ledger "$T/ok.db" check --ca "$pki/local-ca.pem" --allow-reissue >"$T/check" ||
	fail "--ledger check --allow-reissue: $(cat "$T/check")"
[ "$(grep -c '^note: device id .* is in 2 rows: [0-9]* [0-9]*$' "$T/check")" -eq 2 ] ||
	fail "--allow-reissue: $(cat "$T/check")"
"$STATION" ledger -c "$(config_for dir "$T/bad.db")" check --allow-reissue >"$T/check" ||
	fail "-c check --allow-reissue flagged a device id: $(cat "$T/check")"
printf 'sku: [broken\n' >"$T/profiles/zz-broken.yaml"
expect_fail "check -c with a broken profile" "cannot judge reissued device ids by the configuration's profiles" \
	"$STATION" ledger -c "$(config_for dir "$T/ok.db")" check
ok "check without a configuration, with --allow-reissue, and with a broken profile"
