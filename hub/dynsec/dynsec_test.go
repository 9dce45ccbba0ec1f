package dynsec

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/alicia-home/alicia/internal/bus"
)

// fakeBroker answers each command as Mosquitto's plugin would, from a table
// of errors by command name.
type fakeBroker struct {
	t      *testing.T
	sync   *Sync
	errs   map[string]string // command → error it answers
	mu     sync.Mutex
	issued []string // command names, in order
}

func (f *fakeBroker) WaitConnected(context.Context) error { return nil }

func (f *fakeBroker) Publish(ctx context.Context, m bus.Message) error {
	if m.Topic != commandTopic {
		f.t.Errorf("published on %q, want %q", m.Topic, commandTopic)
	}
	var body struct {
		Commands []map[string]any `json:"commands"`
	}
	if err := json.Unmarshal(m.Payload, &body); err != nil {
		return err
	}
	var resp struct {
		Responses []dynsecResponse `json:"responses"`
	}
	f.mu.Lock()
	for _, c := range body.Commands {
		name := c["command"].(string)
		f.issued = append(f.issued, name)
		resp.Responses = append(resp.Responses, dynsecResponse{Command: name, Error: f.errs[name], CorrelationData: c["correlationData"].(string)})
	}
	f.mu.Unlock()
	b, _ := json.Marshal(resp)
	go f.sync.HandleResponse(ctx, bus.Message{Topic: ResponseTopic, Payload: b})
	return nil
}

func TestProvisionAndRemove(t *testing.T) {
	for _, tt := range []struct {
		name    string
		errs    map[string]string
		wantErr string
	}{
		{"fresh device: nothing to delete first", map[string]string{"deleteClient": "Client not found", "deleteRole": "Role not found"}, ""},
		{"the broker refuses the account", map[string]string{"createClient": "Client already exists"}, "createClient: Client already exists"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeBroker{t: t, errs: tt.errs}
			f.sync = New(f, "hubadmin", []string{"homeassistant/#"}, nil)
			err := f.sync.Provision(context.Background(), "dev1", "pw")
			if got := fmt.Sprint(err); (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && !strings.Contains(got, tt.wantErr)) {
				t.Fatalf("Provision: %v, want %q", err, tt.wantErr)
			}
			if err := f.sync.Remove(context.Background(), "dev1"); err != nil {
				t.Errorf("Remove: %v (its not-found errors are tolerated)", err)
			}
			want := "[deleteClient deleteRole createRole createClient deleteClient deleteRole]"
			if got := fmt.Sprint(f.issued); got != want {
				t.Errorf("commands %s, want %s", got, want)
			}
		})
	}
}

func TestEnsureHubRightsOnce(t *testing.T) {
	f := &fakeBroker{t: t}
	f.sync = New(f, "hubadmin", []string{"homeassistant/#"}, nil)
	for range 3 {
		if err := f.sync.EnsureHubRights(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(f.issued); got != "[createRole addClientRole]" {
		t.Errorf("commands %s, want the rights granted once", got)
	}
}
