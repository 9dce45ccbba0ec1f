package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stopBound is how long a clean stop may take here. The target is one
// second; a loaded CI machine gets some room, and the failure this
// guards against (the HTTP server waiting for event streams) took the
// whole 5 s shutdown timeout.
const stopBound = 3 * time.Second

// openStreams opens n event streams and waits for each one's first line
// (the hub says at once that the stream is open). Each returned channel
// is closed when its stream ends.
func openStreams(t *testing.T, api *apiClient, n int) []chan struct{} {
	t.Helper()
	var ended []chan struct{}
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", api.base+"/api/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+api.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		first := make(chan string, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sent := false
			for sc.Scan() {
				if !sent && strings.HasPrefix(sc.Text(), ": ") {
					first <- sc.Text()
					sent = true
				}
			}
		}()
		select {
		case line := <-first:
			if !strings.Contains(line, "event stream open") {
				t.Errorf("stream %d: first comment %q, want one saying the stream is open", i, line)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d: nothing within 5 s of opening it (a person at a terminal sees nothing)", i)
		}
		ended = append(ended, done)
	}
	return ended
}

// A hub with event streams open stops cleanly, as systemctl stop asks
// (SIGTERM): exit 0, promptly, and the streams end.
func TestHubStopsWithEventStreamsOpen(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr := freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr,
		"--mqtt-addr", freeAddr(t), "--mqtts-addr", freeAddr(t), "--no-mdns")
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	streams := openStreams(t, api, 10)

	start := time.Now()
	hub.stop(syscall.SIGTERM)
	took := time.Since(start)
	t.Logf("hub stopped %s after SIGTERM with 10 event streams open", took.Round(time.Millisecond))
	if code := hub.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("hub exit code %d after SIGTERM, want 0:\n%s", code, hub.out)
	}
	if took > stopBound {
		t.Errorf("hub took %s to stop, want well under %s", took, stopBound)
	}
	for i, done := range streams {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("stream %d still open after the hub stopped", i)
		}
	}
}

// pty is a pseudo-terminal: what a person's terminal is to `make run`.
type pty struct {
	master, slave *os.File
}

func openPTY(t *testing.T) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	p := &pty{master: m, slave: s}
	t.Cleanup(func() { m.Close(); s.Close() })
	return p
}

// start runs cmd as the foreground job of the terminal: its own session,
// the pty as its controlling terminal and its stdin, stdout and stderr.
// The terminal's output goes to out.
func (p *pty) start(t *testing.T, cmd *exec.Cmd, out io.Writer) {
	t.Helper()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, p.slave, p.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go io.Copy(out, p.master) // ends when the master is closed
}

// ctrlC types Ctrl-C: the terminal sends SIGINT to its foreground job.
func (p *pty) ctrlC(t *testing.T) {
	t.Helper()
	if _, err := p.master.Write([]byte{0x03}); err != nil {
		t.Fatalf("type Ctrl-C: %v", err)
	}
}

// runEnv is the environment of a `make run` on free loopback ports with
// its data in dir; it returns the HTTP address.
func runEnv(t *testing.T, dir string, extra ...string) ([]string, string) {
	t.Helper()
	port := func() string { _, p, _ := net.SplitHostPort(freeAddr(t)); return p }
	httpPort := port()
	env := append(os.Environ(), "ALICIA_RUN_DIR="+dir, "ALICIA_RUN_HTTP_PORT="+httpPort,
		"ALICIA_RUN_MQTT_PORT="+port(), "ALICIA_RUN_MQTTS_PORT="+port(), "TERM=dumb")
	return append(env, extra...), "127.0.0.1:" + httpPort
}

// makeRun is a `make run` in a pseudo-terminal.
type makeRun struct {
	term   *pty
	out    *logBuffer    // the terminal's output
	exited chan struct{} // closed when make exits
	api    *apiClient
	id     string // the local agent's device ID
	dir    string // ALICIA_RUN_DIR
}

