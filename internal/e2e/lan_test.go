package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/netnstest"
)

// TestLANDiscovery runs the hub and two agents on a LAN of network
// namespaces: the agents get a join token and no hub address, find the hub
// by mDNS (pinning the CA fingerprint the token carries), enrol over pinned
// HTTPS and go online over MQTT-over-TLS.
func TestLANDiscovery(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	agents := []*netnstest.Host{l.lan.AddHost("a1", "198.18.0.11/24"), l.lan.AddHost("a2", "198.18.0.12/24")}

	hub := l.startHub(hubHost, "--log-level", "debug")
	apiCall := hub.api
	token := lanJoinToken(t, apiCall, 2)

	start := time.Now()
	var outs []*logBuffer
	for _, a := range agents {
		p := l.startAgent(a, "--join-token", token, "--name", a.Name(), "--heartbeat", "1s", "--keepalive", "2s", "--log-level", "debug")
		outs = append(outs, p.out)
	}

	online := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(online) < len(agents) && time.Now().Before(deadline) {
		out, err := apiCall("GET", "/api/v1/devices", "")
		if err == nil {
			var ds []device
			if json.Unmarshal(out, &ds) == nil {
				for _, d := range ds {
					if d.Status == "online" {
						online[d.Name] = true
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond) // polling the registry
	}
	if len(online) != len(agents) {
		t.Fatalf("online after 30s: %v, want a1 and a2", online)
	}
	t.Logf("both agents online %s after start, with no hub address", time.Since(start).Round(time.Millisecond))
	for i, o := range outs {
		if !strings.Contains(o.String(), "found the hub on the LAN") || !strings.Contains(o.String(), "mqtt=mqtts://198.18.0.1:") {
			t.Errorf("%s did not find the hub by mDNS and connect over TLS", agents[i].Name())
		}
	}
	if strings.Contains(hub.out.String(), "mDNS announcement stopped") {
		t.Error("the hub could not announce")
	}

	// The hub moves to another address: the agents lose it, find it again
	// on the LAN by themselves and come back online.
	statuses := func() map[string]string {
		m := map[string]string{}
		out, err := apiCall("GET", "/api/v1/devices", "")
		var ds []device
		if err == nil && json.Unmarshal(out, &ds) == nil {
			for _, d := range ds {
				m[d.Name] = d.Status
			}
		}
		return m
	}
	moved := time.Now()
	hubHost.SetAddr("198.18.0.2/24")
	deadline = time.Now().Add(20 * time.Second)
	for st := statuses(); (st["a1"] != "offline" || st["a2"] != "offline") && time.Now().Before(deadline); st = statuses() {
		time.Sleep(100 * time.Millisecond) // polling the registry
	}
	deadline = time.Now().Add(60 * time.Second)
	for st := statuses(); (st["a1"] != "online" || st["a2"] != "online") && time.Now().Before(deadline); st = statuses() {
		time.Sleep(200 * time.Millisecond) // polling the registry
	}
	if st := statuses(); st["a1"] != "online" || st["a2"] != "online" {
		t.Fatalf("after the hub moved: %v, want both online again", st)
	}
	t.Logf("both agents online again %s after the hub moved", time.Since(moved).Round(time.Millisecond))
	for i, o := range outs {
		if !strings.Contains(o.String(), "the hub moved") || !strings.Contains(o.String(), "mqtt=mqtts://198.18.0.2:") {
			t.Errorf("%s did not reconnect at the hub's new address", agents[i].Name())
		}
	}
}

// TestLANRogueHub: a rogue host announcing _alicia-hub._tcp with its own
// CA never receives the join token of an enrolling agent, nor a connection
// from an enrolled one, and the agent says so in its log.
func TestLANRogueHub(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	rogueHost := l.lan.AddHost("rogue", "198.18.0.66/24")
	agentHost := l.lan.AddHost("a1", "198.18.0.11/24")
	// The real hub, silent on the LAN for now, makes the token.
	real := l.startHub(hubHost, "--no-mdns")
	api := real.api
	token := lanJoinToken(t, api, 1)

	rogue := l.startHub(rogueHost, "--log-level", "debug")
	agent := l.startAgent(agentHost, "--join-token", token, "--name", "a1", "--heartbeat", "1s")

	waitUntil(t, "the agent noticing the rogue", 15*time.Second, func() bool {
		return strings.Contains(agent.out.String(), "ignoring a hub that announces another CA")
	})
	time.Sleep(2 * time.Second) // giving the agent time to (wrongly) contact the rogue
	if s := rogue.out.String(); strings.Contains(s, "enrol") || strings.Contains(s, "198.18.0.11") {
		t.Fatalf("the rogue heard from the agent:\n%s", s)
	}

	// The real hub starts announcing: the agent enrols there.
	real.kill()
	real = l.startHub(hubHost, "--discover-types", "_alicia-hub._tcp,_http._tcp")
	waitUntil(t, "the agent online at the real hub", 20*time.Second, func() bool {
		out, err := api("GET", "/api/v1/devices", "")
		return err == nil && strings.Contains(string(out), `"status":"online"`)
	})
	// LAN discovery for the household: the real hub lists what else
	// announces itself, here the rogue, with its address.
	waitUntil(t, "the rogue listed by GET /api/v1/discovered", 20*time.Second, func() bool {
		out, err := api("GET", "/api/v1/discovered", "")
		return err == nil && strings.Contains(string(out), `"type":"_alicia-hub._tcp"`) && strings.Contains(string(out), `"198.18.0.66"`)
	})

	// An enrolled agent whose hub is gone, with only the rogue on the LAN,
	// keeps refusing it.
	real.kill()
	agent.kill()
	agent = l.startAgent(agentHost, "--heartbeat", "1s")
	waitUntil(t, "the restarted agent noticing the rogue", 20*time.Second, func() bool {
		return strings.Contains(agent.out.String(), "ignoring a hub that announces another CA")
	})
	time.Sleep(2 * time.Second) // giving it time to (wrongly) connect
	if s := rogue.out.String(); strings.Contains(s, "198.18.0.11") {
		t.Fatalf("the rogue got a connection from the enrolled agent:\n%s", s)
	}
}

// lanAPI returns a caller of the REST API of the hub with dataDir that runs
// in host's namespace: curl from inside that namespace to its loopback, where
// plain HTTP with the admin token is allowed.
func lanAPI(ctx context.Context, host *netnstest.Host, dataDir string) func(method, path, body string) ([]byte, error) {
	return func(method, path, body string) ([]byte, error) {
		tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		if err != nil {
			return nil, err
		}
		args := []string{"-sf", "-X", method, "-H", "Authorization: Bearer " + strings.TrimSpace(string(tok))}
		if body != "" {
			args = append(args, "-H", "Content-Type: application/json", "-d", body)
		}
		return host.Command(ctx, "curl", append(args, "http://127.0.0.1:8470"+path)...).Output()
	}
}

// lanJoinToken waits up to 20 s for the hub behind api to answer and
// returns a new join token with the given number of uses.
func lanJoinToken(tb testing.TB, api func(method, path, body string) ([]byte, error), uses int) string {
	tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		out, err := api("POST", "/api/v1/join-tokens", fmt.Sprintf(`{"uses":%d}`, uses))
		var j struct {
			Token string `json:"token"`
		}
		if err == nil && json.Unmarshal(out, &j) == nil && j.Token != "" {
			return j.Token
		}
		time.Sleep(50 * time.Millisecond) // polling for the hub to come up
	}
	tb.Fatal("no join token from the hub within 20s")
	return ""
}
