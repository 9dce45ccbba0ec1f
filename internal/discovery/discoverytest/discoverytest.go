package discoverytest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/netnstest"
)

// python is Debian's interpreter, which has python3-zeroconf; a python3
// earlier on PATH (pyenv, a virtualenv) may not.
const python = "/usr/bin/python3"

// startTimeout bounds how long a responder may take to come up.
const startTimeout = 30 * time.Second

// Service is what a responder announces.
type Service struct {
	// Instance is the instance name, e.g. "Home".
	Instance string
	// Type is the service type, e.g. "_home-assistant._tcp".
	Type string
	// Port is the SRV port.
	Port int
	// TXT holds the TXT record's keys and values.
	TXT map[string]string
	// Host is the target host's name without ".local", e.g. "homeassistant".
	Host string
	// Addrs are the addresses announced for Host (python-zeroconf only;
	// avahi announces its host's own). Zones are dropped. Nil means the
	// responder host's IPv4 address.
	Addrs []netip.Addr
}

// unavailable skips the test, or fails it when CI is set.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("discoverytest: %s (CI is set, so this is an error: .ci/run installs it)", why)
	}
	t.Skipf("discoverytest: %s; skipping", why)
}

// responderPy registers one service with python-zeroconf on one IPv4
// interface, prints "registered" once register_service has returned (after
// its probes and its three announcements), and keeps answering until killed.
const responderPy = `import json, socket, sys, threading
from zeroconf import IPVersion, ServiceInfo, Zeroconf

cfg = json.loads(sys.argv[1])
def packed(a):
    return socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)
zc = Zeroconf(interfaces=[cfg["interface"]], ip_version=IPVersion.V4Only)
info = ServiceInfo(
    cfg["type"] + ".local.",
    cfg["instance"] + "." + cfg["type"] + ".local.",
    port=cfg["port"],
    properties=cfg["txt"],
    server=cfg["host"] + ".local.",
    addresses=[packed(a) for a in cfg["addrs"]],
)
zc.register_service(info)
print("registered", flush=True)
threading.Event().wait()
`

// PythonZeroconf starts python-zeroconf on h, announcing svc over IPv4, and
// returns once it has announced it. It stops when the test ends.
func PythonZeroconf(t testing.TB, h *netnstest.Host, svc Service) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		unavailable(t, python+" is missing: apt-get install -y python3-zeroconf")
	}
	if out, err := exec.Command(python, "-c", "import zeroconf").CombinedOutput(); err != nil {
		unavailable(t, fmt.Sprintf("python-zeroconf is missing (%v: %s): apt-get install -y python3-zeroconf", err, strings.TrimSpace(string(out))))
	}
	addrs := []string{}
	for _, a := range svc.Addrs {
		addrs = append(addrs, a.WithZone("").String())
	}
	if len(addrs) == 0 {
		addrs = []string{h.IP().String()}
	}
	txt := svc.TXT
	if txt == nil {
		txt = map[string]string{}
	}
	cfg, err := json.Marshal(map[string]any{
		"interface": h.IP().String(), "type": svc.Type, "instance": svc.Instance, "port": svc.Port,
		"txt": txt, "host": svc.Host, "addrs": addrs,
	})
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "responder.py")
	if err := os.WriteFile(script, []byte(responderPy), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, h, "python-zeroconf", "registered", h.Command(context.Background(), python, script, string(cfg)))
}

// Avahi is an avahi-daemon running on one host of a LAN, with a D-Bus
// system bus of its own.
type Avahi struct {
	t      testing.TB
	h      *netnstest.Host
	busEnv string
}

