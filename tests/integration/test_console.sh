#!/usr/bin/env bash
# The operator console in a real browser: Debian's chromium, headless, driven over the
# DevTools protocol (tests/lib/browser.py), loads /console of a running line of 16 simulated
# boards that print boot noise on their consoles, four of which fail, one of each action: a broken CSR signature (swap board), an RSA
# key and a CSR for another device id (call engineer), a board that hangs mid-write (retry).
# A page opened before the boards finish and one opened after (from its snapshot alone) both
# show every slot, the failed ones red with their action and its instruction, and the totals
# and boards/hour of the summary the station writes when it stops. A slot's console log and
# ledger row are one click away; the ledger search finds a board by device id and by serial;
# the day's report is the CSV of `station ledger export` (RFC 4180). Screenshots at 1920x1080
# and 1280x720 are kept in the build tree (tests/artifacts/console-*.png). The console is
# read-only (no method but GET and HEAD), off with `console: false`, served by `station serve`
# too, and beyond loopback it answers only with a token (the header, or the cookie its
# login page sets).
# labels: slow browser
# (the release build runs it: under the sanitizers the line can end before a late page connects)
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/line.sh"
. "$(dirname "$0")/../lib/http.sh"
CHROMIUM=$(command -v chromium) || fail "chromium is not installed (tests/lib/deps.sh lists it)"
PY=/usr/bin/python3
[ -x "$PY" ] || fail "Debian's python3 is not installed (tests/lib/deps.sh lists it)"
BROWSER="$SOURCE_DIR/tests/lib/browser.py"
ART="$BUILD_DIR/tests/artifacts"
mkdir -p "$ART"
STPID= BPID=
# http.sh's exit trap (the last one set) stops `station serve`; this ends the rest.
http_cleanup() {
	[ -z "$BPID" ] || kill "$BPID" 2>/dev/null || true
	[ -z "$STPID" ] || kill -9 "$STPID" 2>/dev/null || true
	stop_simboard
}

# browser NAME URL STEP...: runs chromium on URL in a fresh profile (and with the flag
# $CHROMIUM_FLAG if set); eval steps' values go to $T/NAME.out, one JSON line each.
browser() {
	local name=$1 url=$2
	shift 2
	mkdir -p "$T/profile-$name"
	timeout 300 "$PY" "$BROWSER" --chromium "$CHROMIUM" --profile "$T/profile-$name" \
		${CHROMIUM_FLAG:+--flag "$CHROMIUM_FLAG"} "$url" "$@" \
		>"$T/$name.out" 2>"$T/$name.err"
}

PORT=$(free_port)
line_setup "http:
  listen: 127.0.0.1:$PORT"
# A finished board is asked whether it is still there only every ten minutes: board3 (hung,
# it never answers again) would otherwise pass for removed a few seconds after it failed,
# and its slot turn from failed to waiting while the test still looks at it. The wait for a
# WRITE applies to every board: 2 tries of 3 s fail board3 in 6 s and leave the healthy
# boards room on a loaded machine.
cat >>"$pki/run.yaml" <<EOF
timeouts:
  write: 3000
  presence: 600000
retries:
  request: 2
EOF
start_simboard 16 --seed 7 --noise \
	--fault bad-csr=bad-sig:board5 \
	--fault bad-csr=rsa:board11 \
	--fault bad-csr=wrong-cn:board7 \
	--fault hang=WRITE:board3
ev="$T/events.jsonl"
"$STATION" run -c "$pki/run.yaml" --events "$ev" --no-view >"$T/run.out" 2>"$T/run.err" &
STPID=$!
wait_for_line "$T/run.err" "operator console on http://127.0.0.1:$PORT/console" 60 "$STPID" ||
	fail "no console announced: $(tail -5 "$T/run.err")"
CONSOLE="http://127.0.0.1:$PORT/console"

# What a page shows, as JSON: the slots (name, kind class, action, background colour, text),
# the attention list, the totals.
FACTS='(() => {
  const cells = Array.from(document.querySelectorAll("#grid .slot"));
  return {
    slots: cells.map(c => ({ name: c.dataset.slot, cls: c.className, action: c.dataset.action || "",
                             bg: getComputedStyle(c).backgroundColor, text: c.textContent })),
    attention: Array.from(document.querySelectorAll("#attention li")).map(l =>
      ({ slot: l.dataset.slot, action: l.dataset.action || "", text: l.textContent })),
    boards: +document.getElementById("t-boards").textContent,
    passed: +document.getElementById("t-passed").textContent,
    failed: +document.getElementById("t-failed").textContent,
    bph: +document.getElementById("t-bph").textContent,
    bph_label: document.getElementById("bph-label").textContent,
    station: document.getElementById("station").textContent,
    recent: document.querySelectorAll("#recent li").length,
    live: document.getElementById("conn").textContent };
})()'
# Every board finished, as the page knows it: 16 outcomes counted, every cell drawn.
DONE='window.consoleStats && consoleStats.snapshots > 0 &&
  +document.getElementById("t-boards").textContent === 16 &&
  document.querySelectorAll("#grid .slot.k-pass, #grid .slot.k-fail").length === 16'

