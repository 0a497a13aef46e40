#!/usr/bin/env bash
# The ledger's disk fills up during a run (a real full file system: a small tmpfs holding the
# ledger, filled with a filler file) and gets room again later (the filler is removed).
# Signing pauses visibly, as for an HSM outage, with the reason in the events and the log; no
# board fails for it, every board ends provisioned once there is room, and the ledger checks
# clean: nothing recorded was lost and no certificate left without its record.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
N=8
fs="$T/ledgerfs"
mkdir -p "$fs"
if ! mount -t tmpfs -o size=2m,mode=0700 tmpfs "$fs" 2>"$T/mount.err"; then
	echo "skip - a small file system for the ledger needs mount (root): $(cat "$T/mount.err")"
	exit 0
fi
line_cleanup() {
	[ -z "${pid:-}" ] || kill -TERM "$pid" 2>/dev/null || true
	[ -z "${pid:-}" ] || wait "$pid" 2>/dev/null || true
	umount -l "$fs" 2>/dev/null || true
}
line_setup
sed -i "s|^ledger: .*|ledger: $fs/ledger.db|" "$pki/run.yaml"
# The station starts first (its ledger open), the disk fills, and only then do the boards
# come (found by a glob): nothing can be recorded before the disk is full.
glob_config "$pki/run.yaml" "$pki/full.yaml" 9600
ev="$T/events.jsonl"
: >"$ev"
"$STATION" run -c "$pki/full.yaml" --events "$ev" --no-view --boards "$N" --max-seconds 300 \
	>"$T/run.out" 2>"$T/run.err" &
pid=$!
wait_for_line "$T/run.err" "station test-station: 0 slots" 60 "$pid" ||
	fail "the station did not start: $(tail "$T/run.err")"
# The disk fills up: not one page more for the ledger.
dd if=/dev/zero of="$fs/filler" bs=4k 2>/dev/null || true
[ "$(df --output=avail "$fs" | tail -1 | tr -d ' ')" -eq 0 ] || fail "the file system is not full: $(df "$fs")"
start_simboard "$N" --seed 11 --baud 9600
wait_for_line "$ev" '"event":"pool".*"paused":true.*full' 120 "$pid" ||
	fail "signing did not pause for the full disk: $(tail "$T/run.err")"
reason=$(grep -m1 '"paused":true' "$ev" | grep -o '"reason":"[^"]*"')
case $reason in *"$fs/ledger.db"*"full"*) ;; *) fail "the pause does not name the ledger and the full disk: $reason" ;; esac
grep -q "signing paused: .*$fs/ledger.db.*full" "$T/run.err" ||
	fail "the log does not say why signing paused: $(grep -i paus "$T/run.err")"
ok "signing paused while the ledger's disk is full: $reason"
# While paused, boards wait in the queue: none fails.
wait_for_line "$ev" '"to":"queued"' 60 "$pid" || fail "no board queued"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed during the outage: $(grep -m1 '"event":"fail"' "$ev")"; fi
rm "$fs/filler"
wait "$pid" || fail "station run: $(tail -20 "$T/run.err")"
pid=
grep -q '"event":"pool".*"paused":false' "$ev" || fail "signing never resumed"
grep -q "signing resumed after" "$T/run.err" || fail "the log does not say signing resumed"
[ "$(grep -c '"event":"pass"' "$ev")" = "$N" ] || fail "$(grep -c '"event":"pass"' "$ev") of $N passed"
if grep -q '"event":"fail"' "$ev"; then fail "a board failed: $(grep -m1 '"event":"fail"' "$ev")"; fi
ok "signing resumed once the disk had room; all $N boards passed, none failed"
"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" 2>&1 || fail "ledger check: $(cat "$T/check.out")"
[ "$("$STATION" ledger -c "$pki/run.yaml" list --state delivered | tail -n +2 | wc -l)" -eq "$N" ] ||
	fail "not every board is recorded delivered: $("$STATION" ledger -c "$pki/run.yaml" list)"
for b in $(seq 0 $((N - 1))); do
	"$SIMBOARD" verify "$LINE_DIR/board$b" --root "$pki/factory-root.pem" >/dev/null ||
		fail "board$b does not hold a verified certificate"
done
ok "the ledger checks clean and records all $N boards delivered; every board verifies"
echo "all passed"
