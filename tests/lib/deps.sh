# Sourced by the top-level scripts: installs the Debian packages the station needs to build,
# test and demo, when any is missing. Nothing else is ever downloaded.
STATION_DEBS="build-essential cmake pkg-config git libuv1-dev libssl-dev openssl libserialport-dev
libyaml-dev libsqlite3-dev sqlite3 libp11-kit-dev libjansson-dev libcmocka-dev softhsm2 gnutls-bin
clang libclang-rt-14-dev gnuplot-nox procps systemd libh2o-dev curl jq tmux
qemu-system-x86 busybox-static cpio e2fsprogs libengine-pkcs11-openssl libmbedtls-dev chromium python3
fonts-dejavu-core libpq-dev postgresql gcc-arm-none-eabi libnewlib-arm-none-eabi valgrind"

station_install_deps() {
	local missing=""
	for p in $STATION_DEBS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "installing Debian packages:$missing"
	if [ "$(id -u)" -ne 0 ]; then
		echo "error: missing packages and not root; install them with apt-get:$missing" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# Configures and builds one build tree: station_build DIR [cmake args...]. With
# STATION_TARGETS set (e.g. "station simboard"), only those targets are built.
station_build() {
	local dir=$1 targets=()
	shift
	for t in ${STATION_TARGETS:-}; do
		targets+=(--target "$t")
	done
	cmake -S "$STATION_SRC" -B "$dir" "$@" >/dev/null &&
		cmake --build "$dir" -j"$(nproc)" "${targets[@]}" -- --no-print-directory
}
