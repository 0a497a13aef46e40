#!/usr/bin/env bash
# station-agent on a real kernel UART: Debian's cloud kernel boots under QEMU (TCG) with
# console=ttyS0, so the kernel's messages share the line with the agent; /init runs the agent
# on /dev/ttyS0, the 8250 UART that QEMU bridges to a host PTY, and the real station opens
# that PTY as a slot. The board's disk (ext4 on NVMe) holds its secure element, a SoftHSM2
# token whose key the agent makes there at the first CSR, and the files it installs.
#  1. A new board: provisioned through the 8250 driver and the tty layer (switched to 921600
#     with BAUD), a kernel message on the line every 100 ms meanwhile; the agent exits 0
#     after DONE and the VM powers off. The files on the disk image are whole as committed
#     and pass openssl verify -x509_strict -purpose sslclient. Times: boot, provisioning.
#  2. The same board again, with the power cut during COMMIT twice (SIGKILL to QEMU, at the
#     agent's test stop points, so no timing decides where the cut lands): before the
#     journal's rename the disk holds the old set whole and the next start reports it; after
#     the first file's rename the disk holds the journal and the next start finishes the new
#     set. The station follows the board across both reboots and finishes it: pass with the
#     recorded certificate, files whole, the token's key is the certificate's, ledger clean.
# labels: slow qemu
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/agent.sh"
. "$(dirname "$0")/../lib/softhsm.sh"
. "$(dirname "$0")/../lib/qemu.sh"
STATIONPID=
agent_cleanup() {
	stop_bg "$STATIONPID"
}
hooks=1
grep -qa STATION_AGENT_TEST_STOP "$AGENT" || hooks=

# The board's disk: its secure element (a SoftHSM2 token made here, empty) and the PIN file.
seed=$T/seed
mkdir -p "$seed/etc" "$seed/softhsm"
(softhsm_init_token "$T/devhsm" device "$seed/etc/device.pin") || fail "device token"
cp -a "$T/devhsm/tokens" "$seed/softhsm/tokens"
cat >"$T/softhsm2.conf" <<CONF
directories.tokendir = /mnt/board/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
cat >"$T/agent.conf" <<CONF
hardware_id = agent-board
sku = agent-gw
key = pkcs11:token=device;object=device-key?module-path=$SOFTHSM_MODULE
pin_file = /etc/device.pin
bauds = 115200,921600
CONF
QEMU_AGENT_BINS=$AGENT
QEMU_AGENT_LIBS=$SOFTHSM_MODULE
QEMU_AGENT_FILES="$T/softhsm2.conf=/etc/softhsm2.conf $T/agent.conf=/etc/station-agent.conf"
QEMU_AGENT_SEED=$seed
# A kernel message every 100 ms while the agent runs (printk.devkmsg=on: not rate-limited):
# the console and the agent share ttyS0, as on a factory image, and the kernel writes its
# messages to the UART whenever they come, between the agent's frames or inside them.
# The console line is set raw first: until the agent has it, a tty with echo on sends the
# station's own frames back (the station waits that out as no answer, but each echoed request
# costs a retransmission). A factory image runs its agent before getty for that reason.
# shellcheck disable=SC2016
QEMU_AGENT_CMD='stty -F /dev/ttyS0 raw -echo
(i=0; while [ $i -lt 9000 ]; do i=$((i + 1)); echo "<5>board: kernel message $i" >/dev/kmsg; sleep 0.1; done) &
SOFTHSM2_CONF=/etc/softhsm2.conf exec station-agent --tty /dev/ttyS0 --config /etc/station-agent.conf --root /mnt/board'
qemu_kernel
qemu_agent_image "$T/initrd.gz" "$T/board.img"
ok "kernel $QEMU_KVER, initramfs $((QEMU_INITRAMFS_BYTES / 1024)) KiB with the agent and SoftHSM2, 16 MiB ext4 board disk holding the token"

# The station: one slot on the VM's ttyS0 (a symlink that follows each boot's PTY), with
# room for reboots under TCG: a power cut keeps the board in flight until it is back, and
# the board's BOOT, not a retransmitted HELLO, greets it again (a HELLO that reaches the
# booting kernel's console before the agent has the line is echoed back).
AGENT_PORT=$QEMU_TTY agent_pki
cat >>"$pki/run.yaml" <<YAML
timeouts:
  hello: 30000
  csr: 120000
  write: 20000
  commit: 60000
  verify: 60000
  done: 20000
  reconnect: 300000
  baud_trial: 10000
retries:
  request: 6
  resync: 20