# Page A opens now, while the boards are provisioned, and follows them live.
browser early "$CONSOLE" "wait:240:$DONE" "eval:$FACTS" &
BPID=$!
wait_for_line "$ev" '"event":"(pass|fail)"' 240 "$STPID" 16 || fail "16 boards did not finish"
# Page B opens once they have all finished: everything comes from its snapshot. It takes the
# screenshots, then opens a failed slot's details with a click.
browser late "$CONSOLE" "wait:120:$DONE" "eval:$FACTS" \
	"shot:1920x1080:$ART/console-1920x1080.png" "shot:1280x720:$ART/console-1280x720.png" \
	'eval:document.querySelector("#grid .slot[data-slot=board3]").click(), true' \
	'wait:60:document.querySelectorAll("#d-ledger tr").length > 1 && document.getElementById("d-console").textContent.length > 20' \
	'eval:({ title: document.getElementById("d-title").textContent, action: document.getElementById("d-action").textContent, fields: document.getElementById("d-fields").textContent, console: document.getElementById("d-console").textContent, ledger: document.getElementById("d-ledger").textContent })' \
	"shot:1280x720:$ART/console-detail-1280x720.png" ||
	fail "the late page: $(cat "$T/late.err")"
wait "$BPID" || fail "the early page: $(cat "$T/early.err")"
BPID=
for f in "$ART/console-1920x1080.png" "$ART/console-1280x720.png"; do
	[ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
done
ok "chromium loaded the console before and after the boards finished; screenshots in $ART"

# check_page NAME: the page's facts.
check_page() {
	local f="$T/$1.facts" s a
	sed -n 1p "$T/$1.out" >"$f"
	[ "$(jq '.slots | length' "$f")" = 16 ] || fail "$1: not 16 slots: $(jq -c '[.slots[].name]' "$f")"
	for i in $(seq 0 15); do
		[ "$(jq --arg s "board$i" '[.slots[] | select(.name == $s)] | length' "$f")" = 1 ] ||
			fail "$1: board$i is not on the page once"
	done
	for s in board3:retry board5:swap board7:engineer board11:engineer; do
		a=${s#*:}
		s=${s%:*}
		jq -e --arg s "$s" --arg a "$a" '.slots[] | select(.name == $s) |
			(.cls | test("k-fail")) and .action == $a and .bg == "rgb(217, 48, 37)"' "$f" >/dev/null ||
			fail "$1: $s is not red with action $a: $(jq -c --arg s "$s" '.slots[] | select(.name == $s)' "$f")"
		jq -e --arg s "$s" --arg a "$a" '[.attention[] | select(.slot == $s and .action == $a)] | length == 1' \
			"$f" >/dev/null || fail "$1: $s is not listed for attention with $a: $(jq -c .attention "$f")"
	done
	jq -e '.slots[] | select(.name == "board5") | .text | test("SWAP BOARD: CSR self-signature does not verify")' "$f" >/dev/null &&
		jq -e '.attention[] | select(.slot == "board5") | .text | test("take the board out and put it in the reject bin")' "$f" >/dev/null &&
		jq -e '.attention[] | select(.slot == "board11") | .text | test("CALL ENGINEER firmware offers the wrong key type")' "$f" >/dev/null &&
		jq -e '.attention[] | select(.slot == "board3") | .text | test("RETRY.*reseat the board")' "$f" >/dev/null ||
		fail "$1: the action texts: $(jq -c .attention "$f")"
	[ "$(jq '[.slots[] | select(.cls | test("k-pass"))] | length' "$f")" = 12 ] ||
		fail "$1: not 12 passed slots: $(jq -c '[.slots[] | {name, cls}]' "$f"); outcomes: $(grep -E '"event":"(pass|fail)"' "$ev" | jq -c '[.slot, .event, .reason // "", (.error // "")[:160]]' | tr '\n' ' ')"
	jq -e '.boards == 16 and .passed == 12 and .failed == 4 and .bph > 0 and .recent == 16 and
		.bph_label == "boards/hour" and .station == "test-station" and .live == "live"' "$f" >/dev/null ||
		fail "$1: totals: $(jq -c '{boards, passed, failed, bph, bph_label, station, live, recent}' "$f")"
}
check_page early
check_page late
[ "$(jq -c '[.slots[] | {name, cls, action}], .attention, .boards, .passed, .failed, .bph' "$T/early.facts")" = \
	"$(jq -c '[.slots[] | {name, cls, action}], .attention, .boards, .passed, .failed, .bph' "$T/late.facts")" ] ||
	fail "the page opened early and the one opened late differ"
ok "both pages: 16 slots, the 4 failed ones red with their action and instruction, 12 passed"

# One click on a failed slot: its reason, action, console log and ledger row (board3 was
# signed before it hung: its row is failed).
sed -n 3p "$T/late.out" >"$T/detail.json"
id3=$(cat "$T/line/board3/device-id")
jq -e --arg id "$id3" '(.title == "slot board3") and (.action | test("RETRY the board stopped answering: reseat the board")) and
	(.fields | test("PROTO_TIMEOUT")) and (.console | length > 20) and (.ledger | test($id)) and
	(.ledger | test("failed"))' "$T/detail.json" >/dev/null ||
	fail "board3's details: $(cat "$T/detail.json")"
ok "a click on a failed slot shows its action, reason, console log and ledger"

# The same from outside the page: read-only JSON.
curl -sf "$CONSOLE/slot?name=board3" >"$T/slot3.json" || fail "GET /console/slot"
jq -e --arg id "$id3" '.device_id == $id and .reason == "PROTO_TIMEOUT" and .action.class == "retry" and .kind == "fail"' \
	"$T/slot3.json" >/dev/null || fail "slot board3: $(cat "$T/slot3.json")"
curl -sf "$CONSOLE/ledger?q=$id3" >"$T/l3.json" || fail "ledger search by device id"
serial3=$(jq -r '.rows[0].serial' "$T/l3.json")
jq -e --arg id "$id3" '(.rows | length) == 1 and .rows[0].device_id == $id and .rows[0].slot == "board3"' \
	"$T/l3.json" >/dev/null || fail "ledger search by device id: $(cat "$T/l3.json")"
curl -sf "$CONSOLE/ledger?q=$(echo "$serial3" | tr a-f A-F)" >"$T/ls.json" || fail "ledger search by serial"
jq -e --arg id "$id3" '(.rows | length) == 1 and .rows[0].device_id == $id' "$T/ls.json" >/dev/null ||
	fail "ledger search by serial: $(cat "$T/ls.json")"
ok "slot and ledger JSON: board3 retry, found by device id and by serial"

# The day's report: `station ledger export` of today's rows, RFC 4180.
curl -sf -D "$T/report.hdr" "$CONSOLE/report.csv" >"$T/report.csv" || fail "GET /console/report.csv"
grep -qi '^content-type: text/csv' "$T/report.hdr" || fail "report: $(cat "$T/report.hdr")"
grep -qi '^content-disposition: attachment; filename="test-station-[0-9-]*.csv"' "$T/report.hdr" ||
	fail "report: $(cat "$T/report.hdr")"
"$STATION" ledger -c "$pki/run.yaml" export --format csv --cert none >"$T/export.csv"
cmp -s "$T/report.csv" "$T/export.csv" || fail "the report is not the export: $(diff "$T/report.csv" "$T/export.csv" | head)"
[ "$(grep -c $'\r$' "$T/report.csv")" = "$(wc -l <"$T/report.csv")" ] || fail "report lines not CRLF"
"$PY" -c 'import csv, sys; rows = list(csv.reader(open(sys.argv[1], newline=""))); assert len(rows) == 14 and all(len(r) == len(rows[0]) for r in rows), rows' \
	"$T/report.csv" || fail "the report does not parse as 14 CSV rows"
ok "the day's report is the ledger export of today's 13 rows, CRLF, RFC 4180"

# Read-only: every console resource refuses every method but GET and HEAD.
for p in "" /events "/slot?name=board3" "/ledger?q=$id3" /report.csv; do
	for m in POST PUT DELETE PATCH; do
		code=$(curl -s -o /dev/null -w '%{http_code}' -X "$m" "$CONSOLE$p")
		[ "$code" = 405 ] || fail "$m $CONSOLE$p: $code"
	done
	code=$(curl -s -o /dev/null -w '%{http_code}' -I "$CONSOLE$p")
	[ "$code" = 200 ] || fail "HEAD $CONSOLE$p: $code"
done
ok "read-only: POST, PUT, DELETE and PATCH get 405 on every console resource"

# The station stops: the summary's totals and boards/hour are the page's.
kill -TERM "$STPID"
wait "$STPID" || true
STPID=
grep '"event":"summary"' "$ev" >"$T/summary.json"
jq -e --argjson bph "$(jq .bph "$T/late.facts")" \
	'.boards == 16 and .passed == 12 and .failed == 4 and .boards_per_hour == $bph' "$T/summary.json" >/dev/null ||
	fail "summary $(cat "$T/summary.json") against the page $(jq -c '{boards, passed, failed, bph}' "$T/late.facts")"
grep -q "^station test-station: 16 boards in [0-9.]* s, $(jq .bph "$T/late.facts") boards/hour$" "$T/run.out" ||
	fail "summary: $(cat "$T/run.out")"
# board3 had failed (and its slot still shows it): nothing was in flight at the stop.
jq -e '.abandoned == 0 and ((.abandoned_slots // []) | length) == 0' "$T/summary.json" >/dev/null ||
	fail "the summary names abandoned boards where none was in flight: $(cat "$T/summary.json")"
if grep -q "abandoned (" "$T/run.out"; then fail "the summary lists abandoned boards: $(cat "$T/run.out")"; fi
ok "the summary has the page's totals and its $(jq .bph "$T/late.facts") boards/hour, nothing abandoned"
stop_simboard

# `station serve` (tests/lib/http.sh: start_server sets URL): the console without slots;
# `console: false`: none.
# serve_config FILE LINE...: the dev PKI's configuration, the profile, an http section.
serve_config() {
	local f=$1 l
	shift
	{
		cat "$pki/station.yaml"
		echo "profiles: [sim-gw.yaml]"
		echo "http:"
		for l in "$@"; do echo "  $l"; done
	} >"$f"
}
SPORT=$(free_port)
serve_config "$pki/serve.yaml" "listen: 127.0.0.1:$SPORT"
start_server "$pki/serve.yaml"
browser serve "$URL/console" 'wait:60:window.consoleStats && consoleStats.snapshots > 0' \
	'eval:({ grid: document.getElementById("grid").hidden, pool: document.getElementById("pool").textContent, report: document.getElementById("report").href })' ||
	fail "the console of station serve: $(cat "$T/serve.err")"
jq -e '.grid == true and (.pool | test("signing: [0-9]+ workers")) and (.report | test("report.csv"))' "$T/serve.out" >/dev/null ||
	fail "station serve's console: $(cat "$T/serve.out")"

# Another site's page in the operator's browser on this machine gets nothing from the loopback
# server. Through a name of its own that resolves to 127.0.0.1 (DNS rebinding; chromium maps
# rebind.test there) the console answers 421 HTTP_HOST. A page of another origin that posts a
# registration as a simple request (text/plain, no preflight) has it refused: the body is a
# device tool's, good (curl registers one like it), and nothing is signed for it.
CHROMIUM_FLAG="--host-resolver-rules=MAP rebind.test 127.0.0.1" browser rebind "http://rebind.test:$SPORT/console" \
	'wait:60:document.body && /HTTP_HOST/.test(document.body.innerText)' \
	'eval:({ text: document.body.innerText, grid: !!document.getElementById("grid") })' ||
	fail "the console under another name: $(cat "$T/rebind.err")"
jq -e '(.text | test("Host rebind.test:[0-9]+ is not this machine")) and .grid == false' "$T/rebind.out" >/dev/null ||
	fail "the console under another name: $(cat "$T/rebind.out")"
for u in 1 2; do
	id=$(cat /proc/sys/kernel/random/uuid)
	key_csr "$T/csrf$u" "$id" acme-factory
	tool_body "$id" sim-board "$T/csrf$u/csr.pem" >"$T/csrf$u/body.json"
done
U1=$(jq -r .uuid "$T/csrf1/body.json") U2=$(jq -r .uuid "$T/csrf2/body.json")
code=$(curl -s -o "$T/csrf1/answer.json" -w '%{http_code}' -H 'Content-Type: text/plain' \
	--data-binary @"$T/csrf1/body.json" "$URL/sign")
[ "$code" = 201 ] || fail "the device tool's body, sent as text/plain by curl: $code $(cat "$T/csrf1/answer.json")"
APORT=$(free_port)
mkdir -p "$T/site"
cat >"$T/site/index.html" <<EOF
<!DOCTYPE html><html><body><script>
window.sent = false;
fetch("$URL/sign", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
	body: $(jq -Rs . "$T/csrf2/body.json") }).then(() => { window.sent = "sent"; },
	e => { window.sent = "failed: " + e; });
const es = new EventSource("$URL/console/events");
es.onerror = () => { window.es = true; es.close(); };
</script></body></html>
EOF
"$PY" -m http.server --bind 127.0.0.1 --directory "$T/site" "$APORT" >"$T/site.log" 2>&1 &
BPID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$APORT/" && break; sleep 0.1; done
browser csrf "http://127.0.0.1:$APORT/" 'wait:60:window.sent && window.es' 'eval:window.sent' ||
	fail "the other site's page: $(cat "$T/csrf.err")"
kill "$BPID"
wait "$BPID" 2>/dev/null || true
BPID=
[ "$(cat "$T/csrf.out")" = '"sent"' ] || fail "the other site's page did not post: $(cat "$T/csrf.out")"
grep -q "device ?: refused (403 HTTP_BROWSER)" "$T/serve.err" || fail "no refusal logged: $(tail -5 "$T/serve.err")"
grep -q "refused /console/events fetched by another site's page" "$T/serve.err" ||
	fail "the page's event stream was not refused: $(tail -5 "$T/serve.err")"
"$STATION" ledger -c "$pki/serve.yaml" list >"$T/serve-ledger.txt"
grep -q "$U1" "$T/serve-ledger.txt" || fail "curl's registration is not in the ledger: $(cat "$T/serve-ledger.txt")"
if grep -q "$U2" "$T/serve-ledger.txt"; then fail "the page's registration was signed"; fi
ok "another site's page in chromium: the console under a rebound name answers 421; its POST /sign is refused (403), nothing signed; its event stream of the console is refused"
stop_server
serve_config "$pki/serve.yaml" "listen: 127.0.0.1:$SPORT" "console: false"
start_server "$pki/serve.yaml"
code=$(curl -s -o "$T/off.json" -w '%{http_code}' "$URL/console")
[ "$code" = 404 ] || fail "console: false: GET /console is $code"
stop_server
ok "station serve has the console (no slots); console: false turns it off"

# Beyond loopback the console answers only with a token, as /status does: the header, or the
# cookie its login page sets. Over HTTPS (tokens are refused over plain HTTP there).
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pki/token" && echo >>"$pki/token")
TOKEN=$(head -1 "$pki/token")
SPORT=$(free_port)
serve_config "$pki/remote.yaml" "listen: 0.0.0.0:$SPORT" "tls_cert: gateway.pem" \
	"tls_key: gateway.key" "token_file: token"
start_server "$pki/remote.yaml"
B="https://127.0.0.1:$SPORT"
C=(-s -k -o "$T/r" -w '%{http_code}')
for p in /console /console/events "/console/slot?name=board3" "/console/ledger?q=$id3" /console/report.csv /; do
	code=$(curl "${C[@]}" "$B$p")
	[ "$code" = 401 ] || fail "GET $p without a token: $code"
	code=$(curl "${C[@]}" -H "Cookie: station_token=wrong$TOKEN" "$B$p")
	[ "$code" = 401 ] || fail "GET $p with a wrong cookie: $code"
done
code=$(curl "${C[@]}" "$B/console")
grep -q 'station_token=' "$T/r" || fail "no token form on the 401 page: $(head -5 "$T/r")"
for p in /console "/ledger?q=$id3" /report.csv; do
	p=${p#/console}
	code=$(curl "${C[@]}" -H "OSF-TOKEN: $TOKEN" "$B/console$p")
	[ "$code" = 200 ] || fail "GET /console$p with the token header: $code"
	code=$(curl "${C[@]}" -H "Cookie: other=1; station_token=$TOKEN" "$B/console$p")
	[ "$code" = 200 ] || fail "GET /console$p with the cookie: $code"
done
code=$(curl "${C[@]}" -I -H "Cookie: station_token=$TOKEN" "$B/console/events")
[ "$code" = 200 ] || fail "HEAD /console/events with the cookie: $code"
# The cookie counts for the console alone.
code=$(curl "${C[@]}" -H "Cookie: station_token=$TOKEN" "$B/status")
[ "$code" = 401 ] || fail "GET /status with the console's cookie: $code"
stop_server
ok "beyond loopback: 401 and a token form without a token; the header or the cookie opens it"
echo "all passed"
