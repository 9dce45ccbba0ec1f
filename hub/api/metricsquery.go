package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/spec"
)

// MetricsQuery answers GET /api/v1/metrics/query.
type MetricsQuery struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Step string    `json:"step"`
	Name string    `json:"name"`
	Op   string    `json:"op"`
	// Quantile, with op=quantile.
	Quantile float64  `json:"quantile,omitempty"`
	By       []string `json:"by,omitempty"`
	// Devices is how many devices the selector chose.
	Devices int `json:"devices"`
	// Groups, for every op but topk: one per value of the by labels.
	Groups []metrics.Group `json:"groups,omitzero"`
	// Top, for op=topk: the ranked series, best first.
	Top []RankedSeries `json:"top,omitzero"`
}

// RankedSeries is a series of a top-N answer, with its device's name.
type RankedSeries struct {
	metrics.Ranked
	DeviceName string `json:"device_name"`
}

// labelKeyRE is the registry's rule for a device label's name
// (hub/registry), for by=.
var labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// queryMetrics answers a query over many devices: the accepted devices
// whose registry labels match selector (all of them without one), their
// series of name matching every label=k=v, over from, to and step as a
// device query (step defaults to metrics.DefaultStep), combined by op per
// group of the by labels, or ranked (op=topk, k, order). The checks that
// need no data are the store's (metrics.ErrInvalidQuery: 400); this reads
// and checks the parameters' syntax.
func (s *server) queryMetrics(w http.ResponseWriter, r *http.Request) {
	rq, ok := s.rangeParams(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	aq := metrics.AggregateQuery{Name: rq.name, Labels: rq.labels, From: rq.from, To: rq.to, Step: rq.step,
		Op: metrics.Op(q.Get("op")), Order: q.Get("order")}
	var sel map[string]string
	if q.Has("selector") {
		var err error
		if sel, err = spec.ParseSelector(q.Get("selector")); err != nil {
			writeProblem(w, http.StatusBadRequest, err.Error()+" (device labels, e.g. selector=room=garage,role=sensor)")
			return
		}
	}
	if v := q.Get("quantile"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("quantile: %q is not a number (e.g. quantile=0.95)", v))
			return
		}
		aq.Quantile = f
	}
	if v := q.Get("k"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("k: %q is not a whole number from 1 to %d (e.g. k=5)", v, metrics.MaxTopK))
			return
		}
		aq.K = k
	}
	for _, v := range q["by"] {
		for b := range strings.SplitSeq(v, ",") {
			if !labelKeyRE.MatchString(b) {
				writeProblem(w, http.StatusBadRequest, fmt.Sprintf("by: %q is not a device label name: want 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter (e.g. by=room)", b))
				return
			}
			aq.By = append(aq.By, b)
		}
	}
	names := map[string]string{}
	aq.Devices = []metrics.Member{}
	for _, d := range s.devices.List() {
		if !d.Status.Accepted() || !matches(d.Labels, sel) {
			continue
		}
		aq.Devices = append(aq.Devices, metrics.Member{Device: d.ID, Labels: d.Labels})
		names[d.ID] = d.Name
	}
	res, err := s.cfg.Metrics.Aggregate(aq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := MetricsQuery{From: aq.From, To: aq.To, Step: res.Step.String(), Name: aq.Name, Op: string(aq.Op), Quantile: aq.Quantile,
		By: aq.By, Devices: len(aq.Devices), Groups: res.Groups}
	if res.Top != nil {
		resp.Top = make([]RankedSeries, len(res.Top))
		for i, rs := range res.Top {
			resp.Top[i] = RankedSeries{Ranked: rs, DeviceName: names[rs.Device]}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// matches reports whether labels has every label of sel.
func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}
