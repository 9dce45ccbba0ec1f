package api

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package on leaked goroutines (event streams, HTTP
// connections, command waits left running).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
