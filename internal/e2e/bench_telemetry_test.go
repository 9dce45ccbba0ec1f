package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/mosquittotest"
	"github.com/alicia-home/alicia/internal/protocol"
)

// The telemetry benchmarks run once each (make bench passes -benchtime 1x):
// a body is one measured run whatever b.N is. These variables (Go durations
// and integers) change their sizes.
const (
	envFootprintWindow = "ALICIA_FOOTPRINT_WINDOW" // measured window of BenchmarkAgentFootprint (default 60s)
	envIngestDuration  = "ALICIA_INGEST_DURATION"  // measured run of each side of BenchmarkHubIngest (default 20s)
	envIngestDevices   = "ALICIA_INGEST_DEVICES"   // simulated devices (default 20)
	envIngestPoints    = "ALICIA_INGEST_POINTS"    // points per batch (default 500)
	envIngestWindow    = "ALICIA_INGEST_WINDOW"    // unacknowledged batches per device (default 8)
	envRelaySubQoS     = "ALICIA_RELAY_SUB_QOS"    // QoS of the Mosquitto anchor's subscription, 0 or 1 (default 0)
)

// footprintInterval is the agent's --sample-interval, collectd's Interval
// and the period of the node_exporter scrapes.
const footprintInterval = 5 * time.Second

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture we build for.
const clockTick = 10 * time.Millisecond

