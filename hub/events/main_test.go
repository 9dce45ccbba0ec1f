package events

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package on leaked goroutines (subscribers and
// forwarders not stopped).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
