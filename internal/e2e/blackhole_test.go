package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const (
	// blackHoleKeepAlive is the agent's MQTT keep-alive: the broker gives
	// up on a silent connection after 1.5 × this (3 s), which is the
	// DESIGN bound for a dead link. The 1 s heartbeat makes the registry's
	// own timeout (three intervals) the same 3 s.
	blackHoleKeepAlive = 2 * time.Second
	// blackHolePoll is how often the test reads the device list; the
	// offline bound allows blackHoleSlack on top of 1.5 × keep-alive for
	// the poll interval and one curl through `ip netns exec`.
	blackHolePoll  = 100 * time.Millisecond
	blackHoleSlack = 500 * time.Millisecond
	// blackHoleHold is how long the link stays down after the agent itself
	// noticed the loss: long enough for its reconnect backoff (100 ms,
	// doubling, jittered to between half and all of the delay) to reach
	// its 5 s cap, as in a real outage rather than a blip.
	blackHoleHold = 10 * time.Second
	// blackHoleRecover bounds the return to online once the link is up.
	// The agent is then sleeping in its backoff, at most the 5 s cap
	// (bus.DefaultMaxReconnectInterval); its next attempt goes to the same
	// broker address (the hub did not move, so re-discovery, after 15 s
	// down, finds the address it has and changes nothing); a SYN sent
	// while the carrier comes back is retransmitted after 1 s, the TLS
	// handshake and CONNECT take milliseconds on the LAN, and the hub
	// marks the device online on its retained `online` status: about 6 s
	// at worst. 15 s (three times the backoff cap) leaves room for a slow
	// machine.
	blackHoleRecover = 15 * time.Second
)

