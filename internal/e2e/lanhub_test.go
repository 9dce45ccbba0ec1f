package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/netnstest"
)

// lanTest is what a test on a LAN of network namespaces starts from: the
// binaries, the LAN (hosts are added by the test), a temporary directory
// with a subdirectory per host for the hubs' data and the agents' state,
// and a runner whose context is cancelled at cleanup.
type lanTest struct {
	lanRunner
	bin string // the directory of alicia-hub and alicia-agent
	lan *netnstest.LAN
	dir string
}

// newLANTest builds the binaries, skips the test (or fails it under CI)
// when curl or one of tools is not installed, and makes an empty LAN.
func newLANTest(tb testing.TB, tools ...string) *lanTest {
	tb.Helper()
	bin := binaries(tb)
	for _, tool := range append([]string{"curl"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tb, tool)
		}
	}
	lan := netnstest.New(tb)
	dir := tb.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return &lanTest{lanRunner: lanRunner{t: tb, ctx: ctx}, bin: bin, lan: lan, dir: dir}
}

// lanHub is an alicia-hub running on a LAN host.
type lanHub struct {
	*lanProc
	host *netnstest.Host
	dir  string // its --data-dir
	// api calls its REST API with the admin token (lanAPI).
	api func(method, path, body string) ([]byte, error)
}

// startHub runs alicia-hub on host with --data-dir the host's
// subdirectory and args (see lanRunner.start).
func (l *lanTest) startHub(host *netnstest.Host, args ...string) *lanHub {
	l.t.Helper()
	dir := filepath.Join(l.dir, host.Name())
	p := l.start(host, "alicia-hub", filepath.Join(l.bin, "alicia-hub"), append([]string{"--data-dir", dir}, args...)...)
	return &lanHub{lanProc: p, host: host, dir: dir, api: lanAPI(l.ctx, host, dir)}
}

// startAgent runs alicia-agent on host with --state-dir the host's
// subdirectory and args (see lanRunner.start).
func (l *lanTest) startAgent(host *netnstest.Host, args ...string) *lanProc {
	l.t.Helper()
	return l.start(host, "alicia-agent", filepath.Join(l.bin, "alicia-agent"),
		append([]string{"--state-dir", filepath.Join(l.dir, host.Name())}, args...)...)
}

// lanRunner starts binaries on the hosts of a LAN test.
type lanRunner struct {
	t   testing.TB
	ctx context.Context
}

// lanProc is a binary running on a LAN host.
type lanProc struct {
	name string
	bin  string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	err  error // what Wait returned; set before done is closed
}

// start runs bin on host h; at cleanup it is killed (if still running) and
// waited for, and its output shown if the test failed.
func (r lanRunner) start(h *netnstest.Host, name, bin string, args ...string) *lanProc {
	t := r.t
	t.Helper()
	p := &lanProc{name: name, bin: bin, cmd: h.Command(r.ctx, bin, args...), out: &logBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not exit within 10s of SIGKILL", name)
			}
		}
		if t.Failed() {
			t.Logf("--- %s in %s ---\n%s", name, h.Name(), p.out)
		}
	})
	return p
}

// kill kills the process and waits for it to exit.
func (p *lanProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}
