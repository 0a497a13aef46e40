#!/usr/bin/env bash
# A real kernel UART: Debian's cloud kernel boots under QEMU (TCG) from a minimal initramfs;
# its /init runs a program on /dev/ttyS0, the 8250 serial port that QEMU bridges to a host
# PTY. Both directions cross the real 8250 driver and tty layer: the program says a known
# line, the host writes lines and reads them back; kernel messages arrive on the same PTY.
# Then the board loses power (SIGKILL to QEMU) right after it wrote a file, boots again on
# the same disk and still has the file. Each boot's wall time (to /init) is printed with the
# guest's own uptime at /init; nothing is asserted about times.
#
# The program is a parameter, read by qemu_agent_image (tests/lib/qemu.sh): QEMU_AGENT_CMD
# (a shell command /init runs with sh -c once the board's disk is mounted at /mnt/board; its
# stdout and stderr go to ttyS1, the host file $QEMU_PROGRAM_LOG), QEMU_AGENT_BINS
# (executables, each copied to /usr/bin with the shared libraries ldd lists and the loader),
# QEMU_AGENT_LIBS (dlopen'ed libraries, copied at their own path with theirs),
# QEMU_AGENT_FILES (FILE=DEST pairs) and QEMU_AGENT_SEED (a directory whose tree the board's
# disk starts with). Unset, the program is the busybox shell echo below. The agent's test
# plugs in the same way:
#
#   QEMU_AGENT_BINS=$BUILD_DIR/<agent dir>/station-agent  # libssl, libcrypto, libc: by ldd
#   QEMU_AGENT_LIBS=/usr/lib/softhsm/libsofthsm2.so      # the PKCS#11 module it dlopens
#   QEMU_AGENT_FILES="$T/softhsm2.conf=/etc/softhsm2.conf $T/agent.conf=/etc/station-agent.conf"
#   QEMU_AGENT_SEED=$T/seed       # seed/softhsm/tokens: the token lives on the persistent
#                                 # disk (softhsm2.conf: directories.tokendir =
#                                 # /mnt/board/softhsm/tokens), as the key must survive a reboot
#   QEMU_AGENT_CMD="SOFTHSM2_CONF=/etc/softhsm2.conf exec station-agent --tty /dev/ttyS0 --root /mnt/board ..."
#   qemu_kernel; qemu_agent_image "$T/initrd.gz" "$T/board.img"
#   qemu_start "$T/initrd.gz" "$T/board.img" --no-reader
#
# --no-reader leaves the station the only reader of the line. The station's slot is
# `port: $QEMU_TTY`: a symlink that qemu_start re-points at each boot's new PTY, so the slot
# keeps one path across power cycles (the pty backend follows it); its timeouts.reconnect
# must cover a reboot under TCG (see the times this test prints). For the power loss: wait
# for the slot's commit state in the station's events, qemu_kill, qemu_start again on the
# same image. After DONE the agent exits, /init prints "qemu-init: program exited RC" on the
# line and powers the VM off (qemu_wait_exit); qemu_disk_cat reads the board's files.
# labels: slow qemu
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/qemu.sh"

# The echo program: raw line, no echo by the tty itself (the host would otherwise see its
# own line come back without the program). Says which boot this is and what the disk kept,
# puts one message through the kernel's log (it reaches the line as a console message, with
# the kernel's timestamp), then answers each line: "save X" writes X to the disk and syncs,
# "quit" exits, anything else is echoed back.
# Before it, port_probe opens the UART through the station's serial backend (libserialport)
# and asks for low-latency mode, which the 8250 driver takes and reports back; its lines go
# to ttyS1.
# shellcheck disable=SC2016
ECHO_CMD='port_probe /dev/ttyS0; echo "port-probe: exit $?"
stty -F /dev/ttyS0 115200 raw -echo
exec </dev/ttyS0 >/dev/ttyS0
n=$(($(cat /mnt/board/boots 2>/dev/null || echo 0) + 1))
echo $n >/mnt/board/boots && sync
echo "uart-echo: ready boot=$n token=$(cat /mnt/board/token 2>/dev/null || echo none)"
echo "<5>uart-echo: through the kernel log" >/dev/kmsg
while read -r cmd arg; do
	case $cmd in
	save) echo "$arg" >/mnt/board/token && sync && echo "uart-echo: saved $arg" ;;
	quit) echo "uart-echo: bye"; exit 0 ;;
	*) echo "uart-echo: got $cmd${arg:+ $arg}" ;;
	esac
done'
: "${QEMU_AGENT_CMD:=$ECHO_CMD}"
PROBE=$BUILD_DIR/tests/port_probe
[ -x "$PROBE" ] || fail "$PROBE is not built"
QEMU_AGENT_BINS="${QEMU_AGENT_BINS:-} $PROBE"

