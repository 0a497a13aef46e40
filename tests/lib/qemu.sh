# Sourced by integration tests that boot a real Linux kernel under QEMU (after common.sh, and
# after line.sh when a test uses both: a test that sources line.sh afterwards calls
# qemu_cleanup from its line_cleanup). One VM per test, TCG only (no KVM needed):
#
#   qemu_kernel                     Debian's cloud kernel, fetched once into the build tree
#   qemu_initramfs OUT --run CMD [--bin F[=DEST]] [--lib F] [--file F=DEST] [--dir D=DEST]
#                                   busybox-static, an /init that mounts the board's disk at
#                                   /mnt/board and runs CMD, extra binaries with their libraries
#   qemu_disk IMG MB [SEED_DIR]     the board's persistent disk: ext4, seeded from SEED_DIR
#   qemu_agent_image INITRD IMG     both, for the program the QEMU_AGENT_* variables name
#   qemu_start INITRD IMG [ARGS]    boots with the guest's ttyS0 on a host PTY ($QEMU_TTY)
#   qemu_wait_marker RE SECONDS     waits for a line on that PTY (a failure bound, no timing)
#   qemu_kill                       SIGKILL: the board loses power; qemu_start boots it again
#   qemu_wait_exit SECONDS          waits for the guest to power off after CMD exits
#   qemu_disk_cat IMG PATH          a file from the disk as the next mount sees it
#   qemu_disk_rdump IMG DIR DEST    a directory tree from the disk, likewise
#
# Why this kernel and file system: the cloud kernel has the 8250 UART and its console, ext4,
# devtmpfs, gzip initramfs and the NVMe driver built in, so the board's disk is ext4 on an
# emulated NVMe drive and no module has to be loaded. It has no 9p (virtfs) at all, and
# virtio-blk would need six modules. ext4 with its journal is also the file system the
# agent's atomic commit meets on real boards, which a power-loss test wants.
#
# Serial lines: the guest's ttyS0 (console=ttyS0, kernel messages on the same line) is a host
# PTY that a station opens like any slot; ttyS1 is a host file ($QEMU_PROGRAM_LOG) that gets
# CMD's stdout and stderr, so the program's logs never reach the line it speaks on.
QEMU_CACHE=${QEMU_CACHE:-$BUILD_DIR/qemu-cache}
QEMU_DIR=$T/qemu
QEMU_PID=
QEMU_PTY=
QEMU_READER_PID=
QEMU_MON_PID=
# A stable name for the guest's ttyS0: a symlink re-pointed at the new PTY on each boot, so a
# station's slot keeps one port path across power cycles.
QEMU_TTY=$QEMU_DIR/ttyS0
# Everything the guest sent on ttyS0 while the test's own reader was attached (qemu_start
# without --no-reader), all boots appended.
QEMU_LOG=$QEMU_DIR/ttyS0.log
QEMU_PROGRAM_LOG=$QEMU_DIR/ttyS1.log
# Every byte the guest sent on ttyS0, all boots appended, whoever reads the PTY (a station
# too): QEMU's own log of the line, like a probe on the board's TX pin.
QEMU_WIRE_LOG=$QEMU_DIR/ttyS0.wire
# Milliseconds since the epoch at the last qemu_start, for the test's boot time.
QEMU_STARTED_MS=
mkdir -p "$QEMU_DIR"

for _tool in qemu-system-x86_64 busybox cpio mkfs.ext4 debugfs; do
	if ! command -v "$_tool" >/dev/null && ! [ -x "/sbin/$_tool" ] && ! [ -x "/usr/sbin/$_tool" ]; then
		STATION_SRC=$SOURCE_DIR
		. "$SOURCE_DIR/tests/lib/deps.sh"
		station_install_deps >&2 || fail "no $_tool; install the Debian packages in tests/lib/deps.sh"
		break
	fi
done
PATH=$PATH:/usr/sbin:/sbin

