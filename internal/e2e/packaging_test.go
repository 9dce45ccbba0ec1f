package e2e

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The release's targets: the package label, the ELF machine and class
// its binaries must have, and GOARM for 32-bit ARM.
var releaseTargets = []struct {
	label   string
	machine elf.Machine
	class   elf.Class
	goarm   string
	hub     bool // the hub is built for this target too
	debArch string
	rpmArch string
	qemu    string // runs it here, for the --version smoke test
}{
	{"amd64", elf.EM_X86_64, elf.ELFCLASS64, "", true, "amd64", "x86_64", ""},
	{"arm64", elf.EM_AARCH64, elf.ELFCLASS64, "", true, "arm64", "aarch64", "qemu-aarch64-static"},
	{"riscv64", elf.EM_RISCV, elf.ELFCLASS64, "", true, "riscv64", "riscv64", ""},
	{"armhf", elf.EM_ARM, elf.ELFCLASS32, "7", false, "armhf", "armv7hl", "qemu-arm-static"},
	{"armv6", elf.EM_ARM, elf.ELFCLASS32, "6", false, "armhf", "armv6hl", "qemu-arm-static"},
	{"armel", elf.EM_ARM, elf.ELFCLASS32, "5", false, "armel", "armv5tel", ""},
	{"i386", elf.EM_386, elf.ELFCLASS32, "", false, "i386", "i386", ""},
}

var (
	releaseOnce sync.Once
	releaseDir  string
	releaseErr  error
	releaseOut  []byte
)

// release runs scripts/package.sh --binaries once per test binary, as
// `make release` does, with the version v9.8.7.
func release(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds every binary and package; skipped with -short")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		missing(t, "dpkg-deb (package dpkg)")
	}
	releaseOnce.Do(func() {
		releaseDir, releaseErr = os.MkdirTemp("", "alicia-release-")
		if releaseErr != nil {
			return
		}
		cmd := exec.Command("scripts/package.sh", releaseDir, "v9.8.7",
			"-s -w -X github.com/alicia-home/alicia/internal/buildinfo.Version=v9.8.7", "--binaries")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "PACKAGE_TARGETS=")
		releaseOut, releaseErr = cmd.CombinedOutput()
	})
	if releaseErr != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", releaseErr, releaseOut)
	}
	return releaseDir
}

// TestReleaseArtifacts: `make release` (scripts/package.sh --binaries)
// produces every binary and package with checksums; each binary's ELF
// header (and, for 32-bit ARM, its GOARM) matches its name; each .deb and
// .rpm holds its binary for its architecture, its unit and its
// configuration, and maintainer scripts that pass sh -n.
func TestReleaseArtifacts(t *testing.T) {
	dir := release(t)

	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(sums)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			listed[f[1]] = true
		}
	}
	var want []string
	for _, tg := range releaseTargets {
		names := []string{"alicia-agent"}
		if tg.hub {
			names = append(names, "alicia-hub")
		}
		for _, n := range names {
			want = append(want, n+"-linux-"+tg.label, n+"_9.8.7_"+tg.label+".deb", n+"_9.8.7_"+tg.label+".rpm")
		}
	}
	want = append(want, "install.sh")
	for _, f := range want {
		if !listed[f] {
			t.Errorf("%s is missing from SHA256SUMS", f)
		}
	}
	if len(listed) != len(want) {
		t.Errorf("SHA256SUMS lists %d files, want %d", len(listed), len(want))
	}

	for _, tg := range releaseTargets {
		t.Run(tg.label, func(t *testing.T) {
			names := []string{"alicia-agent"}
			if tg.hub {
				names = append(names, "alicia-hub")
			}
			for _, n := range names {
				checkBinary(t, filepath.Join(dir, n+"-linux-"+tg.label), tg.machine, tg.class, tg.goarm)
				checkDeb(t, dir, n, tg.label, tg.debArch, tg.machine, tg.class, tg.goarm)
				checkRPM(t, filepath.Join(dir, n+"_9.8.7_"+tg.label+".rpm"), n, tg.rpmArch)
			}
			if tg.qemu != "" {
				qemu, err := exec.LookPath(tg.qemu)
				if err != nil {
					missing(t, tg.qemu+" (package qemu-user-static)")
				}
				out, err := exec.Command(qemu, filepath.Join(dir, "alicia-agent-linux-"+tg.label), "--version").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "v9.8.7") {
					t.Errorf("%s alicia-agent-linux-%s --version: %q, %v", tg.qemu, tg.label, out, err)
				}
			}
		})
	}
}

// checkBinary checks an executable's ELF header and build settings.
func checkBinary(t *testing.T, path string, machine elf.Machine, class elf.Class, goarm string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	defer f.Close()
	if f.Machine != machine || f.Class != class || f.Type != elf.ET_EXEC || f.OSABI != elf.ELFOSABI_NONE {
		t.Errorf("%s: ELF %v %v %v %v, want %v %v executable", filepath.Base(path), f.Machine, f.Class, f.Type, f.OSABI, machine, class)
	}
	if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Errorf("%s: dynamically linked (has an interpreter); want a static CGO_ENABLED=0 binary", filepath.Base(path))
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Errorf("%s: build info: %v", path, err)
		return
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" || settings["CGO_ENABLED"] != "0" || settings["GOARM"] != goarm {
		t.Errorf("%s: built with GOOS=%s CGO_ENABLED=%s GOARM=%s, want linux, 0, %q", filepath.Base(path),
			settings["GOOS"], settings["CGO_ENABLED"], settings["GOARM"], goarm)
	}
}