qemu_kernel
qemu_agent_image "$T/initrd.gz" "$T/board.img"
ok "kernel $QEMU_KVER, initramfs $((QEMU_INITRAMFS_BYTES / 1024)) KiB, board disk: 16 MiB ext4 on NVMe"

# boot N: starts the VM and waits for /init; prints the wall time to it and the guest's.
boot() {
	local from up
	from=$(qemu_log_lines)
	qemu_start "$T/initrd.gz" "$T/board.img"
	up=$(qemu_wait_marker '^qemu-init: up ' 120 "$from")
	ok "boot $1: /init after $(($(qemu_now_ms) - QEMU_STARTED_MS)) ms wall, guest uptime ${up##* } s"
	qemu_wait_marker '^qemu-init: disk mounted' 60 "$from" >/dev/null
	from_boot=$from
}

boot 1
grep -q "Linux version ${QEMU_KVER%%-*}" "$QEMU_LOG" ||
	fail "no kernel banner on ttyS0: $(head -3 "$QEMU_LOG")"
grep -q 'ttyS0 at I/O 0x3f8 .* is a 16550A' "$QEMU_LOG" ||
	fail "the kernel did not report the 8250 UART on ttyS0"
ok "boot messages on the same PTY: $(grep -c '^\[ *[0-9.]*\]' "$QEMU_LOG") kernel lines from the first one"

line=$(qemu_wait_marker '^uart-echo: ready' 60 "$from_boot")
[ "$line" = "uart-echo: ready boot=1 token=none" ] || fail "first boot: $line"
ok "guest -> host through the 8250: '$line'"
# A console message from the running kernel, interleaved with the program's lines.
qemu_wait_marker '^\[ *[0-9]+\.[0-9]+\] uart-echo: through the kernel log' 60 "$from_boot" >/dev/null
ok "kernel messages reach the PTY while the program runs"

# The serial backend on a real UART: low-latency mode asked for, taken and read back.
wait_for_line "$QEMU_PROGRAM_LOG" '^port-probe: exit ' 60 "$QEMU_PID" ||
	fail "port_probe did not finish: $(tail -5 "$QEMU_PROGRAM_LOG")"
probe=$(tr -d '\r' <"$QEMU_PROGRAM_LOG" | grep '^port-probe: ')
grep -qx 'port-probe: /dev/ttyS0: backend serial, low latency 1 (no reason given)' <<<"$probe" &&
	grep -q '^port-probe: /dev/ttyS0: the driver.s flags 0x[0-9a-f]*, ASYNC_LOW_LATENCY 1$' <<<"$probe" &&
	grep -qx 'port-probe: exit 0' <<<"$probe" ||
	fail "low-latency mode on the 8250: $probe"
ok "the serial backend put the 8250 in low-latency mode: $(grep -o 'flags 0x[0-9a-f]*' <<<"$probe")"

# Lines of several lengths, one longer than the 16550's 16-byte FIFO and than a tty read.
for probe in "p$RANDOM" "$(printf 'x%.0s' $(seq 1 200))$RANDOM" "a b c $RANDOM"; do
	from=$(qemu_log_lines)
	qemu_send "$probe"
	line=$(qemu_wait_marker "^uart-echo: got " 60 "$from")
	[ "$line" = "uart-echo: got $probe" ] || fail "echo of a ${#probe}-byte line: got '$line'"
done
ok "host -> guest -> host: 3 lines echoed whole, one of over 200 bytes"

# Power loss right after the program wrote and synced a file.
token="t$RANDOM$RANDOM"
qemu_send "save $token"
qemu_wait_marker "^uart-echo: saved $token\$" 60 "$from_boot" >/dev/null
qemu_kill
ok "killed QEMU with SIGKILL after the guest synced $token"
[ "$(qemu_disk_cat "$T/board.img" /token)" = "$token" ] ||
	fail "the disk image does not hold the token after the kill"

boot 2
line=$(qemu_wait_marker '^uart-echo: ready' 60 "$from_boot")
[ "$line" = "uart-echo: ready boot=2 token=$token" ] || fail "second boot: $line"
ok "same disk after the power loss: '$line'"

# A clean end: the program exits, /init unmounts the disk and powers the VM off.
qemu_send quit
qemu_wait_marker '^qemu-init: program exited 0' 60 "$from_boot" >/dev/null
qemu_wait_exit 60
grep -q '^qemu-init: disk: umount failed' "$QEMU_LOG" && fail "/init could not unmount the disk"
# Unmounted clean: nothing left in the journal, nothing for e2fsck to repair.
e2fsck -fn "$T/board.img" >"$T/fsck.out" 2>&1 || fail "the disk is not clean after power-off: $(cat "$T/fsck.out")"
[ "$(qemu_disk_cat "$T/board.img" /boots)" = 2 ] || fail "the disk does not count 2 boots"
ok "program exited, VM powered off, disk unmounted clean"
