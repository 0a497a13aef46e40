#!/usr/bin/env bash
# Nothing a board sends is written raw. Two boards report a SKU and a firmware version full
# of control characters; one of them fails at its first WRITE once its certificate is signed
# (the third: client.pem) with an ERROR whose text (printed on its console first) holds every
# control character, a journald entry forged with a line break ("%0A<3>" on the wire),
# terminal escapes that clear the screen and set the title, bytes that are not UTF-8, C1
# controls, a bidi override and, past them, more text than any message holds. Wherever the station writes what it got (the log on stderr, the JSON events, the
# live view, the ledger's reason column, the saved console) it is printable and escaped, not
# dropped: the forged entry shows as the text "\n<3>error: forged entry" on the line of the
# failure, and a long text ends in "..." instead of being cut without a word.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"

# Every byte 0x01-0x1f and 0x7f (NUL cannot be carried: %00 is refused by the protocol).
controls=""
for ((c = 1; c < 32; c++)); do
	controls+=$(printf "\\x$(printf %02x "$c")")
done
# $(...) drops trailing line feeds: put one in the middle on purpose.
controls+=$'\n'"|"$'\x7f'
text=$'flash\n<3>error: forged entry\r\x1b[2J\x1b[H\x1b]0;owned\x07 ctl['"$controls"$']'
text+=$' bad utf-8[\xff\xfe\xc0\x80\xed\xa0\x80] c1[\xc2\x9b31m\xc2\x85] bidi[\xe2\x80\xaeevil] '
# Past the controls, enough to overflow any message buffer once escaped.
for ((i = 0; i < 60; i++)); do
	text+=$'\x1b[5m BLINK'
done
sku=$'sim\x1b[31m-sku\n<2>crit'
fw=$'fw\r\x1b[1A\x1b[Kok'

line_setup
start_simboard 2 --seed 21 --sku "$sku" --firmware "$fw" --fault error=WRITE/3:board0 \
	--error-text "$text"
timeout 120 "$STATION" run -c "$pki/run.yaml" --events "$T/ev.jsonl" --boards 2 --no-view \
	>"$T/run.out" 2>"$T/run.err" || true
grep -q '"event":"summary"' "$T/ev.jsonl" || fail "no summary: $(tail -5 "$T/run.err")"

# raw_bytes FILE [CLASS]: fails when FILE holds a byte of CLASS (default: the control bytes
# but the line feed), C1 controls or bidi overrides in UTF-8, or is not valid UTF-8.
raw_bytes() {
	local file=$1 class=${2:-'[\x00-\x09\x0b-\x1f\x7f]'} what
	what=$(LC_ALL=C grep -naP "$class" "$file" | head -3) || true
	[ -z "$what" ] || fail "$file has raw control bytes: $(printf %q "$what")"
	if LC_ALL=C grep -qaP '\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]' "$file"; then
		fail "$file has C1 controls or bidi overrides"
	fi
	iconv -f UTF-8 -t UTF-8 "$file" >/dev/null 2>&1 || fail "$file is not valid UTF-8"
}

# The log: one line per message, none forged, the forgery shown escaped.
raw_bytes "$T/run.err"
if grep -q '^<3>error: forged' "$T/run.err"; then fail "a forged log entry: $(grep -n forged "$T/run.err")"; fi
bad=$(grep -v '^<[0-7]>' "$T/run.err" | head -3) || true
[ -z "$bad" ] || fail "a log line without its priority prefix (a forged one?): $bad"
grep -F 'ERROR STORAGE: flash\n<3>error: forged entry\r\x1b[2J\x1b[H\x1b]0;owned\x07 ctl[\x01\x02' \
	"$T/run.err" >/dev/null || fail "the failure's log line lacks the escaped text: $(grep STORAGE "$T/run.err")"
grep -F 'bad utf-8[\xff\xfe\xc0\x80\xed\xa0\x80] c1[\u009b31m\u0085] bidi[\u202eevil]' \
	"$T/run.err" >/dev/null || fail "invalid UTF-8, C1 or bidi not escaped: $(grep STORAGE "$T/run.err")"
ok "log: printable, no forged entry, the board's text escaped"

