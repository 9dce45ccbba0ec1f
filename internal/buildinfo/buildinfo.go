// Package buildinfo holds the version, commit and build date stamped into
// both binaries by the Makefile's -ldflags, and reports them with the Go
// version. Any package may import it.
package buildinfo

import (
	"fmt"
	"runtime"
)

// Set with -ldflags "-X github.com/alicia-home/alicia/internal/buildinfo.Version=…".
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// String returns "VERSION (commit COMMIT, built DATE, GOVERSION GOOS/GOARCH)".
func String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s %s/%s)", Version, Commit, Date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