qemu_now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# qemu_kernel: sets QEMU_KERNEL (a vmlinuz) and QEMU_KVER. The kernel is the one Debian's
# linux-image-cloud-amd64 depends on now, fetched with apt-get download into $QEMU_CACHE and
# unpacked there (never installed on the host); later runs reuse it. QEMU_KERNEL set by the
# caller (with QEMU_KVER) skips all this.
qemu_kernel() {
	local pkg dir tmp
	if [ -n "${QEMU_KERNEL:-}" ]; then
		[ -r "$QEMU_KERNEL" ] || fail "QEMU_KERNEL=$QEMU_KERNEL: no such file"
		: "${QEMU_KVER:=$(basename "$QEMU_KERNEL")}"
		return 0
	fi
	mkdir -p "$QEMU_CACHE"
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -1)
	if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
		apt-get update -qq >/dev/null 2>&1 || true
		pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -1)
	fi
	if [ -z "$pkg" ]; then
		# No package lists: any kernel fetched before will do.
		dir=$(find "$QEMU_CACHE" -maxdepth 1 -name 'linux-image-*' -type d | sort | tail -1)
		[ -n "$dir" ] || fail "apt-cache knows no linux-image-cloud-amd64 and $QEMU_CACHE holds no kernel"
		pkg=$(basename "$dir")
	fi
	QEMU_KVER=${pkg#linux-image-}
	dir=$QEMU_CACHE/$pkg
	# Tests run in parallel: one fetches, the others wait for it.
	(
		flock 9
		[ -r "$dir/vmlinuz" ] && exit 0
		tmp=$(mktemp -d "$QEMU_CACHE/fetch.XXXXXX")
		(cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg") >"$tmp/log" 2>&1 ||
			fail "apt-get download $pkg: $(cat "$tmp/log")"
		dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x" || fail "dpkg-deb -x $pkg failed"
		mkdir -p "$tmp/out"
		cp "$tmp/x/boot/vmlinuz-$QEMU_KVER" "$tmp/out/vmlinuz"
		cp "$tmp/x/boot/config-$QEMU_KVER" "$tmp/out/config"
		rm -rf "$dir"
		mv "$tmp/out" "$dir"
		rm -rf "$tmp"
	) 9>"$QEMU_CACHE/lock" || exit 1
	# What /init and qemu_start rely on being built in (=y, not a module).
	local opt
	for opt in SERIAL_8250 SERIAL_8250_CONSOLE EXT4_FS BLK_DEV_NVME DEVTMPFS BLK_DEV_INITRD RD_GZIP; do
		grep -qx "CONFIG_$opt=y" "$dir/config" ||
			fail "kernel $QEMU_KVER: CONFIG_$opt is not built in; $(grep "CONFIG_$opt=" "$dir/config" || echo unset)"
	done
	QEMU_KERNEL=$dir/vmlinuz
}

# qemu_add_elf STAGE SRC DEST: copies the executable or library SRC to STAGE/DEST and each
# shared library it needs (ldd: the dynamic loader included) to the same absolute path it
# has on the host, where the loader and RUNPATHs look for it in the guest too.
qemu_add_elf() {
	local stage=$1 src=$2 dest=$3 lib
	[ -r "$src" ] || fail "initramfs: no file $src"
	mkdir -p "$stage/$(dirname "$dest")"
	cp -L "$src" "$stage/$dest"
	# A static binary makes ldd fail ("not a dynamic executable"): it needs nothing.
	for lib in $(ldd "$src" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'); do
		[ -e "$stage$lib" ] && continue
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}

# qemu_initramfs OUT --run CMD [options]: writes a gzip'd newc cpio to OUT with busybox-static
# (every applet linked), the /init below and, per option:
#   --bin FILE[=DEST]   an executable at DEST (default /usr/bin/NAME) and its libraries
#   --lib FILE          a library that is dlopen'ed (e.g. a PKCS#11 module) at its own path
#                       and its libraries
#   --file FILE=DEST    a plain file
#   --dir DIR=DEST      a directory tree
# /init mounts the board's disk at /mnt/board, prints "qemu-init: up UPTIME" on the console
# first, "qemu-init: disk mounted" then runs CMD with sh -c (stdout and stderr to ttyS1),
# prints "qemu-init: program exited RC", unmounts the disk and powers off. Prints the size.
qemu_initramfs() {
	local out=$1 stage run= a src dest
	shift
	stage=$(mktemp -d "$QEMU_DIR/initramfs.XXXXXX")
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,mnt/board}
	while [ $# -gt 0 ]; do
		case $1 in
		--run) run=$2 ;;
		--bin)
			src=${2%%=*}
			dest=/usr/bin/$(basename "$src")
			[ "$2" = "$src" ] || dest=${2#*=}
			qemu_add_elf "$stage" "$src" "$dest"
			;;
		--lib)
			# A symlinked module (Debian's /usr/lib/softhsm/libsofthsm2.so) is found by
			# either name: the file at its real path, the link beside it as on the host.
			src=$(readlink -f "$2")
			qemu_add_elf "$stage" "$src" "$src"
			if [ "$src" != "$2" ]; then
				mkdir -p "$stage/$(dirname "$2")"
				ln -sfn "$src" "$stage/$2"
			fi
			;;
		--file)
			src=${2%%=*} dest=${2#*=}
			[ "$src" != "$2" ] || fail "initramfs: --file $2: expected FILE=DEST"
			mkdir -p "$stage/$(dirname "$dest")"
			cp -L "$src" "$stage/$dest"
			;;
		--dir)
			src=${2%%=*} dest=${2#*=}
			[ "$src" != "$2" ] || fail "initramfs: --dir $2: expected DIR=DEST"
			mkdir -p "$stage/$dest"
			cp -a "$src/." "$stage/$dest/"
			;;
		*) fail "qemu_initramfs: unknown option $1" ;;
		esac
		shift 2
	done
	[ -n "$run" ] || fail "qemu_initramfs: no --run CMD"
	cp /bin/busybox "$stage/bin/busybox"
	for a in $(/bin/busybox --list-full); do
		[ -e "$stage/$a" ] || ln -s /bin/busybox "$stage/$a"
	done
	printf '%s\n' "$run" >"$stage/etc/qemu-run"
	cat >"$stage/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
