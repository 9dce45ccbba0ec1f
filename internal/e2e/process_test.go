package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds alicia-hub and alicia-agent built once for this test run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds both binaries (CGO_ENABLED=0, as shipped) into a
// temporary directory shared by the tests of this run.
func binaries(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "alicia-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []string{"hub", "agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "alicia-"+b), "./"+b)
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./%s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if releaseDir != "" {
		os.RemoveAll(releaseDir)
	}
	os.Exit(code)
}

// proc is a binary started by a test; its output is kept for failure reports.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
}

// startProc starts a binary and stops it with SIGKILL at cleanup if the
// test did not stop it.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(bin, args...), out: &logBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout = p.out
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(p.out, sc.Text())
		}
	}()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.out)
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(sig syscall.Signal) {
	p.signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s did not exit within 10s of %v", p.name, sig)
	}
}

// waitHTTP waits until the hub answers /healthz.
func waitHealthy(t *testing.T, httpAddr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", p.name, p.out)
		default:
		}
		if resp, err := httpGet("http://" + httpAddr + "/healthz"); err == nil && resp == 200 {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling for the hub to come up
	}
	t.Fatalf("hub at %s not healthy after 15s:\n%s", httpAddr, p.out)
}

// TestProcesses runs the built binaries on loopback ports: two agents
// enrol and go online; kill -9 of the hub and a restart keep every device
// and they come back online by themselves; SIGTERM of an agent shows
// offline at once, SIGKILL of an agent shows offline (Last Will).
func TestProcesses(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hubArgs := []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", freeAddr(t), "--no-mdns", "--log-level", "debug"}
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	token := api.joinToken(2)

	var ids []string
	var agents []*proc
	for _, name := range []string{"p1", "p2"} {
		state := filepath.Join(dir, name)
		a := startProc(t, name, filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr,
			"--join-token", token, "--name", name, "--heartbeat", "500ms", "--keepalive", "2s")
		agents = append(agents, a)
		ids = append(ids, enrolledID(t, state, a))
	}
	for _, id := range ids {
		api.waitStatus(id, "online", "", 5*time.Second)
	}

	parent := t
	t.Run("kill -9 of the hub keeps the registry and devices come back online", func(t *testing.T) {
		hub.stop(syscall.SIGKILL)
		// The restarted hub belongs to the whole test, not to this subtest.
		hub = startProc(parent, "hub (restarted)", filepath.Join(bin, "alicia-hub"), hubArgs...)
		waitHealthy(t, httpAddr, hub)
		ds := api.devices()
		if len(ds) != 2 {
			t.Fatalf("%d devices after kill -9 and restart, want 2: %+v", len(ds), ds)
		}
		// Past the grace period of 3 heartbeats, they are online because
		// they reconnected by themselves.
		time.Sleep(2 * time.Second) // letting the grace period run out on purpose
		for _, id := range ids {
			api.waitStatus(id, "online", "", 10*time.Second)
		}
	})

	t.Run("SIGTERM of an agent shows offline at once", func(t *testing.T) {
		agents[0].stop(syscall.SIGTERM)
		// The reason "shutdown" proves it came from the goodbye; the bound
		// leaves room for a loaded CI machine.
		if took := api.waitStatus(ids[0], "offline", "shutdown", 3*time.Second); took > 2*time.Second {
			t.Errorf("offline after %s, want at once", took)
		}
	})

	t.Run("SIGKILL of an agent shows offline", func(t *testing.T) {
		agents[1].stop(syscall.SIGKILL)
		// The kernel closes the socket: the broker publishes the Will at once.
		api.waitStatus(ids[1], "offline", "connection_lost", 3*time.Second)
	})

	t.Run("version flags", func(t *testing.T) {
		for _, b := range []string{"alicia-hub", "alicia-agent"} {
			out, err := exec.Command(filepath.Join(bin, b), "--version").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), b+" ") || !strings.Contains(string(out), "go1.") {
				t.Errorf("%s --version = %q, %v", b, out, err)
			}
		}
	})
}