// startMakeRun runs `make run` in a pseudo-terminal, as the README says,
// and waits until its agent is online.
func startMakeRun(t *testing.T, dir string, extraEnv ...string) *makeRun {
	t.Helper()
	if testing.Short() {
		t.Skip("runs make run; skipped with -short")
	}
	for _, tool := range []string{"make", "curl", "bash", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool)
		}
	}
	env, httpAddr := runEnv(t, dir, extraEnv...)
	term := openPTY(t)
	out := &logBuffer{}
	cmd := exec.Command("make", "run")
	cmd.Dir = "../.."
	cmd.Env = env
	term.start(t, cmd, out)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Stop whatever is left: the make job (by its process group) and
		// the binaries it started in sessions of their own.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for _, name := range []string{"alicia-agent", "alicia-hub"} {
			killByDataDir(name, dir)
		}
		<-exited
		if t.Failed() {
			t.Logf("--- make run's terminal ---\n%s", out)
		}
	})
	deadline := time.Now().Add(3 * time.Minute) // the first make run builds both binaries
	for !strings.Contains(out.String(), "Alicia is running.") {
		select {
		case <-exited:
			t.Fatalf("make run exited before it was running:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run not running after 3 minutes:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond) // polling the terminal's output
	}
	api := newAPIClient(t, httpAddr, filepath.Join(dir, "hub"))
	id := enrolledIDFromFile(t, filepath.Join(dir, "agent", "credentials.json"))
	api.waitStatus(id, "online", "", 20*time.Second)
	return &makeRun{term: term, out: out, exited: exited, api: api, id: id, dir: dir}
}

// enrolledIDFromFile waits for the agent's credentials and returns its ID.
func enrolledIDFromFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var c struct {
				DeviceID string `json:"device_id"`
			}
			if json.Unmarshal(b, &c) == nil && c.DeviceID != "" {
				return c.DeviceID
			}
		}
		time.Sleep(50 * time.Millisecond) // polling for the agent's enrolment
	}
	t.Fatalf("no device ID in %s after 20 s", path)
	return ""
}

// killByDataDir kills, by PID, the processes named name whose command
// line names dir (the ones this test's make run started).
func killByDataDir(name, dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == name && strings.Contains(string(cmdline), dir) {
			var pid int
			if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// Ctrl-C on `make run` in a terminal, with event streams open: the agent
// says offline, both stop cleanly (no SIGPIPE) within the bound, and the
// device is offline (shutdown) when the hub comes back.
func TestMakeRunCtrlC(t *testing.T) {
	dir := t.TempDir()
	run := startMakeRun(t, dir)
	term, out, api, id := run.term, run.out, run.api, run.id
	streams := openStreams(t, api, 10)

	start := time.Now()
	term.ctrlC(t)
	for !(strings.Contains(out.String(), "alicia-agent stopped") && strings.Contains(out.String(), "alicia-hub stopped")) {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("hub and agent did not both log a clean stop within 15 s of Ctrl-C:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond) // polling the terminal's output
	}
	took := time.Since(start)
	t.Logf("agent and hub stopped %s after Ctrl-C, with 10 event streams open", took.Round(time.Millisecond))
	if took > stopBound {
		t.Errorf("stopping took %s after Ctrl-C, want well under %s", took, stopBound)
	}
	for _, bad := range []string{"broken pipe", "SIGPIPE", "level=ERROR"} {
		if strings.Contains(out.String(), bad) {
			t.Errorf("make run's terminal shows %q after Ctrl-C", bad)
		}
	}
	for i, done := range streams {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("stream %d still open after make run stopped", i)
		}
	}
	select {
	case <-run.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("make run still running 10 s after Ctrl-C")
	}

	// The hub recorded the agent's goodbye before it stopped.
	bin := binaries(t)
	httpAddr := freeAddr(t)
	hub := startProc(t, "hub (after make run)", filepath.Join(bin, "alicia-hub"), "--data-dir", filepath.Join(dir, "hub"),
		"--http-addr", httpAddr, "--mqtt-addr", freeAddr(t), "--mqtts-addr", freeAddr(t), "--no-mdns")
	waitHealthy(t, httpAddr, hub)
	api = newAPIClient(t, httpAddr, filepath.Join(dir, "hub"))
	if d := api.devices()[id]; d.Status != "offline" || d.StatusReason != "shutdown" {
		t.Errorf("device after Ctrl-C: %s/%s, want offline/shutdown", d.Status, d.StatusReason)
	}
}