// BenchmarkAgentFootprint runs the real alicia-agent (enrolled with a real
// hub on loopback, --no-mdns, --sample-interval 5s, all collectors, other
// flags at their defaults) beside node_exporter (default collectors,
// scraped by the benchmark every 5 s) and collectd (cpu, memory, df, disk,
// interface, load, swap; Interval 5; csv to a temporary directory), all
// three at once over one window (ALICIA_FOOTPRINT_WINDOW, default 60s)
// after a warm-up of one interval. It reports each one's largest VmRSS,
// sampled every second, and its CPU (utime+stime, and the threads'
// schedstat run time in ns) over the window divided by the collections
// done in it: the agent's are counted at the hub (its stored batches with a
// collection time in the window), collectd's in its csv output, and
// node_exporter's are the scrapes. Nothing is subtracted: the agent's
// figure includes its heartbeats (every 10 s), MQTT (publish, ack,
// keep-alive), the outbox's synced writes and deletes, and the Go runtime;
// node_exporter's includes serving HTTP and rendering the exposition;
// collectd's includes writing csv. Run it with -benchtime 1x.
func BenchmarkAgentFootprint(b *testing.B) {
	bin := binaries(b)
	window := envDuration(b, envFootprintWindow, 60*time.Second)
	nodeExporter := findBinary(b, "node_exporter (package prometheus-node-exporter)", "prometheus-node-exporter", "node_exporter")
	collectd := findBinary(b, "collectd (package collectd)", "collectd")
	pluginDir, typesDB := collectdFiles(b)
	dir := b.TempDir()

	// The hub the agent sends to; its own footprint is not measured here.
	httpAddr, mqttAddr := freeAddr(b), freeAddr(b)
	hubDir := filepath.Join(dir, "hub")
	hub := startBenchProc(b, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr,
		"--mqtt-addr", mqttAddr, "--mqtts-addr", freeAddr(b), "--no-mdns")
	hub.waitHealthy(b, httpAddr)
	api := newAPIClient(b, httpAddr, hubDir)
	state := filepath.Join(dir, "agent")
	agent := startBenchProc(b, "agent", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr,
		"--join-token", api.joinToken(1), "--name", "footprint", "--no-mdns", "--sample-interval", footprintInterval.String())
	id := agent.waitEnrolled(b, state)
	api.waitStatus(id, "online", "", 10*time.Second)

	neAddr := freeAddr(b)
	ne := startBenchProc(b, "node_exporter", nodeExporter, "--web.listen-address="+neAddr)
	scrape := func() (int, error) {
		resp, err := http.Get("http://" + neAddr + "/metrics")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return int(n), err
	}
	waitFor(b, ne, 10*time.Second, func() bool { _, err := scrape(); return err == nil })

	cdDir := filepath.Join(dir, "collectd")
	cdConf := writeCollectdConf(b, cdDir, pluginDir, typesDB)
	cd := startBenchProc(b, "collectd", collectd, "-f", "-C", cdConf)

	// Warm-up: one interval for all three (node_exporter scraped once more).
	time.Sleep(footprintInterval) // warm-up, on purpose
	if _, err := scrape(); err != nil {
		b.Fatalf("scrape node_exporter: %v\n%s", err, ne.out)
	}
	for _, p := range []*benchProc{hub, agent, ne, cd} {
		p.mustRun(b)
	}

	procs := []*benchProc{agent, ne, cd}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peaks := watchRSS(ctx, time.Second, procs...)
	before := make([]procUsage, len(procs))
	for i, p := range procs {
		before[i] = p.usage(b)
	}
	b.ResetTimer()
	start := time.Now()
	scrapes, scraped := 0, 0
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * footprintInterval)
		if !next.Before(start.Add(window)) {
			break
		}
		time.Sleep(time.Until(next)) // the scrape schedule, as Prometheus would keep it
		n, err := scrape()
		if err != nil {
			b.Fatalf("scrape node_exporter: %v\n%s", err, ne.out)
		}
		scrapes++
		scraped += n
	}
	time.Sleep(time.Until(start.Add(window))) // to the end of the window
	end := time.Now()
	after := make([]procUsage, len(procs))
	for i, p := range procs {
		after[i] = p.usage(b)
	}
	b.StopTimer()
	cancel()
	rss := peaks()

	// The agent's collections in the window, counted at the hub (so they
	// were also delivered and acknowledged).
	time.Sleep(2 * time.Second) // letting the window's last batch reach the hub
	var r rangeResp
	q := url.Values{"name": {"agent_outbox_batches"}, "from": {start.UTC().Format(time.RFC3339Nano)}, "to": {end.UTC().Format(time.RFC3339Nano)}}
	if st := api.do("GET", "/api/v1/devices/"+id+"/metrics?"+q.Encode(), nil, &r); st != 200 || len(r.Series) != 1 {
		b.Fatalf("range query of the agent's batches: status %d, %d series\n--- agent ---\n%s", st, len(r.Series), agent.out)
	}
	agentN := 0
	for _, p := range r.Series[0].Points {
		if !p.T.Before(start) && p.T.Before(end) {
			agentN++
		}
	}
	cdN := collectdIntervals(b, cdDir, start, end)
	want := int(window / footprintInterval)
	for what, n := range map[string]int{"agent collections stored at the hub": agentN, "collectd intervals written": cdN} {
		if n < want-1 || n > want+1 {
			b.Errorf("%s in the %s window: %d, want about %d", what, window, n, want)
		}
	}
	if agentN == 0 || cdN == 0 {
		b.FailNow()
	}

	// One figure per program; nothing is subtracted.
	type figure struct {
		name, per    string
		n            int   // collections in the window
		rssKB, hwmKB int64 // largest VmRSS sampled in the window; VmHWM since start
		anonKB       int64 // RssAnon at the end of the window
		ticks, runNS int64 // CPU over the window: utime+stime; schedstat
	}
	figs := []figure{{name: "agent", per: "collection", n: agentN}, {name: "node_exporter", per: "scrape", n: scrapes}, {name: "collectd", per: "interval", n: cdN}}
	for i := range figs {
		f := &figs[i]
		f.rssKB, f.hwmKB, f.anonKB = rss[procs[i]], after[i].hwmKB, after[i].anonKB
		f.ticks, f.runNS = after[i].ticks-before[i].ticks, after[i].runNS-before[i].runNS
	}
	mb := func(kb int64) float64 { return float64(kb) / 1024 }
	tickMS := func(f figure) float64 {
		return float64(time.Duration(f.ticks)*clockTick) / float64(time.Millisecond) / float64(f.n)
	}
	runMS := func(f figure) float64 { return float64(f.runNS) / 1e6 / float64(f.n) }
	for _, f := range figs {
		b.ReportMetric(mb(f.rssKB), f.name+"_RSS_MB")
		b.ReportMetric(runMS(f), f.name+"_CPU_ms/"+f.per)
		b.Logf("%-13s max VmRSS %5.1f MB (VmHWM since start %5.1f MB; RssAnon at the end %5.1f MB); CPU %6.2f ms/%s (schedstat), %6.2f ms/%s (utime+stime: %d ticks); %d %ss in %s",
			f.name, mb(f.rssKB), mb(f.hwmKB), mb(f.anonKB), runMS(f), f.per, tickMS(f), f.per, f.ticks, f.n, f.per, window)
	}
	a, ne0, cd0 := figs[0], figs[1], figs[2]
	b.Logf("agent RSS %.1f MB vs node_exporter %.1f MB vs collectd %.1f MB; CPU/collection agent %.2f ms vs node_exporter %.2f ms/scrape (%d-byte scrapes) vs collectd %.2f ms/interval",
		mb(a.rssKB), mb(ne0.rssKB), mb(cd0.rssKB), runMS(a), runMS(ne0), scraped/max(scrapes, 1), runMS(cd0))
	b.Logf("targets: agent RSS ≤ 10 MB and ≤ 0.5× node_exporter's (%.1f MB): %s; agent CPU/collection ≤ node_exporter's per scrape: %s",
		mb(ne0.rssKB)/2, verdict(a.rssKB <= 10*1024 && 2*a.rssKB <= ne0.rssKB), verdict(runMS(a) <= runMS(ne0)))
}

