package hubd

import (
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000":   true,
		"[::1]:5000":       true,
		"127.8.9.1:1":      true,
		"198.18.0.11:5000": false,
		"[fd00::1]:5000":   false,
		"not an address":   false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestParseBrokerURL(t *testing.T) {
	b, err := parseBrokerURL("mqtt://hub:s3cret@10.0.0.5:1883")
	if err != nil {
		t.Fatal(err)
	}
	if b.url != "mqtt://10.0.0.5:1883" || b.username != "hub" || b.password != "s3cret" {
		t.Errorf("parsed %+v", b)
	}
	for _, bad := range []string{
		"mqtt://hub:s3cret@10.0.0.5:18x3", // url.Parse error: must not echo the password
		"http://hub:s3cret@10.0.0.5:1883",
		"mqtt://hub:s3cret@10.0.0.5",
		"mqtt://hub:s3cret@10.0.0.5:1883/path",
	} {
		_, err := parseBrokerURL(bad)
		if err == nil {
			t.Errorf("parseBrokerURL(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("parseBrokerURL(%q) error leaks the password: %v", bad, err)
		}
	}
}