say() { echo "qemu-init: $*" >/dev/console; }
halt() { sync; poweroff -f; }
say "up $(cut -d' ' -f1 /proc/uptime)"
# The NVMe drive is probed asynchronously: wait for it, bounded.
i=0
while [ ! -b /dev/nvme0n1 ] && [ $i -lt 200 ]; do
	sleep 0.05
	i=$((i + 1))
done
mount -t ext4 /dev/nvme0n1 /mnt/board || { say "disk: mount failed"; halt; }
say "disk mounted"
sh -c "$(cat /etc/qemu-run)" </dev/null >/dev/ttyS1 2>&1
say "program exited $?"
umount /mnt/board || say "disk: umount failed"
halt
INIT
	chmod 755 "$stage/init"
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6) >"$out" ||
		fail "initramfs: cpio failed"
	rm -rf "$stage"
	QEMU_INITRAMFS_BYTES=$(stat -c %s "$out")
}

# qemu_agent_image INITRD IMG: the initramfs and a 16 MiB board disk for the program that
# the caller's environment names (see the table at the top of test_qemu_uart.sh):
# QEMU_AGENT_CMD (required), QEMU_AGENT_BINS, QEMU_AGENT_LIBS, QEMU_AGENT_FILES (FILE=DEST
# each) and QEMU_AGENT_SEED (the disk's first tree). Word-split lists: no spaces in paths.
qemu_agent_image() {
	local initrd=$1 img=$2 f args
	[ -n "${QEMU_AGENT_CMD:-}" ] || fail "qemu_agent_image: QEMU_AGENT_CMD is not set"
	args=(--run "$QEMU_AGENT_CMD")
	for f in ${QEMU_AGENT_BINS:-}; do args+=(--bin "$f"); done
	for f in ${QEMU_AGENT_LIBS:-}; do args+=(--lib "$f"); done
	for f in ${QEMU_AGENT_FILES:-}; do args+=(--file "$f"); done
	qemu_initramfs "$initrd" "${args[@]}"
	qemu_disk "$img" 16 "${QEMU_AGENT_SEED:-}"
}

# qemu_disk IMG MB [SEED_DIR]: a fresh ext4 image of MB MiB, holding SEED_DIR's tree when
# given (mkfs.ext4 -d: no mount, no root needed). The guest mounts it at /mnt/board.
qemu_disk() {
	local img=$1 mb=$2 seed=${3:-}
	local args=(-q -F -L board -E lazy_itable_init=0,lazy_journal_init=0)
	[ -z "$seed" ] || args+=(-d "$seed")
	rm -f "$img"
	truncate -s "${mb}M" "$img"
	mkfs.ext4 "${args[@]}" "$img" >"$QEMU_DIR/mkfs.log" 2>&1 || fail "mkfs.ext4 $img: $(cat "$QEMU_DIR/mkfs.log")"
}