// BenchmarkHubIngest measures the real alicia-hub storing metrics: K
// simulated devices (ALICIA_INGEST_DEVICES, default 20) enrolled through
// the REST API with their own Ed25519 keys, each connected with paho to
// the hub's plain loopback MQTT listener with its own credentials,
// publish protocol.Metrics batches (ALICIA_INGEST_POINTS points, default
// 500, of realistic names and labels; a new seq and time each) at QoS 1 as
// fast as the hub's acknowledgements allow, with at most
// ALICIA_INGEST_WINDOW (default 8) unacknowledged batches each; a batch not
// acknowledged within 5 s is sent again, as the agent would. The figure is
// the samples acknowledged (committed, synced) per second over
// ALICIA_INGEST_DURATION (default 20s) after a 3 s warm-up, with the hub's
// peak RSS (VmHWM) and CPU. The anchor, in the same run after the hub has
// stopped: a bare Mosquitto relaying batches made the same way (encoded
// beforehand, 2×window per device published in turn: the broker relays
// bytes) from K publishers at QoS 1 to one subscriber that counts them,
// with the same window, released on delivery to the subscriber. The
// subscription is QoS 0 (ALICIA_RELAY_SUB_QOS=1 for QoS 1): with a QoS 1
// subscriber at this rate Mosquitto 2.0.11 keeps every relayed message
// until the publishers stop, so it either drops messages or grows without
// bound; the window keeps QoS 0 delivery lossless, and the run checks that
// every message arrived. The load generator (and the anchor's subscriber)
// run in this process, on the same 2 cores; its CPU is reported. Run it
// with -benchtime 1x.
func BenchmarkHubIngest(b *testing.B) {
	bin := binaries(b)
	dur := envDuration(b, envIngestDuration, 20*time.Second)
	k := envInt(b, envIngestDevices, 20)
	points := envInt(b, envIngestPoints, 500)
	window := envInt(b, envIngestWindow, 8)
	subQoS := 0
	switch v := os.Getenv(envRelaySubQoS); v {
	case "", "0":
	case "1":
		subQoS = 1
	default:
		b.Fatalf("%s=%q: want 0 or 1", envRelaySubQoS, v)
	}
	const warmup = 3 * time.Second
	dir := b.TempDir()

	httpAddr, mqttAddr := freeAddr(b), freeAddr(b)
	hubDir := filepath.Join(dir, "hub")
	hubArgs := []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", freeAddr(b), "--no-mdns"}
	// ALICIA_INGEST_HUB_ARGS adds hub flags, e.g. "--pprof-addr 127.0.0.1:6061"
	// to profile the hub during the run.
	hubArgs = append(hubArgs, strings.Fields(os.Getenv("ALICIA_INGEST_HUB_ARGS"))...)
	hub := startBenchProc(b, "hub", filepath.Join(bin, "alicia-hub"), hubArgs...)
	hub.waitHealthy(b, httpAddr)
	api := newAPIClient(b, httpAddr, hubDir)
	token := api.joinToken(k)
	devs := make([]*simDevice, k)
	for i := range devs {
		devs[i] = enrolSimDevice(b, api, token, fmt.Sprintf("sim-%02d", i), points)
	}

	// The hub side.
	hubLoad := newLoad(devs, window, points)
	for _, d := range devs {
		d.client = connect(b, "tcp://"+mqttAddr, d.id, d.id, d.password)
		topic := protocol.DeviceTopic(d.id, protocol.KindAck)
		if tok := d.client.Subscribe(topic, 1, hubLoad.onAck(d)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("subscribe %s: %v", topic, tok.Error())
		}
	}
	hubLoad.probe = func() float64 { return hubCounters(b, httpAddr)["alicia_hub_metrics_commits_total"] }
	hubRes := hubLoad.run(b, hub.cmd.Process.Pid, warmup, dur, true)
	if hubLoad.ackedTotal.Load() == 0 {
		b.Fatalf("no batch acknowledged\n--- hub ---\n%s", hub.out)
	}
	stored := hubCounters(b, httpAddr)
	if got, want := stored["alicia_hub_metrics_points_total"], float64(hubLoad.ackedTotal.Load())*float64(points); got < want {
		b.Errorf("the hub counts %.0f points stored, fewer than the %.0f acknowledged", got, want)
	}
	for _, d := range devs {
		d.client.Disconnect(250)
	}
	hub.stop(b)

	// The anchor: a bare Mosquitto relaying the same kind of messages.
	// mosquittotest logs every packet; keep the connection log only, as a
	// production broker would (its start marker is an info line).
	extra := []string{"log_type none", "log_type error", "log_type warning", "log_type notice", "log_type information"}
	if subQoS == 1 {
		// With a QoS 1 subscriber under this load, Mosquitto 2.0.11 reads
		// the subscriber's PUBACKs only as a trickle until the publishers
		// stop, keeping every relayed message meanwhile: at the default
		// max_queued_messages (1000) it counts them as queued and drops
		// messages. Lossless, its memory grows with the run (GBs in 60 s).
		extra = append(extra, "max_queued_messages 1000000")
	}
	brk := mosquittotest.New(b, mosquittotest.Options{Users: map[string]string{"bench": "bench-secret"}, Extra: extra})
	brk.Start()
	mqPID := childPID(b, "mosquitto")
	relay := newLoad(devs, window, points)
	for _, d := range devs {
		// Batches made as for the hub, encoded beforehand: the broker
		// relays bytes, and encoding on the fly would measure this
		// process instead.
		d.epoch = "relay-" + protocol.NewID()[:8]
		for range 2 * window {
			_, m, err := d.next()
			if err != nil {
				b.Fatal(err)
			}
			d.ring = append(d.ring, m)
		}
		d.client = connect(b, brk.URL(), "pub-"+d.id, "bench", "bench-secret")
	}
	sub := connect(b, brk.URL(), "bench-subscriber", "bench", "bench-secret")
	if tok := sub.Subscribe(protocol.AllDevices(protocol.KindMetrics), byte(subQoS), relay.onRelayed()); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	mqRes := relay.run(b, mqPID, warmup, dur, false)
	if b.Failed() {
		b.Logf("--- mosquitto ---\n%s", brk.Log())
	}
	for _, d := range devs {
		d.client.Disconnect(250)
	}
	sub.Disconnect(250)

	b.ReportMetric(hubRes.rate*float64(points), "hub_samples/s")
	b.ReportMetric(float64(hubRes.peakKB)/1024, "hub_peak_RSS_MB")
	b.ReportMetric(mqRes.rate*float64(points), "mosquitto_samples/s")
	b.ReportMetric(mqRes.rate, "mosquitto_msgs/s")
	b.Logf("%d devices × %d points/batch (%d bytes), window %d batches/device, %s measured after %s warm-up",
		k, points, hubLoad.msgBytes(), window, dur, warmup)
	b.Logf("hub:       %7.0f samples/s acknowledged (%6.1f batches/s; per 5 s: %s; ack latency p50 %s p99 %s; %.1f commits/s of %.0f points on average; %d resent; refused %.0f, failed %.0f); "+
		"peak RSS %.1f MB (VmHWM; max sampled %.1f MB); hub CPU %.2f cores; generator CPU %.2f cores; rest of the machine %.2f cores",
		hubRes.rate*float64(points), hubRes.rate, kilo(hubRes.slices, points), hubRes.p50, hubRes.p99,
		hubRes.probed/dur.Seconds(), hubRes.rate*float64(points)*dur.Seconds()/max(hubRes.probed, 1), hubLoad.resent.Load(),
		stored["alicia_hub_metrics_refused_batches_total"], stored["alicia_hub_metrics_failed_batches_total"],
		float64(hubRes.peakKB)/1024, float64(hubRes.maxKB)/1024, hubRes.cores, hubRes.genCores, hubRes.otherCores)
	b.Logf("mosquitto: %7.0f samples/s equivalent relayed (%6.1f msgs/s, published at QoS 1, to one subscriber at QoS %d; per 5 s: %s); peak RSS %.1f MB; mosquitto CPU %.2f cores; generator+subscriber CPU %.2f cores; rest of the machine %.2f cores",
		mqRes.rate*float64(points), mqRes.rate, subQoS, kilo(mqRes.slices, points), float64(mqRes.peakKB)/1024, mqRes.cores, mqRes.genCores, mqRes.otherCores)
	b.Logf("target: hub ≥ 100000 samples/s stored and acknowledged: %s (%.0f; %.0f%% of the Mosquitto relay's rate)",
		verdict(hubRes.rate*float64(points) >= 100000), hubRes.rate*float64(points), 100*hubRes.rate/mqRes.rate)
}

