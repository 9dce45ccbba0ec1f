package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/netnstest"
)

// TestLANPairing: pairing without a join token on a LAN of network
// namespaces. An administrator opens the pairing window; an agent started
// with --pair and no hub address finds the hub by mDNS and is listed as
// pending with the code it logs; a wrong code is refused, the right one
// lets it go online. Another agent is rejected and gives up; once the
// window is closed a third one is refused at once. The pairing is durable:
// the first agent, restarted without --pair, goes online with what it saved.
func TestLANPairing(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	a1Host := l.lan.AddHost("a1", "198.18.0.11/24")
	a2Host := l.lan.AddHost("a2", "198.18.0.12/24")
	r, bin, dir := l.lanRunner, l.bin, l.dir

	hub := l.startHub(hubHost, "--log-level", "debug")
	api := lanAPIStatus(l.ctx, hub.host, hub.dir)
	window := openPairingWindow(t, api, hub.lanProc)

	agentArgs := func(name string, extra ...string) []string {
		return append([]string{"--state-dir", filepath.Join(dir, name), "--name", name,
			"--heartbeat", "1s", "--keepalive", "2s", "--log-level", "debug"}, extra...)
	}
	agent := filepath.Join(bin, "alicia-agent")

	// a1 pairs: no hub address, no join token.
	start := time.Now()
	a1 := r.start(a1Host, "a1", agent, agentArgs("a1", "--pair")...)
	d1 := waitDevice(t, api, "a1", "pending", 30*time.Second)
	code := waitPairingCode(t, a1, 10*time.Second)
	t.Logf("a1 pending with code %s %s after start (mDNS with 3s of settling, TLS probe, pair)", code, time.Since(start).Round(time.Millisecond))
	if d1.State != "pending" {
		t.Errorf("a1: state %q while pending, want pending", d1.State)
	}
	// The out-of-band comparison: what the device shows is what the hub lists.
	if d1.PairingCode != code {
		t.Fatalf("a1 logs pairing code %s, the hub lists %q", code, d1.PairingCode)
	}
	// And the CA the agent learnt on first use is the hub's.
	if !strings.Contains(a1.out.String(), "ca_fingerprint="+window.CAFingerprint) {
		t.Errorf("a1 did not log the hub's CA fingerprint %s", window.CAFingerprint)
	}
	if !strings.Contains(a1.out.String(), "found the hub on the LAN") {
		t.Errorf("a1 did not find the hub by mDNS")
	}
	if !strings.Contains(a1.out.String(), "device="+d1.ID) {
		t.Errorf("a1 did not log its device ID %s", d1.ID)
	}

	// A wrong code (another device's, or one mistyped) is refused and
	// changes nothing.
	wrong := wrongCode(code)
	st, body, err := api("POST", "/api/v1/devices/"+d1.ID+"/approve", fmt.Sprintf(`{"code":%q}`, wrong))
	if err != nil || st != 422 {
		t.Fatalf("approve a1 with the wrong code %s: status %d, %v: %s; want 422", wrong, st, err, body)
	}
	if d := lanDevices(api)["a1"]; d.Status != "pending" || d.State != "pending" || d.PairingCode != code {
		t.Fatalf("a1 after a refused approval: %+v, want still pending with code %s", d, code)
	}
	select {
	case <-a1.done:
		t.Fatalf("a1 exited after a refused approval: %v", a1.err)
	default:
	}

	// The right code, typed lower-case with a space as a person might.
	approved := time.Now()
	st, body, err = api("POST", "/api/v1/devices/"+d1.ID+"/approve", fmt.Sprintf(`{"code":%q}`, strings.ToLower(strings.Replace(code, "-", " ", 1))))
	if err != nil || st != 200 {
		t.Fatalf("approve a1 with its code: status %d, %v: %s; want 200", st, err, body)
	}
	d1 = waitDevice(t, api, "a1", "online", 20*time.Second)
	t.Logf("a1 online %s after approval (agent polls every 2s)", time.Since(approved).Round(time.Millisecond))
	if d1.State != "accepted" || d1.PairingCode != "" {
		t.Errorf("a1 online: state %q, pairing code %q; want accepted and no code", d1.State, d1.PairingCode)
	}
	if s := a1.out.String(); !strings.Contains(s, "approved by the hub") || !strings.Contains(s, "mqtt=mqtts://198.18.0.1:") {
		t.Errorf("a1 did not collect its credentials and connect over TLS")
	}
	if st, body, _ := api("POST", "/api/v1/devices/"+d1.ID+"/approve", fmt.Sprintf(`{"code":%q}`, code)); st != 409 {
		t.Errorf("approving an online device again: status %d: %s, want 409", st, body)
	}

	// a2 asks to pair and is rejected: it stops asking.
	a2 := r.start(a2Host, "a2", agent, agentArgs("a2", "--pair")...)
	d2 := waitDevice(t, api, "a2", "pending", 30*time.Second)
	rejected := time.Now()
	if st, body, err := api("POST", "/api/v1/devices/"+d2.ID+"/reject", ""); err != nil || st != 200 {
		t.Fatalf("reject a2: status %d, %v: %s; want 200", st, err, body)
	}
	msg := a2.waitFailure(t, 15*time.Second)
	t.Logf("a2 gave up %s after the rejection: %s", time.Since(rejected).Round(time.Millisecond), msg)
	if !strings.Contains(msg, "rejected") {
		t.Errorf("a2 exit message %q does not mention that it was rejected", msg)
	}
	if d := lanDevices(api)["a2"]; d.Status != "rejected" || d.State != "rejected" || d.PairingCode != "" {
		t.Errorf("a2 after the rejection: %+v, want status and state rejected, no code", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "a2", "credentials.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the rejected a2 has credentials.json (%v)", err)
	}

	// The window closes: a third agent is refused and leaves no trace.
	st, body, err = api("DELETE", "/api/v1/pairing", "")
	var closed pairingWindow
	if err != nil || st != 200 || json.Unmarshal(body, &closed) != nil || closed.Open {
		t.Fatalf("DELETE /api/v1/pairing: status %d, %v: %s; want 200 and a closed window", st, err, body)
	}
	started := time.Now()
	a3 := r.start(a2Host, "a3", agent, agentArgs("a3", "--pair")...)
	msg = a3.waitFailure(t, 30*time.Second)
	t.Logf("a3 gave up %s after start: %s", time.Since(started).Round(time.Millisecond), msg)
	if !strings.Contains(msg, "pairing window is closed") {
		t.Errorf("a3 exit message %q does not mention the closed pairing window", msg)
	}
	ds := lanDevices(api)
	if d, ok := ds["a3"]; ok {
		t.Errorf("a3 is listed although the window was closed: %+v", d)
	}
	if len(ds) != 2 {
		t.Errorf("devices after a3: %v, want only a1 and a2", ds)
	}

	// The pairing is durable: a1, stopped and started again without --pair
	// (and with the window closed), comes back with its saved credentials.
	a1.stop(t, syscall.SIGTERM)
	waitDevice(t, api, "a1", "offline", 10*time.Second)
	restarted := time.Now()
	a1 = r.start(a1Host, "a1 (restarted)", agent, agentArgs("a1")...)
	d := waitDevice(t, api, "a1", "online", 20*time.Second)
	t.Logf("a1 online again %s after a restart without --pair", time.Since(restarted).Round(time.Millisecond))
	if d.ID != d1.ID || d.State != "accepted" {
		t.Errorf("a1 after the restart: %+v, want device %s, accepted", d, d1.ID)
	}
	if s := a1.out.String(); strings.Contains(s, "waiting for approval") || strings.Contains(s, "approved by the hub") {
		t.Errorf("the restarted a1 paired again instead of using its credentials")
	}
	if n := len(lanDevices(api)); n != 2 {
		t.Errorf("%d devices after a1's restart, want 2", n)
	}
}

