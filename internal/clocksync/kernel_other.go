//go:build !linux

package clocksync

import "errors"

func kernelSynced() (bool, error) {
	return false, errors.New("not supported on this system")
}
