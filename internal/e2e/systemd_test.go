package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The container's root file system: Debian bookworm, minbase plus what
// booting systemd and the tests need, from the Debian mirror this
// machine's apt uses (aptMirror). debootstrap runs once per machine; the
// tree is kept as a tarball named after these settings.
const (
	debSuite    = "bookworm"
	debVariant  = "minbase"
	debIncludes = "systemd,systemd-sysv,dbus,ca-certificates,curl,apt"
)

// aptMirror returns the URI of the first apt source of this machine that
// serves debSuite's main component: deb822 stanzas in
// /etc/apt/sources.list.d/*.sources, then one-line entries in
// /etc/apt/sources.list and /etc/apt/sources.list.d/*.list.
func aptMirror() (string, error) {
	has := func(list []string, v string) bool { return slices.Contains(list, v) }
	stanzas, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range stanzas {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			fields := map[string][]string{}
			for _, line := range strings.Split(stanza, "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
					fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
				}
			}
			if has(fields["types"], "deb") && has(fields["suites"], debSuite) && has(fields["components"], "main") && len(fields["uris"]) > 0 {
				return fields["uris"][0], nil
			}
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			w := strings.Fields(line) // deb [options] URI suite component…
			if len(w) == 0 || w[0] != "deb" {
				continue
			}
			w = w[1:]
			if len(w) > 0 && strings.HasPrefix(w[0], "[") {
				i := slices.IndexFunc(w, func(x string) bool { return strings.HasSuffix(x, "]") })
				if i < 0 {
					continue
				}
				w = w[i+1:]
			}
			if len(w) >= 3 && w[1] == debSuite && has(w[2:], "main") {
				return w[0], nil
			}
		}
	}
	return "", fmt.Errorf("no apt source of this machine serves %s main", debSuite)
}