YAML
cat "$pki/local-ca.pem" "$pki/factory-root.pem" >"$T/device-cas.pem"

# start_station NAME: `station run` for one board, its events in $T/NAME.jsonl.
start_station() {
	timeout 540 "$STATION" run -c "$pki/run.yaml" --boards 1 --no-view --events "$T/$1.jsonl" \
		>"$T/$1.out" 2>"$T/$1.err" &
	STATIONPID=$!
}

# finish_station NAME: waits for that run to end with the board passed.
finish_station() {
	wait "$STATIONPID" || fail "$1: station run exited $?: $(tail -5 "$T/$1.err")"
	STATIONPID=
	grep -q '"event":"pass"' "$T/$1.jsonl" || fail "$1: no pass: $(tail -3 "$T/$1.jsonl")"
}

# power_on [KERNEL ARGS]: boots the board and waits for its agent on the line (its Nth start
# in the agent's log, ttyS1); boot_ms is the wall time from QEMU's start.
starts=0
power_on() {
	starts=$((starts + 1))
	qemu_start "$T/initrd.gz" "$T/board.img" --no-reader printk.devkmsg=on "$@"
	wait_for_line "$QEMU_PROGRAM_LOG" '^station-agent: on /dev/ttyS0 at 115200 baud, boot ' 120 \
		"$QEMU_PID" "$starts" || fail "boot $starts: no agent on ttyS0: $(tail -5 "$QEMU_PROGRAM_LOG")"
	boot_ms=$(($(qemu_now_ms) - QEMU_STARTED_MS))
}

# installed_at_start: what the agent reported holding at its last start ("generation N
# installed, M files").
installed_at_start() {
	grep -a 'generation [0-9]* installed' "$QEMU_PROGRAM_LOG" | tail -1 | tr -d '\r' |
		sed 's/.*: \(generation .*\)/\1/'
}

# 1. A new board.
power_on
start_station new
t_agent=$(qemu_now_ms)
ok "boot: the agent on ttyS0 $boot_ms ms (wall) after QEMU started"
finish_station new
prov_ms=$(($(qemu_now_ms) - t_agent))
qemu_wait_exit 120
grep -q '"event":"pass"' "$T/new.jsonl" && grep '"event":"pass"' "$T/new.jsonl" | has '"baud":921600' ||
	fail "new: the line was not switched to 921600: $(grep pass "$T/new.jsonl")"
ok "provisioned through the 8250 at 921600: $prov_ms ms (wall) from the agent's start to the station's pass; station phases $(grep '"event":"pass"' "$T/new.jsonl" | jq -c .ms), $(grep '"event":"pass"' "$T/new.jsonl" | jq .retransmits) retransmits"
tr -d '\r' <"$QEMU_WIRE_LOG" >"$T/wire.txt"
grep -q "Linux version ${QEMU_KVER%%-*}" "$T/wire.txt" || fail "no kernel banner on ttyS0"
grep -q '~@P1 E 0 BOOT ' "$T/wire.txt" || fail "no BOOT on ttyS0"
grep -q '~@P1 A [0-9]* DONE result=pass ' "$T/wire.txt" || fail "no DONE answer on ttyS0"
n=$(sed -n '/~@P1 E 0 BOOT /,/DONE result=pass/p' "$T/wire.txt" | grep -c '\] board: kernel message ') || n=0
[ "$n" -ge 1 ] || fail "no kernel message on ttyS0 between BOOT and DONE"
grep -q '^qemu-init: program exited 0' "$T/wire.txt" || fail "the agent did not exit 0 after DONE"
ok "on the same line: the kernel's boot log, $n kernel messages between BOOT and DONE, the agent's frames; the agent exited 0 and the VM powered off"
qemu_disk_rdump "$T/board.img" /var/sota "$T/new"
check_board new "$T/new/sota"
[ "$(head -1 "$T/new/sota/.manifest")" = "gen 1" ] || fail "new: $(head -1 "$T/new/sota/.manifest")"
dev=$(qemu_disk_cat "$T/board.img" /var/lib/station-agent/device-id) || fail "new: no device id"
[ "$(openssl x509 -in "$T/new/sota/client.pem" -noout -subject -nameopt RFC2253)" = "subject=OU=acme-factory,CN=$dev" ] ||
	fail "new: the certificate is not for the board's device id $dev"
ok "the disk image: generation 1 whole, client.pem passes openssl verify -x509_strict -purpose sslclient, for device $dev"

