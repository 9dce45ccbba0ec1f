package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/alicia-home/alicia/hub/integrations"
)

// Integrations manages integrations' broker accounts (hub/integrations).
type Integrations interface {
	Create(name, kind string) (integrations.Account, string, error)
	List() []integrations.Account
	Delete(name string) (integrations.Account, error)
	Get(name string) (integrations.Account, error)
	// Check reports whether password is that of the account named name.
	Check(name string, password []byte) (integrations.Account, bool)
}

// IntegrationRequest is the body of POST /api/v1/integrations.
type IntegrationRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// Integration is an integration's account as the API shows it.
type Integration struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"`
	Username string    `json:"username"`
	Created  time.Time `json:"created"`
}

// IntegrationCredentials answers POST /api/v1/integrations: the account,
// its password (shown once) and how to reach the broker.
type IntegrationCredentials struct {
	Integration
	Password string   `json:"password"`
	MQTTURLs []string `json:"mqtt_urls"`
	// CAPEM is the hub CA's certificate, for the integration to verify the
	// broker's TLS certificate.
	CAPEM string `json:"ca_pem,omitempty"`
}

// IntegrationList answers GET /api/v1/integrations.
type IntegrationList struct {
	Integrations []Integration `json:"integrations"`
}

func integrationView(a integrations.Account) Integration {
	return Integration{Name: a.Name, Kind: a.Kind, Username: a.Username, Created: a.Created}
}

func (s *server) createIntegration(w http.ResponseWriter, r *http.Request) {
	var req IntegrationRequest
	if !decodeBody(w, r, &req) {
		return
	}
	acc, password, err := s.cfg.Integrations.Create(req.Name, req.Kind)
	if errors.Is(err, integrations.ErrExists) {
		err = fmt.Errorf("%w (delete it to issue a new password)", err)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("integration account created", "name", acc.Name, "kind", acc.Kind)
	urls := s.cfg.BrokerURLs(r)
	if urls == nil {
		urls = []string{}
	}
	writeJSON(w, http.StatusCreated, IntegrationCredentials{Integration: integrationView(acc), Password: password, MQTTURLs: urls, CAPEM: string(s.cfg.CAPEM)})
}

func (s *server) listIntegrations(w http.ResponseWriter, _ *http.Request) {
	out := IntegrationList{Integrations: []Integration{}}
	for _, a := range s.cfg.Integrations.List() {
		out.Integrations = append(out.Integrations, integrationView(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) deleteIntegration(w http.ResponseWriter, r *http.Request) {
	acc, err := s.cfg.Integrations.Delete(r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.cfg.Disconnect(acc.Username)
	if err := s.cfg.Metrics.DeleteDevice(acc.Username); err != nil {
		// Harmless: the next start removes the series of accounts gone.
		s.log.Warn("metrics of a deleted integration not removed", "name", acc.Name, "err", err)
	}
	s.log.Info("integration account deleted", "name", acc.Name)
	w.WriteHeader(http.StatusNoContent)
}
