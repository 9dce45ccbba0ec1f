package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` keeps the namespace handles (iproute2's
// NETNS_RUN_DIR).
const netnsDir = "/var/run/netns"

// maxIfName is the longest interface name Linux accepts (IFNAMSIZ-1).
const maxIfName = 15

// testNet is the only address range hosts may use (RFC 2544 benchmarking).
var testNet = netip.MustParsePrefix("198.18.0.0/15")

var hostName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// LAN is one bridged Ethernet segment of namespaced hosts. Its methods call
// t.Fatal and must be called from the test's goroutine.
type LAN struct {
	t      testing.TB
	prefix string // "al" + 6 random hex digits
	sw     string // namespace holding the bridge
	bridge string
	// ctx is cancelled first in cleanup: it kills the processes of Command.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the fields below.
	mu    sync.Mutex
	hosts []*Host
}

// Host is one machine on a LAN: a network namespace with a loopback and one
// Ethernet interface (a veth whose peer is a bridge port).
type Host struct {
	lan    *LAN
	name   string
	ns     string
	ifname string // inside ns
	port   string // bridge side, inside lan.sw

	// mu guards the fields below.
	mu       sync.Mutex
	addr     netip.Prefix
	hostname string
}

// New creates an empty LAN (a bridge in a namespace of its own) and registers
// its removal with t.Cleanup. It skips the test when not running as root or
// when ip is missing, unless the environment variable CI is set: then it fails.
// It also skips in -short mode (make test-unit).
func New(t testing.TB) *LAN {
	t.Helper()
	if testing.Short() {
		t.Skip("netnstest: skipping a test on a namespace LAN in -short mode")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "network namespaces need root (run the tests as root, e.g. in the CI container)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		unavailable(t, "the ip command is missing: apt-get install -y iproute2")
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	prefix := "al" + hex.EncodeToString(b[:])
	l := &LAN{t: t, prefix: prefix, sw: prefix + "-sw", bridge: prefix + "br"}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	if _, err := os.Stat(filepath.Join(netnsDir, l.sw)); err == nil {
		t.Fatalf("netnstest: namespace %s already exists (random prefix collision); run again", l.sw)
	}
	t.Cleanup(l.cleanup)
	l.must("netns", "add", l.sw)
	l.must("-n", l.sw, "link", "add", l.bridge, "type", "bridge", "mcast_snooping", "0")
	l.must("-n", l.sw, "link", "set", l.bridge, "up")
	return l
}

// unavailable skips the test, or fails it under CI.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("netnstest: %s (CI is set, so this is an error)", why)
	}
	t.Skipf("netnstest: %s; skipping", why)
}

// Prefix is the random prefix of every namespace and interface name of l.
func (l *LAN) Prefix() string { return l.prefix }

// AddHost creates a host named name (lower-case letters, digits and '-') with
// the address ip in CIDR form, e.g. "198.18.0.11/24", which must lie within
// 198.18.0.0/15. The host gets a namespace, its loopback up, a veth into the
// bridge and a route for 224.0.0.0/4 on it.
func (l *LAN) AddHost(name, ip string) *Host {
	l.t.Helper()
	if !hostName.MatchString(name) {
		l.t.Fatalf("netnstest: host name %q: want 1-31 of [a-z0-9-], starting with a letter or digit", name)
	}
	addr := l.parseAddr(ip)
	l.mu.Lock()
	for _, h := range l.hosts {
		if h.name == name {
			l.mu.Unlock()
			l.t.Fatalf("netnstest: host %q added twice", name)
		}
	}
	idx := strconv.Itoa(len(l.hosts) + 1)
	h := &Host{
		lan:    l,
		name:   name,
		ns:     l.prefix + "-" + name,
		ifname: l.prefix + "h" + idx,
		port:   l.prefix + "p" + idx,
		addr:   addr,
	}
	l.hosts = append(l.hosts, h) // before creating anything, so cleanup sees it
	l.mu.Unlock()
	if len(h.ifname) > maxIfName || len(h.port) > maxIfName {
		l.t.Fatalf("netnstest: interface name %s or %s longer than %d bytes", h.ifname, h.port, maxIfName)
	}

	l.must("netns", "add", h.ns)
	l.must("-n", h.ns, "link", "add", h.ifname, "type", "veth", "peer", "name", h.port, "netns", l.sw)
	l.must("-n", l.sw, "link", "set", h.port, "master", l.bridge, "up")
	l.must("-n", h.ns, "link", "set", "lo", "up")
	// Keep a new address when SetAddr removes the old one of the same subnet
	// (by default the kernel removes the secondaries with the primary).
	l.must("netns", "exec", h.ns, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv4/conf/"+h.ifname+"/promote_secondaries")
	l.must("-n", h.ns, "link", "set", h.ifname, "up")
	l.must("-n", h.ns, "addr", "add", addr.String(), "dev", h.ifname)
	l.must("-n", h.ns, "route", "replace", "224.0.0.0/4", "dev", h.ifname)
	return h
}

func (l *LAN) parseAddr(ip string) netip.Prefix {
	l.t.Helper()
	p, err := netip.ParsePrefix(ip)
	if err != nil {
		l.t.Fatalf("netnstest: address %q: want CIDR form such as 198.18.0.11/24: %v", ip, err)
	}
	if !p.Addr().Is4() || !testNet.Contains(p.Addr()) || p.Bits() < testNet.Bits() {
		l.t.Fatalf("netnstest: address %s is outside %s, the only range tests may use", p, testNet)
	}
	return p
}

// must runs ip with args and fails the test if it fails.
func (l *LAN) must(args ...string) {
	l.t.Helper()
	if err := runIP(args...); err != nil {
		l.t.Fatalf("netnstest: %v", err)
	}
}

func runIP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// cleanup kills what still runs in the LAN's namespaces and deletes them,
// then checks that nothing with the LAN's prefix is left.
func (l *LAN) cleanup() {
	l.cancel()
	l.mu.Lock()
	hosts := slices.Clone(l.hosts)
	l.mu.Unlock()
	var errs []error
	for _, h := range slices.Backward(hosts) {
		errs = append(errs, killAll(h.ns))
	}
	for _, h := range slices.Backward(hosts) {
		// Deleting the port deletes the pair even if something still holds
		// the host's namespace open (a socket, a thread in Host.Do).
		if exists(l.sw) {
			_ = runIP("-n", l.sw, "link", "del", h.port)
		}
		if exists(h.ns) {
			errs = append(errs, runIP("netns", "del", h.ns))
		}
	}
	if exists(l.sw) {
		errs = append(errs, killAll(l.sw))
		errs = append(errs, runIP("netns", "del", l.sw))
	}
	errs = append(errs, l.leftovers())
	if err := errors.Join(errs...); err != nil {
		l.t.Errorf("netnstest: cleanup: %v", err)
	}
}

// leftovers reports namespaces or links of the caller's namespace whose names
// start with the LAN's prefix.
func (l *LAN) leftovers() error {
	var left []string
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), l.prefix) {
			left = append(left, "namespace "+e.Name())
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifi := range ifs {
		if strings.HasPrefix(ifi.Name, l.prefix) {
			left = append(left, "link "+ifi.Name)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, ", "))
	}
	return nil
}

func exists(ns string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, ns))
	return err == nil
}

// killAll sends SIGKILL to every process in namespace ns. Only processes the
// test started can be there: the namespace is the test's own.
func killAll(ns string) error {
	if !exists(ns) {
		return nil
	}
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %v", ns, err)
	}
	var errs []error
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid == os.Getpid() {
			// Our own process is listed when its main thread happens to be
			// inside Host.Do: never kill ourselves.
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d in %s: %w", pid, ns, err))
		}
	}
	return errors.Join(errs...)
}

// Name is the host's name as given to AddHost.
func (h *Host) Name() string { return h.name }

// Namespace is the name of the host's network namespace (for ip -n and ip
// netns exec).
func (h *Host) Namespace() string { return h.ns }

// Interface is the name of the host's Ethernet interface inside its namespace.
func (h *Host) Interface() string { return h.ifname }

// IP is the host's current IPv4 address.
func (h *Host) IP() net.IP {
	h.mu.Lock()
	defer h.mu.Unlock()
	return net.IP(h.addr.Addr().AsSlice())
}

// SetHostname makes Command run programs in a UTS namespace of their own with
// this host name (so that, for example, two avahi-daemons do not both announce
// the machine's name). The empty string turns that off again.
func (h *Host) SetHostname(name string) {
	t := h.lan.t
	t.Helper()
	if name != "" {
		if !hostName.MatchString(name) {
			t.Fatalf("netnstest: hostname %q: want 1-31 of [a-z0-9-]", name)
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			unavailable(t, "the unshare command is missing: apt-get install -y util-linux")
		}
	}
	h.mu.Lock()
	h.hostname = name
	h.mu.Unlock()
}

// Command returns a command that runs name with args inside the host's
// namespace, through `ip netns exec` (which execs the program, so the
// process's PID is the program's). With a host name set by SetHostname it
// also runs in a UTS namespace of its own carrying that name. The process is
// killed when ctx is done or the LAN is cleaned up, whichever comes first
// (also while `ip` is still entering the namespace); the cleanup also kills
// whatever else still runs in the namespace. Waiting for it stays the
// caller's job.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(h.lan.ctx, cancel)
	h.mu.Lock()
	hn := h.hostname
	h.mu.Unlock()
	argv := []string{"netns", "exec", h.ns}
	if hn != "" {
		argv = append(argv, "unshare", "--uts", "--", "sh", "-c",
			`printf '%s' "$1" > /proc/sys/kernel/hostname || exit 1; shift; exec "$@"`, "sh", hn)
	}
	argv = append(argv, name)
	argv = append(argv, args...)
	return exec.CommandContext(ctx, "ip", argv...)
}

// SetAddr replaces the host's IPv4 address (as in AddHost), adding the new one
// before removing the old one, as a DHCP renumbering would.
func (h *Host) SetAddr(ip string) {
	l := h.lan
	l.t.Helper()
	addr := l.parseAddr(ip)
	h.mu.Lock()
	old := h.addr
	h.mu.Unlock()
	if addr == old {
		return
	}
	l.must("-n", h.ns, "addr", "add", addr.String(), "dev", h.ifname)
	l.must("-n", h.ns, "addr", "del", old.String(), "dev", h.ifname)
	h.mu.Lock()
	h.addr = addr
	h.mu.Unlock()
}

// LinkDown sets the host's interface down, as if its cable were pulled. The
// kernel drops the routes through it.
func (h *Host) LinkDown() {
	h.lan.t.Helper()
	h.lan.must("-n", h.ns, "link", "set", h.ifname, "down")
}

// LinkUp sets the host's interface up again and restores its multicast route.
func (h *Host) LinkUp() {
	h.lan.t.Helper()
	h.lan.must("-n", h.ns, "link", "set", h.ifname, "up")
	h.lan.must("-n", h.ns, "route", "replace", "224.0.0.0/4", "dev", h.ifname)
}

// errGoexit is returned by Do when fn ended its goroutine without returning.
var errGoexit = errors.New("netnstest: the function passed to Do called runtime.Goexit (t.FailNow or t.Fatal?) instead of returning")

// Do runs fn inside the host's network namespace and returns its error.
//
// fn runs on a new goroutine locked to its OS thread, which joins the
// namespace (setns) before fn and returns to its previous namespace after;
// Do waits for fn to return. What fn does on that goroutine happens in the
// namespace: sockets it opens, interfaces it lists (net.Interfaces), and a
// socket stays in the namespace it was opened in, whichever goroutine later
// uses it. But:
//   - goroutines that fn starts run on other threads, in the test process's
//     original namespace: code that opens sockets or lists interfaces lazily in
//     a goroutine of its own does NOT work under Do (run it in a child process
//     with Command instead);
//   - fn must not call t.FailNow, t.Fatal or t.Skip (they end the wrong
//     goroutine): return an error instead;
//   - only the network namespace changes: the file system, /sys, the host
//     name and the process's other namespaces stay the caller's;
//   - if the thread cannot return to its namespace, Do leaves it locked, so
//     the runtime discards it when the goroutine exits, and reports an error.
func (h *Host) Do(fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, h.ns))
	if err != nil {
		return fmt.Errorf("netnstest: open namespace of %s: %w", h.name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netnstest: open current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netnstest: enter namespace of %s: %w", h.name, err)
			return
		}
		ferr := errGoexit
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				// Stay locked: the thread dies with this goroutine.
				errc <- errors.Join(ferr, fmt.Errorf("netnstest: leave namespace of %s: %w", h.name, err))
				return
			}
			runtime.UnlockOSThread()
			errc <- ferr
		}()
		ferr = fn()
	}()
	return <-errc
}
