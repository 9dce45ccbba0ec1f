package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/protocol"
)

// TestHubTLS checks the hub's own CA end to end: the REST port answers
// HTTPS (and plain HTTP) with a certificate that verifies against the CA
// fingerprint only, a rogue pin is refused, and a device reaches the
// broker over MQTT-over-TLS with the pinned CA.
func TestHubTLS(t *testing.T) {
	logs := &logBuffer{}
	dir := t.TempDir()
	h := &inprocHub{t: t, dir: filepath.Join(dir, "hub"), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), mqttsAddr: freeAddr(t), logs: logs}
	hub := h.start()
	mqttsAddr, fp := hub.TLS()
	if mqttsAddr == "" || len(fp) != 64 {
		t.Fatalf("TLS() = %q, %q", mqttsAddr, fp)
	}
	if fi, err := os.Stat(filepath.Join(h.dir, "pki", "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pki/ca.key: %v, %v; want mode 0600", fi, err)
	}

	httpsGet := func(pin string) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedClientConfig(pin, nil)}, Timeout: 5 * time.Second}
		return c.Get("https://" + h.httpAddr + "/api/v1/bootstrap")
	}
	t.Run("https with the pinned CA", func(t *testing.T) {
		resp, err := httpsGet(fp)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b struct {
			CAFingerprint string   `json:"ca_fingerprint"`
			MQTTURLs      []string `json:"mqtt_urls"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.TLS == nil {
			t.Fatalf("decode: %v (TLS %v)", err, resp.TLS != nil)
		}
		if b.CAFingerprint != fp || len(b.MQTTURLs) != 2 || !strings.HasPrefix(b.MQTTURLs[0], "mqtts://") || !strings.HasSuffix(b.MQTTURLs[0], ":"+strings.Split(mqttsAddr, ":")[1]) {
			t.Errorf("bootstrap over HTTPS = %+v, want fingerprint %s and first the mqtts URL of %s", b, fp, mqttsAddr)
		}
	})
	t.Run("https with another pin is refused", func(t *testing.T) {
		_, err := httpsGet(strings.Repeat("0", 64))
		if !errors.Is(err, pki.ErrWrongHub) {
			t.Fatalf("error = %v, want ErrWrongHub", err)
		}
	})

	t.Run("a device over MQTT-over-TLS", func(t *testing.T) {
		api := newAPIClient(t, h.httpAddr, h.dir)
		state := filepath.Join(dir, "agent")
		id, stop := startAgent(t, h.httpAddr, state, "tls-agent", api.joinToken(1), "", testHeartbeat, logs)
		api.waitStatus(id, "online", "", 5*time.Second)
		// The agent enrolled over pinned HTTPS (its token carries the CA
		// fingerprint) and chose MQTT over TLS.
		if !strings.Contains(logs.String(), "mqtt=mqtts://") {
			t.Error("the agent did not connect over MQTT-over-TLS")
		}
		stop()
		api.waitStatus(id, "offline", "shutdown", 3*time.Second)
		var creds struct {
			Password    string `json:"password"`
			Certificate string `json:"certificate"`
		}
		if b, err := os.ReadFile(filepath.Join(state, "credentials.json")); err != nil || json.Unmarshal(b, &creds) != nil || creds.Certificate == "" {
			t.Fatalf("read credentials (with a certificate): %v", err)
		}
		key, _, err := identity.LoadOrCreate(filepath.Join(state, "identity.key"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode([]byte(creds.Certificate))
		own := tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}
		// A certificate from the hub CA for this key but another device ID.
		ca, _, err := pki.LoadOrCreateCA(filepath.Join(h.dir, "pki"), "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		otherCert, err := ca.IssueClient("dsomeoneelse000000000", key.Public(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		other := tls.Certificate{Certificate: [][]byte{otherCert.Raw}, PrivateKey: key}

		connect := func(certs []tls.Certificate) (*bus.Client, error) {
			c, err := bus.New(bus.Config{URL: "mqtts://" + mqttsAddr, ClientID: id, Username: id, Password: creds.Password,
				TLS: pki.PinnedClientConfig(fp, certs)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			defer wcancel()
			select {
			case err := <-done:
				done <- err
				return nil, err
			case <-waitConnected(wctx, c):
				return c, nil
			}
		}
		for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another device's certificate": {other}} {
			if _, err := connect(certs); !errors.Is(err, bus.ErrNotAuthorized) {
				t.Errorf("%s: %v, want the broker to refuse it", name, err)
			}
		}
		c, err := connect([]tls.Certificate{own})
		if err != nil {
			t.Fatalf("with its own certificate: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hb := must(protocol.Encode(id, time.Now(), &protocol.Heartbeat{Seq: 1}))
		if err := c.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(id, protocol.KindHeartbeat), Payload: hb, QoS: 1}); err != nil {
			t.Fatal(err)
		}
		api.waitStatus(id, "online", "heartbeat", 5*time.Second)
	})
}

// waitConnected closes the returned channel once c is connected.
func waitConnected(ctx context.Context, c *bus.Client) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		if c.WaitConnected(ctx) == nil {
			close(ch)
		}
	}()
	return ch
}