// StartAvahi starts dbus-daemon and avahi-daemon (IPv4 only, host name
// hostName) on h. They stop when the test ends.
func StartAvahi(t testing.TB, h *netnstest.Host, hostName string) *Avahi {
	t.Helper()
	for bin, pkg := range map[string]string{"avahi-daemon": "avahi-daemon", "avahi-browse": "avahi-utils", "avahi-publish": "avahi-utils", "dbus-daemon": "dbus"} {
		if _, err := exec.LookPath(bin); err != nil {
			unavailable(t, fmt.Sprintf("%s is missing: apt-get install -y %s", bin, pkg))
		}
	}
	// A private system bus, so nothing of the machine's is touched.
	dir := t.TempDir()
	busSock := filepath.Join(dir, "bus")
	a := &Avahi{t: t, h: h, busEnv: "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + busSock}
	writeFile(t, filepath.Join(dir, "dbus.conf"), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+busSock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`)
	writeFile(t, filepath.Join(dir, "avahi.conf"), `[server]
host-name=`+hostName+`
use-ipv4=yes
use-ipv6=no
allow-interfaces=`+h.Interface()+`
enable-dbus=yes
disallow-other-stacks=no
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
[reflector]
enable-reflector=no
`)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bus := a.Command(ctx, "dbus-daemon", "--config-file="+filepath.Join(dir, "dbus.conf"), "--nofork", "--nopidfile", "--print-address")
	start(t, h, "dbus-daemon", "unix:path=", bus)
	// avahi-daemon insists on its pid file in /run/avahi-daemon: give it a
	// private /run (ip netns exec runs in a mount namespace of its own, so
	// the mount is invisible to everyone else and goes away with it).
	daemon := a.Command(ctx, "sh", "-c",
		`mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$0"`,
		filepath.Join(dir, "avahi.conf"))
	start(t, h, "avahi-daemon", "Server startup complete", daemon)
	return a
}

// Command returns a command that runs on the avahi host with avahi's bus.
func (a *Avahi) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := a.h.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), a.busEnv)
	return cmd
}

// Publish announces svc with avahi-publish (svc.Host and svc.Addrs are
// ignored: avahi announces its own host) and returns once avahi has
// established it. It stays announced until the test ends.
func (a *Avahi) Publish(svc Service) {
	a.t.Helper()
	args := []string{"-s", svc.Instance, svc.Type, fmt.Sprint(svc.Port)}
	for _, k := range slices.Sorted(maps.Keys(svc.TXT)) {
		args = append(args, k+"="+svc.TXT[k])
	}
	start(a.t, a.h, "avahi-publish", "Established under name", a.Command(context.Background(), "avahi-publish", args...))
}

// start starts cmd, waits until its output contains ready, and stops it
// (by its PID) and waits for it when the test ends. Its output is logged if
// the test failed.
func start(t testing.TB, h *netnstest.Host, name, ready string, cmd *exec.Cmd) {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("discoverytest: start %s on %s: %v", name, h.Name(), err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.CloseWithError(fmt.Errorf("%s exited: %v", name, err))
		exited <- err
	}()
	var mu sync.Mutex
	var out strings.Builder
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("--- %s on %s ---\n%s", name, h.Name(), out.String())
		}
	})
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			out.WriteString(line + "\n")
			mu.Unlock()
			if !found && strings.Contains(line, ready) {
				found = true
				close(up)
			}
		}
		io.Copy(io.Discard, pr) // never block the process on a long line
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-up:
	case err := <-exited:
		exited <- err
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("discoverytest: %s on %s exited before it was ready (%v):\n%s", name, h.Name(), err, out.String())
	case <-timer.C:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("discoverytest: %s on %s not ready (%q) within %v:\n%s", name, h.Name(), ready, startTimeout, out.String())
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// LinkLocal returns the IPv6 link-local address of h's interface, with the
// zone it has on h (the interface's name). It waits up to 5 s for the
// address to appear.
func LinkLocal(t testing.TB, h *netnstest.Host) netip.Addr {
	t.Helper()
	var ll netip.Addr
	var last []net.Addr
	for deadline := time.Now().Add(5 * time.Second); ; {
		err := h.Do(func() error {
			ifi, err := net.InterfaceByName(h.Interface())
			if err != nil {
				return err
			}
			if last, err = ifi.Addrs(); err != nil {
				return err
			}
			for _, a := range last {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
					ll = p.Addr().WithZone(ifi.Name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("discoverytest: addresses of %s: %v", h.Name(), err)
		}
		if ll.IsValid() {
			return ll
		}
		if time.Now().After(deadline) {
			t.Fatalf("discoverytest: %s has no IPv6 link-local address within 5 s (IPv6 disabled?): %v", h.Name(), last)
		}
		time.Sleep(50 * time.Millisecond) // polling for the kernel to add it
	}
}
