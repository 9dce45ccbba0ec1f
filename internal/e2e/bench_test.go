package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAgentStartToOnline measures, on a LAN of network namespaces,
// the time from starting a new agent with only a join token (no address)
// to its device being online in the hub's registry: mDNS discovery, the
// pinned TLS handshake, enrolment, the MQTT-over-TLS connection and the
// birth messages. Each iteration is one fresh agent; the median is reported
// as ms/online (target ≤ 1000). Run with `make bench` (root: namespaces).
// The registry is polled every 20 ms through curl in the hub's namespace,
// which adds up to about 30 ms to each figure.
func BenchmarkAgentStartToOnline(b *testing.B) {
	l := newLANTest(b)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	agentHost := l.lan.AddHost("a1", "198.18.0.11/24")
	bin, dir, ctx := l.bin, l.dir, l.ctx
	api := l.startHub(hubHost).api
	token := lanJoinToken(b, api, 1000)
	online := func(name string) bool {
		out, err := api("GET", "/api/v1/devices", "")
		var ds []device
		if err != nil || json.Unmarshal(out, &ds) != nil {
			return false
		}
		for _, d := range ds {
			if d.Name == name && d.Status == "online" {
				return true
			}
		}
		return false
	}

	var times []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := "bench-" + strconv.Itoa(i)
		agent := agentHost.Command(ctx, filepath.Join(bin, "alicia-agent"), "--state-dir", filepath.Join(dir, name),
			"--join-token", token, "--name", name)
		start := time.Now()
		if err := agent.Start(); err != nil {
			b.Fatal(err)
		}
		for !online(name) {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("%s not online after 30s", name)
			}
			time.Sleep(20 * time.Millisecond) // polling the registry
		}
		times = append(times, time.Since(start))
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
	}
	b.StopTimer()
	slices.Sort(times)
	median := times[len(times)/2]
	b.ReportMetric(float64(median.Milliseconds()), "ms/online")
	var all []string
	for _, t := range times {
		all = append(all, t.Round(time.Millisecond).String())
	}
	b.Logf("agent start → online via mDNS on a namespace LAN: median %s over %d runs (sorted: %s); target ≤ 1s",
		median.Round(time.Millisecond), len(times), strings.Join(all, " "))
}
