// Package prom serves the hub's Prometheus exposition at /metrics: the
// hub's own counters (ingest, queue, store, broker, devices) and the latest
// value of every device series as a sample labelled with the device's ID,
// name and registry labels — and of every series an integration pushed,
// labelled integration="<name>" — so that Prometheus can scrape one endpoint for
// the whole household. Label values pass through protocol.SafeText (a
// control or bidirectional character, or an invalid byte, becomes U+FFFD)
// and client_golang escapes them for the text format.
package prom

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Fresh is how old a device sample may be and still be exposed: values of
// a device that stopped reporting disappear instead of looking current.
const Fresh = 10 * time.Minute

// Sources are what the exposition reads, each at scrape time.
type Sources struct {
	Devices func() []registry.Device
	// Integrations returns the names of the integrations whose pushed
	// series are exposed (those of kind metrics); nil: none. Each one's
	// series are stored under integrations.SourceID(name).
	Integrations func() []string
	Metrics      *metrics.Store
	Ingest       *metrics.Ingester
	// StoreSize returns the badger store's LSM and value-log sizes.
	StoreSize func() (lsm, vlog int64)
	// Broker returns the embedded broker's counters; nil with an external
	// broker.
	Broker func() (clients, received, sent int64, refused, denied uint64)
	// Rejected counts device messages the hub refused (malformed, forged…).
	Rejected func() uint64
	// Limited counts device messages dropped by the per-device rate limit.
	Limited func() uint64
	// Dropped returns the counts of connections the hub closed before the
	// client authenticated or sent a request (silent, stalled, oversize,
	// failed TLS handshake), by listener and reason.
	Dropped func() []Dropped
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Dropped is a count of connections closed before authentication.
type Dropped struct {
	Listener string // "mqtt" (the embedded broker's ports) or "http" (the API port)
	Reason   string // snake_case: "connect_timeout", "tls_handshake_failed"…
	Count    uint64
}

// Handler returns the /metrics handler.
func Handler(src Sources) http.Handler {
	if src.Now == nil {
		src.Now = time.Now
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&hubCollector{src: src},
		&deviceCollector{src: src},
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// hubCollector exposes the hub's own counters.
type hubCollector struct{ src Sources }

var (
	descBatches    = prometheus.NewDesc("alicia_hub_metrics_batches_total", "Device metric batches stored.", nil, nil)
	descPoints     = prometheus.NewDesc("alicia_hub_metrics_points_total", "Device metric points stored.", nil, nil)
	descDuplicates = prometheus.NewDesc("alicia_hub_metrics_duplicate_batches_total", "Batches received again (already stored) and acknowledged again.", nil, nil)
	descRefused    = prometheus.NewDesc("alicia_hub_metrics_refused_batches_total", "Batches not queued because the ingest queue was full (the agents resend them).", nil, nil)
	descFailed     = prometheus.NewDesc("alicia_hub_metrics_failed_batches_total", "Batches whose commit failed (not acknowledged; the agents resend them).", nil, nil)
	descCommits    = prometheus.NewDesc("alicia_hub_metrics_commits_total", "Ingest transactions committed.", nil, nil)
	descQueue      = prometheus.NewDesc("alicia_hub_metrics_queue_batches", "Batches waiting to be committed.", nil, nil)
	descStore      = prometheus.NewDesc("alicia_hub_store_size_bytes", "Size of the hub's store on disk.", []string{"part"}, nil)
	descDevices    = prometheus.NewDesc("alicia_hub_devices", "Devices by status.", []string{"status"}, nil)
	descRejected   = prometheus.NewDesc("alicia_hub_rejected_messages_total", "Device messages the hub refused (malformed, forged, from unknown devices).", nil, nil)
	descLimited    = prometheus.NewDesc("alicia_hub_rate_limited_messages_total", "Device messages dropped because their device sent more than its rate limit.", nil, nil)
	descSRefused   = prometheus.NewDesc("alicia_hub_metrics_series_refused_total", "Samples of new series refused because their device is at its series limit.", nil, nil)
	descSEvicted   = prometheus.NewDesc("alicia_hub_metrics_series_evicted_total", "Idle series removed from the catalog to make room under a device's series limit.", nil, nil)
	descRolled     = prometheus.NewDesc("alicia_hub_metrics_rollups_total", "Rollups of one device's minute or hour done.", []string{"resolution"}, nil)
	descRollFail   = prometheus.NewDesc("alicia_hub_metrics_rollup_failures_total", "Minute or hour rollups that failed (retried at the next pass).", nil, nil)
	descClients    = prometheus.NewDesc("alicia_hub_broker_clients", "Clients connected to the embedded broker.", nil, nil)
	descReceived   = prometheus.NewDesc("alicia_hub_broker_received_messages_total", "PUBLISH packets the embedded broker received.", nil, nil)
	descSent       = prometheus.NewDesc("alicia_hub_broker_sent_messages_total", "PUBLISH packets the embedded broker sent.", nil, nil)
	descAuthFail   = prometheus.NewDesc("alicia_hub_broker_refused_connections_total", "Connections the embedded broker refused (authentication).", nil, nil)
	descDenied     = prometheus.NewDesc("alicia_hub_broker_denied_total", "Publishes and subscriptions the embedded broker denied (ACL).", nil, nil)
	descDropped    = prometheus.NewDesc("alicia_hub_dropped_connections_total", "Connections closed before the client authenticated or sent a request (silent, stalled, oversize CONNECT, failed TLS handshake).", []string{"listener", "reason"}, nil)
)

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBatches, descPoints, descDuplicates, descRefused, descFailed, descCommits, descQueue, descLimited, descSRefused, descSEvicted, descRolled, descRollFail,
		descStore, descDevices, descRejected, descClients, descReceived, descSent, descAuthFail, descDenied, descDropped} {
		ch <- d
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	if in := src.Ingest; in != nil {
		st := in.Stats()
		counter(descBatches, float64(st.Batches.Load()))
		counter(descPoints, float64(st.Points.Load()))
		counter(descDuplicates, float64(st.Duplicates.Load()))
		counter(descRefused, float64(st.Refused.Load()))
		counter(descFailed, float64(st.Failed.Load()))
		counter(descCommits, float64(st.Commits.Load()))
		gauge(descQueue, float64(in.QueueDepth()))
	}
	if m := src.Metrics; m != nil {
		st := m.Stats()
		counter(descSRefused, float64(st.SeriesRefused.Load()))
		counter(descSEvicted, float64(st.SeriesEvicted.Load()))
		counter(descRollFail, float64(st.RollupFailures.Load()))
		counter(descRolled, float64(st.MinutesRolled.Load()), "minute")
		counter(descRolled, float64(st.HoursRolled.Load()), "hour")
	}
	if src.StoreSize != nil {
		lsm, vlog := src.StoreSize()
		gauge(descStore, float64(lsm), "lsm")
		gauge(descStore, float64(vlog), "vlog")
	}
	if src.Devices != nil {
		n := map[registry.Status]int{}
		for _, d := range src.Devices() {
			n[d.Status]++
		}
		for _, s := range []registry.Status{registry.StatusOnline, registry.StatusOffline, registry.StatusPending, registry.StatusRejected, registry.StatusRevoked} {
			gauge(descDevices, float64(n[s]), string(s))
		}
	}
	if src.Rejected != nil {
		counter(descRejected, float64(src.Rejected()))
	}
	if src.Limited != nil {
		counter(descLimited, float64(src.Limited()))
	}
	if src.Broker != nil {
		clients, recv, sent, refused, denied := src.Broker()
		gauge(descClients, float64(clients))
		counter(descReceived, float64(recv))
		counter(descSent, float64(sent))
		counter(descAuthFail, float64(refused))
		counter(descDenied, float64(denied))
	}
	if src.Dropped != nil {
		for _, d := range src.Dropped() {
			counter(descDropped, float64(d.Count), d.Listener, d.Reason)
		}
	}
}

// deviceCollector exposes the latest device samples and per-device state.
type deviceCollector struct{ src Sources }

// Describe sends nothing: the device families are known only at scrape
// time (an "unchecked" collector).
func (c *deviceCollector) Describe(chan<- *prometheus.Desc) {}

// reserved are name prefixes of the hub's own families; a device series
// with such a name is not exposed, so it cannot clash with them.
var reserved = []string{"go_", "process_", "promhttp_", "alicia_hub_", "alicia_device_"}

// Fixed labels of every device sample, and of every integration's. A
// sample label of one of these names is dropped (agents do not send them:
// sample labels are disk, interface…), so that no integration's sample
// can pass for a device's, nor a device's for an integration's.
const (
	labelDevice      = "device"
	labelName        = "device_name"
	labelIntegration = "integration"
)

// fixedLabel reports whether k is one of the fixed labels.
func fixedLabel(k string) bool { return k == labelDevice || k == labelName || k == labelIntegration }

// Names of the per-device state families.
const (
	nameUp      = "alicia_device_up"
	nameDropped = "alicia_device_outbox_dropped_batches"
	nameSeries  = "alicia_device_series"
	nameSRefuse = "alicia_device_series_refused_total"
)

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src
	if src.Devices == nil || src.Metrics == nil {
		return
	}
	devices := src.Devices()
	// Registry labels become Prometheus labels ("home.floor" → "home_floor").
	regKeys := map[string]bool{}
	devLabels := map[string]map[string]string{}
	for _, d := range devices {
		m := map[string]string{}
		for k, v := range d.Labels {
			pk := promLabel(k)
			if fixedLabel(pk) {
				continue
			}
			m[pk] = protocol.SafeText(v)
			regKeys[pk] = true
		}
		devLabels[d.ID] = m
	}
	// A sample is a device's (dev set) or an integration's (integration
	// set).
	type sample struct {
		dev         *registry.Device
		integration string
		labels      map[string]string
		value       float64
	}
	families := map[string][]sample{}
	cutoff := src.Now().Add(-Fresh)
	for i := range devices {
		d := &devices[i]
		if !d.Status.Accepted() {
			continue
		}
		for _, s := range src.Metrics.Latest(d.ID) {
			if s.Time.Before(cutoff) || slices.ContainsFunc(reserved, func(p string) bool { return strings.HasPrefix(s.Name, p) }) {
				continue
			}
			families[s.Name] = append(families[s.Name], sample{dev: d, labels: s.Labels, value: s.Value})
		}
	}
	if src.Integrations != nil {
		for _, name := range src.Integrations() {
			for _, s := range src.Metrics.Latest(integrations.SourceID(name)) {
				if s.Time.Before(cutoff) || slices.ContainsFunc(reserved, func(p string) bool { return strings.HasPrefix(s.Name, p) }) {
					continue
				}
				families[s.Name] = append(families[s.Name], sample{integration: name, labels: s.Labels, value: s.Value})
			}
		}
	}
	base := func(d *registry.Device) map[string]string {
		m := maps.Clone(devLabels[d.ID])
		m[labelDevice], m[labelName] = d.ID, protocol.SafeText(d.Name)
		return m
	}
	// One family per name; every sample of a family carries the same label
	// names (client_golang requires it), "" where a device lacks one.
	for name, ss := range families {
		keys := map[string]bool{}
		for _, s := range ss {
			if s.dev != nil && !keys[labelDevice] {
				keys[labelDevice], keys[labelName] = true, true
				for k := range regKeys {
					keys[k] = true
				}
			}
			if s.dev == nil {
				keys[labelIntegration] = true
			}
			for k := range s.labels {
				if !fixedLabel(k) {
					keys[k] = true
				}
			}
		}
		names := slices.Sorted(maps.Keys(keys))
		vt, help := prometheus.GaugeValue, "Latest value from the device's agent (or an integration)."
		if strings.HasSuffix(name, "_total") {
			vt, help = prometheus.CounterValue, "Latest value of a counter from the device's agent (or an integration)."
		}
		desc := prometheus.NewDesc(name, help, names, nil)
		for _, s := range ss {
			var lv map[string]string
			if s.dev != nil {
				lv = base(s.dev)
			} else {
				lv = map[string]string{labelIntegration: s.integration}
			}
			for k, v := range s.labels {
				if !fixedLabel(k) {
					lv[k] = protocol.SafeText(v) // a sample label wins over a registry label of the same name
				}
			}
			vals := make([]string, len(names))
			for i, k := range names {
				vals[i] = lv[k]
			}
			m, err := prometheus.NewConstMetric(desc, vt, s.value, vals...)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(desc, err)
				continue
			}
			ch <- m
		}
	}
	// Per-device state, with the registry labels.
	c.collectStates(ch, devices, append([]string{labelDevice, labelName}, slices.Sorted(maps.Keys(regKeys))...), base)
}

