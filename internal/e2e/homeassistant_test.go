package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mqttCLI runs mosquitto_sub and mosquitto_pub as Home Assistant's broker
// account, over MQTT with TLS and the hub's CA, as Home Assistant would
// connect.
type mqttCLI struct {
	t                    *testing.T
	port, user, password string
	cafile               string
	n                    atomic.Int32 // connections made, for their client IDs
}

// args are a connection's arguments: each one is named <username>.<n>,
// as an integration's connections must be when it opens several.
func (c *mqttCLI) args(extra ...string) []string {
	id := fmt.Sprintf("%s.%d", c.user, c.n.Add(1))
	return append([]string{"-h", "127.0.0.1", "-p", c.port, "--cafile", c.cafile, "-u", c.user, "-P", c.password, "-i", id, "-V", "mqttv311"}, extra...)
}

func (c *mqttCLI) pub(topic, msg string) {
	c.t.Helper()
	out, err := exec.Command("mosquitto_pub", c.args("-q", "1", "-t", topic, "-m", msg)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("mosquitto_pub %s: %v\n%s", topic, err, out)
	}
}

// sub runs mosquitto_sub on filter in the background, collecting "topic
// payload" lines (retained ones too unless noRetained) until stop.
type subscription struct {
	mu    sync.Mutex
	lines []string
	cmd   *exec.Cmd
	done  chan struct{}
}

func (c *mqttCLI) sub(filter string, noRetained bool) *subscription {
	c.t.Helper()
	args := c.args("-q", "1", "-t", filter, "-v")
	if noRetained {
		args = append(args, "-R")
	}
	s := &subscription{cmd: exec.Command("mosquitto_sub", args...), done: make(chan struct{})}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		c.t.Fatalf("mosquitto_sub: %v", err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
	}()
	c.t.Cleanup(s.stop)
	return s
}

func (s *subscription) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
		_ = s.cmd.Wait()
	}
}

// wait returns the first line starting with prefix.
func (s *subscription) wait(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	return s.waitContaining(t, prefix, "", timeout)
}