// TestPackagesInRealSystemd installs the .deb packages in a freshly booted
// Debian with a real systemd as PID 1 and checks what a user would: the
// hub's package gives an active unit with an admin token; scripts/install.sh
// installs the agent with a join token made on the hub's API and the device
// shows online; `systemctl stop alicia-agent` shows it offline (the agent's
// goodbye); an apt upgrade of both packages to a newer version keeps the
// device's identity and the hub's data, restarts both units and brings the
// device back online; both services run as their own system users.
//
// How the container runs (what works on a host whose PID 1 is not
// systemd, as on CI here, and on one where it is):
//   - `systemd-nspawn --boot --register=no --keep-unit`: no systemd-machined
//     or D-Bus on the host is needed, so machinectl and `systemd-run
//     --machine` are not available;
//   - `--private-network`: the container has its own loopback, so the hub
//     inside binds 8470, 1883 and 8883 without meeting other tests, and
//     nothing inside is reachable from the host;
//   - commands run inside with `nsenter --target <container's PID 1> --all`
//     (every namespace of the container), curl included; the container's
//     PID 1 is the child of the systemd-nspawn process this test starts;
//   - files the test only reads (admin token, identity key, credentials)
//     are read from the root directory on the host, which the container
//     uses as it is (no overlay).
//
// The root file system is debootstrapped once (about 1.5 minutes here) into a
// tarball under $XDG_CACHE_HOME/alicia-e2e or /var/cache/alicia-e2e and
// unpacked per run (a couple of seconds). It needs root, systemd-nspawn
// (package systemd-container), debootstrap, nsenter and, on a cold cache, the
// Debian mirror.
func TestPackagesInRealSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a Debian container; skipped with -short")
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("boots a Debian %s container for the host's architecture; %s/%s is not covered", debSuite, runtime.GOOS, runtime.GOARCH)
	}
	if os.Geteuid() != 0 {
		missing(t, "root (systemd-nspawn and debootstrap need it; run the test as root)")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool)
		}
	}

	label := runtime.GOARCH // the package's architecture label, as install.sh picks it
	const oldVersion, newVersion = "v1.0.0", "v1.0.1"
	dist := t.TempDir()
	oldBuild := startPackageBuild(t, filepath.Join(dist, oldVersion), oldVersion, label)
	newBuild := startPackageBuild(t, filepath.Join(dist, newVersion), newVersion, label)

	tarball := rootfsTarball(t)
	root := t.TempDir()
	start := time.Now()
	if out, err := exec.Command("tar", "--numeric-owner", "-xpf", tarball, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", tarball, err, out)
	}
	// The container's / is this directory, made 0700 by TempDir: the
	// services' users must be able to enter it.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("root file system unpacked in %s", time.Since(start).Round(time.Millisecond))

	c := bootContainer(t, root)

	// Both builds ran meanwhile; their files go where the container sees
	// them: /root/alicia/<version>/.
	for _, b := range []*packageBuild{oldBuild, newBuild} {
		b.wait(t)
		copyDir(t, b.out, filepath.Join(root, "root/alicia", b.version))
	}
	inside := func(version, file string) string { return "/root/alicia/" + version + "/" + file }
	pkgVersion := func(v string) string { return strings.TrimPrefix(v, "v") }
	deb := func(name, v string) string { return fmt.Sprintf("%s_%s_%s.deb", name, pkgVersion(v), label) }

	hub := &hubInside{c: c}
	var deviceID string
	users := map[string]string{} // unit → uid, to compare after the upgrade

	if !t.Run("hub package installs an active unit", func(t *testing.T) {
		c.must(t, 2*time.Minute, "apt-get", "install", "-y", inside(oldVersion, deb("alicia-hub", oldVersion)))
		if got := c.isActive("alicia-hub"); got != "active" {
			t.Fatalf("systemctl is-active alicia-hub = %q, want active", got)
		}
		hub.token = readTrimmed(t, filepath.Join(root, "var/lib/alicia-hub/admin.token"))
		users["alicia-hub"] = checkServiceUser(t, c, "alicia-hub", "alicia-hub")
	}) {
		return
	}

	if !t.Run("install.sh installs the agent and it enrols with a join token", func(t *testing.T) {
		token := hub.joinToken(t)
		out := c.must(t, 2*time.Minute, "sh", inside(oldVersion, "install.sh"),
			"--from", "/root/alicia/"+oldVersion, "--join-token", token, "--hub", "127.0.0.1:8470")
		t.Logf("install.sh:\n%s", out)
		for _, unit := range []string{"alicia-hub", "alicia-agent"} {
			if got := c.isActive(unit); got != "active" {
				t.Fatalf("systemctl is-active %s = %q, want active", unit, got)
			}
		}
		env := readTrimmed(t, filepath.Join(root, "etc/default/alicia-agent"))
		if !strings.Contains(env, "ALICIA_JOIN_TOKEN="+token) || !strings.Contains(env, "ALICIA_HUB=127.0.0.1:8470") {
			t.Errorf("/etc/default/alicia-agent after install.sh lacks the token or the hub:\n%s", env)
		}
		deviceID = enrolledIDIn(t, root)
		d := hub.waitStatus(t, deviceID, "online", "", time.Time{}, 30*time.Second)
		if d.AgentVersion != oldVersion {
			t.Errorf("agent_version = %q, want %q", d.AgentVersion, oldVersion)
		}
		users["alicia-agent"] = checkServiceUser(t, c, "alicia-agent", "alicia-agent", "gpio", "i2c", "spi")
	}) {
		return
	}

	if !t.Run("systemctl stop alicia-agent shows it offline", func(t *testing.T) {
		c.must(t, time.Minute, "systemctl", "stop", "alicia-agent")
		if got := c.isActive("alicia-agent"); got != "inactive" {
			t.Errorf("systemctl is-active alicia-agent = %q after stop, want inactive", got)
		}
		// A clean stop is SIGTERM: the agent says goodbye before it exits.
		hub.waitStatus(t, deviceID, "offline", "shutdown", time.Time{}, 10*time.Second)
	}) {
		return
	}

	if !t.Run("apt upgrade keeps the identity and the hub's data", func(t *testing.T) {
		identity := readFile(t, filepath.Join(root, "var/lib/alicia-agent/identity.key"))
		adminToken := hub.token
		hubPID := c.mainPID(t, "alicia-hub")

		c.must(t, 2*time.Minute, "apt-get", "install", "-y",
			inside(newVersion, deb("alicia-hub", newVersion)), inside(newVersion, deb("alicia-agent", newVersion)))

		want := pkgVersion(newVersion) + " " + pkgVersion(newVersion)
		if got := c.must(t, time.Minute, "dpkg-query", "-W", "-f", "${Version} ", "alicia-hub", "alicia-agent"); got != want {
			t.Errorf("installed versions %q, want %q", got, want)
		}
		for _, unit := range []string{"alicia-hub", "alicia-agent"} {
			if got := c.isActive(unit); got != "active" {
				t.Errorf("systemctl is-active %s = %q after the upgrade, want active", unit, got)
			}
		}
		if pid := c.mainPID(t, "alicia-hub"); pid == hubPID {
			t.Errorf("alicia-hub still runs as PID %d after the upgrade: not restarted with the new binary", pid)
		}
		if got := readFile(t, filepath.Join(root, "var/lib/alicia-agent/identity.key")); got != identity {
			t.Errorf("identity.key changed in the upgrade: sha256 %s → %s", sum(identity), sum(got))
		}
		if got := enrolledIDIn(t, root); got != deviceID {
			t.Errorf("device ID after the upgrade = %s, want %s", got, deviceID)
		}
		if got := readTrimmed(t, filepath.Join(root, "var/lib/alicia-hub/admin.token")); got != adminToken {
			t.Errorf("the admin token changed in the upgrade")
		}
		// The restarted hub keeps a device online for a grace period: the
		// proof that the agent came back is its registration after the
		// new hub started.
		d := hub.waitStatus(t, deviceID, "online", "", c.startedAt(t, "alicia-hub"), time.Minute)
		if d.AgentVersion != newVersion {
			t.Errorf("agent_version = %q after the upgrade, want %q", d.AgentVersion, newVersion)
		}
		if n := len(hub.devices()); n != 1 {
			t.Errorf("%d devices after the upgrade, want 1", n)
		}
		for unit, uid := range users {
			extra := []string(nil)
			if unit == "alicia-agent" {
				extra = []string{"gpio", "i2c", "spi"}
			}
			if got := checkServiceUser(t, c, unit, unit, extra...); got != uid {
				t.Errorf("%s runs as uid %s after the upgrade, %s before", unit, got, uid)
			}
		}
	}) {
		return
	}

	t.Run("the new binaries print the new version", func(t *testing.T) {
		for _, b := range []string{"alicia-hub", "alicia-agent"} {
			out := c.must(t, time.Minute, b, "--version")
			if !strings.HasPrefix(out, b+" "+newVersion+" ") {
				t.Errorf("%s --version = %q, want %s %s …", b, out, b, newVersion)
			}
		}
	})

	t.Run("remove keeps the configuration and data, purge deletes them", func(t *testing.T) {
		exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
		identity := readFile(t, filepath.Join(root, "var/lib/alicia-agent/identity.key"))
		c.must(t, 2*time.Minute, "apt-get", "remove", "-y", "alicia-agent")
		if got := c.isActive("alicia-agent"); got == "active" {
			t.Errorf("alicia-agent is still active after remove")
		}
		if exists("usr/bin/alicia-agent") {
			t.Error("remove left the binary")
		}
		for _, p := range []string{"etc/alicia/agent.yaml", "etc/alicia/board.conf", "etc/default/alicia-agent"} {
			if !exists(p) {
				t.Errorf("remove deleted /%s (configuration is kept until purge)", p)
			}
		}
		if got := readFile(t, filepath.Join(root, "var/lib/alicia-agent/identity.key")); got != identity {
			t.Error("remove changed or deleted the device's identity")
		}
		if got := c.isActive("alicia-hub"); got != "active" {
			t.Errorf("removing the agent stopped the hub: %q", got)
		}
		c.must(t, 2*time.Minute, "apt-get", "purge", "-y", "alicia-agent")
		for _, p := range []string{"etc/alicia/agent.yaml", "etc/alicia/board.conf", "etc/default/alicia-agent", "var/lib/alicia-agent"} {
			if exists(p) {
				t.Errorf("purge left /%s", p)
			}
		}
		if out, err := c.run(time.Minute, "getent", "passwd", "alicia-agent"); err == nil {
			t.Errorf("purge left the user: %q", out)
		}
		if !exists("var/lib/alicia-hub/admin.token") || !exists("etc/alicia/hub.yaml") {
			t.Error("purging the agent touched the hub's files")
		}
	})
}

