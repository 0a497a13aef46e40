#!/usr/bin/env bash
# The live view of `station run` as an operator sees it: the station runs in a terminal
# (tmux), with 16 and then 256 simulated boards, two of which fail (bad CSR signature). At
# 80x24, 120x40 and 200x60 the screen has the header with the totals, no line wider than the
# terminal, every slot (a line each for 16, the grid for 256), the failed slots with their
# reason in words and its action (whole at 80 columns), and no log line written over it.
# Ctrl-Z gives the shell its screen back and fg brings the view back; after Ctrl-C the normal
# screen has the failures and the summary; boards/hour is one figure, labelled alike, in the
# view, the summary and the summary event.
# With stdout not a terminal there is no view unless --view asks for one; NO_COLOR turns the
# colours off. The screen is polled until it shows what is expected (bounded), never slept on.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
command -v tmux >/dev/null || fail "tmux is not installed (tests/lib/deps.sh lists it)"

SOCK="$T/tmux.sock"
tm() {
	tmux -S "$SOCK" "$@"
}
# The station in the terminal: a hang-up of its terminal does not end it (SIGHUP reloads the
# profiles), so it is stopped by its pid.
stop_station() {
	local pid
	pid=$(cat "$T/station.pid" 2>/dev/null) || return 0
	rm -f "$T/station.pid"
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
}
trap 'rc=$?; stop_station; tm kill-server 2>/dev/null || true; stop_simboard; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT

line_setup
# The two faulty boards fail in the CSR check and stay in their fixtures.
FAULT="bad-csr=bad-sig:5,11"

# capture [-e]: the pane as text, wrapped lines joined (a line wider than the terminal shows
# as one long line).
capture() {
	tm capture-pane -t v -p -J "$@"
}

# until_screen WHAT CHECK [ARGS...]: polls the screen until CHECK (a function that reads
# $T/screen and sets $why on failure) passes; fails after 60 s with the last screen.
until_screen() {
	local what=$1 i
	shift
	why=
	for ((i = 0; i < 600; i++)); do
		capture >"$T/screen"
		"$@" && return 0
		sleep 0.1
	done
	echo "---- screen:" >&2
	cat "$T/screen" >&2
	fail "$what: $why"
}

# has_line REGEX: some line of the screen matches.
has_line() {
	grep -qE -- "$1" "$T/screen" || {
		why="no line matches /$1/"
		return 1
	}
}