// kilo formats batch rates as thousands of samples per second.
func kilo(rates []float64, points int) string {
	var out []string
	for _, r := range rates {
		out = append(out, fmt.Sprintf("%.0fk", r*float64(points)/1000))
	}
	return strings.Join(out, " ")
}

// verdict words a target check.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// simDevice is a simulated agent: its broker account, its series and its
// batches in flight.
type simDevice struct {
	id, password string
	epoch        string
	series       []protocol.Point // names and labels; the values change per batch
	values       []float64
	rnd          *rand.Rand
	client       mqtt.Client
	seq          uint64        // owned by the publishing goroutine
	last         time.Time     // owned by the publishing goroutine
	ring         [][]byte      // if set, batches encoded beforehand, published in turn
	slots        chan struct{} // the window: a token per batch that may be in flight

	mu      sync.Mutex // guards pending
	pending map[uint64]*inflight
}

type inflight struct {
	sent    time.Time
	payload []byte
}

// enrolSimDevice enrols a new key with the hub through POST /api/v1/enroll,
// as an agent does.
func enrolSimDevice(b testing.TB, api *apiClient, token, name string, points int) *simDevice {
	b.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	var resp struct {
		DeviceID string `json:"device_id"`
		MQTT     struct {
			Password string `json:"password"`
		} `json:"mqtt"`
	}
	req := map[string]string{"token": token, "public_key": base64.StdEncoding.EncodeToString(pub), "name": name,
		"signature": base64.StdEncoding.EncodeToString(identity.SignEnrolment(key, token))}
	if st := api.do("POST", "/api/v1/enroll", req, &resp); st != http.StatusCreated {
		b.Fatalf("enrol %s: status %d", name, st)
	}
	if resp.DeviceID != identity.DeviceID(pub) || resp.MQTT.Password == "" {
		b.Fatalf("enrol %s: answer %+v", name, resp)
	}
	d := &simDevice{id: resp.DeviceID, password: resp.MQTT.Password, epoch: "bench-" + protocol.NewID()[:8],
		rnd: rand.New(rand.NewPCG(uint64(len(name)), uint64(name[len(name)-1])))}
	d.series = benchSeries(points)
	d.values = make([]float64, points)
	return d
}

