package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/discovery/discoverytest"
	"github.com/alicia-home/alicia/internal/identity"
)

// TestMDNSInteropHubListsEarlierHomeAssistant: Home Assistant's mDNS
// library, python-zeroconf, announced _home-assistant._tcp before the hub
// started (so the hub learns of it only from the answer to its query, whose
// NSEC record old python-zeroconf malforms): the real hub lists it at
// GET /api/v1/discovered within 10 s of starting.
func TestMDNSInteropHubListsEarlierHomeAssistant(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	haHost := l.lan.AddHost("ha", "198.18.0.20/24")
	txt := map[string]string{"base_url": "http://198.18.0.20:8123", "version": "2024.1.0", "uuid": "0a1b2c3d"}
	discoverytest.PythonZeroconf(t, haHost, discoverytest.Service{
		Instance: "Home", Type: "_home-assistant._tcp", Port: 8123, TXT: txt, Host: "homeassistant",
	})

	// The default --discover-types include _home-assistant._tcp.
	started := time.Now()
	api := l.startHub(hubHost, "--log-level", "debug").api

	type service struct {
		Name      string            `json:"name"`
		Type      string            `json:"type"`
		Addresses []string          `json:"addresses"`
		Port      int               `json:"port"`
		TXT       map[string]string `json:"txt"`
	}
	want := service{Name: "Home", Type: "_home-assistant._tcp", Addresses: []string{"198.18.0.20"}, Port: 8123, TXT: txt}
	var last string
	for deadline := started.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) { // polling the API
		out, err := api("GET", "/api/v1/discovered", "")
		last = string(out)
		var list []service
		if err != nil || json.Unmarshal(out, &list) != nil {
			continue
		}
		for _, s := range list {
			if s.Type != want.Type {
				continue
			}
			took := time.Since(started)
			t.Logf("python-zeroconf's Home Assistant listed %v after the hub started", took.Round(time.Millisecond))
			if diff := cmp.Diff(want, s); diff != "" {
				t.Errorf("listed service (-want +got):\n%s", diff)
			}
			if took > 10*time.Second {
				t.Errorf("listed after %v, want within 10 s", took.Round(time.Millisecond))
			}
			return
		}
	}
	t.Fatalf("python-zeroconf's _home-assistant._tcp not listed within 15 s of the hub's start; last answer: %s", last)
}

// TestMDNSInteropAgentFindsHubAnnouncedByPythonZeroconf: the hub does not
// announce itself; python-zeroconf on another host, started before the
// agent, announces _alicia-hub._tcp with the hub's fingerprint and only the
// hub's IPv6 link-local address (and an NSEC record for the missing IPv4
// address). An agent with a join token finds the hub there, dials it with
// the zone of its interface, enrols and goes online.
func TestMDNSInteropAgentFindsHubAnnouncedByPythonZeroconf(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	peer := l.lan.AddHost("peer", "198.18.0.20/24")
	agentHost := l.lan.AddHost("a1", "198.18.0.11/24")

	api := l.startHub(hubHost, "--no-mdns").api
	token := lanJoinToken(t, api, 1)
	_, fp, err := identity.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	hubLL := discoverytest.LinkLocal(t, hubHost)
	discoverytest.PythonZeroconf(t, peer, discoverytest.Service{
		Instance: "Alicia hub python-zeroconf", Type: "_alicia-hub._tcp", Port: 8470,
		TXT: map[string]string{"v": "1", "id": "pz", "fp": fp}, Host: "alicia-hub-pz",
		Addrs: []netip.Addr{hubLL},
	})

	started := time.Now()
	agent := l.startAgent(agentHost, "--join-token", token, "--name", "a1", "--heartbeat", "1s", "--log-level", "debug")
	online := false
	for deadline := time.Now().Add(30 * time.Second); !online && time.Now().Before(deadline); {
		out, err := api("GET", "/api/v1/devices", "")
		var ds []device
		if err == nil && json.Unmarshal(out, &ds) == nil {
			for _, d := range ds {
				online = online || d.Name == "a1" && d.Status == "online"
			}
		}
		if !online {
			time.Sleep(100 * time.Millisecond) // polling the registry
		}
	}
	if !online {
		t.Fatal("the agent is not online within 30 s")
	}
	t.Logf("agent online %v after it started", time.Since(started).Round(time.Millisecond))
	wantHub := "[" + hubLL.WithZone(agentHost.Interface()).String() + "]:8470"
	if s := agent.out.String(); !strings.Contains(s, "found the hub on the LAN") || !strings.Contains(s, wantHub) {
		t.Errorf("the agent did not find the hub by mDNS at %s", wantHub)
	}
}