// TestLANPairingRefusesTwoHubs: with two hubs (two CAs) announcing on the
// LAN, an agent asked to pair without an address cannot tell which is its
// own and refuses before it sends anything to either; named with --hub, the
// real hub pairs it.
func TestLANPairingRefusesTwoHubs(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	otherHost := l.lan.AddHost("neighbour", "198.18.0.2/24")
	agentHost := l.lan.AddHost("a1", "198.18.0.11/24")
	r, bin, dir := l.lanRunner, l.bin, l.dir

	hub := l.startHub(hubHost, "--log-level", "debug")
	other := l.startHub(otherHost, "--log-level", "debug")
	api := lanAPIStatus(l.ctx, hub.host, hub.dir)
	otherAPI := lanAPIStatus(l.ctx, other.host, other.dir)
	window := openPairingWindow(t, api, hub.lanProc)
	// The neighbour pairs at the same moment: its window is open too, so
	// that an agent that wrongly asked it would be listed there.
	otherWindow := openPairingWindow(t, otherAPI, other.lanProc)
	if window.CAFingerprint == otherWindow.CAFingerprint {
		t.Fatalf("both hubs have CA %s, want two independent hubs", window.CAFingerprint)
	}
	// Both announce before the agent starts, so that it hears both.
	waitUntil(t, "both hubs announcing over mDNS", 15*time.Second, func() bool {
		return strings.Contains(hub.out.String(), "mdns announcing") && strings.Contains(other.out.String(), "mdns announcing")
	})

	agent := filepath.Join(bin, "alicia-agent")
	args := []string{"--state-dir", filepath.Join(dir, "a1"), "--name", "a1", "--pair",
		"--heartbeat", "1s", "--keepalive", "2s", "--log-level", "debug"}
	started := time.Now()
	a1 := r.start(agentHost, "a1", agent, args...)
	msg := a1.waitFailure(t, 30*time.Second)
	t.Logf("the agent refused %s after start: %s", time.Since(started).Round(time.Millisecond), msg)
	if !strings.Contains(msg, "hubs answer on this LAN") {
		t.Errorf("exit message %q does not say that several hubs answer", msg)
	}
	for _, fp := range []string{window.CAFingerprint, otherWindow.CAFingerprint} {
		if !strings.Contains(msg, fp[:12]) {
			t.Errorf("exit message %q does not name the hub with CA %s…", msg, fp[:12])
		}
	}
	for name, p := range map[string]*lanHub{"hub": hub, "neighbour hub": other} {
		if s := p.out.String(); strings.Contains(s, "device asks to pair") || strings.Contains(s, "198.18.0.11") {
			t.Errorf("the %s heard from the refusing agent:\n%s", name, s)
		}
	}
	if ds := lanDevices(api); ds == nil || len(ds) != 0 {
		t.Errorf("devices on the hub after the refusal: %v, want none", ds)
	}
	if ds := lanDevices(otherAPI); ds == nil || len(ds) != 0 {
		t.Errorf("devices on the neighbour's hub after the refusal: %v, want none", ds)
	}

	// The escape hatch: the real hub named explicitly.
	a1 = r.start(agentHost, "a1 --hub", agent, append(args, "--hub", "198.18.0.1")...)
	d := waitDevice(t, api, "a1", "pending", 30*time.Second)
	code := waitPairingCode(t, a1, 10*time.Second)
	if d.PairingCode != code {
		t.Fatalf("a1 logs pairing code %s, the hub lists %q", code, d.PairingCode)
	}
	if !strings.Contains(a1.out.String(), "ca_fingerprint="+window.CAFingerprint) {
		t.Errorf("a1 did not pin the real hub's CA %s", window.CAFingerprint)
	}
	approved := time.Now()
	if st, body, err := api("POST", "/api/v1/devices/"+d.ID+"/approve", fmt.Sprintf(`{"code":%q}`, code)); err != nil || st != 200 {
		t.Fatalf("approve a1: status %d, %v: %s; want 200", st, err, body)
	}
	waitDevice(t, api, "a1", "online", 20*time.Second)
	t.Logf("a1 (--hub 198.18.0.1) online %s after approval", time.Since(approved).Round(time.Millisecond))
	if ds := lanDevices(otherAPI); ds == nil || len(ds) != 0 {
		t.Errorf("devices on the neighbour's hub: %v, want none", ds)
	}
}