# qemu_disk_copy IMG: a copy of the image at $QEMU_DIR/disk-cat.img as the next mount would
# see it: its journal replayed (a board killed mid-write leaves one).
qemu_disk_copy() {
	local img=$1 copy=$QEMU_DIR/disk-cat.img
	local rc=0
	cp --sparse=always "$img" "$copy"
	# Exit codes 1 and 2 say what e2fsck repaired; 4 and above that it could not.
	e2fsck -fy "$copy" >"$QEMU_DIR/e2fsck.log" 2>&1 || rc=$?
	[ "$rc" -lt 4 ] || fail "e2fsck $img: $(cat "$QEMU_DIR/e2fsck.log")"
}

# qemu_disk_rdump IMG DIR DEST: the directory DIR of the image, as the next mount would see
# it, copied with its tree to DEST/<its name> (DEST is made; hidden files included).
qemu_disk_rdump() {
	local img=$1 dir=$2 dest=$3 copy=$QEMU_DIR/disk-cat.img
	qemu_disk_copy "$img"
	mkdir -p "$dest"
	debugfs -R "rdump $dir $dest" "$copy" >"$QEMU_DIR/debugfs.log" 2>&1
	rm -f "$copy"
	[ -d "$dest/$(basename "$dir")" ] || fail "no $dir on $img: $(cat "$QEMU_DIR/debugfs.log")"
}

# qemu_disk_cat IMG PATH: prints PATH from the image as the next mount would see it (see
# qemu_disk_copy), read with debugfs. Fails when the file is not there.
qemu_disk_cat() {
	local img=$1 path=$2 copy=$QEMU_DIR/disk-cat.img
	qemu_disk_copy "$img"
	if ! debugfs -R "stat $path" "$copy" 2>/dev/null | has '^Inode:'; then
		rm -f "$copy"
		return 1
	fi
	debugfs -R "cat $path" "$copy" 2>/dev/null
	rm -f "$copy"
}

# qemu_monitor CMD: one HMP command to the running QEMU (no answer is read).
qemu_monitor() {
	local fd
	# Opened read-write: an open for writing alone would block for ever once QEMU is gone.
	exec {fd}<>"$QEMU_DIR/mon.in"
	printf '%s\n' "$1" >&"$fd"
	exec {fd}>&-
}

# qemu_start INITRD IMG [--no-reader] [kernel args...]: boots the VM on that disk and sets
# QEMU_PID, QEMU_PTY (the PTY of this boot) and QEMU_TTY (the stable symlink to it). QEMU
# starts paused; the guest runs once the PTY is open, so no kernel message is lost. By
# default the test's reader appends what arrives to $QEMU_LOG (write to the guest with
# qemu_send); with --no-reader the caller's program (a station) is the only one to open the
# PTY, and the guest's first messages go out whenever it does.
qemu_start() {
	local initrd=$1 img=$2 reader=1 i
	shift 2
	if [ "${1:-}" = --no-reader ]; then
		reader=
		shift
	fi
	[ -n "${QEMU_KERNEL:-}" ] || qemu_kernel
	[ -z "$QEMU_PID" ] || fail "qemu_start: a VM is running already (pid $QEMU_PID)"
	rm -f "$QEMU_DIR/mon.in" "$QEMU_DIR/mon.out"
	mkfifo "$QEMU_DIR/mon.in" "$QEMU_DIR/mon.out"
	: >"$QEMU_DIR/qemu.out"
	QEMU_STARTED_MS=$(qemu_now_ms)
	# tsc=unstable: under TCG on a busy host the kernel's TSC calibration fails or goes wrong
	# (uptime once read 80 s after 11 s of wall time); the guest then keeps time with the
	# HPET, which QEMU drives from the host's clock, so timeouts in the guest run at the
	# wall's rate.
	qemu-system-x86_64 -accel tcg -m 192 -nodefaults -no-user-config -nographic -no-reboot -S \
		-kernel "$QEMU_KERNEL" -initrd "$initrd" \
		-append "console=ttyS0,115200 loglevel=7 panic=-1 tsc=unstable $*" \
		-chardev "pty,id=serial0,logfile=$QEMU_WIRE_LOG,logappend=on" -serial chardev:serial0 \
		-chardev "file,id=log,path=$QEMU_PROGRAM_LOG,append=on" -serial chardev:log \
		-chardev "pipe,id=mon,path=$QEMU_DIR/mon" -mon chardev=mon,mode=readline \
		-drive "file=$img,if=none,id=board,format=raw" -device nvme,drive=board,serial=board \
		</dev/null >>"$QEMU_DIR/qemu.out" 2>&1 &
	QEMU_PID=$!
	# The monitor's answers are not needed, but its pipe must not fill up.
	cat "$QEMU_DIR/mon.out" >>"$QEMU_DIR/mon.log" &
	QEMU_MON_PID=$!
	QEMU_PTY=
	for ((i = 0; i < 30 * 20; i++)); do
		QEMU_PTY=$(sed -n 's/^char device redirected to \(\/dev\/pts\/[0-9]*\) (label serial0)$/\1/p' \
			"$QEMU_DIR/qemu.out")
		[ -n "$QEMU_PTY" ] && break
		kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited at start: $(cat "$QEMU_DIR/qemu.out")"
		sleep 0.05
	done
	[ -n "$QEMU_PTY" ] || fail "qemu printed no PTY in 30 s: $(cat "$QEMU_DIR/qemu.out")"
	ln -sfn "$QEMU_PTY" "$QEMU_TTY.new"
	mv -T "$QEMU_TTY.new" "$QEMU_TTY"
	if [ -n "$reader" ]; then
		# Raw, no echo: the host side must not send the guest's output back to it.
		stty -F "$QEMU_PTY" raw -echo 115200
		cat "$QEMU_PTY" >>"$QEMU_LOG" 2>/dev/null &
		QEMU_READER_PID=$!
	fi
	qemu_monitor cont
}

