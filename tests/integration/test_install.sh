#!/usr/bin/env bash
# `cmake --install` into a DESTDIR lays out what a station PC needs, at the paths a system
# install (prefix /usr) uses: the program, example profiles, documentation, the example
# configuration, the ledger directory, the systemd unit (which systemd-analyze accepts), the
# sysusers and tmpfiles entries (applied to a scratch root), the udev example and station.pc.
# The installed program names its build, checks the installed profiles, takes its PIN from a
# systemd credential directory, and writes JSON log lines that parse. The Debian package
# (cpack -G DEB) holds the same files, installs with apt-get and goes again cleanly.
#
# Paths are written into the unit and station.pc when a tree is configured, so the install is
# made from a tree of its own configured with -DCMAKE_INSTALL_PREFIX=/usr (only the program is
# built there; it stays in the build directory so later runs are incremental).
. "$(dirname "$0")/../lib/common.sh"

TREE="$BUILD_DIR/test-install-tree"
R="$T/root"
cmake -S "$SOURCE_DIR" -B "$TREE" -DCMAKE_INSTALL_PREFIX=/usr -DSTATION_TESTS=OFF \
	-DSTATION_TEST_HOOKS=OFF >"$T/log" 2>&1 ||
	fail "configure with prefix /usr: $(tail -20 "$T/log")"
cmake --build "$TREE" --target station --target station-agent -j2 >"$T/log" 2>&1 ||
	fail "build: $(tail -20 "$T/log")"
DESTDIR="$R" cmake --install "$TREE" >"$T/log" 2>&1 || fail "install: $(tail -20 "$T/log")"
ok "cmake --install with DESTDIR and prefix /usr"

# Everything lands under DESTDIR (the manifest names the final paths), nothing elsewhere.
while read -r f; do
	[ -f "$R$f" ] || fail "manifest names $f, but DESTDIR lacks it"
done <"$TREE/install_manifest.txt"
n=$(grep -c "" "$TREE/install_manifest.txt")
[ "$(find "$R" -type f | wc -l)" -eq "$n" ] || fail "DESTDIR holds files the manifest does not name"
ok "$n files installed, all under DESTDIR"

# The tree, at the places a system install uses.
for f in usr/bin/station \
	usr/bin/station-agent \
	usr/share/doc/station/examples/station-agent.service.example \
	usr/share/doc/station/examples/station-agent.conf.example \
	usr/share/station/profiles/README.md \
	usr/share/doc/station/README.md \
	usr/share/doc/station/drivers/PROTOCOL.md \
	usr/share/doc/station/profiles/README.md \
	usr/share/doc/station/examples/60-station-fixtures.rules.example \
	etc/station/station.yaml.example \
	usr/lib/systemd/system/station.service \
	usr/lib/sysusers.d/station.conf \
	usr/lib/tmpfiles.d/station.conf \
	usr/share/pkgconfig/station.pc; do
	[ -s "$R/$f" ] || fail "missing or empty: /$f"
