#!/usr/bin/env bash
# The board core's scans over a frame (the printable check, the runs of ordinary bytes a
# decoder takes in bulk, a field's value) and its CRC-32 come in a firmware's build (plain
# loops, the 256-entry table) and the hosts' (BRD_FAST_SCAN: memchr and a check without an
# early exit; BRD_CRC_SLICE8: eight bytes a step). board_scans.c prints what the codec makes
# of thousands of frames, good and damaged, alone and as one stream cut at random: both
# builds must print the same, and the stream must give frames and errors.
. "$(dirname "$0")/../lib/common.sh"
B=$SOURCE_DIR/drivers/board
cc_core() {
	cc -std=c99 -O2 -Wall -Wextra -Werror "$@" -I"$B" -I"$SOURCE_DIR/drivers/base" \
		"$SOURCE_DIR/tests/integration/board_scans.c" "$B/frame.c" \
		"$SOURCE_DIR/drivers/base/b64.c"
}
cc_core -o "$T/firmware" || fail "board_scans.c does not build as a firmware builds the core"
cc_core -DBRD_FAST_SCAN=1 -DBRD_CRC_SLICE8=1 -o "$T/hosts" ||
	fail "board_scans.c does not build as the hosts build the core"
"$T/firmware" >"$T/firmware.out" || fail "the firmware's build of board_scans failed"
"$T/hosts" >"$T/hosts.out" || fail "the hosts' build of board_scans failed"
for what in '^frame ' '^error ' '^stream error ' 'bad percent escape' 'not printable' \
	"'~' is not allowed" 'bad CRC' '^frame .* data@'; do
	has -e "$what" "$T/firmware.out" || fail "no line matching \"$what\": the cases miss it"
done
cmp -s "$T/firmware.out" "$T/hosts.out" ||
	fail "the hosts' build differs from the firmware's: $(diff "$T/firmware.out" "$T/hosts.out" | head -4)"
ok "the hosts' scans and CRC give what the firmware's do: $(grep -c '^frame ' "$T/hosts.out") frames," \
	"$(grep -c 'error ' "$T/hosts.out") errors"
