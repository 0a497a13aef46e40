#!/usr/bin/env bash
# `station ledger backup`: a copy of a ledger that other processes keep writing to holds every
# committed row, including rows that so far live only in the -wal file (where copying the
# database file would miss them), opens as a ledger, and replaces its destination whole.
. "$(dirname "$0")/../lib/common.sh"

HELPER="$BUILD_DIR/tests/test_ledger"
[ -x "$HELPER" ] || fail "helper $HELPER is not built"
command -v sqlite3 >/dev/null || fail "sqlite3 missing (Debian package sqlite3)"
led="$T/ledger.db"
serial=0

# add_intents N: N intent rows, each committed by a process of its own.
add_intents() {
	local i
	for ((i = 0; i < $1; i++)); do
		serial=$((serial + 1))
		"$HELPER" intent "$led" "$(cat /proc/sys/kernel/random/uuid)" "$(printf 'c0ffee%04x' "$serial")" ||
			return 1
	done
}

rows() {
	"$STATION" ledger --ledger "$1" list | tail -n +2 | wc -l
}

add_intents 3
"$STATION" ledger --ledger "$led" backup "$T/copy.db" || fail "backup failed"
[ "$(stat -c %a "$T/copy.db")" = 600 ] || fail "the copy is not mode 0600"
"$STATION" ledger --ledger "$led" list >"$T/a"
"$STATION" ledger --ledger "$T/copy.db" list >"$T/b" || fail "the copy does not open as a ledger"
cmp -s "$T/a" "$T/b" || fail "the copy lists differently: $(diff "$T/a" "$T/b")"
[ "$(sqlite3 "$T/copy.db" 'PRAGMA integrity_check')" = ok ] || fail "the copy fails integrity_check"
ok "backup of a quiet ledger: same rows, mode 0600, integrity ok"

# A reader holding a snapshot keeps the checkpoint from moving new rows into the database
# file, as a busy station's readers do: the rows written now are only in the -wal file.
mkfifo "$T/reader-in" "$T/reader-out"
sqlite3 "$led" <"$T/reader-in" >/dev/null &
reader=$!
exec 3>"$T/reader-in"
printf '.output %s\nBEGIN;\nSELECT count(*) FROM certificates;\n.output stdout\n' "$T/reader-out" >&3
read -r before <"$T/reader-out"
[ "$before" = 3 ] || fail "reader sees $before rows, expected 3"
add_intents 3
[ -s "$led-wal" ] || fail "precondition: the new rows are not in the -wal file"
cp "$led" "$T/plain-copy.db"
[ "$(sqlite3 "$T/plain-copy.db" 'SELECT count(*) FROM certificates')" = 3 ] ||
	fail "precondition: the database file alone already holds the new rows"
"$STATION" ledger --ledger "$led" backup "$T/copy.db" || fail "backup with rows in the WAL failed"
[ "$(rows "$T/copy.db")" = 6 ] || fail "the copy lacks the rows in the WAL: $(rows "$T/copy.db") rows"
printf 'COMMIT;\n.quit\n' >&3
exec 3>&-
wait "$reader"
ok "backup holds the 3 rows only in the -wal file (a plain copy of the file has 3 of 6)"

# Writers running while backups are taken: each copy is whole and consistent.
add_intents 40 &
writer=$!
for i in 1 2 3; do
	"$STATION" ledger --ledger "$led" backup "$T/live.db" 2>"$T/err" || fail "backup $i during writes: $(cat "$T/err")"
	[ "$(sqlite3 "$T/live.db" 'PRAGMA integrity_check')" = ok ] || fail "copy $i fails integrity_check"
	n=$(rows "$T/live.db")
	[ "$n" -ge 6 ] && [ "$n" -le 46 ] || fail "copy $i has $n rows"
done
wait "$writer" || fail "the writer failed"
"$STATION" ledger --ledger "$led" backup "$T/live.db" || fail "final backup failed"
"$STATION" ledger --ledger "$led" list >"$T/a"
"$STATION" ledger --ledger "$T/live.db" list >"$T/b"
cmp -s "$T/a" "$T/b" || fail "final copy differs: $(diff "$T/a" "$T/b")"
ls "$T" | has "\.tmp-" && fail "temporary files left: $(ls "$T")"
ok "3 backups while 40 rows were written: each whole; the last one replaced the copy and equals the ledger"

# With a configuration, and what goes wrong.
cat >"$T/station.yaml" <<EOF
ca:
  signer: file
  key: ca.key
  cert: ca.pem
  root: root.pem
ledger: ledger.db
EOF
"$STATION" ledger -c "$T/station.yaml" backup "$T/cfg-copy.db" || fail "backup -c failed"
[ "$(rows "$T/cfg-copy.db")" = 46 ] || fail "backup -c: wrong rows"
ok "backup -c STATION.yaml copies the configured ledger"
expect_fail "backup into a missing directory" "ledger backup $T/nodir/x.db: creating .*No such file" \
	"$STATION" ledger --ledger "$led" backup "$T/nodir/x.db"
expect_fail "backup onto a directory" "is a directory" "$STATION" ledger --ledger "$led" backup "$T"
expect_fail "backup without a destination" "give one destination file" \
	"$STATION" ledger --ledger "$led" backup
expect_fail "backup of a missing ledger" "ledger $T/none.db" \
	"$STATION" ledger --ledger "$T/none.db" backup "$T/x.db"
[ ! -e "$T/x.db" ] || fail "a missing ledger left a copy"
