#!/usr/bin/env bash
# Failed boards in a row on a slot: the first is tried again at once (a person's retry),
# then the slot waits 1 s, 2 s, 4 s ... (at most 30 s) before the next run, so a board that
# fails and reboots in a loop, or fixtures swapped by a machine, cannot start runs, attempt
# rows and console logs hundreds of times a second. A board seen gone (the port lost, a
# presence check unanswered) ends the streak: the next one starts at once.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
line_setup
ev="$T/events.jsonl"

# Five boards put in one after the other by the fixture itself, each failing its CSR check.
start_simboard 1 --seed 41 --total 5 --fault bad-csr=wrong-cn:board0
"$STATION" run -c "$pki/run.yaml" --events "$ev" --boards 6 --no-view >"$T/run.out" \
	2>"$T/run.err" &
RUNPID=$!
wait_for_line "$ev" '"event":"fail"' 60 "$RUNPID" 5 ||
	fail "five failures: $(grep -c '"event":"fail"' "$ev"): $(tail -3 "$T/run.err")"
[ "$(grep '"event":"fail"' "$ev" | grep -c '"reason":"CSR_CN_MISMATCH"')" = 5 ] ||
	fail "failures: $(grep '"event":"fail"' "$ev" | jq -c '[.slot,.reason]')"
# Each run's start (its end less its total time) against the end of the one before.
grep '"event":"fail"' "$ev" | python3 -c '
import json, sys, datetime
runs = []
for line in sys.stdin:
    o = json.loads(line)
    end = datetime.datetime.strptime(o["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    runs.append((end - o["ms"]["total"] / 1000, end))
want = [0, 1, 2, 4]
for k in range(1, len(runs)):
    gap = runs[k][0] - runs[k - 1][1]
    print("after failure %d: the next run started %.3f s later (at least %d)" % (k, gap, want[k - 1]))
    if gap < want[k - 1] - 0.01:
        sys.exit(1)
' >"$T/gaps" || fail "runs started too soon: $(cat "$T/gaps")"
sed 's/^/# /' "$T/gaps"
[ "$(grep -c "slot board0: [0-9] failures in a row; the next board starts in" "$T/run.err")" = 3 ] ||
	fail "the waits are not said once each: $(grep "failures in a row" "$T/run.err")"
ok "five failures in a row: the runs after them waited 0, 1, 2 and 4 s, each wait said in the log"

# The fixture taken away (its port lost) and a good board put in: it starts at once.
stop_simboard
start_simboard 1 --seed 42
rc=0
wait "$RUNPID" || rc=$?
[ "$rc" = 1 ] || fail "station run: exit status $rc (1: boards failed): $(tail -3 "$T/run.err")"
[ "$(grep -c '"event":"pass"' "$ev")" = 1 ] || fail "the good board: $(tail -1 "$ev")"
[ "$(grep -c "failures in a row" "$T/run.err")" = 3 ] ||
	fail "the board after the port was lost waited: $(grep "failures in a row" "$T/run.err" | tail -1)"
ok "the port lost ends the streak: the next board starts at once and passes"
stop_simboard
grep -q "AddressSanitizer\|runtime error" "$T"/*.err && fail "sanitizer report"
echo "all passed"
