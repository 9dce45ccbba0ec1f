package enrol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

// CheckHub reports whether hub is a valid API address, HOST[:PORT].
func CheckHub(hub string) error {
	_, err := hubURL(hub)
	return err
}

// hubURL turns HOST[:PORT] into the API's HTTPS base URL (default port 8470).
// An IPv6 link-local HOST carries its zone: "[fe80::1%eth0]:8470".
func hubURL(hub string) (string, error) {
	if hub == "" {
		return "", errors.New("empty hub address")
	}
	if strings.Contains(hub, "://") {
		return "", fmt.Errorf("hub %q: give HOST[:PORT], not a URL", hub)
	}
	host, port, err := net.SplitHostPort(hub)
	if err != nil {
		host, port = strings.Trim(hub, "[]"), "8470"
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("hub %q: port %q: want a number from 1 to 65535", hub, port)
	}
	if host == "" {
		return "", fmt.Errorf("hub %q: missing host", hub)
	}
	// url.URL escapes the zone of an IPv6 link-local address
	// ("fe80::1%eth0" becomes "[fe80::1%25eth0]"), which net/http needs.
	return (&url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}).String(), nil
}

// errPermanent marks an enrolment failure that retrying cannot fix.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

type enrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
}

type enrollResponse struct {
	DeviceID string `json:"device_id"`
	HubID    string `json:"hub_id"`
	MQTT     struct {
		URLs        []string `json:"urls"`
		Username    string   `json:"username"`
		Password    string   `json:"password"`
		Certificate string   `json:"certificate"`
	} `json:"mqtt"`
}

type bootstrap struct {
	HubID           string    `json:"hub_id"`
	ProtocolVersion int       `json:"protocol_version"`
	MQTTURLs        []string  `json:"mqtt_urls"`
	Time            time.Time `json:"time"` // the hub's clock
}

type problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

// enrol asks the hub for a broker account for this key, proving possession
// of the key and of the join token.
func (e *Enroller) enrol(ctx context.Context, client *http.Client, base string, key ed25519.PrivateKey, token, name string) (*Credentials, error) {
	pub := key.Public().(ed25519.PublicKey)
	body, _ := json.Marshal(enrollRequest{
		Token: token, PublicKey: base64.StdEncoding.EncodeToString(pub), Name: name,
		Signature: base64.StdEncoding.EncodeToString(identity.SignEnrolment(key, token)),
	})
	var resp enrollResponse
	status, err := do(ctx, client, http.MethodPost, base+"/api/v1/enroll", body, &resp)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated {
		return nil, fmt.Errorf("unexpected status %d", status)
	}
	return checkEnrolment(&resp, key)
}

// checkEnrolment checks the hub's answer to an enrolment or pairing and
// turns it into credentials (without the hub address and fingerprint).
func checkEnrolment(resp *enrollResponse, key ed25519.PrivateKey) (*Credentials, error) {
	if want := identity.DeviceID(key.Public().(ed25519.PublicKey)); resp.DeviceID != want || resp.MQTT.Username != want {
		return nil, errPermanent{fmt.Errorf("hub assigned device id %q, want %q derived from our key", resp.DeviceID, want)}
	}
	if len(resp.MQTT.URLs) == 0 || resp.MQTT.Password == "" {
		return nil, errPermanent{errors.New("hub answered without broker access")}
	}
	if resp.MQTT.Certificate != "" {
		if _, err := clientCertificate(resp.MQTT.Certificate, key); err != nil {
			return nil, errPermanent{fmt.Errorf("hub answered with an unusable certificate: %w", err)}
		}
	}
	return &Credentials{DeviceID: resp.DeviceID, HubID: resp.HubID, MQTTURLs: resp.MQTT.URLs, Password: resp.MQTT.Password, Certificate: resp.MQTT.Certificate}, nil
}

// hubClient returns the API base URL of hub (HOST[:PORT]) and a client that
// talks only to the hub whose CA has the given fingerprint. Close its idle
// connections when done.
func hubClient(hub, fingerprint string) (string, *http.Client, error) {
	base, err := hubURL(hub)
	if err != nil {
		return "", nil, err
	}
	return base, pinnedClient(fingerprint), nil
}

// pinnedClient returns an HTTP client that talks only to the hub whose CA
// has the given fingerprint.
func pinnedClient(fingerprint string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: pki.PinnedClientConfig(fingerprint, nil)},
		// Never follow a redirect: it could resend the join token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetchBootstrap asks the hub for its ID and current broker URLs.
func fetchBootstrap(ctx context.Context, client *http.Client, base string) (*bootstrap, error) {
	var b bootstrap
	if _, err := do(ctx, client, http.MethodGet, base+"/api/v1/bootstrap", nil, &b); err != nil {
		return nil, err
	}
	if len(b.MQTTURLs) == 0 {
		return nil, errors.New("bootstrap: no broker URL")
	}
	return &b, nil
}

// do sends a JSON request and decodes a 2xx JSON answer into out. A 4xx
// answer is a permanent error carrying the hub's problem detail.
// Each of opts may change the request before it is sent (e.g. add
// credentials).
func do(ctx context.Context, client *http.Client, method, url string, body []byte, out any, opts ...func(*http.Request)) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, errPermanent{err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := client.Do(req)
	if errors.Is(err, pki.ErrWrongHub) {
		// Not the pinned hub: nothing was sent, and retrying cannot help.
		return 0, errPermanent{fmt.Errorf("%s: refusing a hub whose certificate does not chain to the pinned CA: %w", url, err)}
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 400 {
		var p problem
		_ = json.Unmarshal(b, &p)
		err := fmt.Errorf("%s %s: %d %s: %s", method, url, resp.StatusCode, p.Title, p.Detail)
		if resp.StatusCode < 500 {
			return resp.StatusCode, errPermanent{err}
		}
		return resp.StatusCode, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: bad answer: %w", method, url, err)
	}
	return resp.StatusCode, nil
}

// clientCertificate pairs the device's certificate (PEM) with its key, and
// checks that the certificate is for this key.
func clientCertificate(certPEM string, key ed25519.PrivateKey) (tls.Certificate, error) {
	blk, _ := pem.Decode([]byte(certPEM))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return tls.Certificate{}, errors.New("certificate: not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, errors.New("certificate: not for this device's key")
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}