// stop sends sig and waits for a clean exit.
func (p *lanProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after %v", p.name, p.err, sig)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of %v", p.name, sig)
	}
}

// waitFailure waits for the process to exit with a non-zero status (not
// killed by a signal) and returns its error message, the line the binary
// prints before exiting ("alicia-agent: ...").
func (p *lanProc) waitFailure(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still runs %s after start, want it to give up", p.name, timeout)
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("%s exited with %v, want a non-zero exit status", p.name, p.err)
	}
	prefix := filepath.Base(p.bin) + ": "
	var msg string
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			msg = l
		}
	}
	if msg == "" {
		t.Fatalf("%s exited (%v) without a %q line:\n%s", p.name, p.err, prefix, p.out)
	}
	return msg
}

// pairingCodeLine is the agent's announcement of its pairing code, at WARN
// so that it shows at every log level.
var pairingCodeLine = regexp.MustCompile(`level=WARN msg="waiting for approval: approve this device at the hub with its pairing code" pairing_code=([A-Z2-7]{4}-[A-Z2-7]{4})`)

// waitPairingCode waits for the agent to log its pairing code and returns it.
func waitPairingCode(t *testing.T, p *lanProc, timeout time.Duration) string {
	t.Helper()
	var code string
	waitUntil(t, p.name+" logging its pairing code", timeout, func() bool {
		if m := pairingCodeLine.FindStringSubmatch(p.out.String()); m != nil {
			code = m[1]
		}
		return code != ""
	})
	return code
}

