package health_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/store"
)

// The hub's series-limit flag is not data from the device: it keeps no
// silent device from its no_data alert.
func TestAbsenceIgnoresSeriesLimitFlag(t *testing.T) {
	e := newEnvRules(t, noData())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	e.src.sample("d1", "load1", nil, t0, 0.1)
	for s := time.Duration(0); s <= 6*time.Minute; s += 30 * time.Second {
		e.src.sample("d1", metrics.SeriesLimitedName, nil, t0.Add(s), 1)
		e.eval(t0.Add(s))
	}
	e.wantEvents("alert_fired nodata/d1")
}

func TestSeriesLimitRuleFiresAndResolves(t *testing.T) {
	e := newEnv(t, health.Config{})
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	e.src.device("d2", "attic-pi", registry.StatusOnline, nil)
	for s := time.Duration(0); s <= 2*time.Minute; s += 10 * time.Second {
		at := t0.Add(s)
		e.src.sample("d1", "load1", nil, at, 0.1)
		e.src.sample("d2", "load1", nil, at, 0.1)
		e.src.sample("d1", metrics.SeriesLimitedName, nil, at, 1)
		e.eval(at)
	}
	evs := e.wantEvents("alert_fired series_limit/d1")
	if want := "garage-pi sends more distinct series than the hub keeps per device, and new ones are dropped: look for a metric label that changes with every sample"; evs[0].Alert.Summary != want {
		t.Errorf("summary = %q, want %q", evs[0].Alert.Summary, want)
	}
	at := t0.Add(3 * time.Minute)
	e.src.sample("d1", "load1", nil, at, 0.1)
	e.src.sample("d1", metrics.SeriesLimitedName, nil, at, 0)
	e.eval(at)
	e.wantEvents("alert_resolved series_limit/d1")
}

// A hub seeded by an earlier version (meta "1", six defaults) gets the
// defaults added since, once: deleting one keeps it deleted.
func TestDefaultsAddedLaterAreStoredOnce(t *testing.T) {
	e := newEnv(t, health.Config{})
	// Make the store look like an earlier version's.
	err := e.db.Update(func(tx *store.Tx) error {
		if err := tx.Delete(e.db.Keyspace("health_rule"), "series_limit"); err != nil {
			return err
		}
		return tx.Put(e.db.Keyspace("health_meta"), "seeded", []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if _, err := e.eng.Rule("series_limit"); err != nil {
		t.Fatalf("series_limit after an upgrade: %v, want it added", err)
	}
	v, err := e.db.Keyspace("health_meta").Get("seeded")
	if err != nil {
		t.Fatal(err)
	}
	var offered []string
	if err := json.Unmarshal(v, &offered); err != nil || !slices.Contains(offered, "series_limit") || !slices.Contains(offered, "no_data") {
		t.Errorf("seeded = %s (%v), want a JSON list of every default", v, err)
	}
	if err := e.eng.DeleteRule("series_limit"); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if _, err := e.eng.Rule("series_limit"); !errors.Is(err, health.ErrNotFound) {
		t.Errorf("deleted series_limit came back after a restart: %v", err)
	}
}