# view_ok W H N [WAS]: the view at W x H with N slots: header, widths, slots, failures, no
# raw log lines; drawn for this size (a line wider than WAS, the width before a resize: the
# recent log lines are wider than 120 columns).
view_ok() {
	local w=$1 h=$2 n=$3 was=${4:-0} long widest
	long=$(awk -v w="$w" 'length($0) > w { print length($0) ": " $0; exit }' "$T/screen")
	[ -z "$long" ] || {
		why="a line wider than $w columns: $long"
		return 1
	}
	widest=$(awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }' "$T/screen")
	[ "$widest" -gt "$was" ] || {
		why="not redrawn for $w columns yet (the widest line has $widest)"
		return 1
	}
	[ "$(wc -l <"$T/screen")" -le "$h" ] || {
		why="more than $h lines"
		return 1
	}
	head -1 "$T/screen" | has -E "^station test-station  up [0-9]+:[0-9]{2}:[0-9]{2}  (slots $n:|$n slots:)" || {
		why="no header line: $(head -1 "$T/screen")"
		return 1
	}
	has_line "^boards $n: $((n - 2)) passed, 2 failed  [0-9]+ boards/hour" || return 1
	has_line "^failed by reason: CSR_SIGNATURE 2" || return 1
	has_line "^board5 +FAIL .*CSR self-signature does not verify: swap board" || return 1
	has_line "^board11 +FAIL .*CSR self-signature does not verify: swap board" || return 1
	if grep -qE '^(station: |<[0-9]>)' "$T/screen"; then
		why="a log line on the view: $(grep -m1 -E '^(station: |<[0-9]>)' "$T/screen")"
		return 1
	fi
	if [ "$n" -le 16 ]; then
		has_line "^SLOT +STATE +(DEVICE ID +)?TIME CAUSE" || return 1
		for ((i = 0; i < n; i++)); do
			has_line "^board$i +(PASS|FAIL) " || return 1
		done
		return 0
	fi
	# Every slot in the grid: "12+" cells (short names), or a row label and glyph groups.
	local verdict
	verdict=$(awk -v n="$n" '
		/^slots board\*:/ { g = 1; next }
		/^attention:/ { g = 0 }
		!g || /^ *\+0/ { next }
		/more slots/ { more = 1 }
		{
			if ($1 ~ /^[0-9]+$/ && NF >= 2 && $2 !~ /^[0-9]/) {
				for (i = 2; i <= NF; i++) glyphs += length($i)
			} else {
				for (i = 1; i <= NF; i++)
					if ($i ~ /^[0-9]+[^0-9]$/) seen[substr($i, 1, length($i) - 1) + 0]++
			}
		}
		END {
			if (more) { print "some slots are left out"; exit }
			if (glyphs) { if (glyphs != n) print glyphs " glyphs for " n " slots"; exit }
			for (k = 0; k < n; k++) if (seen[k] != 1) { print "slot " k " shown " seen[k] + 0 " times"; exit }
		}' "$T/screen")
	[ -z "$verdict" ] || {
		why="grid: $verdict"
		return 1
	}
	has_line "^attention: 2 failed" || return 1
}

summary_ok() {
	local n=$1
	has_line "^exit status 1$" || return 1
	has_line "^station test-station: $n boards in [0-9.]+ s, [0-9]+ boards/hour$" || return 1
	has_line "^  $((n - 2)) passed .*, 2 failed, 0 abandoned$" || return 1
	has_line "^  failed 2: CSR self-signature does not verify: swap board$" || return 1
	has_line "^station: warning: \\[[0-9:]{8}\\] slot board5: device .*: failed in csr: CSR rejected" || return 1
	if grep -qE '^(slots board\*:|attention:|SLOT +STATE|recent:)' "$T/screen"; then
		why="the view is still on the screen after the exit"
		return 1
	fi
}

# run_line N: a fresh line of N boards, the station in a terminal; checks the view at three
# sizes, Ctrl-Z and fg (16 boards), then Ctrl-C and the summary.
run_line() {
	local n=$1 size w h was=0 ev="$T/events-$1.jsonl"
	stop_simboard
	rm -rf "$T/line"
	start_simboard "$n" --seed 5 --fault "$FAULT"
	stop_station
	tm kill-server 2>/dev/null || true
	SOCK="$T/tmux-$n.sock" # a new server for each line
	tm new-session -d -s v -x 80 -y 24 "env -u NO_COLOR PS1='$ ' bash --norc --noprofile"
	tm send-keys -t v -l "bash -c 'echo \$\$ >$T/station.pid; exec $STATION run -c $pki/run.yaml --events $ev'; echo \"exit status \$?\""
	tm send-keys -t v Enter
	# Every board finished (the events say so): the screen is steady but for the times.
	for ((i = 0; i < 3000; i++)); do
		[ "$(cat "$ev" 2>/dev/null | grep -cE '"event":"(pass|fail)"')" -ge "$n" ] && break
		capture >"$T/screen"
		grep -q "^exit status" "$T/screen" && fail "station run exited: $(cat "$T/screen")"
		sleep 0.1
	done
	[ "$(grep -cE '"event":"(pass|fail)"' "$ev")" -ge "$n" ] || fail "$n boards did not finish"
	for size in 80x24 120x40 200x60; do
		w=${size%x*}
		h=${size#*x}
		tm resize-window -t v -x "$w" -y "$h"
		until_screen "$n slots at $size" view_ok "$w" "$h" "$n" "$was"
		was=$w
		cp "$T/screen" "$T/screen-$n-$size.txt"
		ok "$n slots at $size: header, every slot, both failures with their reason, no line over $w columns, no log line"
	done
	# Colours: failures in red (SGR 31), unless NO_COLOR (checked below).
	capture -e >"$T/screen-color"
	grep -q $'\e\\[[0-9;]*31m' "$T/screen-color" || fail "$n slots: no red on the screen"
	if [ "$n" -le 16 ]; then
		tm send-keys -t v C-z
		until_screen "Ctrl-Z" has_line "Stopped"
		if grep -qE '^(SLOT +STATE|recent:)' "$T/screen"; then fail "Ctrl-Z left the view on the screen"; fi
		tm send-keys -t v -l "fg; echo \"exit status \$?\""
		tm send-keys -t v Enter
		until_screen "fg" view_ok 200 60 "$n" 120
		ok "Ctrl-Z gives the shell its screen, fg brings the view back"
	fi
	tm send-keys -t v C-c
	until_screen "summary after Ctrl-C" summary_ok "$n"
	rm -f "$T/station.pid"
	cp "$T/screen" "$T/screen-$n-exit.txt"
	ok "$n slots: after Ctrl-C the normal screen has the failures and the summary"
	# One boards/hour: the view's last figure (no board finished since), the summary's and
	# the summary event's.
	local live summary json
	live=$(grep -oE '[0-9]+ boards/hour' "$T/screen-$n-200x60.txt" | head -1)
	summary=$(grep -oE '[0-9]+ boards/hour$' "$T/screen" | head -1)
	json=$(grep '"event":"summary"' "$ev" | jq -r '"\(.boards_per_hour) boards/hour"')
	[ -n "$live" ] && [ "$live" = "$summary" ] && [ "$summary" = "$json" ] ||
		fail "$n slots: boards/hour differs: view '$live', summary '$summary', event '$json'"
	ok "$n slots: $live in the view, the summary and the summary event"
	if [ "$n" -le 16 ]; then
		# A crash gives the terminal back too: a station killed by SIGSEGV leaves the
		# normal screen (and its cursor) to the shell.
		tm send-keys -t v -l "clear; bash -c 'echo \$\$ >$T/station.pid; exec $STATION run -c $pki/run.yaml --events $T/ev-crash.jsonl'; echo \"exit status \$?\""
		tm send-keys -t v Enter
		until_screen "the view again" has_line "^SLOT +STATE"
		kill -SEGV "$(cat "$T/station.pid")"
		until_screen "the shell after SIGSEGV" crashed_ok
		rm -f "$T/station.pid"
		ok "SIGSEGV: the terminal is back on the normal screen"
	fi
}

crashed_ok() {
	has_line "^exit status [1-9][0-9]*$" || return 1
	if grep -qE '^(SLOT +STATE|recent:|failed by reason:)' "$T/screen"; then
		why="the view is still on the screen after the crash"
		return 1
	fi
	tm display-message -p -t v '#{alternate_on} #{cursor_flag}' >"$T/modes"
	[ "$(cat "$T/modes")" = "0 1" ] || {
		why="alternate screen and cursor flags: $(cat "$T/modes") (expected 0 1)"
		return 1
	}
}

run_line 16

# Without a terminal on stdout: no view (nothing but the summary on stdout); --view draws
# one anyway (alternate screen, header); NO_COLOR: the view without colours.
"$STATION" run -c "$pki/run.yaml" --events "$T/ev-notty.jsonl" --boards 16 >"$T/notty.out" 2>"$T/notty.err" || true
if grep -q $'\e' "$T/notty.out"; then fail "a view on stdout that is not a terminal: $(cat -v "$T/notty.out" | head -5)"; fi
grep -q "^station test-station: 16 boards in" "$T/notty.out" || fail "no summary: $(cat "$T/notty.out")"
grep -q "slot board5: .*failed in csr" "$T/notty.err" || fail "log lines missing without the view: $(cat "$T/notty.err")"
ok "stdout not a terminal: no view, the summary and the log lines as usual"
TERM=xterm NO_COLOR=1 "$STATION" run -c "$pki/run.yaml" --events "$T/ev-view.jsonl" --boards 16 --view \
	>"$T/view.out" 2>"$T/view.err" || true
grep -q $'\e\\[?1049h' "$T/view.out" || fail "--view: no alternate screen"
grep -q "station test-station  up" "$T/view.out" || fail "--view: no header"
if grep -q $'\e\\[[0-9;]*m' <(sed $'s/\e\\[0m//g' "$T/view.out"); then fail "NO_COLOR: colours in the view"; fi
grep -q "slot board5: .*failed in csr" "$T/view.err" || fail "--view: log lines to a file stderr were lost"
ok "--view without a terminal draws the view; NO_COLOR: no colours"

run_line 256
stop_simboard
echo "all passed"