// container is a booted systemd-nspawn container.
type container struct {
	root    string // its root directory on the host
	name    string // its machine name
	initPID int    // its PID 1, as the host sees it
}

// bootContainer boots root with systemd-nspawn and waits until its systemd
// has finished starting up. Cleanup halts it, kills what is left of it
// and checks that no mount of it stays behind; on failure it first prints
// the units' journal and status and the console.
func bootContainer(t *testing.T, root string) *container {
	t.Helper()
	c := &container{root: root, name: fmt.Sprintf("alicia-e2e-%d-%x", os.Getpid(), time.Now().UnixNano()&0xffffff)}
	console := &logBuffer{}
	cmd := exec.Command("systemd-nspawn", "--directory", root, "--boot", "--register=no", "--keep-unit",
		"--private-network", "--machine", c.name, "--console=read-only")
	cmd.Stdout, cmd.Stderr = console, console
	// Its own process group: a ^C to the test does not halt it behind the
	// cleanup's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	t.Cleanup(func() {
		// SIGTERM makes systemd-nspawn halt the container the clean way.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("container %s did not halt within 30s of SIGTERM; killing it", c.name)
			if c.initPID > 0 {
				// The end of a PID namespace's init ends everything in it.
				_ = syscall.Kill(c.initPID, syscall.SIGKILL)
			}
			_ = cmd.Process.Kill()
			<-done
		}
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), " "+root) {
			t.Errorf("mounts under %s remain after the container stopped", root)
		}
		if t.Failed() {
			plain := ansiEscape.ReplaceAllString(console.String(), "")
			t.Logf("--- console of %s (last 8 KiB) ---\n%s", c.name, lastBytes(plain, 8<<10))
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for c.initPID == 0 {
		if exited() || time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn started no systemd within 30s (exited: %v):\n%s", exited(), console)
		}
		for _, pid := range childPIDs(cmd.Process.Pid) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "systemd" {
				c.initPID = pid
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for the container's PID 1 to appear
	}

	t.Cleanup(func() {
		if !t.Failed() || exited() {
			return
		}
		for _, args := range [][]string{
			{"systemctl", "status", "--no-pager", "--lines=0", "alicia-hub", "alicia-agent"},
			{"systemctl", "--failed", "--no-pager"},
			{"journalctl", "-u", "alicia-hub", "-u", "alicia-agent", "--no-pager", "-n", "100"},
			{"journalctl", "--boot", "--priority=warning", "--no-pager", "-n", "50"},
		} {
			out, _ := c.run(30*time.Second, args...)
			t.Logf("--- %s ---\n%s", strings.Join(args, " "), out)
		}
	})

	// `is-system-running --wait` answers once start-up is over; before
	// the container's systemd listens it fails at once, hence the loop.
	deadline = time.Now().Add(90 * time.Second)
	var state string
	for {
		if exited() {
			t.Fatalf("container %s exited while booting:\n%s", c.name, console)
		}
		state, _ = c.run(time.Until(deadline), "systemctl", "is-system-running", "--wait")
		if state == "running" || state == "degraded" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling for the container's systemd to listen
	}
	switch state {
	case "running":
	case "degraded":
		out, _ := c.run(30*time.Second, "systemctl", "--failed", "--no-pager")
		t.Logf("container %s booted degraded (not the test's units):\n%s", c.name, out)
	default:
		t.Fatalf("container %s: system state %q after 90s, want running or degraded", c.name, state)
	}
	t.Logf("container %s (PID 1 = host PID %d) booted in %s", c.name, c.initPID, time.Since(start).Round(time.Millisecond))
	return c
}

