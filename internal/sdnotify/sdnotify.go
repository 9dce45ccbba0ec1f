// Package sdnotify tells systemd about a service's life (Type=notify):
// READY once it serves, WATCHDOG pings while it is alive, STOPPING when it
// shuts down. Outside systemd (no NOTIFY_SOCKET) every call does nothing.
// It wraps go-systemd's daemon package, which needs no cgo.
package sdnotify

import (
	"context"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd the service is up, with a status line.
func Ready(status string) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status)
}

// Stopping tells systemd the service is shutting down.
func Stopping() {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
}

// Watchdog pings systemd's watchdog at half its interval (WatchdogSec=),
// as long as alive reports true, until ctx is done. A service that stops
// pinging is restarted by systemd. It returns at once when the unit has
// no watchdog.
func Watchdog(ctx context.Context, alive func() bool, log *slog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if alive != nil && !alive() {
			log.Error("not alive: the systemd watchdog will restart the service")
			continue
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
	}
}