// benchSeries returns n series shaped like a host's: per-CPU modes,
// per-interface and per-disk counters, filesystems, sensors.
func benchSeries(n int) []protocol.Point {
	modes := []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
	fams := []func(i int) (string, map[string]string){
		func(i int) (string, map[string]string) {
			return "cpu_usage_ratio", map[string]string{"cpu": strconv.Itoa(i / len(modes)), "mode": modes[i%len(modes)]}
		},
		func(i int) (string, map[string]string) {
			return "network_receive_bytes_total", map[string]string{"interface": "eth" + strconv.Itoa(i)}
		},
		func(i int) (string, map[string]string) {
			return "network_transmit_packets_total", map[string]string{"interface": "wlan" + strconv.Itoa(i)}
		},
		func(i int) (string, map[string]string) {
			return "disk_read_bytes_total", map[string]string{"disk": "sd" + string(rune('a'+i%26)) + strconv.Itoa(i/26)}
		},
		func(i int) (string, map[string]string) {
			return "disk_io_time_seconds_total", map[string]string{"disk": "nvme" + strconv.Itoa(i) + "n1"}
		},
		func(i int) (string, map[string]string) {
			return "filesystem_avail_bytes", map[string]string{"mount": "/srv/vol" + strconv.Itoa(i), "source": "/dev/mapper/vg-lv" + strconv.Itoa(i), "fstype": "ext4"}
		},
		func(i int) (string, map[string]string) {
			return "temperature_celsius", map[string]string{"sensor": "thermal_zone" + strconv.Itoa(i)}
		},
		func(i int) (string, map[string]string) {
			return "sensor_humidity_ratio", map[string]string{"room": "room" + strconv.Itoa(i), "sensor": "dht22"}
		},
		func(i int) (string, map[string]string) {
			return "process_resident_memory_bytes", map[string]string{"service": "svc" + strconv.Itoa(i)}
		},
		func(i int) (string, map[string]string) {
			return "memory_used_bytes", map[string]string{"node": strconv.Itoa(i)}
		},
	}
	out := make([]protocol.Point, n)
	for j := range out {
		out[j].Name, out[j].Labels = fams[j%len(fams)](j / len(fams))
	}
	return out
}

// next makes the device's next batch: a new seq, a time after the last
// one (ms resolution, the store's), new values.
func (d *simDevice) next() (uint64, []byte, error) {
	d.seq++
	t := time.Now().Truncate(time.Millisecond)
	if !t.After(d.last) {
		t = d.last.Add(time.Millisecond)
	}
	d.last = t
	pts := make([]protocol.Point, len(d.series))
	for i, s := range d.series {
		if i%2 == 0 {
			d.values[i] += float64(d.rnd.IntN(1 << 20)) // a counter
		} else {
			d.values[i] = float64(d.rnd.IntN(1000000)) / 1000 // a gauge
		}
		pts[i] = protocol.Point{Name: s.Name, Labels: s.Labels, Value: d.values[i]}
	}
	msg, err := protocol.Encode(d.id, t, &protocol.Metrics{Epoch: d.epoch, Seq: d.seq, Time: t, Points: pts})
	return d.seq, msg, err
}

// load drives simDevices: each publishes while it has a free slot of its
// window; the hub's ack (or, for the relay, the subscriber's receipt)
// frees it.
type load struct {
	devs   []*simDevice
	byID   map[string]*simDevice
	points int

	acked      atomic.Uint64 // batches acknowledged or relayed, counted from the start of the measured run
	ackedTotal atomic.Uint64 // all of them
	measuring  atomic.Bool
	sent       atomic.Uint64 // batches published, resends not counted
	resent     atomic.Uint64
	pubErrs    atomic.Uint64
	bytes      atomic.Uint64 // of the batches counted in sent

	// probe, if set, reads a counter of the server; run reports its change
	// over the measured run.
	probe func() float64

	mu        sync.Mutex // guards latencies
	latencies []time.Duration
}

func newLoad(devs []*simDevice, window, points int) *load {
	l := &load{devs: devs, byID: map[string]*simDevice{}, points: points}
	for _, d := range devs {
		d.slots = make(chan struct{}, window)
		for range window {
			d.slots <- struct{}{}
		}
		d.pending = map[uint64]*inflight{}
		d.seq, d.last = 0, time.Time{}
		l.byID[d.id] = d
	}
	return l
}

// msgBytes is the mean size of a published batch.
func (l *load) msgBytes() uint64 {
	if n := l.sent.Load(); n > 0 {
		return l.bytes.Load() / n
	}
	return 0
}

