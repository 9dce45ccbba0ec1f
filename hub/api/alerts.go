package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
)

// The parts of the health monitor (hub/health) the handlers use:
type (
	// ruleBook serves the alert rule routes.
	ruleBook interface {
		Rules() []health.Rule
		Rule(id string) (health.Rule, error)
		PutRule(r health.Rule) (created bool, err error)
		DeleteRule(id string) error
	}
	// alertLog serves GET /api/v1/alerts.
	alertLog interface {
		Active() []health.Alert
		History(limit int) []health.Alert
	}
	// deviceHealth gives the health of each device view.
	deviceHealth interface {
		DeviceState(d registry.Device) string
	}
)

// Health is the hub's health monitor as the root hands it over: alert
// rules, alerts and device health states.
type Health interface {
	ruleBook
	alertLog
	deviceHealth
}

// Alerts answers GET /api/v1/alerts.
type Alerts struct {
	Active  []health.Alert `json:"active"`
	History []health.Alert `json:"history"`
}

// RuleList answers GET /api/v1/alerts/rules.
type RuleList struct {
	Rules []health.Rule `json:"rules"`
}

// maxRuleBody bounds a rule's JSON.
const maxRuleBody = 16 << 10

// listAlerts answers the active alerts and the latest resolved ones
// (?limit=N, default 100, at most 1000), optionally of one ?device=ID.
func (s *server) listAlerts(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("limit: %q: want a number from 1 to 1000", v))
			return
		}
		limit = n
	}
	dev := r.URL.Query().Get("device")
	keep := func(as []health.Alert, max int) []health.Alert {
		out := []health.Alert{}
		for _, a := range as {
			if (dev == "" || a.Device == dev) && (max <= 0 || len(out) < max) {
				out = append(out, a)
			}
		}
		return out
	}
	writeJSON(w, http.StatusOK, Alerts{Active: keep(s.alerts.Active(), 0), History: keep(s.alerts.History(0), limit)})
}

func (s *server) listRules(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, RuleList{Rules: s.rules.Rules()})
}

func (s *server) getRule(w http.ResponseWriter, r *http.Request) {
	rule, err := s.rules.Rule(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rule)
}

// putRule creates or replaces a rule. The body is a rule (strict JSON);
// its id may be left out and must match the path otherwise.
func (s *server) putRule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, ok := readBody(w, r, maxRuleBody, false)
	if !ok {
		return
	}
	if err := checkRuleJSON(body); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	rule, err := health.DecodeRule(body)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if rule.ID == "" {
		rule.ID = id
	}
	if rule.ID != id {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("id: %q in the body differs from %q in the path", rule.ID, id))
		return
	}
	created, err := s.rules.PutRule(rule)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	saved, err := s.rules.Rule(id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.log.Info("alert rule saved", "rule", id, "created", created)
	writeJSON(w, status, saved)
}

// checkRuleJSON applies the strict body rules to a rule, whose wire type
// is health's own: one object, no duplicate keys, no trailing data, and
// lowercase keys (every key of a rule is; encoding/json in DecodeRule
// would match "Name" or "NAME" to "name").
func checkRuleJSON(body []byte) error {
	if err := checkJSON(body, nil); err != nil {
		return err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	for k := range top {
		if k != strings.ToLower(k) {
			return fmt.Errorf("%q: unknown field: keys are case-sensitive, did you mean %q?", k, strings.ToLower(k))
		}
	}
	return nil
}

func (s *server) deleteRule(w http.ResponseWriter, r *http.Request) {
	if err := s.rules.DeleteRule(r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