// run runs a command inside the container, in all its namespaces, with a
// clean environment, and returns its output, trimmed.
func (c *container) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nsenter := []string{"--target", strconv.Itoa(c.initPID), "--all", "env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER="}
	cmd := exec.CommandContext(ctx, "nsenter", append(nsenter, args...)...)
	// nsenter forks to enter the PID namespace; killed at the timeout, it
	// leaves its child holding the output pipe (until the container
	// stops, which ends everything in it): do not wait for that.
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), timeout)
	}
	return strings.TrimSpace(string(out)), err
}

// must is run failing the test on an error.
func (c *container) must(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", c.name, strings.Join(args, " "), err, out)
	}
	return out
}

// isActive is `systemctl is-active unit`: active, inactive, failed…
func (c *container) isActive(unit string) string {
	out, _ := c.run(30*time.Second, "systemctl", "is-active", unit)
	return out
}

// mainPID is the unit's main process, in the container's PID namespace.
func (c *container) mainPID(t *testing.T, unit string) int {
	t.Helper()
	out := c.must(t, 30*time.Second, "systemctl", "show", "--property=MainPID", "--value", unit)
	pid, err := strconv.Atoi(out)
	if err != nil || pid == 0 {
		t.Fatalf("%s: MainPID %q: not running", unit, out)
	}
	return pid
}

// startedAt is when the unit's main process started (the container has
// the host's clock).
func (c *container) startedAt(t *testing.T, unit string) time.Time {
	t.Helper()
	out := c.must(t, 30*time.Second, "systemctl", "show", "--timestamp=us+utc", "--property=ExecMainStartTimestamp", "--value", unit)
	at, err := time.Parse("Mon 2006-01-02 15:04:05.999999 MST", out)
	if err != nil {
		t.Fatalf("%s: ExecMainStartTimestamp %q: %v", unit, out, err)
	}
	return at
}