func (l *load) done(n int) {
	l.ackedTotal.Add(uint64(n))
	if l.measuring.Load() {
		l.acked.Add(uint64(n))
	}
}

// onAck handles the hub's acknowledgements to d.
func (l *load) onAck(d *simDevice) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		_, ack, err := protocol.DecodeAs[*protocol.MetricsAck](m.Payload())
		if err != nil || ack.Epoch != d.epoch {
			return
		}
		now := time.Now()
		var lat []time.Duration
		d.mu.Lock()
		for _, s := range ack.Seqs {
			if f, ok := d.pending[s]; ok {
				delete(d.pending, s)
				lat = append(lat, now.Sub(f.sent))
			}
		}
		d.mu.Unlock()
		for range lat {
			d.slots <- struct{}{}
		}
		if l.measuring.Load() {
			l.mu.Lock()
			l.latencies = append(l.latencies, lat...)
			l.mu.Unlock()
		}
		l.done(len(lat))
	}
}

// onRelayed handles the anchor subscriber's messages.
func (l *load) onRelayed() mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		id, _, err := protocol.ParseDeviceTopic(m.Topic())
		if d := l.byID[id]; err == nil && d != nil {
			select {
			case d.slots <- struct{}{}:
				l.done(1)
			default: // a duplicate (QoS 1 is at least once)
			}
		}
	}
}

// publish sends d's batches while ctx lasts; track keeps them until the
// hub acknowledges them.
func (l *load) publish(ctx context.Context, d *simDevice, track bool) error {
	topic := protocol.DeviceTopic(d.id, protocol.KindMetrics)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.slots:
		}
		var msg []byte
		if len(d.ring) > 0 {
			msg = d.ring[d.seq%uint64(len(d.ring))]
			d.seq++
		} else {
			seq, m, err := d.next()
			if err != nil {
				return err
			}
			msg = m
			if track {
				d.mu.Lock()
				d.pending[seq] = &inflight{sent: time.Now(), payload: msg}
				d.mu.Unlock()
			}
		}
		l.sent.Add(1)
		l.bytes.Add(uint64(len(msg)))
		l.send(d, topic, msg)
	}
}

func (l *load) send(d *simDevice, topic string, msg []byte) {
	tok := d.client.Publish(topic, 1, false, msg)
	go func() {
		if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
			return
		}
		l.pubErrs.Add(1)
	}()
}

// resend sends again the batches the hub has not acknowledged for 5 s (it
// refuses batches when its queue is full; an agent resends them).
func (l *load) resend(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, d := range l.devs {
			topic := protocol.DeviceTopic(d.id, protocol.KindMetrics)
			d.mu.Lock()
			var again [][]byte
			for _, f := range d.pending {
				if time.Since(f.sent) > 5*time.Second {
					f.sent = time.Now()
					again = append(again, f.payload)
				}
			}
			d.mu.Unlock()
			for _, m := range again {
				l.resent.Add(1)
				l.send(d, topic, m)
			}
		}
	}
}

// loadResult is one side's figures.
type loadResult struct {
	rate          float64 // batches acknowledged (relayed) per second in the measured run
	peakKB, maxKB int64   // VmHWM at the end; largest VmRSS sampled
	cores         float64 // the server's CPU over the measured run
	genCores      float64 // this process's CPU over the measured run
	otherCores    float64 // the rest of the machine's CPU use over the measured run
	p50, p99      time.Duration
	slices        []float64 // rate in successive 5 s slices
	probed        float64   // the change in load.probe over the measured run
}

