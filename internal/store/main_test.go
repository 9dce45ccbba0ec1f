package store

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// A child started by TestCrashKeepsAcknowledgedWrites: it never
		// returns, so skip the leak check.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m,
		// badger.Open does not stop these two when it fails (badger v4.9.6,
		// DB.cleanup); TestOpenCorrupt makes it fail. Every other goroutine
		// of a DB that is not closed is still caught.
		goleak.IgnoreTopFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"),
	)
}