// checkServiceUser checks that the unit's main process runs as user (every
// uid and gid of /proc/PID/status: real, effective, saved, file system),
// that this is not root, and that it holds the given supplementary groups.
// It returns the uid.
func checkServiceUser(t *testing.T, c *container, unit, user string, groups ...string) string {
	t.Helper()
	pid := c.mainPID(t, unit)
	status := c.must(t, 30*time.Second, "cat", fmt.Sprintf("/proc/%d/status", pid))
	uid := c.must(t, 30*time.Second, "id", "-u", user)
	gid := c.must(t, 30*time.Second, "id", "-g", user)
	if uid == "0" || gid == "0" {
		t.Fatalf("user %s is uid %s gid %s: root", user, uid, gid)
	}
	field := func(name string) []string {
		for line := range strings.Lines(status) {
			if rest, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.Fields(rest)
			}
		}
		return nil
	}
	for _, f := range []struct{ name, want string }{{"Uid", uid}, {"Gid", gid}} {
		got := field(f.name)
		if len(got) != 4 || slices.ContainsFunc(got, func(s string) bool { return s != f.want }) {
			t.Errorf("%s (PID %d): %s: %v, want %s (%s) four times", unit, pid, f.name, got, f.want, user)
		}
	}
	held := field("Groups")
	for _, g := range groups {
		entry := c.must(t, 30*time.Second, "getent", "group", g) // name:x:gid:members
		parts := strings.Split(entry, ":")
		if len(parts) < 3 || !slices.Contains(held, parts[2]) {
			t.Errorf("%s (PID %d): supplementary groups %v lack %s (%s)", unit, pid, held, g, entry)
		}
	}
	return uid
}

// hubInside is the hub's REST API in the container, used with curl there.
type hubInside struct {
	c     *container
	token string // the admin token
}

// curl runs curl in the container with the admin token; an answer other
// than 2xx is an error.
func (h *hubInside) curl(timeout time.Duration, args ...string) (string, error) {
	base := []string{"curl", "--fail", "--silent", "--show-error", "--max-time", "10",
		"--header", "Authorization: Bearer " + h.token}
	return h.c.run(timeout, append(base, args...)...)
}

func (h *hubInside) joinToken(t *testing.T) string {
	t.Helper()
	out, err := h.curl(30*time.Second, "--request", "POST", "--header", "Content-Type: application/json",
		"--data", `{"uses":1,"ttl":"1h"}`, "http://127.0.0.1:8470/api/v1/join-tokens")
	if err != nil {
		t.Fatalf("create a join token: %v\n%s", err, out)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
		t.Fatalf("create a join token: answer %q: %v", out, err)
	}
	return tok.Token
}

// seenDevice is a device as the REST API lists it, with when the hub last
// heard from it.
type seenDevice struct {
	device
	LastSeen time.Time `json:"last_seen"`
}

// devices lists devices; nil when the hub does not answer (it may be
// restarting).
func (h *hubInside) devices() map[string]seenDevice {
	out, err := h.curl(30*time.Second, "http://127.0.0.1:8470/api/v1/devices")
	if err != nil {
		return nil
	}
	var ds []seenDevice
	if json.Unmarshal([]byte(out), &ds) != nil {
		return nil
	}
	m := map[string]seenDevice{}
	for _, d := range ds {
		m[d.ID] = d
	}
	return m
}

