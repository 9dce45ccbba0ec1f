package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// scrapeAll reads the hub's whole /metrics (open on loopback): every
// sample line by its name and labels, with the body's size and the time
// the scrape took.
func scrapeAll(t *testing.T, httpAddr string) (map[string]float64, int, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = f
		}
	}
	return out, len(body), took
}

// getJSON is a GET with the admin token that may run off the test's
// goroutine: it returns an error instead of failing the test.
func getJSON(c *apiClient, path string, out any) error {
	req, _ := http.NewRequest("GET", c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// TestOneDeviceCannotHurtTheOthers replays the abuse an outside probe did
// to round 1's hub, against the real binary, while a real agent samples
// every second: a device sending thousands of new series (more than one
// badger transaction holds in a minute, which wedged every device's
// rollups), the same device flooding one-byte messages (megabytes of log
// lines), and sockets that never send a CONNECT or stall in one. The other
// device's telemetry keeps flowing, rollups go on, the hub's memory,
// logs and /metrics stay bounded, and every abuse is counted.
func TestOneDeviceCannotHurtTheOthers(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	// A limit above what one transaction takes (about 6,000 series), so
	// that the flood also reproduces the rollup wedge.
	const limit = 7000
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr,
		"--mqtts-addr", freeAddr(t), "--no-mdns", "--max-series-per-device", strconv.Itoa(limit))
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	state := filepath.Join(dir, "victim")
	agent := startProc(t, "victim", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr,
		"--join-token", api.joinToken(1), "--name", "victim", "--sample-interval", "1s")
	victim := enrolledID(t, state, agent)
	api.waitStatus(victim, "online", "", 10*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hubProc := &benchProc{name: "hub", pid: hub.cmd.Process.Pid}
	peakRSS := watchRSS(ctx, 100*time.Millisecond, hubProc)
	// The victim's newest sample, polled: the longest it stood still.
	var (
		mu     sync.Mutex
		maxGap time.Duration
	)
	go func() {
		var newest, since time.Time
		for ctx.Err() == nil {
			var samples []struct {
				Time time.Time `json:"time"`
			}
			if getJSON(api, "/api/v1/devices/"+victim+"/metrics/latest", &samples) == nil {
				var n time.Time
				for _, s := range samples {
					if s.Time.After(n) {
						n = s.Time
					}
				}
				now := time.Now()
				if n.After(newest) {
					newest, since = n, now
				}
				mu.Lock()
				if !since.IsZero() && now.Sub(since) > maxGap {
					maxGap = now.Sub(since)
				}
				mu.Unlock()
			}
			time.Sleep(250 * time.Millisecond) // polling interval
		}
	}()

	// Sockets that never send a CONNECT, and CONNECTs that announce 262 kB
	// and stall.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 200 {
		c, err := net.Dial("tcp", mqttAddr)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		if i%2 == 1 {
			// CONNECT, remaining length 262,144 (varint 0x80 0x80 0x10), then nothing.
			if _, err := c.Write([]byte{0x10, 0x80, 0x80, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T'}); err != nil {
				t.Fatalf("socket %d: %v", i, err)
			}
		}
		held = append(held, c)
	}

	// The series flood: 300 batches of 2,048 never-seen series each.
	flood := enrolSimDevice(t, api, api.joinToken(1), "flood", 1)
	flood.client = connect(t, "tcp://"+mqttAddr, flood.id, flood.id, flood.password)
	topic := protocol.DeviceTopic(flood.id, protocol.KindMetrics)
	floodStart := time.Now()
	for b := range 300 {
		pts := make([]protocol.Point, 2048)
		for i := range pts {
			pts[i] = protocol.Point{Name: fmt.Sprintf("flood_%d_%d", b, i), Value: float64(i)}
		}
		now := time.Now()
		msg, err := protocol.Encode(flood.id, now, &protocol.Metrics{Epoch: flood.epoch, Seq: uint64(b + 1), Time: now, Points: pts})
		if err != nil {
			t.Fatal(err)
		}
		if tok := flood.client.Publish(topic, 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("flood batch %d: %v", b, tok.Error())
		}
	}
	// The log flood: 50,000 one-byte messages.
	logBefore := len(hub.out.String())
	for range 50000 {
		flood.client.Publish(topic, 0, false, []byte("x"))
	}
	if tok := flood.client.Publish(topic, 1, false, []byte("x")); !tok.WaitTimeout(30 * time.Second) {
		t.Fatal("the log flood was not taken by the broker in 30 s")
	}
	t.Logf("flood sent in %s", time.Since(floodStart).Round(time.Millisecond))

	// The flood's minute is rolled up 10 s after it ends, by a pass every
	// 15 s; the silent sockets are closed after 10 s.
	rolledBy := floodStart.Truncate(time.Minute).Add(time.Minute + 10*time.Second + 20*time.Second)
	if d := time.Until(rolledBy); d > 0 {
		time.Sleep(d) // waiting out the rollup schedule on purpose
	}
	m, size, took := scrapeAll(t, httpAddr)
	logGrowth := len(hub.out.String()) - logBefore
	cancel() // stops the watchers
	mu.Lock()
	gap := maxGap
	mu.Unlock()
	peak := peakRSS()[hubProc]
	t.Logf("victim's samples stood still at most %s; hub peak RSS %d MB; /metrics %d kB in %s; hub log grew %d bytes during 50,000 bad messages",
		gap.Round(time.Millisecond), peak/1024, size/1024, took.Round(time.Millisecond), logGrowth)
	t.Logf("counted: series refused %.0f, rate-limited %.0f, rejected %.0f, CONNECT timeouts %.0f, oversize CONNECTs %.0f, minute rollups %.0f, rollup failures %.0f",
		m["alicia_hub_metrics_series_refused_total"], m["alicia_hub_rate_limited_messages_total"], m["alicia_hub_rejected_messages_total"],
		m[`alicia_hub_dropped_connections_total{listener="mqtt",reason="connect_timeout"}`],
		m[`alicia_hub_dropped_connections_total{listener="mqtt",reason="connect_too_large"}`],
		m[`alicia_hub_metrics_rollups_total{resolution="minute"}`], m["alicia_hub_metrics_rollup_failures_total"])

	if gap > 5*time.Second {
		t.Errorf("the victim's telemetry stood still for %s during the abuse (it samples every second)", gap)
	}
	if peak > 300*1024 {
		t.Errorf("hub peak RSS %d MB, want it bounded (round 1 reached 1 GB)", peak/1024)
	}
	if size > 4<<20 || took > 3*time.Second {
		t.Errorf("/metrics is %d kB and took %s, want it bounded", size/1024, took)
	}
	if logGrowth > 16<<10 {
		t.Errorf("the hub's log grew %d bytes during the log flood, want a few lines", logGrowth)
	}
	for name, min := range map[string]float64{
		"alicia_hub_metrics_series_refused_total":                                          1,
		"alicia_hub_rejected_messages_total":                                               1,
		`alicia_hub_dropped_connections_total{listener="mqtt",reason="connect_timeout"}`:   100,
		`alicia_hub_dropped_connections_total{listener="mqtt",reason="connect_too_large"}`: 100,
		`alicia_hub_metrics_rollups_total{resolution="minute"}`:                            2, // the victim's and the flood's
		fmt.Sprintf(`alicia_device_series{device=%q,device_name="flood"}`, flood.id):       limit,
	} {
		if m[name] < min {
			t.Errorf("/metrics: %s = %v, want at least %v", name, m[name], min)
		}
	}
	if f := m["alicia_hub_metrics_rollup_failures_total"]; f != 0 {
		t.Errorf("/metrics: %v rollups failed, want none", f)
	}
	if m["alicia_hub_rate_limited_messages_total"]+m["alicia_hub_rejected_messages_total"] < 50000 {
		t.Errorf("of 50,000 one-byte messages, %v were rate-limited and %v rejected: some were not counted",
			m["alicia_hub_rate_limited_messages_total"], m["alicia_hub_rejected_messages_total"])
	}

	// Deleting the flooder removes its 7,000 series (in bounded chunks).
	if st, body := api.doRaw("DELETE", "/api/v1/devices/"+flood.id, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE the flooding device: %d %s", st, body)
	}
	m, _, _ = scrapeAll(t, httpAddr)
	for k := range m {
		if strings.Contains(k, flood.id) {
			t.Errorf("/metrics still has %s after the device was deleted", k)
			break
		}
	}
	if strings.Contains(hub.out.String(), "too big") {
		t.Errorf("the hub logged a transaction too big:\n%s", hub.out)
	}
}
