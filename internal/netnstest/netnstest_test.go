package netnstest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/netnstest"
)

// nsInode is the inode of a namespace file such as /proc/thread-self/ns/net;
// 0 if it cannot be read. It does not call t.Fatal: Do's fn uses it.
func nsInode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// listenUDP opens a UDP socket on addr inside h's namespace.
func listenUDP(t *testing.T, h *netnstest.Host, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := h.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// sendUDP sends msg to dst from inside h's namespace.
func sendUDP(t *testing.T, h *netnstest.Host, dst string, msg string) {
	t.Helper()
	if err := h.Do(func() error {
		c, err := net.Dial("udp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// recvFrom reads one datagram with a deadline and returns it and its source IP.
func recvFrom(t *testing.T, pc net.PacketConn) (string, net.IP) {
	t.Helper()
	if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n]), from.(*net.UDPAddr).IP
}

func TestHostsTalk(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	a := lan.AddHost("a", "198.18.0.11/24")
	b := lan.AddHost("b", "198.18.0.12/24")

	if got, want := a.Name(), "a"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	if !strings.HasPrefix(a.Namespace(), lan.Prefix()) || !strings.HasPrefix(a.Interface(), lan.Prefix()) {
		t.Errorf("namespace %q or interface %q lacks the LAN prefix %q", a.Namespace(), a.Interface(), lan.Prefix())
	}
	if got := b.IP(); !got.Equal(net.ParseIP("198.18.0.12")) {
		t.Errorf("IP() = %v, want 198.18.0.12", got)
	}

	// Inside the namespace only lo and the veth exist.
	var names []string
	if err := a.Do(func() error {
		ifs, err := net.Interfaces()
		for _, ifi := range ifs {
			names = append(names, ifi.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(names, ","), "lo,"+a.Interface(); got != want {
		t.Errorf("interfaces in %s = %s, want %s", a.Name(), got, want)
	}

	// Unicast across the bridge; the socket opened in Do is read outside it.
	pc := listenUDP(t, b, "198.18.0.12:7001")
	sendUDP(t, a, "198.18.0.12:7001", "hello")
	msg, from := recvFrom(t, pc)
	if msg != "hello" || !from.Equal(a.IP()) {
		t.Errorf("got %q from %v, want %q from %v", msg, from, "hello", a.IP())
	}

	// Multicast, as mDNS uses it.
	var mc *net.UDPConn
	if err := b.Do(func() error {
		ifi, err := net.InterfaceByName(b.Interface())
		if err != nil {
			return err
		}
		mc, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 7002})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	sendUDP(t, a, "224.0.0.251:7002", "multi")
	msg, from = recvFrom(t, mc)
	if msg != "multi" || !from.Equal(a.IP()) {
		t.Errorf("multicast: got %q from %v, want %q from %v", msg, from, "multi", a.IP())
	}

	// Commands run in the namespace.
	out, err := a.Command(t.Context(), "ip", "-4", "-o", "addr", "show", "dev", a.Interface()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "198.18.0.11/24") {
		t.Errorf("ip addr in %s: %v: %s", a.Name(), err, out)
	}
}

func TestSetAddrAndLink(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	a := lan.AddHost("a", "198.18.0.11/24")
	b := lan.AddHost("b", "198.18.0.12/24")

	b.SetAddr("198.18.0.42/24")
	if got := b.IP(); !got.Equal(net.ParseIP("198.18.0.42")) {
		t.Errorf("IP() after SetAddr = %v", got)
	}
	var addrs []string
	if err := b.Do(func() error {
		ifi, err := net.InterfaceByName(b.Interface())
		if err != nil {
			return err
		}
		as, err := ifi.Addrs()
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				addrs = append(addrs, ipn.String())
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(addrs, ","), "198.18.0.42/24"; got != want {
		t.Errorf("IPv4 addresses after SetAddr = %s, want %s", got, want)
	}
	pc := listenUDP(t, b, "198.18.0.42:7003")
	sendUDP(t, a, "198.18.0.42:7003", "moved")
	if msg, _ := recvFrom(t, pc); msg != "moved" {
		t.Errorf("got %q at the new address", msg)
	}

	up := func() bool {
		var flags net.Flags
		if err := b.Do(func() error {
			ifi, err := net.InterfaceByName(b.Interface())
			if err == nil {
				flags = ifi.Flags
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return flags&net.FlagUp != 0
	}
	b.LinkDown()
	if up() {
		t.Error("interface still up after LinkDown")
	}
	b.LinkUp()
	if !up() {
		t.Error("interface down after LinkUp")
	}
	out, err := b.Command(t.Context(), "ip", "route", "show", "224.0.0.0/4").CombinedOutput()
	if err != nil || !strings.Contains(string(out), b.Interface()) {
		t.Errorf("multicast route after LinkUp: %v: %q", err, out)
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	a := lan.AddHost("a", "198.18.0.11/24")
	want := nsInode(filepath.Join("/var/run/netns", a.Namespace()))
	if want == 0 {
		t.Fatalf("cannot stat the namespace handle of %s", a.Name())
	}

	runtime.LockOSThread()
	callerNS := nsInode("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()

	var inside, child uint64
	sentinel := errors.New("from fn")
	err := a.Do(func() error {
		inside = nsInode("/proc/thread-self/ns/net")
		done := make(chan struct{})
		go func() { // documented caveat: a new goroutine is not in the namespace
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			child = nsInode("/proc/thread-self/ns/net")
			close(done)
		}()
		<-done
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if inside != want {
		t.Errorf("fn ran in namespace inode %d, want %d (%s)", inside, want, a.Namespace())
	}
	if child == want {
		t.Errorf("a goroutine started by fn is in the host's namespace; Do's documentation says it is not")
	}
	runtime.LockOSThread()
	after := nsInode("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	if after != callerNS {
		t.Errorf("caller's namespace changed from %d to %d", callerNS, after)
	}

	if err := a.Do(func() error { runtime.Goexit(); return nil }); err == nil || !strings.Contains(err.Error(), "Goexit") {
		t.Errorf("Do with a Goexit-ing fn returned %v", err)
	}
}

func TestCommandHostname(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	a := lan.AddHost("a", "198.18.0.11/24")
	read := func() string {
		out, err := a.Command(t.Context(), "cat", "/proc/sys/kernel/hostname").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	mine, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if got := read(); got != mine {
		t.Errorf("hostname without SetHostname = %q, want the machine's %q", got, mine)
	}
	a.SetHostname("al-test-a")
	if got := read(); got != "al-test-a" {
		t.Errorf("hostname = %q, want al-test-a", got)
	}
	if got, _ := os.Hostname(); got != mine {
		t.Errorf("the machine's hostname changed to %q", got)
	}
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	var prefix string
	var cmd = make(chan error, 1)
	t.Run("lan", func(t *testing.T) {
		lan := netnstest.New(t)
		prefix = lan.Prefix()
		a := lan.AddHost("a", "198.18.0.11/24")
		lan.AddHost("b", "198.18.0.12/24")
		c := a.Command(context.Background(), "sleep", "300")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd <- c.Wait() }()
	})
	if prefix == "" {
		t.Skip("the LAN was not created")
	}
	select {
	case err := <-cmd:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("process left running in the namespace ended with %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("process left running in the namespace was not killed by cleanup")
	}
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left after cleanup", e.Name())
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if strings.HasPrefix(ifi.Name, prefix) {
			t.Errorf("link %s left after cleanup", ifi.Name)
		}
	}
}