// checkDeb checks a .deb's control fields, its files, its binary and its
// maintainer scripts.
func checkDeb(t *testing.T, dir, name, label, arch string, machine elf.Machine, class elf.Class, goarm string) {
	t.Helper()
	deb := filepath.Join(dir, name+"_9.8.7_"+label+".deb")
	field := func(f string) string {
		out, err := exec.Command("dpkg-deb", "-f", deb, f).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s %s: %v", filepath.Base(deb), f, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := field("Package"); got != name {
		t.Errorf("%s: Package %q", filepath.Base(deb), got)
	}
	if got := field("Architecture"); got != arch {
		t.Errorf("%s: Architecture %q, want %q", filepath.Base(deb), got, arch)
	}
	if got := field("Version"); got != "9.8.7" {
		t.Errorf("%s: Version %q, want 9.8.7", filepath.Base(deb), got)
	}
	files := map[string]bool{
		"./usr/bin/" + name: true, "./usr/lib/systemd/system/" + name + ".service": true,
		"./etc/alicia/" + strings.TrimPrefix(name, "alicia-") + ".yaml": true, "./etc/default/" + name: true,
	}
	if name == "alicia-agent" {
		files["./etc/alicia/board.conf"] = true
		files["./usr/lib/udev/rules.d/60-alicia-agent.rules"] = true
	}
	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 6 {
			delete(files, f[len(f)-1])
		}
	}
	for f := range files {
		t.Errorf("%s does not hold %s", filepath.Base(deb), f)
	}
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	checkBinary(t, filepath.Join(x, "usr/bin", name), machine, class, goarm)
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	conffiles, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
	for _, c := range []string{"/etc/alicia/", "/etc/default/" + name} {
		if !strings.Contains(string(conffiles), c) {
			t.Errorf("%s: %s is not a conffile (kept on upgrade and remove): %q", filepath.Base(deb), c, conffiles)
		}
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, s)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s has no %s: %v", filepath.Base(deb), s, err)
			continue
		}
		if !strings.Contains(string(b), "NAME="+name+"\n") || strings.Contains(string(b), "@NAME@") {
			t.Errorf("%s %s does not name its package", filepath.Base(deb), s)
		}
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s %s: sh -n: %v\n%s", filepath.Base(deb), s, err, out)
		}
	}
}

var rpmFileRE = regexp.MustCompile(`(?m)^/usr/bin/alicia-(hub|agent)$`)

// checkRPM checks an .rpm's architecture, files and scripts with rpm(8).
func checkRPM(t *testing.T, rpm, name, arch string) {
	t.Helper()
	if _, err := exec.LookPath("rpm"); err != nil {
		missing(t, "rpm (package rpm)")
	}
	out, err := exec.Command("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}\n", rpm).Output()
	if err != nil || strings.TrimSpace(string(out)) != name+" 9.8.7 "+arch {
		t.Errorf("%s: %q %v, want %s 9.8.7 %s", filepath.Base(rpm), out, err, name, arch)
	}
	list, err := exec.Command("rpm", "-qlp", rpm).Output()
	if err != nil || !rpmFileRE.Match(list) || !strings.Contains(string(list), "/usr/lib/systemd/system/"+name+".service") {
		t.Errorf("%s lists %q (%v)", filepath.Base(rpm), list, err)
	}
	scripts, err := exec.Command("rpm", "-qp", "--scripts", rpm).Output()
	if err != nil || !strings.Contains(string(scripts), "NAME="+name) {
		t.Errorf("%s scripts: %v", filepath.Base(rpm), err)
	}
}

// TestUnitFiles: systemd-analyze verify accepts both units, in a root that
// has the system's units and the binaries where the units expect them, and
// systemd-analyze security rates each "OK" or better.
func TestUnitFiles(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		missing(t, "systemd-analyze (package systemd)")
	}
	bin := binaries(t)
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib/systemd", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy the system's units: %v\n%s", err, out)
	}
	for _, n := range []string{"alicia-hub", "alicia-agent"} {
		if out, err := exec.Command("cp", filepath.Join(bin, n), filepath.Join(root, "usr/bin", n)).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out, err := exec.Command("cp", "../../packaging/systemd/"+n+".service", filepath.Join(root, "etc/systemd/system/")).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	units := []string{"/etc/systemd/system/alicia-hub.service", "/etc/systemd/system/alicia-agent.service"}
	out, err := exec.Command(sa, append([]string{"verify", "--root=" + root}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	level := regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+) (\S+)`)
	for _, u := range units {
		out, err := exec.Command(sa, "security", "--offline=true", "--root="+root, u).CombinedOutput()
		m := level.FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", u, err, out)
			continue
		}
		verdict := string(m[3])
		if verdict != "OK" && verdict != "SAFE" && verdict != "PERFECT" {
			t.Errorf("%s: exposure %s %s, want OK or better", m[1], m[2], verdict)
		}
		t.Logf("systemd-analyze security %s: %s %s", m[1], m[2], verdict)
	}
}
