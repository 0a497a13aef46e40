#!/usr/bin/env bash
# The board core's footprint on a Cortex-M4 (Debian's gcc-arm-none-eabi and newlib nano,
# -Os -mcpu=cortex-m4 -mthumb, frames of 512 bytes, 8 staged files and one kept answer
# (BRD_WINDOW=1: protocol version 7 without its window, each more answer kept is another
# frame's bytes of RAM) as a microcontroller would build it, no crypto: the key and storage are the firmware's): it builds with the
# core's strict flags; flash (text + data) and RAM (data + bss of one board, plus the worst
# call chain's stack from GCC's -fcallgraph-info=su) stay within 24 KiB and 6 KiB. Flash
# and static RAM are the difference between a firmware stub with the core and the same stub
# without it, so the C library pieces the core pulls in count too. The packages are
# installed (as root) when missing.
. "$(dirname "$0")/../lib/common.sh"
if ! command -v arm-none-eabi-gcc >/dev/null || [ ! -e /usr/lib/arm-none-eabi/newlib/thumb/v7e-m/nofp/libc_nano.a ]; then
	[ "$(id -u)" = 0 ] || { echo "skip - gcc-arm-none-eabi is not installed and this is not root"; exit 0; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
		--no-install-recommends gcc-arm-none-eabi \
		libnewlib-arm-none-eabi >/dev/null || fail "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
fi
B=$SOURCE_DIR/drivers/board
CFLAGS=(-std=c99 -pedantic -Wall -Wextra -Werror -Os -mcpu=cortex-m4 -mthumb -ffunction-sections
	-fdata-sections -DBRD_LINE_MAX=512 -DBRD_MAX_STAGED=8 -DBRD_WINDOW=1 -I"$B" -I"$SOURCE_DIR/drivers/base")
cd "$T"
for f in "$B"/board.c "$B"/frame.c "$B"/sha256.c "$B"/csr.c "$SOURCE_DIR"/drivers/base/b64.c; do
	arm-none-eabi-gcc "${CFLAGS[@]}" -fstack-usage -fcallgraph-info=su -c "$f" ||
		fail "$(basename "$f") does not build for the Cortex-M4"
done

# A firmware short of flash takes the 16-entry CRC table (BRD_CRC_NIBBLE=1): it builds for
# the Cortex-M4. On this host it, and the firmware's default 256-entry table, give the CRC
# that test_board checks in the hosts' build (BRD_CRC_SLICE8): the check value and random
# inputs, whole and continued.
arm-none-eabi-gcc "${CFLAGS[@]}" -DBRD_CRC_NIBBLE=1 -c "$B"/frame.c -o frame-nibble.o ||
	fail "frame.c with BRD_CRC_NIBBLE=1 does not build for the Cortex-M4"
cat >crc.c <<'C'
#include <stdio.h>
#include "frame.h"
int main(void)
{
	unsigned char buf[300];
	unsigned int i, n, x = 7;
	uint32_t crc, want;
	int k;

	if (brd_crc32(0, "123456789", 9) != 0xCBF43926u)
		return 1;
	for (n = 0; n < sizeof(buf); n++) {
		buf[n] = (unsigned char)(x = x * 1103515245u + 12345u) >> 3;
		want = 0xFFFFFFFFu;
		for (i = 0; i <= n; i++)
			for (want ^= buf[i], k = 0; k < 8; k++)
				want = want & 1 ? (want >> 1) ^ 0xEDB88320u : want >> 1;
		crc = brd_crc32(brd_crc32(0, buf, n / 2), buf + n / 2, n + 1 - n / 2);
		if (crc != ~want)
			return 1;
	}
	return 0;
}
C
for variant in -DBRD_CRC_NIBBLE=1 -DBRD_CRC_NIBBLE=0; do
	cc -std=c99 "$variant" -DBRD_LINE_MAX=512 -DBRD_MAX_STAGED=8 -I"$B" -I"$SOURCE_DIR/drivers/base" \
		crc.c "$B"/frame.c "$SOURCE_DIR"/drivers/base/b64.c -o crc-check ||
		fail "the CRC check does not build ($variant)"
	./crc-check || fail "the CRC of the firmware's build ($variant) differs from CRC-32"
done
ok "BRD_CRC_NIBBLE=1: builds for the Cortex-M4; it and the 256-entry table give CRC-32 on this host"

# A firmware stub: one board, ops that the firmware would fill in, a UART loop.
cat >fw.c <<'C'
#include <stddef.h>
#include <stdint.h>
#ifdef WITH_CORE
#include "board.h"
static int st_open(void *i, unsigned int s, const char *p, unsigned int m) { (void)i; (void)s; (void)p; (void)m; return BRD_ERR_IO; }
static int st_write(void *i, unsigned int s, uint64_t o, const void *d, size_t n) { (void)i; (void)s; (void)o; (void)d; (void)n; return BRD_ERR_IO; }
static int st_read(void *i, unsigned int s, uint64_t o, void *d, size_t n, size_t *g) { (void)i; (void)s; (void)o; (void)d; (void)n; *g = 0; return 0; }
static void st_discard(void *i, int s) { (void)i; (void)s; }
static int st_commit(void *i, const struct brd_commit_file *f, unsigned int n) { (void)i; (void)f; (void)n; return BRD_ERR_IO; }
static uint64_t st_gen(void *i) { (void)i; return 0; }
static unsigned int st_count(void *i) { (void)i; return 0; }
static int st_info(void *i, unsigned int x, char *p, size_t c, uint64_t *s) { (void)i; (void)x; (void)p; (void)c; (void)s; return BRD_ERR_NOTFOUND; }
static int st_iread(void *i, unsigned int x, uint64_t o, void *d, size_t n, size_t *g) { (void)i; (void)x; (void)o; (void)d; (void)n; *g = 0; return 0; }
static int st_rread(void *i, enum brd_record r, void *d, size_t c, size_t *l) { (void)i; (void)r; (void)d; (void)c; *l = 0; return BRD_ERR_NOTFOUND; }
static int st_rwrite(void *i, enum brd_record r, const void *d, size_t l) { (void)i; (void)r; (void)d; (void)l; return 0; }
static const struct brd_storage_ops st = { st_open, st_write, st_read, st_discard, st_commit, st_gen, st_count, st_info, st_iread, st_rread, st_rwrite, NULL };
static int k_exists(void *i) { (void)i; return 0; }
static int k_gen(void *i) { (void)i; return BRD_ERR_CRYPTO; }
static int k_pub(void *i, uint8_t p[65]) { (void)i; p[0] = 4; return 0; }
static int k_sign(void *i, const uint8_t d[32], uint8_t s[64]) { (void)i; (void)d; (void)s; return 0; }
static const struct brd_key_ops key = { k_exists, k_gen, k_pub, k_sign, NULL };
static int rnd(void *i, void *b, size_t n) { (void)i; (void)b; (void)n; return 0; }
static const struct brd_random_ops rn = { rnd };
static void send(void *a, const char *b, size_t n, int f) { (void)a; (void)f; while (n--) *(volatile char *)0x40004404 = *b++; }
static void set_baud(void *a, uint32_t r) { (void)a; *(volatile uint32_t *)0x40004408 = r; }
static struct brd_board board;
#endif
int main(void)
{
	uint32_t now = 0;
	char c;
#ifdef WITH_CORE
	static const uint32_t bauds[] = { 115200, 921600 };
	struct brd_config cfg = { "hw", "sku", "fw", "sn", "se", "/var/sota", NULL, 0, 115200, bauds, 2, 512, 2, 65536, 65536, 0,
				  &st, NULL, &key, NULL, &rn, NULL, { NULL, send, set_baud, NULL, NULL, NULL }, NULL };
	if (brd_init(&board, &cfg) != 0)
		return 1;
	brd_boot(&board, now);
#endif
	for (;;) {
		c = *(volatile char *)0x40004400;
		now = *(volatile uint32_t *)0xE000E018;
#ifdef WITH_CORE
		brd_input(&board, &c, 1, now);
		brd_tx_done(&board, now);
		brd_tick(&board, now);
#else
		*(volatile char *)0x40004404 = (char)(c + (char)now);
#endif
	}
}
C
LDFLAGS=(-Os -mcpu=cortex-m4 -mthumb -specs=nano.specs -specs=nosys.specs -Wl,--gc-sections)
arm-none-eabi-gcc "${CFLAGS[@]}" -DWITH_CORE fw.c board.o frame.o sha256.o csr.o b64.o "${LDFLAGS[@]}" -o with.elf ||
	fail "the firmware stub with the core does not link"
arm-none-eabi-gcc "${CFLAGS[@]}" fw.c "${LDFLAGS[@]}" -o without.elf || fail "the bare stub does not link"
read -r wt wd wb _ < <(arm-none-eabi-size with.elf | tail -1)
read -r ot od ob _ < <(arm-none-eabi-size without.elf | tail -1)
flash=$(((wt + wd) - (ot + od)))
static=$(((wd + wb) - (od + ob)))

# Stack: each entry point's frame plus its deepest callee. Calls through pointers are the
# firmware's ops (their stack is the firmware's), except the command table, whose entries
# are added as callees of the dispatch (on_frame, or brd_input when it is inlined there).
stack=$(awk -v ENTRIES="brd_init brd_boot brd_input brd_tx_done brd_tick" '
/^node:/ {
	t = $0; sub(/.*title: "/, "", t); sub(/".*/, "", t); sub(/.*:/, "", t)
	if (match($0, /[0-9]+ bytes/)) own[t] = substr($0, RSTART, RLENGTH) + 0
}
/^edge:/ {
	s = $0; sub(/.*sourcename: "/, "", s); sub(/".*/, "", s); sub(/.*:/, "", s)
	d = $0; sub(/.*targetname: "/, "", d); sub(/".*/, "", d); sub(/.*:/, "", d)
	calls[s] = calls[s] " " d
}
function depth(f,    n, i, c, m, x) {
	if (f in memo) return memo[f]
	memo[f] = 0
	n = split(calls[f], c, " ")
	for (i = 1; i <= n; i++) { x = depth(c[i]); if (x > m) m = x }
	return memo[f] = own[f] + m
}
END {
	cmds = " cmd_hello cmd_csr cmd_write cmd_commit cmd_verify cmd_baud cmd_done"
	calls["on_frame"] = calls["on_frame"] cmds
	calls["brd_input"] = calls["brd_input"] cmds  # on_frame may be inlined
	n = split(ENTRIES, e, " ")
	for (i = 1; i <= n; i++) { x = depth(e[i]); if (x > max) { max = x; at = e[i] } }
	print max, at
}' ./*.ci)
read -r stack at <<<"$stack"
ram=$((static + stack))
echo "Cortex-M4 -Os: flash $flash B (text+data), RAM $ram B = $static B static (one board, LINE_MAX 512, 8 staged files, WINDOW 1) + $stack B stack ($at, the worst entry point)"
[ "$stack" -gt 0 ] || fail "no stack figure from -fcallgraph-info"
[ "$flash" -le 24576 ] || fail "flash $flash B is over 24 KiB"
[ "$ram" -le 6144 ] || fail "RAM $ram B is over 6 KiB"
ok "board core on a Cortex-M4: flash $flash B <= 24 KiB, RAM $ram B <= 6 KiB"
echo "all passed"
