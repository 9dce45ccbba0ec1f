package integrations

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/internal/store"
)

func TestAccounts(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(store.Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	acc, pw, err := a.Create("homeassistant", KindHomeAssistant)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Username != "int-homeassistant" || len(pw) < 40 {
		t.Errorf("account %+v, password of %d characters", acc, len(pw))
	}
	id, ok := a.Authenticate("int-homeassistant", []byte(pw))
	if !ok || id.Role != broker.RoleIntegration || id.ID != "int-homeassistant" || !a.Allowed(id) {
		t.Fatalf("Authenticate with the password: %+v %v", id, ok)
	}
	if len(id.Scope.Publish) != 2 || id.Scope.Publish[0] != "homeassistant/status" || id.Scope.Read[1] != HAStateRoot {
		t.Errorf("scope %+v", id.Scope)
	}
	if _, ok := a.Authenticate("int-homeassistant", []byte(pw+"x")); ok {
		t.Error("a wrong password was accepted")
	}
	if _, ok := a.Authenticate("homeassistant", []byte(pw)); ok {
		t.Error("the name without the prefix was accepted as a username")
	}
	for _, bad := range []struct{ name, kind string }{{"Home", "homeassistant"}, {"", "homeassistant"}, {"a/b", "homeassistant"}, {"nodered", "nodered"}, {"ha" + broker.ConnectionSeparator + "2", "homeassistant"}} {
		if _, _, err := a.Create(bad.name, bad.kind); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q, %q) = %v, want ErrInvalid", bad.name, bad.kind, err)
		}
	}
	if _, _, err := a.Create("homeassistant", KindHomeAssistant); !errors.Is(err, ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	// The password is not at rest, only its hash.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if bytes.Contains(b, []byte(pw)) {
			t.Errorf("the password is in clear in %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(store.Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err = Open(db, Config{HAPrefix: "ha"})
	if err != nil {
		t.Fatal(err)
	}
	id, ok = a.Authenticate("int-homeassistant", []byte(pw))
	if !ok || id.Scope.Publish[0] != "ha/status" {
		t.Errorf("after a restart with prefix ha: %+v %v", id, ok)
	}
	if _, err := a.Delete("homeassistant"); err != nil {
		t.Fatal(err)
	}
	if a.Allowed(id) || len(a.List()) != 0 {
		t.Error("a deleted account is still allowed")
	}
	if _, err := a.Delete("homeassistant"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v", err)
	}
}

func TestMetricsAccount(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := Open(db, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Create("ha", KindHomeAssistant); err != nil {
		t.Fatal(err)
	}
	acc, pw, err := a.Create("power", KindMetrics)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Username != SourceID("power") {
		t.Errorf("username %q, source ID %q", acc.Username, SourceID("power"))
	}
	id, ok := a.Authenticate(acc.Username, []byte(pw))
	if !ok {
		t.Fatal("Authenticate with the password failed")
	}
	want := broker.Scope{Publish: []string{"alicia/v1/integrations/power/metrics"}, Read: []string{"alicia/v1/integrations/power/"}}
	if diff := cmp.Diff(want, id.Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		name, pw string
		ok       bool
	}{{"power", pw, true}, {"power", pw + "x", false}, {"ha", pw, false}, {"nobody", pw, false}} {
		if _, ok := a.Check(c.name, []byte(c.pw)); ok != c.ok {
			t.Errorf("Check(%q) = %v, want %v", c.name, ok, c.ok)
		}
	}
	for src, want := range map[string]bool{"int-power": true, "int-ha": false, "int-nobody": false, "power": false} {
		if got := a.MetricsSource(src); got != want {
			t.Errorf("MetricsSource(%q) = %v, want %v", src, got, want)
		}
	}
}
