#!/usr/bin/env bash
# The operator console at 1,024 slots: does a page keep up with a line at full speed? The
# station drives 1,024 simulated boards, unpaced, four boards a fixture (4,096 in all), while
# one page in Debian's chromium (headless) follows it from before the first port appears to
# the stop. Printed: the event lines the station made and the page applied (all of them, and
# none lost, when it kept up: one connection, no gap in the message ids), the rate, the lag
# from an event's time stamp to the page applying it, and what applying and drawing cost the
# page's main thread. A benchmark, not a test: the figures move with the machine's load.
# Usage: tests/bench/bench_console.sh [BUILD_DIR]   (BENCH_CONSOLE_SLOTS, _TOTAL to change)
SOURCE_DIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${1:-${BUILD_DIR:-$SOURCE_DIR/build}}
. "$SOURCE_DIR/tests/lib/common.sh"
. "$SOURCE_DIR/tests/lib/line.sh"
SLOTS=${BENCH_CONSOLE_SLOTS:-1024}
TOTAL=${BENCH_CONSOLE_TOTAL:-$((SLOTS * 4))}
CHROMIUM=$(command -v chromium) || fail "chromium is not installed (tests/lib/deps.sh lists it)"
STPID= BPID=
line_cleanup() {
	[ -z "$BPID" ] || kill "$BPID" 2>/dev/null || true
	[ -z "$STPID" ] || kill -9 "$STPID" 2>/dev/null || true
}

PORT=$(free_port)
pki="$T/pki"
dev_pki "$pki" acme-factory
line_profile "$pki"
line_config "$pki/run.yaml" <<EOF
station: bench-station
slots:
  - glob: $LINE_DIR/*/tty
    name: "{parent}"
timeouts:
  rescan: 200
pool:
  workers: 2
http:
  listen: 127.0.0.1:$PORT
EOF
ev="$T/events.jsonl"
"$STATION" run -c "$pki/run.yaml" --events "$ev" --no-view >"$T/run.out" 2>"$T/run.err" &
STPID=$!
wait_for_line "$T/run.err" "operator console on" 60 "$STPID" || fail "$(tail -3 "$T/run.err")"

# The page first, then the boards: it sees every event the line makes.
mkdir -p "$T/profile"
/usr/bin/python3 "$SOURCE_DIR/tests/lib/browser.py" --chromium "$CHROMIUM" --profile "$T/profile" \
	"http://127.0.0.1:$PORT/console" \
	'wait:60:window.consoleStats && consoleStats.snapshots > 0' \
	'eval:true' \
	'wait:3600:consoleStats.stopped' \
	"eval:({ stats: consoleStats, slots: document.querySelectorAll('#grid .slot').length, boards: +document.getElementById('t-boards').textContent })" \
	>"$T/page.out" 2>"$T/page.err" &
BPID=$!
for ((i = 0; i < 600; i++)); do
	[ -s "$T/page.out" ] && break
	kill -0 "$BPID" 2>/dev/null || fail "the page: $(cat "$T/page.err")"
	sleep 0.1
done
start_simboard "$SLOTS" --seed 3 --total "$TOTAL" --no-fsync
t0=$(date +%s.%N)
wait_for_line "$ev" '"event":"(pass|fail)"' 3600 "$STPID" "$TOTAL" || fail "the boards did not finish"
t1=$(date +%s.%N)
kill -TERM "$STPID"
wait "$STPID" || true
STPID=
wait "$BPID" || fail "the page: $(cat "$T/page.err")"
BPID=
sed -n 2p "$T/page.out" >"$T/page.json"
lines=$(grep -vc '"event":"summary"' "$ev")
jq -r --argjson lines "$lines" --argjson secs "$(awk -v a="$t0" -v b="$t1" "BEGIN { print b - a }")" --argjson total "$TOTAL" '
	.stats as $s |
	(($s.lastMessage - $s.firstMessage) / 1000) as $span |
	"console at \(.slots) slots, \($total) boards in \($secs | . * 10 | round / 10) s (\($total / $secs * 3600 | round) boards/hour)",
	"  event lines: the station made \($lines), the page applied \($s.events)\(if $s.events == $lines and $s.gaps == 0 and $s.connects == 1 then " (all: it kept up)" else " (it fell behind: \($s.gaps) gaps, \($s.connects) connections)" end)",
	"  messages: \($s.messages) (\($s.slotUpdates) slot updates, \($s.snapshots) snapshots), \($s.bytes / 1048576 | . * 10 | round / 10) MiB, \($s.messages / $span | round)/s over \($span | round) s",
	"  event lines applied: \($s.events / $span | round)/s",
	"  lag from an event to the page: mean \($s.lagSum / ([$s.lagN, 1] | max) | round) ms, max \($s.lagMax) ms",
	"  the page main thread: applying \($s.applyMs / $span / 10 | . * 10 | round / 10)% (max \($s.maxApplyMs | round) ms a message), drawing \($s.frames) frames, mean \($s.renderMs / ([$s.frames, 1] | max) | . * 10 | round / 10) ms, max \($s.maxRenderMs | round) ms"
' "$T/page.json"
grep -h "dropped" "$T/run.err" || true
stop_simboard
