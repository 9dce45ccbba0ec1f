package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/testkit"
)

// device is the part of the REST device view the tests look at.
type device struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Status       string            `json:"status"`
	StatusReason string            `json:"status_reason"`
	Labels       map[string]string `json:"labels"`
	AgentVersion string            `json:"agent_version"`
	Facts        *struct {
		Hostname string `json:"hostname"`
		Arch     string `json:"arch"`
		CPUCores int    `json:"cpu_cores"`
	} `json:"facts"`
}

// apiClient talks to one hub's REST API with its admin token.
type apiClient struct {
	t     testing.TB
	base  string // http://host:port
	token string
}

func newAPIClient(t testing.TB, httpAddr, dataDir string) *apiClient {
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatalf("read admin token: %v", err)
	}
	return &apiClient{t: t, base: "http://" + httpAddr, token: strings.TrimSpace(string(tok))}
}

// doRaw sends a request with the admin token (body, if any, as JSON) and
// returns the status and the body of any answer.
func (c *apiClient) doRaw(method, path string, body any) (int, string) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// do is doRaw decoding a successful answer into out (if not nil).
func (c *apiClient) do(method, path string, body any, out any) int {
	c.t.Helper()
	st, b := c.doRaw(method, path, body)
	if out != nil && st < 300 {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return st
}

func (c *apiClient) joinToken(uses int) string {
	c.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	if st := c.do("POST", "/api/v1/join-tokens", map[string]any{"uses": uses, "ttl": "1h"}, &out); st != 201 {
		c.t.Fatalf("create join token: status %d", st)
	}
	return out.Token
}

// devices lists devices; it returns nil without failing when the hub does
// not answer (it may be restarting).
func (c *apiClient) devices() map[string]device {
	req, _ := http.NewRequest("GET", c.base+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil
	}
	var ds []device
	if err := json.NewDecoder(resp.Body).Decode(&ds); err != nil {
		return nil
	}
	m := map[string]device{}
	for _, d := range ds {
		m[d.ID] = d
	}
	return m
}

// waitStatus waits until device id has the given status (and reason, if
// not empty) and returns how long that took.
func (c *apiClient) waitStatus(id, status, reason string, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	var last device
	for time.Since(start) < timeout {
		if d, ok := c.devices()[id]; ok {
			last = d
			if d.Status == status && (reason == "" || d.StatusReason == reason) {
				return time.Since(start)
			}
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a wait for an event
	}
	c.t.Fatalf("device %s: status %q/%q after %s, want %q/%q", id, last.Status, last.StatusReason, timeout, status, reason)
	return 0
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// logBuffer is the concurrency-safe buffer for a test's slog output and
// a process's stdout and stderr.
type logBuffer = testkit.LogBuffer

// proxy is a TCP proxy that can freeze its connections, to simulate a dead
// link (cable pulled) that neither side notices until keep-alive runs out.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
	pairs  [][2]net.Conn // client side, broker side
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.frozen {
			p.mu.Unlock()
			// A dead link: accept nothing through it.
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.pairs = append(p.pairs, [2]net.Conn{c, up})
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies until either side closes; once frozen it stops forwarding
// without closing, so the peers see silence rather than a reset.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// cutClientSide closes the client's side of every current connection but
// leaves the broker's side open and silent: the client reconnects at once
// while the broker still holds the old connection, as after a Wi-Fi
// roam. New connections pass.
func (p *proxy) cutClientSide() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		pr[0].Close()
	}
	p.pairs = nil
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// runUntil runs f in a goroutine and returns a stop function that cancels
// its context and waits for it to return, failing the test on an error.
func runUntil(t testing.TB, name string, f func(ctx context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s did not stop within 15s", name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