// waitStatus waits until device id has the status (and reason, if not
// empty), last seen after seenAfter (if not zero), and returns the device
// as the hub then lists it.
func (h *hubInside) waitStatus(t *testing.T, id, status, reason string, seenAfter time.Time, timeout time.Duration) seenDevice {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last seenDevice
	listed := false
	for time.Now().Before(deadline) {
		if d, ok := h.devices()[id]; ok {
			last, listed = d, true
			if d.Status == status && (reason == "" || d.StatusReason == reason) && d.LastSeen.After(seenAfter) {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a wait for an event
	}
	t.Fatalf("device %s (listed: %v): status %q/%q last seen %s after %s, want %q/%q seen after %s",
		id, listed, last.Status, last.StatusReason, last.LastSeen.Format(time.RFC3339Nano), timeout, status, reason, seenAfter.Format(time.RFC3339Nano))
	return seenDevice{}
}

// enrolledIDIn waits for the agent's credentials in the container's root
// and returns its device ID.
func enrolledIDIn(t *testing.T, root string) string {
	t.Helper()
	path := filepath.Join(root, "var/lib/alicia-agent/credentials.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var cred struct {
				DeviceID string `json:"device_id"`
			}
			if err := json.Unmarshal(b, &cred); err == nil && cred.DeviceID != "" {
				return cred.DeviceID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not enrol within 30s: %s: %v", path, err)
		}
		time.Sleep(100 * time.Millisecond) // polling for enrolment
	}
}

// packageBuild is scripts/package.sh running for one version.
type packageBuild struct {
	version, out string
	cmd          *exec.Cmd
	log          *logBuffer
	done         chan struct{} // closed when cmd.Wait has returned
}

// startPackageBuild starts `scripts/package.sh OUT VERSION LDFLAGS` for the
// one target label. Cleanup kills it (its process group) if it still runs.
func startPackageBuild(t *testing.T, out, version, label string) *packageBuild {
	t.Helper()
	ldflags := "-s -w -X github.com/alicia-home/alicia/internal/buildinfo.Version=" + version
	b := &packageBuild{version: version, out: out, log: &logBuffer{}, done: make(chan struct{})}
	b.cmd = exec.Command("scripts/package.sh", out, version, ldflags)
	b.cmd.Dir = "../.."
	b.cmd.Env = append(os.Environ(), "PACKAGE_TARGETS="+label)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start scripts/package.sh: %v", err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
		}
	})
	return b
}

// wait waits for the build and fails the test if it failed.
func (b *packageBuild) wait(t *testing.T) {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(10 * time.Minute):
		t.Fatalf("scripts/package.sh %s still runs after 10 minutes:\n%s", b.version, b.log)
	}
	if !b.cmd.ProcessState.Success() {
		t.Fatalf("scripts/package.sh %s: %v\n%s", b.version, b.cmd.ProcessState, b.log)
	}
}

// rootfsTarball returns the cached tarball of the container's root file
// system, making it with debootstrap first if needed. A lock file keeps
// two test runs from making it at once.
func rootfsTarball(t *testing.T) string {
	t.Helper()
	dir := "/var/cache/alicia-e2e"
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		dir = filepath.Join(x, "alicia-e2e")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mirror, err := aptMirror()
	if err != nil {
		missing(t, fmt.Sprintf("a Debian mirror for debootstrap (%v)", err))
	}
	key := sha256.Sum256([]byte(strings.Join([]string{debSuite, mirror, debVariant, debIncludes}, "\n")))
	tarball := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.tar", debSuite, debVariant, hex.EncodeToString(key[:6])))

	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}

	if _, err := exec.LookPath("debootstrap"); err != nil {
		missing(t, "debootstrap")
	}
	if err := probeMirror(mirror); err != nil {
		missing(t, fmt.Sprintf("a reachable Debian mirror for debootstrap (%v)", err))
	}
	start := time.Now()
	tree, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tree)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	logFile := filepath.Join(t.TempDir(), "debootstrap.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant="+debVariant, "--include="+debIncludes, debSuite, tree, mirror)
	cmd.Stdout, cmd.Stderr = lf, lf
	err = cmd.Run()
	lf.Close()
	if err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("debootstrap: %v\n%s", err, lastBytes(string(log), 4<<10))
	}
	if err := os.Chmod(tree, 0o755); err != nil { // MkdirTemp made it 0700; it is the container's /
		t.Fatal(err)
	}
	tmp := tarball + ".tmp"
	if out, err := exec.Command("tar", "--numeric-owner", "-cpf", tmp, "-C", tree, ".").CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("tar the root file system: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap of %s into %s took %s", debSuite, tarball, time.Since(start).Round(time.Second))
	return tarball
}

// probeMirror tells whether the Debian mirror answers, so a machine
// without it skips rather than fails deep in debootstrap.
func probeMirror(mirror string) error {
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Head(mirror + "/dists/" + debSuite + "/Release")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// childPIDs returns the processes whose parent is ppid, from /proc.
func childPIDs(ppid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// copyDir copies the regular files of src into dst (made if needed).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err == nil {
			_, err = io.Copy(out, in)
			err = errors.Join(err, out.Close())
		}
		in.Close()
		if err != nil {
			t.Fatalf("copy %s: %v", e.Name(), err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	return strings.TrimSpace(readFile(t, path))
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// ansiEscape matches the colour codes of systemd's console output.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
