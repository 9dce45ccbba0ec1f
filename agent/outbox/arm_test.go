package outbox

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// armTests are the tests TestARMv6 runs under emulation: all but the kill
// tests (which re-execute the binary) and itself.
var armTests = []string{
	"TestAppendPendingAck", "TestReopen", "TestMaxBytes", "TestMaxAge", "TestCorrupt",
	"TestDamagedEntry", "TestLocked", "TestCreateRace", "TestFileMode", "TestLeftovers",
	"TestWait", "TestConcurrent", "TestOptionsValidate", "TestGrowth",
}

// TestARMv6 cross-compiles this package's tests for 32-bit ARMv6 (a Pi
// Zero) without cgo and runs them under qemu-arm-static: bbolt's mmap and
// the 64-bit sequence numbers must work in a 32-bit address space.
func TestARMv6(t *testing.T) {
	if runtime.GOARCH == "arm" {
		t.Skip("already running on arm")
	}
	if testing.Short() {
		t.Skip("cross-compiles and emulates; skipped with -short")
	}
	qemu, err := exec.LookPath("qemu-arm-static")
	if err != nil {
		missing(t, "qemu-arm-static (package qemu-user-static)")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		missing(t, "the go command")
	}
	bin := filepath.Join(t.TempDir(), "outbox_armv6.test")
	build := exec.Command(goCmd, "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm", "GOARM=6", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c for linux/arm/v6: %v\n%s", err, out)
	}
	checkARMv6(t, bin)

	run := exec.Command(qemu, bin, "-test.run=^("+strings.Join(armTests, "|")+")$", "-test.v", "-test.count=1")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the ARMv6 test binary failed under qemu: %v\n%s", err, out)
	}
	for _, name := range armTests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass under qemu (skipped, filtered out or missing)", name)
		}
	}
	if t.Failed() {
		t.Logf("qemu output:\n%s", out)
	}
}

// checkARMv6 makes sure bin really is a 32-bit ARM executable built for
// ARMv6 without cgo, so a passing run means what it says.
func checkARMv6(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_ARM || f.Class != elf.ELFCLASS32 {
		t.Fatalf("%s is %v %v, want a 32-bit ARM executable", bin, f.Class, f.Machine)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOARM"] != "6" || settings["CGO_ENABLED"] != "0" {
		t.Fatalf("build settings GOARM=%q CGO_ENABLED=%q, want 6 and 0", settings["GOARM"], settings["CGO_ENABLED"])
	}
}

// missing fails under CI (where .ci/run installs everything) and skips on
// a developer's machine.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs it", what)
	}
	t.Skipf("%s is not installed (.ci/run lists the Debian packages the tests need)", what)
}
