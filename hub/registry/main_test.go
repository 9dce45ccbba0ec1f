package registry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package on leaked goroutines (stores left open).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