# 2. The same board again, the power cut twice during COMMIT.
if [ -z "$hooks" ]; then
	echo "skip - power loss during COMMIT: $AGENT has no test hooks (configure with -DSTATION_TEST_HOOKS=ON)"
	echo "all passed"
	exit 0
fi
serial=$(openssl x509 -in "$T/new/sota/client.pem" -noout -serial)
power_on STATION_AGENT_TEST_STOP=commit-journal
start_station again
wait_for_line "$QEMU_PROGRAM_LOG" '^station-agent: test stop at commit-journal' 300 "$QEMU_PID" ||
	fail "the agent never reached COMMIT: $(tail -5 "$QEMU_PROGRAM_LOG")"
t_cut=$(qemu_now_ms)
qemu_kill
qemu_disk_rdump "$T/board.img" /var/sota "$T/cut1"
out=$(files_check "$T/cut1/sota") || fail "power cut before the journal: $out"
[ "$(head -1 "$T/cut1/sota/.manifest")" = "gen 1" ] || fail "cut before the journal: $(head -1 "$T/cut1/sota/.manifest")"
power_on STATION_AGENT_TEST_STOP=commit-install
[ "$(installed_at_start)" = "generation 1 installed, 4 files" ] ||
	fail "after the cut before the journal the agent started with $(installed_at_start)"
ok "power cut in COMMIT before the journal's rename: the disk holds the old set (generation 1) whole, the agent starts with it"
wait_for_line "$QEMU_PROGRAM_LOG" '^station-agent: test stop at commit-install' 300 "$QEMU_PID" ||
	fail "the station did not COMMIT again after the reboot: $(tail -5 "$T/again.err")"
qemu_kill
qemu_disk_rdump "$T/board.img" /var/sota "$T/cut2"
[ "$(head -1 "$T/cut2/sota/.commit" 2>/dev/null)" = "gen 2" ] ||
	fail "cut after the journal: no journal of generation 2 on the disk"
[ "$(head -1 "$T/cut2/sota/.manifest")" = "gen 1" ] || fail "cut after the journal: the manifest moved on"
power_on
[ "$(installed_at_start)" = "generation 2 installed, 4 files" ] ||
	fail "after the cut after the journal the agent started with $(installed_at_start)"
ok "power cut in COMMIT after the journal's rename, one file installed: the next start finished the new set (generation 2)"
finish_station again
done_ms=$(($(qemu_now_ms) - t_cut))
qemu_wait_exit 120
grep '"event":"pass"' "$T/again.jsonl" | has '"reused":true' ||
	fail "again: not the recorded certificate: $(grep pass "$T/again.jsonl")"
qemu_disk_rdump "$T/board.img" /var/sota "$T/final"
check_board again "$T/final/sota"
[ "$(head -1 "$T/final/sota/.manifest")" = "gen 3" ] || fail "again: $(head -1 "$T/final/sota/.manifest")"
[ "$(openssl x509 -in "$T/final/sota/client.pem" -noout -serial)" = "$serial" ] || fail "again: another certificate"
ok "the station followed the board through both reboots and finished it ($done_ms ms wall from the first cut, $(grep '"event":"pass"' "$T/again.jsonl" | jq .resyncs) resyncs): its recorded certificate, generation 3 whole"

# The key the agent made is in the token on the board's disk and is the certificate's.
qemu_disk_rdump "$T/board.img" /softhsm "$T/final-hsm"
cat >"$T/final-hsm/softhsm2.conf" <<CONF
directories.tokendir = $T/final-hsm/softhsm/tokens
objectstore.backend = file
log.level = ERROR
CONF
SOFTHSM2_CONF=$T/final-hsm/softhsm2.conf GNUTLS_PIN="$(cat "$seed/etc/device.pin")" p11tool --batch \
	--provider "$SOFTHSM_MODULE" --export-pubkey "pkcs11:token=device;object=device-key" --login \
	>"$T/token-pub.pem" 2>"$T/p11.err" || fail "p11tool export-pubkey: $(cat "$T/p11.err")"
cmp -s <(openssl pkey -pubin -in "$T/token-pub.pem" -outform DER) \
	<(openssl x509 -in "$T/final/sota/client.pem" -noout -pubkey | openssl pkey -pubin -outform DER) ||
	fail "the certificate carries another key than the board's token"
"$STATION" ledger -c "$pki/run.yaml" check >"$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
grep -q "1 rows, 1 certificates verified" "$T/check.out" || fail "ledger check: $(cat "$T/check.out")"
ok "the token on the board's disk holds the certificate's key; ledger check clean (one row)"
echo "all passed"