done
[ -x "$R/usr/bin/station" ] || fail "/usr/bin/station is not executable"
for p in "$SOURCE_DIR"/profiles/*.yaml; do
	cmp -s "$p" "$R/usr/share/station/profiles/${p##*/}" || fail "profile ${p##*/} not installed as is"
done
if [ -d "$SOURCE_DIR/profiles/templates" ]; then
	for p in "$SOURCE_DIR"/profiles/templates/*; do
		[ -f "$R/usr/share/station/profiles/templates/${p##*/}" ] || fail "template ${p##*/} not installed"
	done
fi
[ -d "$R/var/lib/station" ] || fail "ledger directory /var/lib/station not made"
[ "$(stat -c %a "$R/var/lib/station")" = 700 ] || fail "/var/lib/station is not mode 0700"
[ ! -e "$R/usr/etc" ] && [ ! -e "$R/usr/var" ] || fail "configuration or state went under /usr"
ok "binary, profiles, documents, configuration example, ledger directory, unit, sysusers, tmpfiles, udev example, station.pc"

# station.pc names the installed paths and the program's version.
export PKG_CONFIG_PATH="$R/usr/share/pkgconfig"
version=$(pkg-config --modversion station) || fail "pkg-config cannot read station.pc"
for v in prefix=/usr bindir=/usr/bin profilesdir=/usr/share/station/profiles sysconfdir=/etc \
	confdir=/etc/station ledgerdir=/var/lib/station docdir=/usr/share/doc/station \
	systemdsystemunitdir=/usr/lib/systemd/system; do
	got=$(pkg-config --variable="${v%%=*}" station)
	[ "$got" = "${v#*=}" ] || fail "station.pc: ${v%%=*} is '$got', expected '${v#*=}'"
done
ok "station.pc: version $version, prefix, bindir, profilesdir, sysconfdir, confdir, ledgerdir, docdir, unit dir"

# --version names the version and the build.
"$R/usr/bin/station" --version >"$T/version" || fail "station --version failed"
grep -qE "^station $version \(.+\)$" "$T/version" || fail "--version prints '$(cat "$T/version")'"
if [ -d "$SOURCE_DIR/.git" ] && command -v git >/dev/null; then
	grep -q "(unknown)" "$T/version" && fail "--version in a git checkout says unknown"
fi
ok "installed binary: $(cat "$T/version")"

# In a git checkout the build reads its commit at every build (drivers/base/git_rev.cmake),
# so a binary rebuilt after a pull or a commit names the commit it was built from. The script
# on a repository of its own: it names the commit, rewrites its header only when the name
# changes (nothing is recompiled otherwise), says -dirty for a changed file, keeps characters
# a C string cannot hold out of the header, and when git fails keeps what it wrote before
# (or says unknown).
if command -v git >/dev/null; then
	repo=$T/rev-repo
	hdr=$T/rev.h
	rev_script() {
		cmake -DGIT="$(command -v git)" -DSOURCE_DIR="$1" -DOUT="$hdr" \
			-P "$SOURCE_DIR/drivers/base/git_rev.cmake" || fail "git_rev.cmake failed on $1"
	}
	rev_is() {
		grep -qxF "#define STATION_GIT_REV \"$1\"" "$hdr" ||
			fail "git_rev.cmake: expected $1, wrote: $(cat "$hdr")"
	}
	gitc() { git -C "$repo" -c user.email=t@example.com -c user.name=t "$@"; }
	git init -q "$repo"
	echo one >"$repo/f"
	gitc add f
	gitc commit -q -m one
	rev_script "$repo"
	rev_is "$(gitc rev-parse --short HEAD)"
	before=$(stat -c %y "$hdr")
	sleep 0.05
	rev_script "$repo"
	[ "$(stat -c %y "$hdr")" = "$before" ] || fail "git_rev.cmake rewrote an unchanged header"
	echo two >"$repo/f"
	rev_script "$repo"
	rev_is "$(gitc rev-parse --short HEAD)-dirty"
	gitc commit -q -am two
	rev_script "$repo"
	rev_is "$(gitc rev-parse --short HEAD)"
	gitc tag -a 'v1"x$' -m tag
	rev_script "$repo"
	rev_is 'v1_x_'
	rev_script "$T/no-such-repo"
	rev_is 'v1_x_'
	rm "$hdr"
	rev_script "$T/no-such-repo"
	rev_is unknown
	ok "the build's name read at every build: the commit, -dirty, a tag made safe, unknown without git"
fi

# The unit: what it must say, then systemd's own check.
unit="$R/usr/lib/systemd/system/station.service"
for line in "ExecStart=/usr/bin/station run -c /etc/station/station.yaml" \
	'ExecReload=/bin/kill -HUP $MAINPID' Type=exec Restart=on-failure \
	User=station Group=station SupplementaryGroups=dialout StateDirectory=station \
	ConfigurationDirectory=station LoadCredential=pin:/etc/station/pin LimitCORE=0 \
	LimitNOFILE=8192 \
	NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes DevicePolicy=closed \
	"DeviceAllow=char-ttyS rw" "DeviceAllow=char-ttyUSB rw" "DeviceAllow=char-ttyACM rw" \
	CapabilityBoundingSet= UMask=0077; do
	grep -qxF -- "$line" "$unit" || fail "unit lacks the line '$line'"
done
grep -q "^DynamicUser" "$unit" && fail "unit uses DynamicUser"
grep -q "^ExecStart=.*pin" "$unit" && fail "the PIN or its file is on the command line"
ok "unit: user station in dialout, StateDirectory, credential PIN, no core file, hardening, LimitNOFILE=8192, reload by SIGHUP"

command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (Debian package systemd)"
# verify requires ExecStart's program to exist at its absolute path: a copy of the unit points
# at the DESTDIR's program; nothing else is changed.
mkdir -p "$T/units"
sed "s|^ExecStart=/usr/bin/station |ExecStart=$R/usr/bin/station |" "$unit" >"$T/units/station.service"
SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$T/units/station.service" >"$T/verify" 2>&1 ||
	fail "systemd-analyze verify: $(cat "$T/verify")"
[ ! -s "$T/verify" ] || fail "systemd-analyze verify warns: $(cat "$T/verify")"
ok "systemd-analyze verify accepts the unit"
# The hardening as systemd rates it (0 = fully confined, 10 = unconfined); older systemd
# has no --offline and skips this.
if systemd-analyze security --help 2>/dev/null | has -- --offline; then
	systemd-analyze security --offline=true --no-pager "$T/units/station.service" >"$T/sec" 2>&1 || true
	level=$(sed -n 's/.*Overall exposure level for station.service: \([0-9.]*\).*/\1/p' "$T/sec")
	[ -n "$level" ] || fail "systemd-analyze security gave no level: $(tail -3 "$T/sec")"
	awk -v l="$level" 'BEGIN { exit !(l <= 3.0) }' || fail "exposure level $level, expected <= 3.0"
	ok "systemd-analyze security: exposure level $level"
fi

# sysusers makes the user (in group dialout, home the ledger directory, no login) and
# tmpfiles its ledger directory, in a scratch root holding copies of this machine's files.
S="$T/sysroot"
mkdir -p "$S/etc"
cp /etc/passwd /etc/group "$S/etc/"
[ -f /etc/shadow ] && [ -r /etc/shadow ] && cp /etc/shadow "$S/etc/"
[ -f /etc/gshadow ] && [ -r /etc/gshadow ] && cp /etc/gshadow "$S/etc/"
grep -q "^dialout:" "$S/etc/group" || echo "dialout:x:20:" >>"$S/etc/group"
if [ "$(id -u)" -eq 0 ] && command -v systemd-sysusers >/dev/null; then
	systemd-sysusers --root="$S" "$R/usr/lib/sysusers.d/station.conf" >"$T/log" 2>&1 ||
		fail "systemd-sysusers: $(cat "$T/log")"
	grep -qE "^station:x:[0-9]+:[0-9]+:[^:]*:/var/lib/station:.*nologin$" "$S/etc/passwd" ||
		fail "sysusers made no station user: $(grep station "$S/etc/passwd")"
	grep -qE "^dialout:.*[:,]station(,|$)" "$S/etc/group" || fail "station is not in group dialout"
	uid=$(awk -F: '$1 == "station" { print $3 }' "$S/etc/passwd")
	systemd-tmpfiles --root="$S" --create "$R/usr/lib/tmpfiles.d/station.conf" >"$T/log" 2>&1 ||
		fail "systemd-tmpfiles: $(cat "$T/log")"
	[ "$(stat -c '%a %u' "$S/var/lib/station")" = "700 $uid" ] ||
		fail "tmpfiles: /var/lib/station is $(stat -c '%a %u' "$S/var/lib/station"), expected 700 $uid"
	ok "sysusers: user station (uid $uid) in dialout; tmpfiles: /var/lib/station 0700 owned by it"
else
	echo "skip - sysusers and tmpfiles need root (chown) and systemd-sysusers"
fi

# The installed program checks the installed example profiles.
"$R/usr/bin/station" profile check "$R"/usr/share/station/profiles/*.yaml >"$T/out" 2>"$T/err" ||
	fail "profile check of the installed profiles: $(cat "$T/err")"
n=$(grep -c ": ok" "$T/out")
[ "$n" -eq "$(ls "$R"/usr/share/station/profiles/*.yaml | wc -l)" ] ||
	fail "profile check: $(cat "$T/out")"
ok "installed binary: profile check passes all $n installed profiles"

# The example configuration loads: the only complaint is the ledger that does not exist yet,
# at the path the unit's StateDirectory gives.
ex="$R/etc/station/station.yaml.example"
grep -q "^ledger: /var/lib/station/ledger.db$" "$ex" || fail "example ledger path is not /var/lib/station"
grep -q '^  pin_file: ${CREDENTIALS_DIRECTORY}/pin$' "$ex" || fail "example pin_file is not the credential"
if ! "$R/usr/bin/station" ledger -c "$ex" list >"$T/out" 2>"$T/err"; then
	grep -q "errors\? in" "$T/err" && fail "example configuration does not load: $(cat "$T/err")"
	grep -q "/var/lib/station/ledger.db" "$T/err" || fail "ledger -c example: $(cat "$T/err")"
fi
# The same with every optional key the example shows in comments written out.
sed -E -e 's/^# (station|pool|timeouts|retries|outputs|http):/\1:/' -e 's/^#   ([a-z])/  \1/' \
	-e 's/^  # - port:/  - port:/' -e 's/^  #   ([a-z])/    \1/' "$ex" >"$T/full.yaml"
[ "$(grep -c "^  [a-z_]*: [^#]" "$T/full.yaml")" -gt "$(grep -c "^  [a-z_]*: [^#]" "$ex")" ] ||
	fail "uncommenting the example changed nothing"
if ! "$R/usr/bin/station" ledger -c "$T/full.yaml" list >"$T/out" 2>"$T/err"; then
	grep -q "errors\? in" "$T/err" && fail "example with its optional keys does not load: $(cat "$T/err")"
fi
ok "the example configuration loads, also with the optional keys it shows"

# The PIN from a systemd credential: pin_file ${CREDENTIALS_DIRECTORY}/pin reads the
# directory the service manager passes; without it the path stays unexpanded.
pki="$T/pki"
dev_pki "$pki" acme-factory
mkdir -m 700 "$T/cred"
mv "$pki/pin" "$T/cred/pin"
sed -i 's|^  pin_file: .*|  pin_file: ${CREDENTIALS_DIRECTORY}/pin|' "$pki/station.yaml"
grep -q 'CREDENTIALS_DIRECTORY' "$pki/station.yaml" || fail "could not point pin_file at the credential"

# check_credential_pin STATION
check_credential_pin() {
	local st=$1 uuid
	uuid=$(cat /proc/sys/kernel/random/uuid)
	device_csr "$T/dev" "$uuid" acme-factory
	CREDENTIALS_DIRECTORY="$T/cred" "$st" sign -c "$pki/station.yaml" \
		--csr "$T/dev/csr.pem" --device-id "$uuid" -o "$T/dev/client.pem" 2>"$T/err" ||
		fail "$st: sign with the PIN in \$CREDENTIALS_DIRECTORY: $(cat "$T/err")"
	openssl verify -CAfile "$pki/factory-root.pem" -untrusted "$pki/local-ca.pem" \
		"$T/dev/client.pem" >/dev/null || fail "$st: certificate does not verify"
	(unset CREDENTIALS_DIRECTORY && "$st" sign -c "$pki/station.yaml" \
		--csr "$T/dev/csr.pem" --device-id "$uuid" -o "$T/dev/again.pem") 2>"$T/err" &&
		fail "$st: sign without \$CREDENTIALS_DIRECTORY succeeded"
	grep -qF '${CREDENTIALS_DIRECTORY}/pin' "$T/err" ||
		fail "$st: no credential: the error does not name the path: $(cat "$T/err")"
	ok "$st: PIN read from \$CREDENTIALS_DIRECTORY/pin; without the variable the error names the credential path"
}

# check_log_forms STATION: JSON objects with --log-format json (quotes, control bytes and
# invalid UTF-8 in a message included); priority prefixes for journald otherwise when stderr
# is not a terminal.
check_log_forms() {
	local st=$1 line
	"$st" --log-format json sign --bad$'\t"\\\x01\xff' 2>"$T/log" >/dev/null && fail "sign --bad succeeded"
	"$st" --log-format=json sign 2>>"$T/log" >/dev/null && fail "sign without options succeeded"
	[ "$(wc -l <"$T/log")" -eq 2 ] || fail "$st: expected 2 JSON log lines: $(cat "$T/log")"
	if command -v jq >/dev/null; then
		jq -e -c 'select(.priority == 3 and .level == "error" and (.msg | type == "string"))' \
			"$T/log" >"$T/jq" || fail "$st: JSON log lines do not parse: $(cat "$T/log")"
		[ "$(wc -l <"$T/jq")" -eq 2 ] || fail "$st: JSON log lines lack fields: $(cat "$T/log")"
		# The message itself is printable (control bytes and invalid UTF-8 as C escapes),
		# then JSON-encoded.
		jq -r .msg "$T/log" | head -1 | has -F -e '--bad\t"\\x01\xff' ||
			fail "$st: JSON message does not decode to what was logged: $(cat "$T/log")"
	else
		while read -r line; do
			[[ $line =~ ^\{\"priority\":3,\"level\":\"error\",\"msg\":\".*\"\}$ ]] ||
				fail "$st: not a JSON log line: $line"
		done <"$T/log"
	fi
	grep -qF '\"\\\\x01\\xff' "$T/log" || fail "$st: quote, backslash or control byte not escaped: $(cat "$T/log")"
	"$st" sign 2>"$T/log" >/dev/null && fail "sign without options succeeded"
	grep -q "^<3>error: sign needs" "$T/log" || fail "$st: no priority prefix when stderr is a file: $(cat "$T/log")"
	"$st" --log-format journal sign 2>"$T/log" >/dev/null && fail "sign succeeded"
	grep -q "^<3>error: sign needs" "$T/log" || fail "$st: --log-format journal: $(cat "$T/log")"
	expect_fail "$st: --log-format with an unknown form" "unknown; use text, journal or json" \
		"$st" --log-format xml sign
	ok "$st: --log-format json gives one parseable object per line (priority, level, msg); text and journal forms the <3> prefix"
}

# With the installed program and with the build under test (which may carry the sanitizers).
for st in "$R/usr/bin/station" "$STATION"; do
	check_credential_pin "$st"
	check_log_forms "$st"
done

# A package build has no test fault hooks: the program does not even name the variable, and
# with it set, signing goes on as usual (the hook would reset the module before the first
# signature, and say so).
grep -qa STATION_TEST_FAIL "$R/usr/bin/station" &&
	fail "the installed program carries the test fault hooks (STATION_TEST_FAIL)"
uuid=$(cat /proc/sys/kernel/random/uuid)
device_csr "$T/hook" "$uuid" acme-factory
STATION_TEST_FAIL=signer.finalize:1 CREDENTIALS_DIRECTORY="$T/cred" "$R/usr/bin/station" sign \
	-c "$pki/station.yaml" --csr "$T/hook/csr.pem" --device-id "$uuid" -o "$T/hook/client.pem" \
	2>"$T/err" || fail "sign with STATION_TEST_FAIL set: $(cat "$T/err")"
grep -qi "hook\|reinitialis" "$T/err" && fail "STATION_TEST_FAIL acted on the installed program: $(cat "$T/err")"
ok "the installed program has no test fault hooks: STATION_TEST_FAIL changes nothing"

# A rehearsal of the service: the installed program started as the unit starts it (run -c,
# stdout and stderr not terminals, the PIN from $CREDENTIALS_DIRECTORY, the ledger in a state
# directory), with JSON logs; four simulated boards pass, SIGHUP (systemctl reload) reloads
# the profiles, SIGTERM (systemctl stop) ends it cleanly with status 0.
. "$(dirname "$0")/../lib/line.sh"
SVCPID=
line_cleanup() {
	if [ -n "$SVCPID" ]; then
		kill -TERM "$SVCPID" 2>/dev/null
		wait "$SVCPID" 2>/dev/null
	fi
}
mkdir -m 700 "$T/state"
line_profile "$pki"
grep -v "^ledger:" "$pki/station.yaml" >"$pki/svc.yaml"
cat >>"$pki/svc.yaml" <<EOF
ledger: $T/state/ledger.db
profiles: [sim-gw.yaml]
slots:
  - board_map: $T/line/map.yaml
outputs:
  events: $T/state/events
EOF
mkfifo "$T/state/events"
start_simboard 4 --seed 11
CREDENTIALS_DIRECTORY="$T/cred" "$R/usr/bin/station" --log-format json run -c "$pki/svc.yaml" \
	>"$T/svc.out" 2>"$T/svc.err" &
SVCPID=$!
# The event stream is a FIFO: each line is read as the station writes it.
exec 4<"$T/state/events"
passes=0
while [ "$passes" -lt 4 ] && read -r -t 120 -u 4 ev; do
	case $ev in
	*'"event":"pass"'*) passes=$((passes + 1)) ;;
	*'"event":"fail"'*) fail "a board failed: $ev" ;;
	esac
done
[ "$passes" = 4 ] || fail "service rehearsal: $passes of 4 boards passed: $(tail -5 "$T/svc.err")"
kill -HUP "$SVCPID"
ev=
while read -r -t 120 -u 4 ev; do
	case $ev in *'"event":"reload"'*) break ;; esac
done
case $ev in *'"event":"reload"'*) ;; *) fail "no reload event after SIGHUP: $(tail -5 "$T/svc.err")" ;; esac
kill -TERM "$SVCPID"
cat <&4 >"$T/svc.events"
exec 4<&-
wait "$SVCPID" || fail "station run ended with status $? after SIGTERM: $(tail -5 "$T/svc.err")"
SVCPID=
grep -q '"event":"summary"' "$T/svc.events" || fail "no summary event after SIGTERM"
grep -q $'\e\\[' "$T/svc.out" && fail "the live view drew although stdout is not a terminal"
[ -s "$T/svc.err" ] || fail "station run logged nothing"
if command -v jq >/dev/null; then
	jq -e -s 'all(.[]; (.priority | type == "number") and (.level | type == "string") and (.msg | type == "string"))' \
		"$T/svc.err" >/dev/null || fail "station run's log lines are not all JSON: $(head -5 "$T/svc.err")"
fi
grep -q '"msg":"SIGHUP: ' "$T/svc.err" || fail "no log line for the reload: $(cat "$T/svc.err")"
"$R/usr/bin/station" ledger -c "$pki/svc.yaml" check >"$T/check.out" ||
	fail "ledger check after the rehearsal: $(cat "$T/check.out")"
stop_simboard
ok "service rehearsal: 4 boards passed, SIGHUP reloaded, SIGTERM stopped with status 0; $(wc -l <"$T/svc.err") JSON log lines; no live view"

# The Debian package from the same tree (cpack -G DEB): its Depends computed from the
# program's shared libraries; apt-get installs it on this machine, the installed program
# names its build and checks the installed profiles, the service's user and ledger directory
# are made; removal and purge are clean and leave the ledger directory and what is in it.
# Whatever the test made on the machine (the package, the user, the directory) is undone.
pkg_undo() {
	if dpkg-query -W -f='${Status}' station 2>/dev/null | has "installed"; then
		DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 purge station \
			>/dev/null 2>&1 || true
	fi
	[ -z "${PKG_MARK:-}" ] || rm -f "$PKG_MARK"
	[ -n "${HAD_DIR-1}" ] || rmdir /var/lib/station 2>/dev/null || true
	[ -n "${HAD_USER-1}" ] || userdel station 2>/dev/null || true
}
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null || ! command -v cpack >/dev/null; then
	echo "skip - the package install needs root, apt-get and cpack"
elif dpkg-query -W -f='${Status}' station 2>/dev/null | has "installed"; then
	fail "a package named station is installed on this machine: this test would replace it"
else
	HAD_DIR=$([ -d /var/lib/station ] && echo 1 || true)
	HAD_USER=$(getent passwd station >/dev/null && echo 1 || true)
	trap 'rc=$?; pkg_undo; [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"; exit $rc' EXIT
	(cd "$TREE" && cpack -G DEB -B "$T/pkg") >"$T/log" 2>&1 || fail "cpack -G DEB: $(tail -20 "$T/log")"
	deb=$(echo "$T"/pkg/station_*_*.deb)
	[ -f "$deb" ] || fail "cpack made no station_*.deb: $(ls "$T/pkg")"
	deps=$(dpkg-deb -f "$deb" Depends)
	for lib in libc6 libuv1 libssl3 libh2o libsqlite3 libjansson4 libyaml libserialport libp11-kit0 systemd; do
		case $deps in *"$lib"*) ;; *) fail "Depends lacks $lib: $deps" ;; esac
	done
	dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\.||' | grep -v '/$' | sort >"$T/deb-files"
	sort "$TREE/install_manifest.txt" | cmp -s - "$T/deb-files" ||
		fail "the package's files are not those cmake --install lays out: $(sort "$TREE/install_manifest.txt" | diff - "$T/deb-files" | head)"
	[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "package version $(dpkg-deb -f "$deb" Version), not $version"
	dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | has -x /etc/station/station.yaml.example ||
		fail "the configuration example is not a conffile"
	ok "cpack -G DEB: $(basename "$deb"), every installed file, Depends from the shared libraries"

	DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 install "$deb" \
		>"$T/apt.log" 2>&1 || fail "apt-get install $deb: $(tail -20 "$T/apt.log")"
	dpkg-query -W -f='${Status} ${Version}' station | has -x "install ok installed $version" ||
		fail "dpkg: $(dpkg-query -W -f='${Status} ${Version}' station)"
	/usr/bin/station --version >"$T/version" || fail "the installed station --version failed"
	grep -qE "^station $version \(.+\)$" "$T/version" || fail "--version prints '$(cat "$T/version")'"
	/usr/bin/station profile check /usr/share/station/profiles/*.yaml >"$T/out" 2>"$T/err" ||
		fail "profile check from the installed paths: $(cat "$T/err")"
	getent passwd station | has -E "^station:x:[0-9]+:[0-9]+:[^:]*:/var/lib/station:" ||
		fail "the package made no user station: $(getent passwd station)"
	[ "$(stat -c '%a %U' /var/lib/station)" = "700 station" ] ||
		fail "/var/lib/station is $(stat -c '%a %U' /var/lib/station), expected 700 station"
	ok "apt-get install ./$(basename "$deb"): $(cat "$T/version"); the installed profiles check; user station, /var/lib/station 0700"

	PKG_MARK=/var/lib/station/ledger-of-test-install.db
	echo "a ledger" >"$PKG_MARK"
	DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 remove station \
		>"$T/apt.log" 2>&1 || fail "apt-get remove: $(tail -20 "$T/apt.log")"
	[ ! -e /usr/bin/station ] && [ ! -e /usr/lib/systemd/system/station.service ] ||
		fail "apt-get remove left the program or the unit"
	[ -f /etc/station/station.yaml.example ] || fail "remove took the configuration example (a conffile)"
	DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 purge station \
		>"$T/apt.log" 2>&1 || fail "apt-get purge: $(tail -20 "$T/apt.log")"
	[ ! -e /etc/station/station.yaml.example ] || fail "purge left the configuration example"
	dpkg-query -W -f='${Status}' station 2>/dev/null | has "installed" && fail "station is still installed"
	[ -f "$PKG_MARK" ] || fail "removing the package took the ledger"
	ok "apt-get remove and purge: program, unit, then the example gone; the ledger directory kept"
	pkg_undo
fi

# A tree without .git (a release tarball) calls its build "unknown", and with the default
# prefix /usr/local configuration and state stay under the prefix, the unit making that
# ledger directory writable.
mkdir "$T/tarball"
tar -C "$SOURCE_DIR" --exclude=./.git --exclude='./build*' --exclude=./demo -cf - . | tar -C "$T/tarball" -xf -
cmake -S "$T/tarball" -B "$T/tarball-build" -DSTATION_TESTS=OFF >"$T/log" 2>&1 ||
	fail "configure the tarball tree: $(tail -20 "$T/log")"
grep -rqF 'STATION_GIT_REV=\"unknown\"' "$T/tarball-build" ||
	fail "a tree without .git is not named unknown"
grep -qxF "ExecStart=/usr/local/bin/station run -c /usr/local/etc/station/station.yaml" \
	"$T/tarball-build/station/dist/station.service" || fail "prefix /usr/local: wrong ExecStart"
grep -qxF "ReadWritePaths=-/usr/local/var/lib/station" "$T/tarball-build/station/dist/station.service" ||
	fail "prefix /usr/local: ledger directory not writable in the unit"
grep -qxF "ledgerdir=/usr/local/var/lib/station" "$T/tarball-build/station/dist/station.pc" ||
	fail "prefix /usr/local: station.pc ledgerdir"
ok "tarball tree: build named unknown; prefix /usr/local honoured in unit and station.pc"