// collectStates sends each accepted device's state (up, outbox drops,
// series and refusals), labelled keys, whose values base gives.
func (c *deviceCollector) collectStates(ch chan<- prometheus.Metric, devices []registry.Device, keys []string, base func(*registry.Device) map[string]string) {
	src := c.src
	up := prometheus.NewDesc(nameUp, "1 while the device is online.", keys, nil)
	dropped := prometheus.NewDesc(nameDropped, "Batches the device's outbox dropped (oldest first) since its epoch began.", keys, nil)
	nseries := prometheus.NewDesc(nameSeries, "Series of the device in the hub's catalog (bounded by the per-device series limit).", keys, nil)
	srefused := prometheus.NewDesc(nameSRefuse, "Samples of new series of the device refused by its series limit since the hub started.", keys, nil)
	for i := range devices {
		d := &devices[i]
		if !d.Status.Accepted() {
			continue
		}
		lv := base(d)
		vals := make([]string, len(keys))
		for i, k := range keys {
			vals[i] = lv[k]
		}
		v := 0.0
		if d.Status == registry.StatusOnline {
			v = 1
		}
		st := src.Metrics.SeriesStats(d.ID)
		for _, m := range []struct {
			desc *prometheus.Desc
			typ  prometheus.ValueType
			v    float64
		}{
			{up, prometheus.GaugeValue, v},
			{dropped, prometheus.GaugeValue, float64(src.Metrics.Dropped(d.ID).Dropped)},
			{nseries, prometheus.GaugeValue, float64(st.Series)},
			{srefused, prometheus.CounterValue, float64(st.Refused)},
		} {
			cm, err := prometheus.NewConstMetric(m.desc, m.typ, m.v, vals...)
			if err != nil {
				cm = prometheus.NewInvalidMetric(m.desc, err)
			}
			ch <- cm
		}
	}
}

// promLabel turns a registry label key ([a-z][a-z0-9._-]*) into a
// Prometheus label name.
func promLabel(k string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '-' {
			return '_'
		}
		return r
	}, k)
}
