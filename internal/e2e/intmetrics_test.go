package e2e

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// TestIntegrationMetricsOverMQTT: an integration account of kind metrics
// (created over REST, MQTT over TLS) publishes a batch on its own metrics
// topic and resends it until the hub acknowledges it on its ack topic; the
// samples are then queryable under the integration and in /metrics. The
// same account cannot push metrics for a device (a batch on the device's
// topic) nor for another integration: the broker denies those publishes
// and nothing of them is stored.
func TestIntegrationMetricsOverMQTT(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		missing(t, "mosquitto_sub (package mosquitto-clients)")
	}
	h, api, logs, dir := startLoggedHub(t)
	type creds struct {
		Username string `json:"username"`
		Password string `json:"password"`
		CAPEM    string `json:"ca_pem"`
	}
	var power, solar creds
	if st := api.do("POST", "/api/v1/integrations", map[string]string{"name": "power", "kind": "metrics"}, &power); st != 201 {
		t.Fatalf("create the integration: %d", st)
	}
	if st := api.do("POST", "/api/v1/integrations", map[string]string{"name": "solar", "kind": "metrics"}, &solar); st != 201 {
		t.Fatalf("create the second integration: %d", st)
	}
	cafile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(cafile, []byte(power.CAPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(h.mqttsAddr, ":")
	cli := &mqttCLI{t: t, port: port, user: power.Username, password: power.Password, cafile: cafile}

	ag := startSimAgent(t, h.httpAddr, filepath.Join(dir, "agent"), "meter-pi", api.joinToken(1), logs)
	defer ag.stop()
	api.waitStatus(ag.id, "online", "", 10*time.Second)

	batch := func(source string, seq uint64, name string) string {
		b, err := protocol.Encode(source, time.Now(), &protocol.Metrics{Epoch: "e1", Seq: seq, Time: time.Now(),
			Points: []protocol.Point{{Name: name, Labels: map[string]string{"phase": "1"}, Value: 230.5}}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	acks := cli.sub(protocol.IntegrationTopic("power", protocol.KindAck), false)
	// Denied publishes: the broker may drop them or close the connection,
	// so mosquitto_pub's exit status is not the test.
	for _, topic := range []string{protocol.DeviceTopic(ag.id, protocol.KindMetrics), protocol.IntegrationTopic("solar", protocol.KindMetrics)} {
		out, _ := exec.Command("mosquitto_pub", cli.args("-q", "1", "-t", topic, "-m", batch(power.Username, 1, "spoofed_watts"))...).CombinedOutput()
		t.Logf("publish on %s: %s", topic, out)
	}
	// The agent's discipline: resend until acknowledged (the subscription
	// may start after the first ack).
	for deadline := time.Now().Add(20 * time.Second); ; {
		cli.pub(protocol.IntegrationTopic("power", protocol.KindMetrics), batch(power.Username, 1, "grid_power_watts"))
		acks.mu.Lock()
		got := strings.Join(acks.lines, "\n")
		acks.mu.Unlock()
		if strings.Contains(got, `"seqs":[1]`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ack on the integration's ack topic; mosquitto_sub printed:\n%s", got)
		}
		time.Sleep(200 * time.Millisecond) // resend interval
	}
	type series struct {
		Labels map[string]string `json:"labels"`
		Points []struct {
			V float64 `json:"v"`
		} `json:"points"`
	}
	query := func(path string) []series {
		var r struct {
			Series []series `json:"series"`
		}
		if st := api.do("GET", path, nil, &r); st != 200 {
			t.Fatalf("GET %s: %d", path, st)
		}
		return r.Series
	}
	if got := query("/api/v1/integrations/power/metrics?name=grid_power_watts"); len(got) != 1 || len(got[0].Points) != 1 || got[0].Points[0].V != 230.5 {
		t.Errorf("the acknowledged batch, stored once: %+v", got)
	}
	for _, path := range []string{"/api/v1/devices/" + ag.id + "/metrics?name=spoofed_watts", "/api/v1/integrations/solar/metrics?name=spoofed_watts", "/api/v1/integrations/power/metrics?name=spoofed_watts"} {
		if got := query(path); len(got) != 0 {
			t.Errorf("%s: a denied batch was stored: %+v", path, got)
		}
	}
	resp, err := http.Get("http://" + h.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `grid_power_watts{integration="power",phase="1"} 230.5`) {
		t.Errorf("/metrics has no grid_power_watts of the integration:\n%s", body)
	}
	if strings.Contains(string(body), "spoofed_watts") || !strings.Contains(string(body), "alicia_hub_broker_denied_total") ||
		strings.Contains(string(body), "alicia_hub_broker_denied_total 0\n") {
		t.Errorf("/metrics: the denied publishes are not counted, or a spoofed sample is exposed")
	}
}
