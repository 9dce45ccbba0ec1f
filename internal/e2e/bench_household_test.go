package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

const (
	envHouseholdDevices  = "ALICIA_HOUSEHOLD_DEVICES"  // simulated agents (default 1000)
	envHouseholdDuration = "ALICIA_HOUSEHOLD_DURATION" // measured window (default 60s)
	householdInterval    = 10 * time.Second            // heartbeat and sample interval of each agent
	householdPoints      = 60                          // points per batch, as a Pi's agent sends
)

// BenchmarkHubHousehold measures the hub at a household's rate, scaled to
// the DESIGN target's 1,000 agents: the real hub binary on loopback, and
// 1,000 simulated agents (ALICIA_HOUSEHOLD_DEVICES) enrolled through REST,
// each with its own MQTT connection and credentials, that register, go
// online, and then every 10 s send a heartbeat and a 60-point metrics
// batch, staggered over the interval (6,000 samples/s in all). Over the
// window (ALICIA_HOUSEHOLD_DURATION, default 60 s) it reports the hub's
// peak RSS (VmRSS sampled every second) and, while all that runs, the
// latency of GET /api/v1/devices listing the 1,000 devices (p50, p99;
// 5 requests per second). Targets: RSS ≤ 100 MB, REST p99 ≤ 10 ms. Run it
// with -benchtime 1x.
func BenchmarkHubHousehold(b *testing.B) {
	bin := binaries(b)
	n := envInt(b, envHouseholdDevices, 1000)
	window := envDuration(b, envHouseholdDuration, 60*time.Second)
	dir := b.TempDir()
	httpAddr, mqttAddr := freeAddr(b), freeAddr(b)
	hubDir := filepath.Join(dir, "hub")
	args := []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", freeAddr(b), "--no-mdns", "--log-level", "warn"}
	// ALICIA_HOUSEHOLD_HUB_ARGS adds hub flags, e.g. "--pprof-addr 127.0.0.1:6062".
	hub := startBenchProc(b, "hub", filepath.Join(bin, "alicia-hub"), append(args, strings.Fields(os.Getenv("ALICIA_HOUSEHOLD_HUB_ARGS"))...)...)
	defer hub.stop(b)
	hub.waitHealthy(b, httpAddr)
	api := newAPIClient(b, httpAddr, hubDir)

	start := time.Now()
	devs := make([]*simDevice, n)
	for i := 0; i < n; i += 1000 {
		token := api.joinToken(min(1000, n-i))
		for j := i; j < min(i+1000, n); j++ {
			devs[j] = enrolSimDevice(b, api, token, fmt.Sprintf("house-%04d", j), householdPoints)
		}
	}
	b.Logf("%d devices enrolled in %s", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	for _, d := range devs {
		d.client = connect(b, "tcp://"+mqttAddr, d.id, d.id, d.password)
		for _, p := range []protocol.Payload{
			&protocol.Register{Name: "house", AgentVersion: "bench", HeartbeatMS: householdInterval.Milliseconds(),
				Facts: protocol.Facts{Hostname: "house", OS: "linux", Arch: "arm64", CPUCores: 4, MemoryBytes: 1 << 30, BootTime: start}},
			&protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup},
		} {
			msg, err := protocol.Encode(d.id, time.Now(), p)
			if err != nil {
				b.Fatal(err)
			}
			if tok := d.client.Publish(protocol.DeviceTopic(d.id, protocol.Kind(p.MessageType())), 1, true, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatalf("publish %s: %v", p.MessageType(), tok.Error())
			}
		}
	}
	b.Logf("%d agents connected and registered in %s", n, time.Since(start).Round(time.Millisecond))
	defer func() {
		for _, d := range devs {
			d.client.Disconnect(100)
		}
	}()
	var devices map[string]device
	waitFor(b, hub, 30*time.Second, func() bool {
		devices = api.devices()
		online := 0
		for _, d := range devices {
			if d.Status == "online" {
				online++
			}
		}
		return online == n
	})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent, failed int
	for i, d := range devs {
		wg.Go(func() {
			// Staggered over the interval, as agents started at random times.
			offset := time.Duration(i) * householdInterval / time.Duration(n)
			select {
			case <-ctx.Done():
				return
			case <-time.After(offset): // the device's phase, on purpose
			}
			tick := time.NewTicker(householdInterval)
			defer tick.Stop()
			var hb uint64
			for {
				hb++
				beat, _ := protocol.Encode(d.id, time.Now(), &protocol.Heartbeat{Seq: hb, UptimeS: int64(hb) * 10})
				d.client.Publish(protocol.DeviceTopic(d.id, protocol.KindHeartbeat), 0, false, beat)
				_, batch, err := d.next()
				ok := err == nil
				if ok {
					tok := d.client.Publish(protocol.DeviceTopic(d.id, protocol.KindMetrics), 1, false, batch)
					ok = tok.WaitTimeout(10*time.Second) && tok.Error() == nil
				}
				mu.Lock()
				if ok {
					sent++
				} else {
					failed++
				}
				mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	// Let every device send once before measuring.
	time.Sleep(householdInterval) // warm-up: one interval, on purpose
	peaks := watchRSS(ctx, time.Second, hub)
	b.ResetTimer()
	var lat []time.Duration
	client := &http.Client{}
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		req, _ := http.NewRequest("GET", api.base+"/api/v1/devices", nil)
		req.Header.Set("Authorization", "Bearer "+api.token)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("GET /api/v1/devices: %d %v", resp.StatusCode, err)
		}
		time.Sleep(200 * time.Millisecond) // 5 requests per second, on purpose
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	peak := peaks()[hub]
	hub.mustRun(b)

	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	rssMB := float64(peak) / 1024
	b.ReportMetric(rssMB, "hub_peak_RSS_MB")
	b.ReportMetric(float64(q(0.99))/float64(time.Millisecond), "devices_p99_ms")
	b.Logf("%d agents, a %d-point batch and a heartbeat each every %s (%d samples/s); %d batches sent in the run, %d failed",
		n, householdPoints, householdInterval, n*householdPoints/int(householdInterval/time.Second), sent, failed)
	b.Logf("hub peak RSS %.1f MB over %s; GET /api/v1/devices (%d devices) ×%d: p50 %s, p99 %s, max %s",
		rssMB, window, len(devices), len(lat), q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	b.Logf("targets: hub RSS ≤ 100 MB with 1,000 agents: %s; REST p99 ≤ 10 ms with 1,000 devices: %s",
		verdict(rssMB <= 100), verdict(q(0.99) <= 10*time.Millisecond))
	if failed > 0 {
		b.Errorf("%d batches were not acknowledged by the broker", failed)
	}
}