// waitContaining returns the first line starting with prefix that
// contains part.
func (s *subscription) waitContaining(t *testing.T, prefix, part string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, l := range s.lines {
			if strings.HasPrefix(l, prefix) && strings.Contains(l, part) {
				s.mu.Unlock()
				return l
			}
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // polling mosquitto_sub's output
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("no message on %s within %s; mosquitto_sub printed:\n%s", prefix, timeout, strings.Join(s.lines, "\n"))
	return ""
}

// haConfig is Home Assistant's device-based discovery config, as far as
// the test checks it.
type haConfig struct {
	Dev struct {
		IDs  []string `json:"ids"`
		Name string   `json:"name"`
	} `json:"dev"`
	O struct {
		Name string `json:"name"`
	} `json:"o"`
	AvtyT string                    `json:"avty_t"`
	Cmps  map[string]map[string]any `json:"cmps"`
}

var haUniqueID = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// TestHomeAssistantDiscovery: Home Assistant's broker account (created over
// REST, MQTT over TLS with the hub's CA) sees a complete retained device
// config for a device on a simulated board; "ON" on its switch's command
// topic moves the simulated relay through the command path; "online" on
// homeassistant/status makes the hub announce again; the account cannot
// read the devices' own topics.
func TestHomeAssistantDiscovery(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		missing(t, "mosquitto_sub (package mosquitto-clients)")
	}
	h, api, logs, dir := startLoggedHub(t)
	var creds struct {
		Username string   `json:"username"`
		Password string   `json:"password"`
		MQTTURLs []string `json:"mqtt_urls"`
		CAPEM    string   `json:"ca_pem"`
	}
	if st := api.do("POST", "/api/v1/integrations", map[string]string{"name": "homeassistant", "kind": "homeassistant"}, &creds); st != 201 {
		t.Fatalf("create the integration: %d", st)
	}
	cafile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(cafile, []byte(creds.CAPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(h.mqttsAddr, ":")
	cli := &mqttCLI{t: t, port: port, user: creds.Username, password: creds.Password, cafile: cafile}

	ag := startSimAgent(t, h.httpAddr, filepath.Join(dir, "agent"), "garage-pi", api.joinToken(1), logs)
	defer ag.stop()
	api.waitStatus(ag.id, "online", "", 10*time.Second)
	if st := api.do("PATCH", "/api/v1/devices/"+ag.id, map[string]any{"labels": map[string]string{"room": "garage"}}, nil); st != 200 {
		t.Fatalf("label the device: %d", st)
	}

	configTopic := "homeassistant/device/alicia_" + ag.id + "/config"
	stateTopic := "alicia/v1/ha/" + ag.id + "/state"
	all := cli.sub("homeassistant/#", false)
	// The device was announced when it enrolled, before it registered its
	// hardware; the config with its entities follows.
	line := all.waitContaining(t, configTopic+" {", `"p":"switch"`, 20*time.Second)
	var cfg haConfig
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, configTopic+" ")), &cfg); err != nil {
		t.Fatalf("config is not JSON: %v\n%s", err, line)
	}
	if len(cfg.Dev.IDs) == 0 || cfg.Dev.Name != "garage-pi" || cfg.O.Name == "" || cfg.AvtyT != "alicia/v1/ha/"+ag.id+"/availability" {
		t.Errorf("device part of the config: %+v", cfg)
	}
	seen := map[string]bool{}
	var relayCmd string
	for key, c := range cfg.Cmps {
		uid, _ := c["uniq_id"].(string)
		if c["p"] == nil || !haUniqueID.MatchString(uid) || seen[uid] {
			t.Errorf("component %s: platform %v, unique id %q (valid and unique?)", key, c["p"], uid)
		}
		seen[uid] = true
		if c["p"] == "switch" {
			if c["cmd_t"] == nil {
				t.Errorf("switch %s has no command topic", key)
			}
			if c["name"] == "relay" {
				relayCmd, _ = c["cmd_t"].(string)
			}
		}
		if c["stat_t"] != stateTopic {
			t.Errorf("component %s: state topic %v, want %s", key, c["stat_t"], stateTopic)
		}
	}
	for _, want := range []string{"switch", "binary_sensor", "sensor"} {
		found := false
		for _, c := range cfg.Cmps {
			found = found || c["p"] == want
		}
		if !found {
			t.Errorf("no %s among the components %v", want, cfg.Cmps)
		}
	}
	if relayCmd == "" {
		t.Fatalf("no switch for the relay in %v", cfg.Cmps)
	}
	avail := cli.sub("alicia/v1/ha/"+ag.id+"/#", false)
	avail.wait(t, "alicia/v1/ha/"+ag.id+"/availability online", 10*time.Second)
	avail.wait(t, stateTopic+" {", 20*time.Second)
	avail.stop()

	// Home Assistant's switch moves the simulated relay.
	if ag.board.Relay() {
		t.Fatal("the relay is on before any command")
	}
	cli.pub(relayCmd, "ON")
	deadline := time.Now().Add(5 * time.Second)
	for !ag.board.Relay() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the simulated relay
	}
	if !ag.board.Relay() {
		t.Fatal("ON on the switch's command topic did not energise the relay")
	}
	var audit struct {
		Commands []commandRecord `json:"commands"`
	}
	api.do("GET", "/api/v1/audit?device="+ag.id, nil, &audit)
	if len(audit.Commands) != 1 || audit.Commands[0].Actor != "homeassistant" || audit.Commands[0].Status != "ok" {
		t.Errorf("audit after Home Assistant's command: %+v", audit.Commands)
	}
	cli.pub(relayCmd, "OFF")
	for deadline := time.Now().Add(5 * time.Second); ag.board.Relay() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling the simulated relay
	}
	if ag.board.Relay() {
		t.Error("OFF did not release the relay")
	}

	// Home Assistant's birth message makes the hub announce again: a
	// subscriber that ignores retained messages sees the config anew.
	all.stop()
	fresh := cli.sub("homeassistant/device/+/config", true)
	time.Sleep(500 * time.Millisecond) // letting mosquitto_sub subscribe before the birth message, on purpose
	cli.pub("homeassistant/status", "online")
	fresh.wait(t, configTopic+" {", 10*time.Second)
	fresh.stop()

	// The account reaches nothing of the devices' own topics.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "mosquitto_sub", cli.args("-t", "alicia/v1/devices/#", "-v", "-W", "2", "-d")...).CombinedOutput()
	if strings.Contains(string(out), "alicia/v1/devices/"+ag.id+"/") && strings.Contains(string(out), "register") && !strings.Contains(string(out), "SUBACK") {
		t.Errorf("the Home Assistant account read a device topic:\n%s", out)
	}
	if !strings.Contains(string(out), "Subscribed (mid: 1): 128") {
		t.Errorf("subscribing to the devices' topics was not refused (want SUBACK 128):\n%s", out)
	}
}
