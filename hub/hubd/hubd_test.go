package hubd

import (
	"strings"
	"testing"
)

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

func TestValidateDiscoverTypes(t *testing.T) {
	for typ, ok := range map[string]bool{"_http._tcp": true, "_googlecast._tcp": true, "_x._udp": true, "http": false, "_http._sctp": false, "_a b._tcp": false, "": false} {
		cfg := Config{DataDir: "/x", DiscoverTypes: []string{typ}}
		cfg.setDefaults()
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("Validate(discover type %q) = %v, want ok=%v", typ, err, ok)
		}
	}
}
