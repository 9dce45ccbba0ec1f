package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/alicia-home/alicia/internal/mosquittotest"
)

// commandSamples is how many commands BenchmarkCommandRoundTrip times, per
// b.N iteration's run (one run whatever b.N is: -benchtime 1x).
const commandSamples = 500

// BenchmarkCommandRoundTrip times REST command → GPIO write on the device
// → result, on loopback: the real hub and the real agent (--hal sim,
// enrolled, over MQTT with TLS, as the agent connects by default) as
// processes; one client sends gpio.write commands one after another,
// toggling the simulated relay, and times each POST until its 200 with the
// device's result. It reports p50 and p99 (target p99 ≤ 20 ms). The
// anchor, from the same run: a bare request/response over Mosquitto (QoS
// 1 both ways, two paho clients in this process), the floor any MQTT
// command path pays. Run it with -benchtime 1x.
func BenchmarkCommandRoundTrip(b *testing.B) {
	bin := binaries(b)
	dir := b.TempDir()
	httpAddr, mqttAddr, mqttsAddr := freeAddr(b), freeAddr(b), freeAddr(b)
	hubDir := filepath.Join(dir, "hub")
	hub := startBenchProc(b, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr,
		"--mqtt-addr", mqttAddr, "--mqtts-addr", mqttsAddr, "--no-mdns", "--log-level", "warn")
	hub.waitHealthy(b, httpAddr)
	defer hub.stop(b)
	api := newAPIClient(b, httpAddr, hubDir)
	state := filepath.Join(dir, "agent")
	agent := startBenchProc(b, "agent", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr,
		"--join-token", api.joinToken(1), "--name", "bench-sim", "--no-mdns", "--hal", "sim", "--log-level", "warn")
	defer agent.stop(b)
	id := agent.waitEnrolled(b, state)
	api.waitStatus(id, "online", "", 10*time.Second)

	client := &http.Client{}
	send := func(level bool) time.Duration {
		body, _ := json.Marshal(map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay", "level": level}})
		req, _ := http.NewRequest("POST", api.base+"/api/v1/devices/"+id+"/commands", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+api.token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		var rec commandRecord
		err = json.NewDecoder(resp.Body).Decode(&rec)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || rec.Status != "ok" {
			b.Fatalf("command: %d %+v %v\n--- agent ---\n%s", resp.StatusCode, rec, err, agent.out)
		}
		return took
	}
	// Warm-up: connections, caches.
	for i := range 20 {
		send(i%2 == 0)
	}
	b.ResetTimer()
	ours := make([]time.Duration, commandSamples)
	for i := range ours {
		ours[i] = send(i%2 == 0)
	}
	b.StopTimer()

	anchor := mqttRoundTrips(b, commandSamples)

	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(p(ours, 0.50)), "p50_ms")
	b.ReportMetric(ms(p(ours, 0.99)), "p99_ms")
	b.ReportMetric(ms(p(anchor, 0.50)), "mosquitto_rr_p50_ms")
	b.ReportMetric(ms(p(anchor, 0.99)), "mosquitto_rr_p99_ms")
	b.Logf("REST gpio.write → simulated relay → result, %d commands one after another on loopback: p50 %s, p99 %s, max %s",
		len(ours), p(ours, 0.50).Round(10*time.Microsecond), p(ours, 0.99).Round(10*time.Microsecond), slices.Max(ours).Round(10*time.Microsecond))
	b.Logf("anchor: bare MQTT request/response through Mosquitto (QoS 1 both ways), %d: p50 %s, p99 %s",
		len(anchor), p(anchor, 0.50).Round(10*time.Microsecond), p(anchor, 0.99).Round(10*time.Microsecond))
	verdict := "met"
	if p(ours, 0.99) > 20*time.Millisecond {
		verdict = "MISSED"
	}
	b.Logf("target: p99 ≤ 20ms: %s", verdict)
}

// mqttRoundTrips times n request/response exchanges between two paho
// clients through a bare Mosquitto: the requester publishes (QoS 1), the
// responder answers on another topic (QoS 1), the requester waits for it.
func mqttRoundTrips(b *testing.B, n int) []time.Duration {
	b.Helper()
	brk := mosquittotest.New(b, mosquittotest.Options{Users: map[string]string{"bench": "bench-secret"},
		Extra: []string{"log_type none", "log_type error", "log_type warning", "log_type notice", "log_type information"}})
	brk.Start()
	responder := connect(b, brk.URL(), "responder", "bench", "bench-secret")
	defer responder.Disconnect(250)
	requester := connect(b, brk.URL(), "requester", "bench", "bench-secret")
	defer requester.Disconnect(250)
	if tok := responder.Subscribe("rr/req", 1, func(c mqtt.Client, m mqtt.Message) {
		c.Publish("rr/resp", 1, false, m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	got := make(chan string, 1)
	if tok := requester.Subscribe("rr/resp", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	out := make([]time.Duration, 0, n)
	for i := range n + 20 {
		want := fmt.Sprint(i)
		start := time.Now()
		requester.Publish("rr/req", 1, false, want)
		select {
		case g := <-got:
			if g != want {
				b.Fatalf("response %q to request %q", g, want)
			}
		case <-time.After(5 * time.Second):
			b.Fatal("no MQTT response within 5s")
		}
		if i >= 20 { // the first 20 warm up
			out = append(out, time.Since(start))
		}
	}
	return out
}
