#!/bin/sh
# postinstall of alicia-hub and alicia-agent (NAME is set by the package
# build): create the service's system user and groups, then enable and
# (re)start the service. Debian calls it with "configure [old-version]",
# rpm with 1 (install) or 2 (upgrade).
set -e
NAME=@NAME@

group() {
	getent group "$1" >/dev/null 2>&1 || groupadd --system "$1"
}

group "$NAME"
if ! getent passwd "$NAME" >/dev/null 2>&1; then
	useradd --system --gid "$NAME" --home-dir "/var/lib/$NAME" --no-create-home \
		--shell /usr/sbin/nologin --comment "Alicia ${NAME#alicia-}" "$NAME"
fi
if [ "$NAME" = alicia-agent ]; then
	# The unit adds these groups; a missing one stops it from starting.
	# Raspberry Pi OS has them (udev gives them the device nodes); elsewhere
	# they are created, and the rules below give them the nodes.
	for g in gpio i2c spi; do group "$g"; done
	usermod -a -G gpio,i2c,spi "$NAME"
	# The drop directory of custom metrics (alicia-agent push, *.prom
	# files): root and the members of alicia-metrics write there (add a
	# script's user with: usermod -a -G alicia-metrics USER), the agent
	# reads it. Outside the agent's state directory, which is 0700.
	group alicia-metrics
	install -d -o root -g alicia-metrics -m 2775 /var/lib/alicia-agent-textfile
	if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then
		udevadm control --reload-rules 2>/dev/null || true
		udevadm trigger --subsystem-match=gpio --subsystem-match=i2c-dev --subsystem-match=spidev 2>/dev/null || true
	fi
fi

# A fresh install (Debian: "configure" without an old version; rpm: 1)
# enables and starts the service. An upgrade restarts it if it is
# enabled, with the new binary (its data and identity stay in
# /var/lib/$NAME), and leaves a service the admin disabled alone.
case "$1" in
configure) if [ -z "${2:-}" ]; then fresh=1; else fresh=; fi ;;
1) fresh=1 ;;
2) fresh= ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ -n "$fresh" ]; then
		systemctl enable "$NAME.service" >/dev/null 2>&1 || true
	fi
	if systemctl is-enabled --quiet "$NAME.service" 2>/dev/null; then
		systemctl restart "$NAME.service" || echo "$NAME: the service did not start; see: journalctl -u $NAME" >&2
	fi
fi
exit 0