// TestLANBlackHole pulls the cable of an agent on a LAN of network
// namespaces (its interface goes down: nothing is closed, nothing is
// answered, neither side is told). The hub must show the device offline,
// lost or timed out, within 1.5 × the MQTT keep-alive (the DESIGN bound
// for a dead link), and once the cable is back the agent must come back
// online by itself at the same address, without being restarted.
//
// The black hole is the link going down in the agent's namespace rather
// than an iptables DROP: it needs no extra package, and it is as silent
// towards the hub (the bridge port loses its carrier and forwards
// nothing).
func TestLANBlackHole(t *testing.T) {
	l := newLANTest(t)
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	agentHost := l.lan.AddHost("a1", "198.18.0.11/24")

	apiCall := l.startHub(hubHost, "--log-level", "debug").api
	token := lanJoinToken(t, apiCall, 1)

	agentOut := l.startAgent(agentHost, "--join-token", token, "--name", "a1", "--heartbeat", "1s",
		"--keepalive", blackHoleKeepAlive.String(), "--log-level", "debug").out

	// status returns the hub's view of a1, and false while the hub does
	// not answer or does not list it.
	type devStatus struct {
		Name         string    `json:"name"`
		Status       string    `json:"status"`
		StatusReason string    `json:"status_reason"`
		StatusSince  time.Time `json:"status_since"`
	}
	status := func() (devStatus, bool) {
		out, err := apiCall("GET", "/api/v1/devices", "")
		var ds []devStatus
		if err != nil || json.Unmarshal(out, &ds) != nil {
			return devStatus{}, false
		}
		for _, d := range ds {
			if d.Name == "a1" {
				return d, true
			}
		}
		return devStatus{}, false
	}
	// waitStatus polls until a1 has the status want and returns it with
	// the time it was first seen, or fails the test after timeout.
	waitStatus := func(what, want string, timeout time.Duration) (devStatus, time.Time) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		var last devStatus
		for {
			d, ok := status()
			if ok && d.Status == want {
				return d, time.Now()
			}
			if ok {
				last = d
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: a1 is %q/%q after %s, want %q", what, last.Status, last.StatusReason, timeout, want)
			}
			time.Sleep(blackHolePoll) // polling the registry
		}
	}

	start := time.Now()
	_, seen := waitStatus("enrolment", "online", 30*time.Second)
	t.Logf("a1 online %s after start, with no hub address", seen.Sub(start).Round(time.Millisecond))
	if s := agentOut.String(); !strings.Contains(s, "found the hub on the LAN") || !strings.Contains(s, "mqtt=mqtts://198.18.0.1:") {
		t.Fatal("a1 did not find the hub by mDNS and connect over TLS")
	}
	// Let a few heartbeats pass so that the connection is in its steady
	// state (keep-alive running, backoff reset) before the cable is pulled.
	time.Sleep(2 * blackHoleKeepAlive)
	if d, _ := status(); d.Status != "online" {
		t.Fatalf("a1 is %q/%q before the black hole, want online", d.Status, d.StatusReason)
	}

	// The black hole.
	mark := len(agentOut.String())
	sinceCut := func() string { return agentOut.String()[mark:] }
	agentHost.LinkDown()
	cut := time.Now()
	limit := blackHoleKeepAlive*3/2 + blackHoleSlack
	// Wait well past the bound, so that a miss reports how late it was.
	off, seen := waitStatus("dead link", "offline", 4*limit)
	took := seen.Sub(cut)
	t.Logf("dead link: a1 %s/%s seen %s after the link went down; the hub's status_since is %s after it (keep-alive %s, bound %s)",
		off.Status, off.StatusReason, took.Round(time.Millisecond), off.StatusSince.Sub(cut).Round(time.Millisecond), blackHoleKeepAlive, limit)
	if off.StatusReason != "connection_lost" && off.StatusReason != "heartbeat_timeout" {
		t.Errorf("offline with reason %q, want connection_lost or heartbeat_timeout", off.StatusReason)
	}
	// DESIGN: a dead link shows the device offline within 1.5 × the
	// keep-alive (counted by the broker from the last packet it read, at
	// or before the cut); the poller may see it up to blackHoleSlack later.
	if took > limit {
		t.Errorf("offline seen %s after the link went down, want within %s (1.5 × keep-alive %s + %s for polling)",
			took.Round(time.Millisecond), limit, blackHoleKeepAlive, blackHoleSlack)
	}

	// Keep the cable out until the agent has noticed too (its ping goes
	// unanswered: keep-alive plus the 1.5 × keep-alive ping timeout) and
	// then for blackHoleHold, while it retries into the dead link.
	deadline := time.Now().Add(4 * limit)
	for !strings.Contains(sinceCut(), `msg="connection lost"`) {
		if time.Now().After(deadline) {
			t.Fatalf("a1 did not notice the dead link within %s", time.Since(cut).Round(time.Millisecond))
		}
		time.Sleep(blackHolePoll) // polling the agent's log
	}
	t.Logf("a1 noticed the dead link %s after the cut", time.Since(cut).Round(time.Millisecond))
	time.Sleep(blackHoleHold) // the outage lasting, not a wait for an event
	if !strings.Contains(sinceCut(), `msg="connect failed"`) {
		t.Error("a1 did not try to reconnect during the outage")
	}
	if d, _ := status(); d.Status != "offline" {
		t.Errorf("a1 is %q/%q during the outage, want offline", d.Status, d.StatusReason)
	}

	// The cable is back: the agent reconnects by itself.
	agentHost.LinkUp()
	up := time.Now()
	on, seen := waitStatus("after the link came back", "online", blackHoleRecover)
	t.Logf("a1 online again %s after the link came back (outage %s; status_since %s after link up)",
		seen.Sub(up).Round(time.Millisecond), up.Sub(cut).Round(time.Millisecond), on.StatusSince.Sub(up).Round(time.Millisecond))
	after := sinceCut()
	if !strings.Contains(after, "mqtt=mqtts://198.18.0.1:") && !strings.Contains(after, "broker=mqtts://198.18.0.1:") {
		t.Error("a1 did not reconnect to the hub at 198.18.0.1 over TLS")
	}
	if strings.Contains(after, "the hub moved") {
		t.Error("a1 took the outage for a move of the hub")
	}
}
