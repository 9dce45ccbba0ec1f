#!/bin/sh
# Install Alicia's agent (or hub) on this machine from a release.
#
#   sudo sh install.sh --from DIR_OR_URL [--join-token TOKEN] [--hub HOST:PORT] [--hub-package]
#   sh install.sh --detect [--hub-package]    print the package this machine needs, and exit
#
# It picks the package for this machine's architecture (telling ARMv6 from
# ARMv7), installs it with apt/dpkg or dnf/rpm, optionally puts a join token
# (and the hub's address) in the service's environment, restarts the
# service, and says what it did and how to check. Running it again is
# harmless: the same package is installed again and the settings replaced.
# It refuses a system it does not support, and says why.
set -eu

from= token= hub= name=alicia-agent detect=
usage() {
	echo "usage: $0 --from DIR_OR_URL [--join-token TOKEN] [--hub HOST:PORT] [--hub-package] | --detect [--hub-package]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--from) from=${2:-}; shift 2 || usage ;;
	--join-token) token=${2:-}; shift 2 || usage ;;
	--hub) hub=${2:-}; shift 2 || usage ;;
	--hub-package) name=alicia-hub; shift ;;
	--detect) detect=1; shift ;;
	-h | --help) usage ;;
	*) echo "install.sh: unknown argument $1" >&2; usage ;;
	esac
done
[ -n "$from" ] || [ -n "$detect" ] || usage
fail() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

[ "$(uname -s)" = Linux ] || fail "$(uname -s) is not supported: Alicia runs on Linux"

# The package's architecture label, from the machine (not the userland:
# a 32-bit OS on a 64-bit Pi gets the 32-bit package it can run).
machine=$(uname -m)
userland=
if command -v dpkg >/dev/null 2>&1; then userland=$(dpkg --print-architecture); fi
case "$machine" in
x86_64 | amd64) label=amd64 ;;
aarch64 | arm64)
	if [ "$userland" = armhf ]; then label=armhf; else label=arm64; fi ;;
armv7* | armv8l) label=armhf ;;
armv6*) label=armv6 ;;
armv5*) label=armel ;;
riscv64) label=riscv64 ;;
i386 | i486 | i586 | i686) label=i386 ;;
*) fail "machine $machine is not supported (amd64, arm64, armv7, armv6, armv5, riscv64, i386 are)" ;;
esac
if [ "$label" = armhf ] && [ "$userland" = armel ]; then label=armel; fi
case "$name:$label" in
alicia-hub:armhf | alicia-hub:armv6 | alicia-hub:armel | alicia-hub:i386)
	fail "the hub needs a 64-bit system (amd64, arm64, riscv64); this one is $machine" ;;
esac

if command -v dpkg >/dev/null 2>&1; then fmt=deb
elif command -v rpm >/dev/null 2>&1; then fmt=rpm
else fail "neither dpkg nor rpm is installed"; fi
if [ -n "$detect" ]; then
	echo "$name $label $fmt"
	exit 0
fi
[ "$(id -u)" = 0 ] || fail "run it as root (sudo sh $0 …)"
command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] ||
	fail "this system does not run systemd; the packages install systemd services"

# Find the package: in a directory, or in a release's SHA256SUMS at a URL.
fetch() { # url file
	if command -v curl >/dev/null 2>&1; then curl -fsSL "$1" -o "$2"
	elif command -v wget >/dev/null 2>&1; then wget -q "$1" -O "$2"
	else fail "neither curl nor wget is installed to download $1"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
case "$from" in
http://* | https://*)
	fetch "${from%/}/SHA256SUMS" "$tmp/SHA256SUMS" || fail "cannot download ${from%/}/SHA256SUMS"
	file=$(awk '{print $2}' "$tmp/SHA256SUMS" | grep -E "^${name}_[^_]+_${label}\.${fmt}\$" | sort -V | tail -n 1) ||
		true
	[ -n "$file" ] || fail "no ${name} ${label} .${fmt} package listed in ${from%/}/SHA256SUMS"
	fetch "${from%/}/$file" "$tmp/$file" || fail "cannot download ${from%/}/$file"
	(cd "$tmp" && grep " $file\$" SHA256SUMS | sha256sum -c - >/dev/null) || fail "$file does not match its checksum"
	pkg="$tmp/$file"
	;;
*)
	[ -d "$from" ] || fail "$from is not a directory or an http(s) URL"
	pkg=$(ls "$from"/${name}_*_${label}.${fmt} 2>/dev/null | sort -V | tail -n 1) || true
	[ -n "$pkg" ] || fail "no ${name}_<version>_${label}.${fmt} in $from"
	if [ -f "$from/SHA256SUMS" ]; then
		(cd "$from" && grep " $(basename "$pkg")\$" SHA256SUMS | sha256sum -c - >/dev/null) ||
			fail "$(basename "$pkg") does not match SHA256SUMS"
	fi
	;;
esac

say "installing $(basename "$pkg") ($machine)"
if [ "$fmt" = deb ]; then
	if command -v apt-get >/dev/null 2>&1; then
		cp "$pkg" "$tmp/install.deb"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades "$tmp/install.deb" >/dev/null
	else
		dpkg -i "$pkg" >/dev/null
	fi
else
	if command -v dnf >/dev/null 2>&1; then dnf install -y "$pkg" >/dev/null
	else rpm -U --replacepkgs "$pkg"; fi
fi

# The join token and the hub's address go to the service's environment.
envfile=/etc/default/$name
set_env() { # KEY VALUE
	touch "$envfile" && chmod 0600 "$envfile"
	grep -v "^$1=" "$envfile" >"$tmp/env" || true
	echo "$1=$2" >>"$tmp/env"
	cat "$tmp/env" >"$envfile"
}
if [ -n "$token" ]; then
	[ "$name" = alicia-agent ] || fail "--join-token is for the agent"
	case "$token" in alicia_join_*.*) ;; *) fail "that is not a join token (alicia_join_….<fingerprint>)" ;; esac
	set_env ALICIA_JOIN_TOKEN "$token"
	say "join token written to $envfile"
fi
if [ -n "$hub" ]; then
	set_env ALICIA_HUB "$hub"
	say "hub address $hub written to $envfile"
fi
systemctl daemon-reload
systemctl enable "$name.service" >/dev/null 2>&1
systemctl restart "$name.service"
sleep 1 # the service's first second: did it start?
if systemctl is-active --quiet "$name.service"; then
	say "$name is running: $(/usr/bin/$name --version 2>/dev/null || true)"
else
	say "$name did not start; see: journalctl -u $name -n 50"
	exit 1
fi
say "check it with: systemctl status $name; journalctl -u $name -f"
if [ "$name" = alicia-agent ]; then
	say "on the hub, the device shows up in: curl -s -H \"Authorization: Bearer \$TOKEN\" http://127.0.0.1:8470/api/v1/devices"
fi