# qemu_send TEXT: writes TEXT and a newline to the guest's ttyS0.
qemu_send() {
	printf '%s\n' "$1" >"$QEMU_PTY"
}

# qemu_wait_marker PATTERN SECONDS [FROM_LINE]: waits until $QEMU_LOG has a whole line matching
# PATTERN (grep -E) after line FROM_LINE (default: the start of the log) and prints it.
# Fails when QEMU exits first or after SECONDS (a bound for failures, not a timing).
qemu_wait_marker() {
	local pattern=$1 limit=$2 from=${3:-0} i n line
	for ((i = 0; i < limit * 20; i++)); do
		# Whole lines only: the last one may still be arriving.
		n=$(qemu_log_lines)
		line=
		[ "$n" -le "$from" ] ||
			line=$(sed -n "$((from + 1)),${n}p" "$QEMU_LOG" | tr -d '\r' | grep -m1 -E -- "$pattern") || true
		if [ -n "$line" ]; then
			printf '%s\n' "$line"
			return 0
		fi
		kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu exited before /$pattern/ on ttyS0: $(tail -5 "$QEMU_LOG" 2>/dev/null)"
		sleep 0.05
	done
	fail "no /$pattern/ on ttyS0 in $limit s; last lines: $(tail -5 "$QEMU_LOG" 2>/dev/null)"
}

# qemu_log_lines: how many lines $QEMU_LOG has now (a FROM_LINE for qemu_wait_marker).
qemu_log_lines() {
	if [ -e "$QEMU_LOG" ]; then
		wc -l <"$QEMU_LOG"
	else
		echo 0
	fi
}

# Ends the helper processes of a VM that is gone.
qemu_reap() {
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=
	# The reader sees EIO once QEMU closed the PTY; the monitor reader sees EOF.
	[ -z "$QEMU_READER_PID" ] || wait "$QEMU_READER_PID" 2>/dev/null || true
	[ -z "$QEMU_MON_PID" ] || wait "$QEMU_MON_PID" 2>/dev/null || true
	QEMU_READER_PID= QEMU_MON_PID=
}

# qemu_kill: SIGKILL to QEMU, the board's power cut: whatever the guest had not written to
# its disk is lost, as on a real board.
qemu_kill() {
	[ -n "$QEMU_PID" ] || return 0
	kill -KILL "$QEMU_PID" 2>/dev/null || true
	qemu_reap
}

# qemu_wait_exit SECONDS: waits for QEMU to exit by itself (the guest powered off); fails
# after SECONDS.
qemu_wait_exit() {
	local limit=$1 i
	for ((i = 0; i < limit * 20; i++)); do
		if ! kill -0 "$QEMU_PID" 2>/dev/null; then
			qemu_reap
			return 0
		fi
		sleep 0.05
	done
	fail "qemu did not exit in $limit s; last lines: $(tail -5 "$QEMU_LOG" 2>/dev/null)"
}

qemu_cleanup() {
	qemu_kill
}

# Ends the VM before the test's earlier EXIT trap (common.sh's) removes its files.
qemu_chain_trap() {
	eval "set -- $(trap -p EXIT)"
	trap "qemu_rc=\$?; qemu_cleanup; (exit \$qemu_rc); ${3:-}" EXIT
}
qemu_chain_trap
