package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/alicia-home/alicia/hub/hubd"
	"github.com/alicia-home/alicia/internal/mosquittotest"
	"github.com/alicia-home/alicia/internal/protocol"
)

// dynsecPlugin is where Debian's mosquitto package installs the plugin.
const dynsecPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"

// externalHub is a hub on a real Mosquitto with the dynamic-security
// plugin, whose admin account is the hub's.
type externalHub struct {
	brk            *mosquittotest.Broker
	brokerHostPort string
	dynsecFile     string
	httpAddr       string
	api            *apiClient
	logs           *logBuffer
}

func startExternalHub(t *testing.T) *externalHub {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Mosquitto; skipped with -short")
	}
	plugin := dynsecPlugin
	if _, err := os.Stat(plugin); err != nil {
		matches, _ := filepath.Glob("/usr/lib/*/mosquitto_dynamic_security.so")
		if len(matches) == 0 {
			missing(t, "mosquitto's dynamic-security plugin (package mosquitto)")
		}
		plugin = matches[0]
	}
	ctrl, err := exec.LookPath("mosquitto_ctrl")
	if err != nil {
		missing(t, "mosquitto_ctrl (package mosquitto-clients)")
	}
	dir := t.TempDir()
	dynsecFile := filepath.Join(dir, "dynsec.json")
	if out, err := exec.Command(ctrl, "dynsec", "init", dynsecFile, "hubadmin", "hubadmin-secret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v\n%s", err, out)
	}
	brk := mosquittotest.New(t, mosquittotest.Options{
		// The password file holds an operator account; the hub and the
		// devices live in the plugin's store.
		Users: map[string]string{"operator": "operator-secret"},
		Extra: []string{"plugin " + plugin, "plugin_opt_config_file " + dynsecFile},
	})
	brk.Start()
	brokerHostPort := strings.TrimPrefix(brk.URL(), "tcp://")

	logs := &logBuffer{}
	hubDir := filepath.Join(dir, "hub")
	httpAddr := freeAddr(t)
	hub, err := hubd.New(hubd.Config{DataDir: hubDir, HTTPAddr: httpAddr, NoMDNS: true, Broker: "mqtt://hubadmin:hubadmin-secret@" + brokerHostPort,
		HeartbeatTimeoutCheck: 100 * time.Millisecond, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, "hub", hub.Run)
	<-hub.Ready()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- hub and agent logs ---\n%s\n--- mosquitto ---\n%s", logs, brk.Log())
		}
	})
	return &externalHub{brk: brk, brokerHostPort: brokerHostPort, dynsecFile: dynsecFile, httpAddr: httpAddr, api: newAPIClient(t, httpAddr, hubDir), logs: logs}
}

// TestExternalMosquitto proves the --broker path: the hub and an agent use a
// real Mosquitto that refuses anonymous clients; the hub gives the device
// its own account and role there through Mosquitto's dynamic-security
// plugin, the agent registers, goes online, and goes offline on stop.
func TestExternalMosquitto(t *testing.T) {
	ext := startExternalHub(t)
	api, httpAddr, brokerHostPort, dynsecFile, logs := ext.api, ext.httpAddr, ext.brokerHostPort, ext.dynsecFile, ext.logs
	dir := t.TempDir()

	var boot struct {
		MQTTURLs []string `json:"mqtt_urls"`
	}
	if st := api.do("GET", "/api/v1/bootstrap", nil, &boot); st != 200 || len(boot.MQTTURLs) != 1 || strings.Contains(boot.MQTTURLs[0], "secret") {
		t.Fatalf("bootstrap = %d %+v: want the external broker's URL without credentials", st, boot)
	}

	stateDir := filepath.Join(dir, "agent")
	id, stopAgent := startAgent(t, httpAddr, stateDir, "ext-agent", api.joinToken(1), "", testHeartbeat, logs)
	api.waitStatus(id, "online", "startup", 10*time.Second)

	stopAgent()
	api.waitStatus(id, "offline", "shutdown", 3*time.Second)

	// With the agent stopped, use its account directly (Mosquitto would
	// otherwise hand the agent's session over to the test's client).
	t.Run("the device account is confined to its own topics", func(t *testing.T) {
		var creds struct {
			Password string `json:"password"`
		}
		b, err := os.ReadFile(filepath.Join(stateDir, "credentials.json"))
		if err != nil || json.Unmarshal(b, &creds) != nil {
			t.Fatalf("read agent credentials: %v", err)
		}
		sub := func(user, pass, topic string) string {
			args := []string{"-h", "127.0.0.1", "-p", strings.Split(brokerHostPort, ":")[1], "-i", user, "-t", topic, "-W", "1", "-C", "1"}
			if user != "" {
				args = append(args, "-u", user, "-P", pass)
			}
			out, _ := exec.Command("mosquitto_sub", args...).CombinedOutput()
			return string(out)
		}
		if out := sub(id+"x", "", "alicia/#"); !strings.Contains(out, "not authorised") && !strings.Contains(out, "Connection Refused") {
			t.Errorf("anonymous client was not refused: %q", out)
		}
		if out := sub(id, creds.Password, "alicia/#"); !strings.Contains(out, "denied") {
			t.Errorf("device subscribing to alicia/# was not denied: %q", out)
		}
		// Its own retained status is readable to it (proves the account works).
		if out := sub(id, creds.Password, "alicia/v1/devices/"+id+"/status"); !strings.Contains(out, `"reason":"shutdown"`) {
			t.Errorf("device cannot read its own status: %q", out)
		}
		// The hub's acknowledgements and commands are not the device's to
		// publish, inside its own subtree or not (PUBACK reason 135: not
		// authorized).
		for _, kind := range []string{"ack", "cmd"} {
			out, _ := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strings.Split(brokerHostPort, ":")[1], "-i", id, "-u", id, "-P", creds.Password,
				"-V", "mqttv5", "-q", "1", "-d", "-t", "alicia/v1/devices/"+id+"/"+kind, "-m", "x").CombinedOutput()
			if !strings.Contains(string(out), "received PUBACK (Mid: 1, RC:135)") {
				t.Errorf("device publishing on its own %s topic was not refused: %q", kind, out)
			}
		}
	})

	t.Run("deleting the device removes its broker account", func(t *testing.T) {
		if b, err := os.ReadFile(dynsecFile); err != nil || !strings.Contains(string(b), id) {
			t.Fatalf("dynsec store does not hold the device's account before the delete (%v)", err)
		}
		if st := api.do("DELETE", "/api/v1/devices/"+id, nil, nil); st != 204 {
			t.Fatalf("delete: status %d", st)
		}
		b, err := os.ReadFile(dynsecFile)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), id) {
			t.Errorf("dynsec store still holds the deleted device's account")
		}
	})
}

