package clocksync

import "golang.org/x/sys/unix"

// kernelSynced reads the kernel's NTP state (adjtimex): synchronised
// unless STA_UNSYNC is set.
func kernelSynced() (bool, error) {
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		return false, err
	}
	return tx.Status&unix.STA_UNSYNC == 0, nil
}