# The events: valid JSON, and decoded still printable.
jq -c . "$T/ev.jsonl" >/dev/null || fail "events are not JSON"
jq -r '.. | strings' "$T/ev.jsonl" >"$T/ev.strings"
raw_bytes "$T/ev.strings"
err0=$(jq -r 'select(.event == "fail") | .error' "$T/ev.jsonl")
reason=$(jq -r 'select(.event == "fail") | .reason' "$T/ev.jsonl")
[ "$reason" = PROTO_REMOTE ] || fail "board0: reason $reason, expected PROTO_REMOTE"
case $err0 in
'the board answered WRITE with ERROR STORAGE: flash\n<3>error: forged entry\r\x1b[2J'*'...') ;;
*) fail "board0's error is not the whole escaped text, ending in ...: $err0" ;;
esac
[ "${#err0}" -le 1024 ] || fail "board0's error is ${#err0} bytes"
[ "$(jq -r 'select(.event == "pass") | .sku' "$T/ev.jsonl")" = 'sim\x1b[31m-sku\n<2>crit' ] ||
	fail "the passed board's sku: $(jq -r 'select(.event == "pass") | .sku' "$T/ev.jsonl")"
ok "events: the error and the sku escaped; a long text ends in ..."

# The ledger's reason column.
sqlite3 -readonly "$pki/ledger.db" "SELECT reason FROM certificates WHERE state = 'failed'" \
	>"$T/reasons"
[ -s "$T/reasons" ] || fail "no failed ledger row"
raw_bytes "$T/reasons"
grep -qF 'flash\n<3>error: forged entry' "$T/reasons" || fail "ledger reason: $(cat "$T/reasons")"
"$STATION" ledger -c "$pki/run.yaml" list >"$T/list"
raw_bytes "$T/list"
ok "ledger: the reason escaped"

# The saved console: lines kept, everything else escaped.
cons=$(ls "$T/consoles/"board0-*.log)
raw_bytes "$cons" '[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]'
grep -qF 'flash' "$cons" || fail "console log lacks the board's output"
grep -qF '\x1b[2J\x1b[H\x1b]0;owned\x07' "$cons" || fail "console log: escapes not shown: $(cat "$cons")"
if LC_ALL=C grep -qaP '\x1b\[2J' "$cons"; then fail "console log clears the screen"; fi
ok "console log: lines kept, escapes shown as text"

# The view, in a terminal wide enough for the whole reason: the board's text is on the
# failed slot's line, escaped; what the station wrote to the terminal (recorded raw) holds
# none of the board's escapes or control bytes.
stop_simboard
LINE_DIR=$T/line2
sed "s#$T/line/map.yaml#$LINE_DIR/map.yaml#" "$pki/run.yaml" >"$pki/view.yaml"
start_simboard 1 --seed 22 --sku "$sku" --fault error=WRITE/3:board0 --error-text "$text"
command -v tmux >/dev/null || fail "tmux is not installed (tests/lib/deps.sh lists it)"
tm() {
	tmux -S "$T/tmux.sock" "$@"
}
line_cleanup() {
	[ ! -s "$T/station.pid" ] || kill -TERM "$(cat "$T/station.pid")" 2>/dev/null || true
	tm kill-server 2>/dev/null || true
}
tm new-session -d -s v -x 600 -y 30 "env -u NO_COLOR PS1='$ ' bash --norc --noprofile"
tm pipe-pane -t v -o "cat >$T/view.raw"
tm send-keys -t v -l "bash -c 'echo \$\$ >$T/station.pid; exec $STATION run -c $pki/view.yaml --events $T/ev2.jsonl 2>$T/view.err'; echo \"exit status \$?\""
tm send-keys -t v Enter
for ((i = 0; i < 600; i++)); do
	tm capture-pane -t v -p -J >"$T/screen"
	grep -qF 'ERROR STORAGE: flash\n<3>error: forged entry\r\x1b[2J' "$T/screen" && break
	grep -q "^exit status" "$T/screen" && fail "station run exited: $(cat "$T/screen")"
	sleep 0.1
done
grep -E '^board0 +FAIL .*ERROR STORAGE: flash\\n<3>error: forged entry\\r\\x1b\[2J' "$T/screen" >/dev/null ||
	fail "the view does not show the escaped reason: $(cat "$T/screen")"
kill -TERM "$(cat "$T/station.pid")"
for ((i = 0; i < 600; i++)); do
	tm capture-pane -t v -p -J >"$T/screen"
	grep -q "^exit status" "$T/screen" && break
	sleep 0.1
done
: >"$T/station.pid"
grep -q "^exit status" "$T/screen" || fail "station run did not stop"
if LC_ALL=C grep -qaP '\x1b\[2J|\x1b\]|\x07|\x1b\[5m|\x1b\[1A|\x1b\[31m' "$T/view.raw"; then
	fail "the view wrote the board's escapes"
fi
if LC_ALL=C grep -qaP '[\x00-\x06\x0e-\x1a\x1c-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80\xae' "$T/view.raw"; then
	fail "the view wrote the board's control bytes"
fi
ok "view: the board's text shown escaped, none of its escapes obeyed"
echo "all passed"
