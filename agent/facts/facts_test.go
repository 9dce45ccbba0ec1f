package facts

import (
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

func TestGatherFixture(t *testing.T) {
	s := Source{ProcRoot: "testdata/pi4/proc", EtcRoot: "testdata/pi4/etc", Hostname: func() (string, error) { return "kitchen-pi", nil }}
	got, err := s.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.Facts{Hostname: "kitchen-pi", OS: runtime.GOOS, Platform: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.6.51+rpt-rpi-v8",
		Arch: Arch(), CPUModel: "Raspberry Pi 4 Model B Rev 1.4", CPUCores: runtime.NumCPU(), MemoryBytes: 3884360 * 1024,
		BootTime: time.Unix(1764224000, 0).UTC()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts (-want +got):\n%s", diff)
	}
}

func TestGatherMissingFilesReportsButContinues(t *testing.T) {
	s := Source{ProcRoot: t.TempDir(), EtcRoot: t.TempDir(), Hostname: func() (string, error) { return "h", nil }}
	f, err := s.Gather()
	if err == nil {
		t.Fatal("no error for an empty proc tree")
	}
	for _, what := range []string{"kernel", "platform", "cpu model", "memory", "boot time"} {
		if !strings.Contains(err.Error(), what) {
			t.Errorf("error %q does not mention %s", err, what)
		}
	}
	if f.Hostname != "h" || f.OS == "" || f.Arch == "" {
		t.Errorf("facts that need no files are missing: %+v", f)
	}
}

func TestGatherThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	f, err := Source{}.Gather()
	if err != nil {
		t.Fatalf("Gather on this machine: %v", err)
	}
	if f.MemoryBytes == 0 || f.BootTime.IsZero() || f.Kernel == "" {
		t.Errorf("incomplete facts: %+v", f)
	}
}

func TestParsers(t *testing.T) {
	if got := ParseCPUModel("processor : 0\nmodel name\t: Intel(R) Xeon(R)\n"); got != "Intel(R) Xeon(R)" {
		t.Errorf("x86 model = %q", got)
	}
	if got := ParseCPUModel("processor : 0\nisa : rv64imafdc\nuarch : sifive,u74-mc\n"); got != "sifive,u74-mc" {
		t.Errorf("riscv model = %q", got)
	}
	if got := ParseOSRelease("ID=alpine\nVERSION_ID=3.20.0\n"); got != "alpine 3.20.0" {
		t.Errorf("os-release without PRETTY_NAME = %q", got)
	}
	for _, bad := range []string{"", "MemTotal: x kB\n", "MemTotal: 12 MB\n"} {
		if _, err := ParseMemTotal(bad); err == nil {
			t.Errorf("ParseMemTotal(%q) = nil error", bad)
		}
	}
	for _, bad := range []string{"", "btime x\n"} {
		if _, err := ParseBootTime(bad); err == nil {
			t.Errorf("ParseBootTime(%q) = nil error", bad)
		}
	}
}

func TestSanitize(t *testing.T) {
	f := protocol.Facts{Hostname: "h\x00st", OS: "linux", Arch: "amd64", Platform: strings.Repeat("é", 100), Kernel: "6.1\n", CPUModel: strings.Repeat("x", 200)}
	sanitize(&f)
	if f.Hostname != "h st" || f.Kernel != "6.1 " || len(f.CPUModel) != maxText || len(f.Platform) > maxText || !utf8.ValidString(f.Platform) {
		t.Errorf("sanitized facts: %+v", f)
	}
	reg := protocol.Register{Name: "n", AgentVersion: "v", HeartbeatMS: 1000, Facts: f}
	if err := reg.Validate(); err != nil {
		t.Errorf("sanitized facts do not validate: %v", err)
	}
}
