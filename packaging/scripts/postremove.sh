#!/bin/sh
# postremove of alicia-hub and alicia-agent. Remove keeps the
# configuration and the data (the hub's store and CA, the device's
# identity); purge deletes them, and the service user. Debian: "remove",
# "purge", "upgrade"…; rpm: 0 (erase: like remove) or 1 (upgrade).
set -e
NAME=@NAME@
case "$1" in
purge)
	rm -rf "/var/lib/$NAME"
	if [ "$NAME" = alicia-agent ]; then
		rm -rf /var/lib/alicia-agent-textfile
		groupdel alicia-metrics >/dev/null 2>&1 || true
	fi
	rm -f "/etc/default/$NAME"
	userdel "$NAME" >/dev/null 2>&1 || true
	groupdel "$NAME" >/dev/null 2>&1 || true
	rmdir /etc/alicia 2>/dev/null || true
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
