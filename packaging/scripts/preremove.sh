#!/bin/sh
# preremove of alicia-hub and alicia-agent: stop and disable the service
# when the package goes away (not on upgrade). Debian: "remove" or
# "upgrade"; rpm: 0 (erase) or 1 (upgrade).
set -e
NAME=@NAME@
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop "$NAME.service" >/dev/null 2>&1 || true
		systemctl disable "$NAME.service" >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
