#!/usr/bin/env bash
# The board core's rules (drivers/board/README.md), checked on its sources and its library:
# it includes only <stddef.h>, <stdint.h>, <string.h>, its own headers and drivers/base/b64.h
# (nothing of station/, nothing else of drivers/, no OS or crypto header); the only outside
# symbols its library uses are the C library's memory and string functions (no heap, no
# printf, no OS call); it has no writable static data (every board's state is in its struct).
. "$(dirname "$0")/../lib/common.sh"
B=$SOURCE_DIR/drivers/board
# The core as a firmware builds it: the sources alone, plain C99, no sanitizer or other
# instrumentation of the test build (which adds run-time calls and metadata of its own).
LIB=$T/libstboard.a
for c in board frame sha256 csr; do
	cc -std=c99 -pedantic -Wall -Wextra -Werror -Os -I"$B" -I"$B/../base" -c "$B/$c.c" \
		-o "$T/$c.o" || fail "the core does not build alone: $c.c"
done
cc -std=c99 -pedantic -Wall -Wextra -Werror -Os -I"$B/../base" -c "$B/../base/b64.c" -o "$T/b64.o" ||
	fail "b64.c does not build alone"
(cd "$T" && ar rcs "$LIB" board.o frame.o sha256.o csr.o b64.o) || fail "ar"
bad=$(grep -H '^[[:space:]]*#[[:space:]]*include' "$B"/*.c "$B"/*.h |
	grep -vE '#include (<(stddef|stdint|string)\.h>|"(board|frame|sha256|csr|b64|crc32_table|crc32_slice8)\.h")' || true)
[ -z "$bad" ] || fail "the core includes what it may not: $bad"
ok "includes: only <stddef.h>, <stdint.h>, <string.h>, its own headers and b64.h"
ext=$(nm -u "$LIB" | awk 'NF == 2 { print $2 }' | sort -u | grep -vE '^(brd_|drv_b64_)' |
	grep -vxE 'mem(cpy|set|cmp|move)|str(len|cmp|ncmp)' || true)
[ -z "$ext" ] || fail "the core calls outside the C library's string functions: $(echo $ext)"
ok "outside symbols: memcpy, memset, memcmp, memmove, strlen, strcmp, strncmp"
# The hosts' build of the frame codec (BRD_FAST_SCAN, BRD_CRC_SLICE8) adds memchr, no more.
cc -std=c99 -pedantic -Wall -Wextra -Werror -Os -DBRD_FAST_SCAN=1 -DBRD_CRC_SLICE8=1 -I"$B" \
	-I"$B/../base" -c "$B/frame.c" -o "$T/frame-hosts.o" || fail "frame.c does not build as the hosts build it"
ext=$(nm -u "$T/frame-hosts.o" | awk 'NF == 2 { print $2 }' | sort -u | grep -vE '^(brd_|drv_b64_)' |
	grep -vxE 'mem(chr|cpy|set|cmp|move)|str(len|cmp|ncmp)' || true)
[ -z "$ext" ] || fail "the hosts' frame.c calls outside the C library's string functions: $(echo $ext)"
ok "the hosts' build of frame.c: memchr besides those"
# Writable static data: .data or .bss (read-only tables may sit in .data.rel.ro for PIE).
for o in $(ar t "$LIB"); do
	sizes=$(ar p "$LIB" "$o" >"$T/$o" && size -A "$T/$o" | awk '$1 == ".data" || $1 == ".bss" || $1 ~ /^\.(data|bss)\./ && $1 !~ /rel\.ro/ { s += $2 } END { print s + 0 }')
	[ "$sizes" = 0 ] || fail "$o has $sizes bytes of writable static data"
done
ok "no writable static data in $(ar t "$LIB" | wc -l) objects"
echo "all passed"
