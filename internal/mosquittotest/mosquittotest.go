package mosquittotest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds the wait for a started broker to report "running".
const startTimeout = 10 * time.Second

// Options describes a broker. The zero value is a plain listener on a free
// port that nobody can log in to.
type Options struct {
	// Users maps user names to passwords. Anonymous clients are always
	// refused.
	Users map[string]string
	// Port is the loopback port to listen on; 0 picks a free one.
	Port int
	// TLS, if not nil, makes the listener TLS-only with these PEM files.
	TLS *TLSFiles
	// ACL, if not empty, is the content of an acl_file (Mosquitto syntax).
	ACL string
	// Extra holds more configuration lines, appended verbatim.
	Extra []string
}

// TLSFiles names the PEM files of a TLS listener.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
}

// Broker is a Mosquitto instance owned by one test. Its methods must be called
// from the test's goroutine (they call t.Fatal).
type Broker struct {
	t    testing.TB
	bin  string
	conf string
	port int

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	log    *logBuffer
}

// Start starts a plain broker on a free loopback port accepting users (name →
// password) and returns its URL (tcp://127.0.0.1:PORT) and a function that
// stops it (idempotent; also run by t.Cleanup).
func Start(t testing.TB, users map[string]string) (url string, stop func()) {
	t.Helper()
	b := New(t, Options{Users: users})
	b.Start()
	return b.URL(), b.Stop
}

// New writes the broker's configuration and password file in a temporary
// directory but does not start it. t.Cleanup stops it if it is running.
func New(t testing.TB, o Options) *Broker {
	t.Helper()
	bin := lookPath(t, "mosquitto")
	passwd := lookPath(t, "mosquitto_passwd")
	dir := t.TempDir()

	port := o.Port
	if port == 0 {
		port = FreePort(t)
	}
	pwFile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pwFile, nil, 0o600); err != nil {
		t.Fatalf("mosquittotest: %v", err)
	}
	for name, pw := range o.Users {
		out, err := exec.Command(passwd, "-b", pwFile, name, pw).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquittotest: mosquitto_passwd %s: %v: %s", name, err, out)
		}
	}
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"allow_anonymous false",
		"password_file " + pwFile,
		"set_tcp_nodelay true",
		"persistence false",
		"log_dest stderr",
		"log_type all",
	}
	// Run as root, Mosquitto would switch to user "mosquitto", who cannot
	// read the test's files; naming the current user keeps it as is.
	if u, err := user.Current(); err == nil {
		lines = append(lines, "user "+u.Username)
	}
	if o.TLS != nil {
		lines = append(lines, "cafile "+o.TLS.CAFile, "certfile "+o.TLS.CertFile, "keyfile "+o.TLS.KeyFile)
	}
	if o.ACL != "" {
		aclFile := filepath.Join(dir, "acl")
		if err := os.WriteFile(aclFile, []byte(o.ACL), 0o600); err != nil {
			t.Fatalf("mosquittotest: %v", err)
		}
		lines = append(lines, "acl_file "+aclFile)
	}
	lines = append(lines, o.Extra...)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatalf("mosquittotest: %v", err)
	}
	b := &Broker{t: t, bin: bin, conf: conf, port: port}
	t.Cleanup(b.Stop)
	return b
}

// lookPath finds a Mosquitto program (also in /usr/sbin, often not on PATH),
// or fails (CI set) or skips the test.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	msg := fmt.Sprintf("mosquittotest: %s not installed (apt-get install -y mosquitto mosquitto-clients)", name)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mosquittotest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL returns tcp://127.0.0.1:PORT (ssl:// for a TLS listener is up to the
// caller: the scheme is the client's choice).
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr returns 127.0.0.1:PORT.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port returns the listening port.
func (b *Broker) Port() int { return b.port }

// Start starts the broker and waits until it reports that it is running. It
// fails the test if the broker is already running or does not come up.
func (b *Broker) Start() {
	b.t.Helper()
	if b.cmd != nil {
		b.t.Fatal("mosquittotest: Start: already running")
	}
	log := newLogBuffer("mosquitto version", " running")
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("mosquittotest: start: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.cmd, b.exited, b.log = cmd, exited, log

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-log.ready:
	case <-exited:
		b.cmd = nil
		b.t.Fatalf("mosquittotest: mosquitto exited at start: %s\n%s", cmd.ProcessState, log)
	case <-timer.C:
		b.stop(syscall.SIGKILL)
		b.t.Fatalf("mosquittotest: mosquitto not running after %s:\n%s", startTimeout, log)
	}
}

// Stop stops the broker with SIGTERM (a clean shutdown) and waits for it. It
// does nothing if the broker is not running.
func (b *Broker) Stop() { b.stop(syscall.SIGTERM) }

// Kill stops the broker with SIGKILL, as a crash would, and waits for it.
func (b *Broker) Kill() { b.stop(syscall.SIGKILL) }

func (b *Broker) stop(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(sig) // this PID is ours: we started it and have not reaped it
	<-b.exited
	b.cmd = nil
}

// Log returns what the broker has logged so far (all log types).
func (b *Broker) Log() string {
	if b.log == nil {
		return ""
	}
	return b.log.String()
}

// logBuffer collects output and closes ready once a line containing both
// markers has been seen.
type logBuffer struct {
	markers []string
	ready   chan struct{}

	mu   sync.Mutex // guards the fields below
	buf  bytes.Buffer
	seen bool
}

func newLogBuffer(markers ...string) *logBuffer {
	return &logBuffer{markers: markers, ready: make(chan struct{})}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.seen {
		for line := range strings.Lines(l.buf.String()) {
			if containsAll(line, l.markers) && strings.HasSuffix(line, "\n") {
				l.seen = true
				close(l.ready)
				break
			}
		}
	}
	return len(p), nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