// wrongCode returns a well-formed pairing code that differs from code.
func wrongCode(code string) string {
	b := []byte(code)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

// pairDevice is the part of the REST device view the pairing tests look at.
type pairDevice struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	State        string `json:"state"`
	StatusReason string `json:"status_reason"`
	PairingCode  string `json:"pairing_code"`
}

// pairingWindow is the answer of the /api/v1/pairing routes.
type pairingWindow struct {
	Open          bool   `json:"open"`
	CAFingerprint string `json:"ca_fingerprint"`
}

// lanDevices lists the devices by name; nil when the hub does not answer.
func lanDevices(api func(method, path, body string) (int, []byte, error)) map[string]pairDevice {
	st, body, err := api("GET", "/api/v1/devices", "")
	var ds []pairDevice
	if err != nil || st != 200 || json.Unmarshal(body, &ds) != nil {
		return nil
	}
	m := map[string]pairDevice{}
	for _, d := range ds {
		m[d.Name] = d
	}
	return m
}

// waitDevice waits until the device named name has the given status and
// returns it.
func waitDevice(t *testing.T, api func(method, path, body string) (int, []byte, error), name, status string, timeout time.Duration) pairDevice {
	t.Helper()
	var last pairDevice
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if d, ok := lanDevices(api)[name]; ok {
			last = d
			if d.Status == status {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond) // polling the registry
	}
	t.Fatalf("device %s: %+v after %s, want status %s", name, last, timeout, status)
	return last
}

// openPairingWindow waits up to 20 s for the hub to answer and opens its
// pairing window (for the default, and longest, 5 minutes).
func openPairingWindow(t *testing.T, api func(method, path, body string) (int, []byte, error), hub *lanProc) pairingWindow {
	t.Helper()
	var w pairingWindow
	var last string
	waitUntil(t, "the pairing window of "+hub.name+" opening", 20*time.Second, func() bool {
		select {
		case <-hub.done:
			t.Fatalf("%s exited: %v", hub.name, hub.err)
		default:
		}
		st, body, err := api("POST", "/api/v1/pairing", "")
		last = fmt.Sprintf("status %d, %v: %s", st, err, body)
		return err == nil && st == 200 && json.Unmarshal(body, &w) == nil
	})
	if !w.Open || w.CAFingerprint == "" {
		t.Fatalf("POST /api/v1/pairing on %s: %s, want an open window and the CA fingerprint", hub.name, last)
	}
	return w
}

// waitUntil polls ok until it holds, failing the test after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling
	}
}

// lanAPIStatus is lanAPI that also returns the HTTP status code and the
// body of error answers (lanAPI's curl -f hides both): curl from inside
// host's namespace to its loopback, with the admin token.
func lanAPIStatus(ctx context.Context, host *netnstest.Host, dataDir string) func(method, path, body string) (int, []byte, error) {
	return func(method, path, body string) (int, []byte, error) {
		tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		if err != nil {
			return 0, nil, err
		}
		args := []string{"-sS", "--max-time", "10", "-X", method, "-H", "Authorization: Bearer " + strings.TrimSpace(string(tok)),
			"-w", `\n%{http_code}`}
		if body != "" {
			args = append(args, "-H", "Content-Type: application/json", "-d", body)
		}
		out, err := host.Command(ctx, "curl", append(args, "http://127.0.0.1:8470"+path)...).Output()
		if err != nil {
			return 0, nil, err
		}
		i := bytes.LastIndexByte(out, '\n')
		if i < 0 {
			return 0, nil, fmt.Errorf("curl: no status code in %q", out)
		}
		st, err := strconv.Atoi(string(out[i+1:]))
		if err != nil {
			return 0, nil, fmt.Errorf("curl: status code %q: %w", out[i+1:], err)
		}
		return st, out[:i], nil
	}
}
