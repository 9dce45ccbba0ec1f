package metrics

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package on leaked goroutines (ingesters not joined,
// stores left open).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