// TestRetriedCommandAppliedOnce: the same command delivered twice (as a
// broker redelivers an unacknowledged QoS 1 message, or a hub resends) is
// applied once. On an external Mosquitto the test can publish on the
// device's command topic with the hub's own account: it sends "relay on"
// (ID A), then "relay off" (ID B), then A again; the relay stays off and A's
// second result says it repeats the first.
func TestRetriedCommandAppliedOnce(t *testing.T) {
	ext := startExternalHub(t)
	dir := t.TempDir()
	ag := startSimAgent(t, ext.httpAddr, filepath.Join(dir, "agent"), "retry-pi", ext.api.joinToken(1), ext.logs)
	defer ag.stop()
	ext.api.waitStatus(ag.id, "online", "", 10*time.Second)

	hubAccount := mqtt.NewClientOptions().AddBroker(ext.brk.URL()).SetClientID("hubadmin-test").SetUsername("hubadmin").SetPassword("hubadmin-secret")
	c := mqtt.NewClient(hubAccount)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as the hub's account: %v", tok.Error())
	}
	defer c.Disconnect(250)
	results := make(chan *protocol.CommandResult, 8)
	resultTopic := protocol.DeviceTopic(ag.id, protocol.KindResult)
	if tok := c.Subscribe(resultTopic, 1, func(_ mqtt.Client, m mqtt.Message) {
		if _, r, err := protocol.DecodeAs[*protocol.CommandResult](m.Payload()); err == nil {
			results <- r
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", resultTopic, tok.Error())
	}
	send := func(id string, level bool) *protocol.CommandResult {
		t.Helper()
		b, err := protocol.Encode("hub-test", time.Now(), &protocol.Command{ID: id, Action: protocol.ActionGPIOWrite,
			Params: protocol.CommandParams{Line: "relay", Level: &level}, Deadline: time.Now().Add(10 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish(protocol.DeviceTopic(ag.id, protocol.KindCommand), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		select {
		case r := <-results:
			if r.ID != id {
				t.Fatalf("result for %s, want %s", r.ID, id)
			}
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no result for command %s", id)
		}
		return nil
	}
	if r := send("cmd-a", true); r.Status != protocol.ResultOK || r.Repeat || !ag.board.Relay() {
		t.Fatalf("A (relay on): %+v, relay %v", r, ag.board.Relay())
	}
	if r := send("cmd-b", false); r.Status != protocol.ResultOK || ag.board.Relay() {
		t.Fatalf("B (relay off): %+v, relay %v", r, ag.board.Relay())
	}
	r := send("cmd-a", true)
	if r.Status != protocol.ResultOK || !r.Repeat {
		t.Errorf("A again: %+v, want ok with repeat", r)
	}
	if ag.board.Relay() {
		t.Error("A delivered again energised the relay again: applied twice")
	}
}

// missing fails under CI (where .ci/run installs everything) and skips on
// a developer's machine.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs it", what)
	}
	t.Skipf("%s is not installed (.ci/run lists the Debian packages the tests need)", what)
}
