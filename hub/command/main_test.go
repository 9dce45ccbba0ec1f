package command

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package on leaked goroutines (Run loops not joined,
// stores left open).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