// run publishes from every device for warmup+dur, measures the server
// process pid over dur, then stops publishing and waits for what is in
// flight.
func (l *load) run(b *testing.B, pid int, warmup, dur time.Duration, track bool) loadResult {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg, resender sync.WaitGroup
	errs := make(chan error, len(l.devs))
	for _, d := range l.devs {
		wg.Go(func() {
			if err := l.publish(ctx, d, track); err != nil {
				errs <- err
			}
		})
	}
	resendCtx, stopResend := context.WithCancel(context.Background())
	defer stopResend()
	if track {
		resender.Go(func() { l.resend(resendCtx) })
	}
	rssCtx, stopRSS := context.WithCancel(context.Background())
	defer stopRSS()
	srv := &benchProc{name: "server", pid: pid}
	peaks := watchRSS(rssCtx, 250*time.Millisecond, srv)

	time.Sleep(warmup) // warm-up, on purpose
	var p0 float64
	if l.probe != nil {
		p0 = l.probe()
	}
	u0 := srv.usage(b)
	g0 := selfCPU()
	m0 := machineBusy()
	t0 := time.Now()
	l.measuring.Store(true)
	l.mu.Lock()
	l.latencies = l.latencies[:0]
	l.mu.Unlock()
	// The rate in slices of the run, to show whether it holds.
	var slices5 []float64
	traceDone := make(chan struct{})
	go func() {
		defer close(traceDone)
		const slice = 5 * time.Second
		last := l.ackedTotal.Load()
		for at := slice; at <= dur; at += slice {
			time.Sleep(time.Until(t0.Add(at))) // the slice's end
			now := l.ackedTotal.Load()
			slices5 = append(slices5, float64(now-last)/slice.Seconds())
			last = now
		}
	}()
	time.Sleep(dur) // the measured run
	l.measuring.Store(false)
	n := l.acked.Load()
	el := time.Since(t0)
	<-traceDone
	u1 := srv.usage(b)
	g1 := selfCPU()
	m1 := machineBusy()
	var probed float64
	if l.probe != nil {
		probed = l.probe() - p0
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("make a batch: %v", err)
	}

	// Drain: everything sent is acknowledged (or relayed) in the end.
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := 0
		for _, d := range l.devs {
			left += cap(d.slots) - len(d.slots)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Errorf("%d batches still unacknowledged 15s after the run", left)
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the window
	}
	stopResend()
	resender.Wait()
	stopRSS()
	if e := l.pubErrs.Load(); e > 0 {
		b.Errorf("%d publishes failed", e)
	}
	l.mu.Lock()
	lat := slices.Clone(l.latencies)
	l.mu.Unlock()
	slices.Sort(lat)
	res := loadResult{rate: float64(n) / el.Seconds(), peakKB: srv.usage(b).hwmKB, maxKB: peaks()[srv],
		cores:    float64(time.Duration(u1.ticks-u0.ticks)*clockTick) / float64(el),
		genCores: float64(g1-g0) / float64(el), slices: slices5, probed: probed}
	res.otherCores = float64(m1-m0)/float64(el) - res.cores - res.genCores
	if len(lat) > 0 {
		res.p50, res.p99 = lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond)
	}
	return res
}

// connect returns a connected paho client (MQTT 3.1.1, clean session).
func connect(b testing.TB, broker, clientID, user, pass string) mqtt.Client {
	b.Helper()
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		b.Fatalf("connect %s to %s: %v", clientID, broker, tok.Error())
	}
	return c
}

// hubCounters reads the hub's own counters from its /metrics (open on
// loopback).
func hubCounters(b *testing.B, httpAddr string) map[string]float64 {
	b.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "alicia_hub_metrics_") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// benchProc is a process started by a benchmark (startProc takes a
// *testing.T), or one it found (pid only).
type benchProc struct {
	name string
	pid  int
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
}

// startBenchProc starts bin and kills it (by its PID) at cleanup if it is
// still running.
func startBenchProc(b testing.TB, name, bin string, args ...string) *benchProc {
	b.Helper()
	p := &benchProc{name: name, cmd: exec.Command(bin, args...), out: &logBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if b.Failed() {
			b.Logf("--- output of %s ---\n%s", name, p.out)
		}
	})
	return p
}

// mustRun fails if the process has exited.
func (p *benchProc) mustRun(b testing.TB) {
	b.Helper()
	select {
	case <-p.done:
		b.Fatalf("%s exited: %s\n%s", p.name, p.cmd.ProcessState, p.out)
	default:
	}
}

// stop ends the process with SIGTERM (SIGKILL after 10 s) and waits.
func (p *benchProc) stop(b testing.TB) {
	b.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		b.Errorf("%s did not stop within 10s of SIGTERM", p.name)
	}
}

// waitFor polls cond until it holds; it fails if p exits or after timeout.
func waitFor(b testing.TB, p *benchProc, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		p.mustRun(b)
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready after %s:\n%s", p.name, timeout, p.out)
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness
	}
}

func (p *benchProc) waitHealthy(b testing.TB, httpAddr string) {
	b.Helper()
	waitFor(b, p, 15*time.Second, func() bool {
		st, err := httpGet("http://" + httpAddr + "/healthz")
		return err == nil && st == http.StatusOK
	})
}

// waitEnrolled returns the device ID the agent with state dir has
// enrolled as.
func (p *benchProc) waitEnrolled(b testing.TB, state string) string {
	b.Helper()
	var id string
	waitFor(b, p, 10*time.Second, func() bool {
		data, err := os.ReadFile(filepath.Join(state, "credentials.json"))
		if i := strings.Index(string(data), `"device_id": "`); err == nil && i >= 0 {
			rest := string(data)[i+len(`"device_id": "`):]
			id = rest[:strings.IndexByte(rest, '"')]
		}
		return id != ""
	})
	return id
}

// procUsage is a process's memory and CPU use, from /proc.
type procUsage struct {
	rssKB, hwmKB int64 // VmRSS, VmHWM
	anonKB       int64 // RssAnon: the heap, stacks and other private memory
	ticks        int64 // utime+stime, in clockTick
	runNS        int64 // the sum of its threads' run time (schedstat)
}

func (p *benchProc) usage(b testing.TB) procUsage {
	b.Helper()
	u, err := readUsage(p.pid)
	if err != nil {
		b.Fatalf("%s: %v", p.name, err)
	}
	return u
}

func readUsage(pid int) (procUsage, error) {
	var u procUsage
	base := "/proc/" + strconv.Itoa(pid)
	st, err := os.ReadFile(base + "/status")
	if err != nil {
		return u, err
	}
	for line := range strings.Lines(string(st)) {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			u.rssKB, _ = strconv.ParseInt(f[0], 10, 64)
		case "VmHWM":
			u.hwmKB, _ = strconv.ParseInt(f[0], 10, 64)
		case "RssAnon":
			u.anonKB, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	stat, err := os.ReadFile(base + "/stat")
	if err != nil {
		return u, err
	}
	// Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat)[i+1:])
	if i < 0 || len(f) < 13 {
		return u, fmt.Errorf("parse %s/stat: %q", base, stat)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return u, fmt.Errorf("parse %s/stat: %w", base, err)
	}
	u.ticks = ut + stt
	tasks, _ := filepath.Glob(base + "/task/*/schedstat")
	for _, t := range tasks {
		if s, err := os.ReadFile(t); err == nil {
			if f := strings.Fields(string(s)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				u.runNS += ns
			}
		}
	}
	return u, nil
}

// watchRSS samples the processes' VmRSS every period until ctx is done;
// the function it returns gives each one's largest.
func watchRSS(ctx context.Context, period time.Duration, procs ...*benchProc) func() map[*benchProc]int64 {
	var mu sync.Mutex
	peak := map[*benchProc]int64{}
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range procs {
			if u, err := readUsage(p.pid); err == nil && u.rssKB > peak[p] {
				peak[p] = u.rssKB
			}
		}
	}
	sample()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() map[*benchProc]int64 {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(peak)
	}
}

// machineBusy is the CPU time all CPUs spent busy (not idle nor waiting
// for I/O) since boot, from /proc/stat; 0 if unreadable.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 7 { // not idle, iowait, steal; guest time is in user
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childPID finds the PID of this process's child named name (a program
// started by a helper that does not expose it).
func childPID(b testing.TB, name string) int {
	b.Helper()
	me := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		st, err := os.ReadFile(d + "/status")
		if err != nil {
			continue
		}
		var comm, ppid string
		for line := range strings.Lines(string(st)) {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "Name":
				comm = strings.TrimSpace(v)
			case "PPid":
				ppid = strings.TrimSpace(v)
			}
		}
		if comm == name && ppid == me {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	b.Fatalf("no child process %s", name)
	return 0
}

// findBinary finds an anchor program on PATH or in the sbin directories,
// or skips (fails under CI).
func findBinary(b testing.TB, what string, names ...string) string {
	b.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && !fi.IsDir() {
				return filepath.Join(dir, n)
			}
		}
	}
	missing(b, what)
	return ""
}

// collectdFiles finds collectd's plugin directory and types.db.
func collectdFiles(b testing.TB) (pluginDir, typesDB string) {
	b.Helper()
	for _, d := range append([]string{"/usr/lib/collectd"}, must(filepath.Glob("/usr/lib/*/collectd"))...) {
		if _, err := os.Stat(filepath.Join(d, "csv.so")); err == nil {
			pluginDir = d
			break
		}
	}
	typesDB = "/usr/share/collectd/types.db"
	if _, err := os.Stat(typesDB); err != nil || pluginDir == "" {
		missing(b, "collectd's plugins and types.db (package collectd-core)")
	}
	return pluginDir, typesDB
}

// writeCollectdConf writes a minimal collectd configuration into dir: the
// host collectors comparable to the agent's, every 5 s, written as csv
// into dir/csv; no network.
func writeCollectdConf(b testing.TB, dir, pluginDir, typesDB string) string {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "csv"), 0o755); err != nil {
		b.Fatal(err)
	}
	conf := fmt.Sprintf(`Hostname "alicia-bench"
FQDNLookup false
BaseDir %[1]q
PIDFile %[2]q
PluginDir %[3]q
TypesDB %[4]q
Interval %[5]d
LoadPlugin logfile
<Plugin logfile>
  LogLevel "info"
  File stderr
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin df
LoadPlugin disk
LoadPlugin interface
LoadPlugin load
LoadPlugin swap
LoadPlugin csv
<Plugin csv>
  DataDir %[6]q
  StoreRates false
</Plugin>
`, dir, filepath.Join(dir, "collectd.pid"), pluginDir, typesDB, int(footprintInterval/time.Second), filepath.Join(dir, "csv"))
	path := filepath.Join(dir, "collectd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// collectdIntervals counts collectd's reads in [start, end) by the lines
// its csv plugin wrote for the load plugin (one per interval).
func collectdIntervals(b testing.TB, dir string, start, end time.Time) int {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "csv", "*", "load", "load-*"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			ts, _, _ := strings.Cut(line, ",")
			sec, err := strconv.ParseFloat(ts, 64)
			if err != nil {
				continue // the header
			}
			t := time.Unix(0, int64(sec*1e9))
			if !t.Before(start) && t.Before(end) {
				n++
			}
		}
	}
	return n
}

func envDuration(b testing.TB, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive Go duration", name, v)
	}
	return d
}

func envInt(b testing.TB, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
