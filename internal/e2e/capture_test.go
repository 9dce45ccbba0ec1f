package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

// TestLANCaptureNoSecretsInClear proves that nothing secret crosses the LAN
// in clear. It runs the hub and one agent as real binaries on a LAN of
// network namespaces and records every frame on the agent's interface with
// tcpdump (full snap length, written as it arrives) while the agent finds
// the hub by mDNS, enrols with a join token over pinned HTTPS, goes online
// over MQTT-over-TLS and sends heartbeats, and while an admin calls the REST
// API over HTTPS from the agent's host with the admin token. Then it looks
// for every secret involved — the join token (whole and its secret part), the
// admin token, the device's broker password, the agent's identity key and
// the hub CA's private key — in the raw capture file, as text, as the bytes
// the text encodes, in hex and in base64 at every alignment. None may be
// there.
//
// So that the search cannot pass vacuously, it also checks that the capture
// holds the payloads of the traffic that matters: TCP segments of both the
// REST API (8470) and the broker (8883) with payload, the mDNS announcement
// in clear (service name and the "fp=" TXT entry, which the same detector
// must find), a TLS ClientHello naming the hub opening every TCP connection,
// and no packet dropped by the kernel.
func TestLANCaptureNoSecretsInClear(t *testing.T) {
	l := newLANTest(t, "tcpdump")
	hubHost := l.lan.AddHost("hub", "198.18.0.1/24")
	agentHost := l.lan.AddHost("a1", "198.18.0.11/24")
	ctx := l.ctx
	agentDir := filepath.Join(l.dir, agentHost.Name())
	pcapPath := filepath.Join(l.dir, "lan.pcap")

	// The capture runs before anything else starts. -U with
	// --immediate-mode writes each frame as it arrives, so nothing is
	// left in a kernel buffer when tcpdump stops; -s 0 keeps whole frames;
	// -Z root keeps tcpdump from switching to its own user, which may not
	// be able to write into the test's directory.
	dumpArgs := captureArgs(agentHost.Interface(), pcapPath)
	dumpOut := &logBuffer{}
	dump := agentHost.Command(ctx, "tcpdump", dumpArgs...)
	dump.Stdout, dump.Stderr = dumpOut, dumpOut
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	dumpDone := make(chan error, 1)
	go func() { dumpDone <- dump.Wait() }()
	dumpStopped := false
	stopDump := func() {
		if dumpStopped {
			return
		}
		dumpStopped = true
		// SIGINT to the process we started (ip netns exec execs tcpdump,
		// so it is tcpdump itself): it flushes the file and prints its
		// counters.
		_ = dump.Process.Signal(syscall.SIGINT)
		select {
		case err := <-dumpDone:
			if err != nil {
				t.Errorf("tcpdump: %v\n%s", err, dumpOut)
			}
		case <-time.After(10 * time.Second):
			_ = dump.Process.Kill()
			<-dumpDone
			t.Errorf("tcpdump did not stop within 10s of SIGINT")
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- tcpdump ---\n%s", dumpOut)
		}
	})
	t.Cleanup(stopDump)
	t.Logf("capture: tcpdump %s (in the agent's namespace)", strings.Join(dumpArgs, " "))
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(dumpOut.String(), "listening on"); {
		select {
		case err := <-dumpDone:
			dumpStopped = true
			t.Fatalf("tcpdump exited before capturing: %v\n%s", err, dumpOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump not capturing within 10s:\n%s", dumpOut)
		}
		time.Sleep(20 * time.Millisecond) // polling tcpdump's stderr for "listening on"
	}

	// The hub, then a join token from it (over its own loopback: the admin
	// token does not cross the LAN for that).
	hub := l.startHub(hubHost, "--log-level", "debug")
	apiCall, hubDir := hub.api, hub.dir
	token := lanJoinToken(t, apiCall, 1)

	// The agent: a join token and no hub address, so it finds the hub by
	// mDNS and enrols across the LAN.
	agent := l.startAgent(agentHost, "--join-token", token, "--name", agentHost.Name(), "--heartbeat", "1s", "--keepalive", "2s", "--log-level", "debug")

	type devView struct {
		ID       string     `json:"id"`
		Name     string     `json:"name"`
		Status   string     `json:"status"`
		LastSeen *time.Time `json:"last_seen"`
	}
	lookup := func() (devView, bool) {
		out, err := apiCall("GET", "/api/v1/devices", "")
		var ds []devView
		if err != nil || json.Unmarshal(out, &ds) != nil {
			return devView{}, false
		}
		for _, d := range ds {
			if d.Name == agentHost.Name() {
				return d, true
			}
		}
		return devView{}, false
	}
	start := time.Now()
	var dev devView
	for deadline := time.Now().Add(30 * time.Second); ; {
		if d, ok := lookup(); ok && d.Status == "online" {
			dev = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent is not online at the hub within 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling the registry
	}
	t.Logf("agent online %s after start, with no hub address", time.Since(start).Round(time.Millisecond))
	if s := agent.out.String(); !strings.Contains(s, "found the hub on the LAN") || !strings.Contains(s, "mqtt=mqtts://198.18.0.1:") {
		t.Errorf("the agent did not find the hub by mDNS and connect over TLS")
	}

	// Let heartbeats cross the LAN (one a second): wait until the hub has
	// seen the device three more times, i.e. last_seen moved three times.
	seen, advances := dev.LastSeen, 0
	for deadline := time.Now().Add(15 * time.Second); advances < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("last_seen moved %d times in 15s, want 3 heartbeats", advances)
		}
		time.Sleep(100 * time.Millisecond) // polling the registry
		if d, ok := lookup(); ok && d.LastSeen != nil && (seen == nil || d.LastSeen.After(*seen)) {
			seen = d.LastSeen
			advances++
		}
	}

	// An admin's REST call from the agent's host, across the LAN, over
	// HTTPS with the hub CA: the admin token crosses, encrypted.
	adminToken := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(hubDir, "admin.token")))))
	hubAPI := "https://" + pki.ServerName + ":8470"
	out, err := agentHost.Command(ctx, "curl", "-sS", "-f", "--max-time", "10",
		"--cacert", filepath.Join(hubDir, "pki", "ca.crt"),
		"--resolve", pki.ServerName+":8470:"+hubHost.IP().String(),
		"-H", "Authorization: Bearer "+adminToken,
		hubAPI+"/api/v1/devices").CombinedOutput()
	if err != nil {
		t.Fatalf("GET %s/api/v1/devices from the agent's host: %v\n%s", hubAPI, err, out)
	}
	var listed []devView
	if err := json.Unmarshal(out, &listed); err != nil || len(listed) != 1 || listed[0].ID != dev.ID {
		t.Fatalf("GET /api/v1/devices over HTTPS: %v: %s, want device %s", err, out, dev.ID)
	}

	// The agent says goodbye (SIGTERM to the process we started), so its
	// shutdown traffic is in the capture too.
	_ = agent.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-agent.done:
		if agent.err != nil {
			t.Errorf("agent exit after SIGTERM: %v", agent.err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("agent did not stop within 15s of SIGTERM")
		agent.kill()
	}
	stopDump()
	if m := regexp.MustCompile(`(\d+) packets? dropped by kernel`).FindStringSubmatch(dumpOut.String()); m == nil || m[1] != "0" {
		t.Errorf("tcpdump dropped packets or did not report: a secret could hide in what it missed:\n%s", dumpOut)
	}

	capture, err := os.ReadFile(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseCapture(capture)
	if err != nil {
		t.Fatalf("%s: %v", pcapPath, err)
	}
	t.Logf("capture: %d bytes, %d frames; TCP %d segments (%d with payload, %d bytes) to/from 8470 in %d connections, "+
		"%d segments (%d with payload, %d bytes) to/from 8883 in %d connections; %d mDNS datagrams; %d other frames",
		len(capture), st.frames,
		st.tcp[8470].segments, st.tcp[8470].withPayload, st.tcp[8470].payload, st.tcp[8470].conns,
		st.tcp[8883].segments, st.tcp[8883].withPayload, st.tcp[8883].payload, st.tcp[8883].conns,
		st.mdns, st.other)

	// Positive controls: the capture holds the payloads of the traffic
	// that matters, so the search below means something.
	if len(capture) < 10<<10 {
		t.Errorf("capture is only %d bytes: the traffic was not recorded", len(capture))
	}
	for _, port := range []uint16{8470, 8883} {
		if s := st.tcp[port]; s.withPayload == 0 || s.payload < 1000 {
			t.Errorf("no TCP payload to or from port %d in the capture (%d segments, %d payload bytes)", port, s.segments, s.payload)
		}
	}
	if n := st.tcp[8470].conns; n < 2 {
		t.Errorf("%d TCP connections to 8470 in the capture, want at least 2 (the enrolment and the admin's call)", n)
	}
	if n := st.tcp[8883].conns; n < 1 {
		t.Errorf("no TCP connection to 8883 in the capture")
	}
	if st.mdns == 0 {
		t.Errorf("no mDNS datagram in the capture")
	}
	for _, e := range st.notTLS {
		t.Errorf("a TCP connection that does not open with a TLS ClientHello for %s: %s", pki.ServerName, e)
	}
	caPEM := must(os.ReadFile(filepath.Join(hubDir, "pki", "ca.crt")))
	caBlock, _ := pem.Decode(caPEM)
	if caBlock == nil {
		t.Fatal("hub CA certificate is not PEM")
	}
	fp := pki.Fingerprint(must(x509.ParseCertificate(caBlock.Bytes)))
	if !bytes.Contains(capture, []byte("_alicia-hub")) {
		t.Errorf("the mDNS service name _alicia-hub is not in the capture: payloads were not recorded")
	}
	if !bytes.Contains(capture, []byte("fp="+fp)) {
		t.Errorf("the mDNS TXT entry fp=%s is not in the capture: payloads were not recorded", fp)
	}
	if form := findSecret(capture, secretForms([]byte(fp))); form == "" {
		t.Errorf("the detector does not find the public CA fingerprint, which the mDNS TXT record carries")
	}
	detectorSelfTest(t)

	// The secrets.
	type secret struct {
		name  string
		value []byte
	}
	var secrets []secret
	add := func(name string, value []byte) {
		if len(value) < 16 {
			t.Fatalf("secret %s is only %d bytes: not what this test expects", name, len(value))
		}
		secrets = append(secrets, secret{name, value})
	}
	// addToken adds a token as text and, when it is prefix + base64url,
	// the random bytes it encodes.
	addToken := func(name, tok, prefix string) {
		add(name, []byte(tok))
		if rest, ok := strings.CutPrefix(tok, prefix); ok {
			if raw, err := base64.RawURLEncoding.DecodeString(rest); err == nil {
				add(name+" (its random bytes)", raw)
			}
		}
	}

	joinSecret, joinFP, err := identity.ParseJoinToken(token)
	if err != nil || joinFP != fp {
		t.Fatalf("join token %q: fingerprint %q, %v; want the CA's %s", token, joinFP, err, fp)
	}
	add("the join token", []byte(token))
	addToken("the join token's secret", joinSecret, "alicia_join_")
	addToken("the admin token", adminToken, "alicia_admin_")

	var creds struct {
		Password string `json:"password"`
	}
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(agentDir, "credentials.json"))), &creds); err != nil || creds.Password == "" {
		t.Fatalf("agent credentials.json: no password (%v)", err)
	}
	addToken("the device's broker password", creds.Password, "")

	keyPEM := must(os.ReadFile(filepath.Join(agentDir, "identity.key")))
	add("the agent's identity key (PEM)", keyPEM)
	addPEMBody := func(name string, p []byte) {
		// The base64 body of the PEM as one line (as it would appear if
		// the key were sent in JSON, say); the DER forms below cover any
		// other encoding of the same bytes.
		var body []byte
		for _, l := range bytes.Split(p, []byte("\n")) {
			if !bytes.HasPrefix(l, []byte("-----")) {
				body = append(body, bytes.TrimSpace(l)...)
			}
		}
		add(name, body)
	}
	addPEMBody("the agent's identity key (PEM body)", keyPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if keyBlock == nil {
		t.Fatal("agent identity key is not PEM")
	}
	add("the agent's identity key (PKCS#8 DER)", keyBlock.Bytes)
	agentKey, ok := must(x509.ParsePKCS8PrivateKey(keyBlock.Bytes)).(ed25519.PrivateKey)
	if !ok {
		t.Fatal("agent identity key is not Ed25519")
	}
	add("the agent's identity key (Ed25519 seed)", agentKey.Seed())

	caKeyPEM := must(os.ReadFile(filepath.Join(hubDir, "pki", "ca.key")))
	add("the hub CA key (PEM)", caKeyPEM)
	addPEMBody("the hub CA key (PEM body)", caKeyPEM)
	caKeyBlock, _ := pem.Decode(caKeyPEM)
	if caKeyBlock == nil {
		t.Fatal("hub CA key is not PEM")
	}
	add("the hub CA key (PKCS#8 DER)", caKeyBlock.Bytes)
	if k, ok := must(x509.ParsePKCS8PrivateKey(caKeyBlock.Bytes)).(*ecdsa.PrivateKey); ok {
		add("the hub CA key (private scalar)", must(k.Bytes()))
	}

	for _, s := range secrets {
		if form := findSecret(capture, secretForms(s.value)); form != "" {
			t.Errorf("LEAK: %s crosses the LAN in clear (found %s in the capture)", s.name, form)
		}
	}
	if t.Failed() {
		// Keep the capture for a look with wireshark; t.TempDir goes away.
		if keep, err := os.CreateTemp("", "alicia-lan-*.pcap"); err == nil {
			_, _ = keep.Write(capture)
			keep.Close()
			t.Logf("capture kept at %s", keep.Name())
		}
	}
	t.Logf("searched the capture for %d secrets in %d forms each: none found", len(secrets), len(secretForms(make([]byte, 32))))
}

// captureArgs are tcpdump's arguments to record every frame on ifname into
// path; docs/security.md shows the same command.
func captureArgs(ifname, path string) []string {
	return []string{"-i", ifname, "-U", "--immediate-mode", "-s", "0", "-Z", "root", "-w", path}
}

// secretForms returns the forms in which the bytes of a secret could
// appear in a capture: as they are, in hex, and in base64 (standard and URL
// alphabets). A base64 encoding of a longer message holds the secret's
// encoding only from a 3-byte boundary on, so the secret is encoded from
// each of its first three bytes, up to its last whole group of three.
func secretForms(b []byte) map[string][]byte {
	forms := map[string][]byte{
		"as is":  b,
		"in hex": []byte(hex.EncodeToString(b)),
		"in HEX": []byte(strings.ToUpper(hex.EncodeToString(b))),
	}
	for skip := range 3 {
		part := b[skip:]
		part = part[:len(part)/3*3]
		forms["in base64 (from byte "+strconv.Itoa(skip)+")"] = []byte(base64.StdEncoding.EncodeToString(part))
		forms["in base64url (from byte "+strconv.Itoa(skip)+")"] = []byte(base64.RawURLEncoding.EncodeToString(part))
	}
	return forms
}

// findSecret returns the name of a form found in capture, or "".
func findSecret(capture []byte, forms map[string][]byte) string {
	for name, f := range forms {
		if bytes.Contains(capture, f) {
			return name
		}
	}
	return ""
}

// detectorSelfTest checks that findSecret finds a secret embedded in
// base64, hex and raw form at every alignment inside other bytes.
func detectorSelfTest(t *testing.T) {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	forms := secretForms(secret)
	for pad := range 3 {
		msg := append(append(bytes.Repeat([]byte{0xa5}, pad), secret...), "trailer"...)
		for _, enc := range []string{
			base64.StdEncoding.EncodeToString(msg),
			base64.RawURLEncoding.EncodeToString(msg),
			hex.EncodeToString(msg),
			string(msg),
		} {
			hay := append([]byte("junk before "), enc...)
			hay = append(hay, " junk after"...)
			if findSecret(hay, forms) == "" {
				t.Fatalf("detector self-test: a secret at offset %d in %.20q... is not found", pad, enc)
			}
		}
	}
	if findSecret(bytes.Repeat([]byte("x"), 4096), forms) != "" {
		t.Fatal("detector self-test: a secret found where there is none")
	}
}

// portStats counts the TCP segments of one server port.
type portStats struct {
	segments, withPayload, payload, conns int
}

// captureStats is what parseCapture finds in a capture.
type captureStats struct {
	frames int
	tcp    map[uint16]*portStats // by server port: 8470, 8883
	mdns   int                   // UDP datagrams to or from 5353
	other  int                   // ARP, ICMP, other ports
	notTLS []string              // TCP connections whose client did not open with a ClientHello
}

// parseCapture reads a classic pcap file of Ethernet frames (as tcpdump -w
// writes) and counts TCP segments to and from the hub's ports, mDNS
// datagrams, and checks that the first bytes every TCP client sends are a
// TLS ClientHello naming pki.ServerName.
func parseCapture(b []byte) (*captureStats, error) {
	if len(b) < 24 {
		return nil, errors.New("shorter than a pcap header")
	}
	var bo binary.ByteOrder
	switch magic := binary.LittleEndian.Uint32(b); magic {
	case 0xa1b2c3d4, 0xa1b23c4d: // micro- or nanosecond timestamps, little-endian
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("not a pcap file (magic %#x; pcapng is not handled)", magic)
	}
	if lt := bo.Uint32(b[20:]) & 0xffff; lt != 1 {
		return nil, fmt.Errorf("link type %d, want 1 (Ethernet)", lt)
	}
	type flow struct{ client, server netip.AddrPort }
	st := &captureStats{tcp: map[uint16]*portStats{8470: {}, 8883: {}}}
	opened := map[flow][]byte{} // client's first bytes, per connection
	var order []flow
	for off := 24; off < len(b); {
		if off+16 > len(b) {
			return nil, fmt.Errorf("truncated record header at %d", off)
		}
		incl, orig := int(bo.Uint32(b[off+8:])), int(bo.Uint32(b[off+12:]))
		off += 16
		if off+incl > len(b) {
			return nil, fmt.Errorf("truncated record at %d", off)
		}
		if incl != orig {
			return nil, fmt.Errorf("frame at %d cut to %d of %d bytes: capture with -s 0", off, incl, orig)
		}
		frame := b[off : off+incl]
		off += incl
		st.frames++

		src, dst, proto, l4, ok := parseIP(frame)
		if !ok {
			st.other++
			continue
		}
		switch proto {
		case 17: // UDP
			if len(l4) >= 8 && (binary.BigEndian.Uint16(l4) == 5353 || binary.BigEndian.Uint16(l4[2:]) == 5353) {
				st.mdns++
			} else {
				st.other++
			}
		case 6: // TCP
			if len(l4) < 20 || int(l4[12]>>4)*4 > len(l4) {
				st.other++
				continue
			}
			sp, dp := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
			flags := l4[13]
			payload := l4[int(l4[12]>>4)*4:]
			s := netip.AddrPortFrom(src, sp)
			d := netip.AddrPortFrom(dst, dp)
			if ps := st.tcp[dp]; ps != nil {
				ps.segments++
				if len(payload) > 0 {
					ps.withPayload++
					ps.payload += len(payload)
				}
			} else if ps := st.tcp[sp]; ps != nil {
				ps.segments++
				if len(payload) > 0 {
					ps.withPayload++
					ps.payload += len(payload)
				}
			} else {
				st.other++
			}
			const syn, ack = 0x02, 0x10
			if flags&syn != 0 && flags&ack == 0 {
				f := flow{s, d}
				if _, seen := opened[f]; !seen {
					opened[f] = []byte{}
					order = append(order, f)
					if ps := st.tcp[dp]; ps != nil {
						ps.conns++
					}
				}
			}
			// The client's first 4 KiB, enough for a ClientHello (big
			// with a post-quantum key share) in order on a veth.
			if first, ok := opened[flow{s, d}]; ok && len(first) < 4096 {
				opened[flow{s, d}] = append(first, payload...)
			}
		default:
			st.other++
		}
	}
	for _, f := range order {
		first := opened[f]
		// A TLS handshake record (0x16, version 3.x) carrying a
		// ClientHello (handshake type 1) that names the hub.
		if len(first) < 6 || first[0] != 0x16 || first[1] != 3 || first[5] != 1 || !bytes.Contains(first, []byte(pki.ServerName)) {
			st.notTLS = append(st.notTLS, fmt.Sprintf("%s -> %s opens with %.32q", f.client, f.server, first))
		}
	}
	return st, nil
}

// parseIP returns the addresses, protocol and layer-4 bytes of an Ethernet
// frame carrying IPv4 or IPv6 (without extension headers).
func parseIP(frame []byte) (src, dst netip.Addr, proto byte, l4 []byte, ok bool) {
	if len(frame) < 14 {
		return
	}
	etype, p := binary.BigEndian.Uint16(frame[12:]), frame[14:]
	if etype == 0x8100 && len(p) >= 4 { // 802.1Q
		etype, p = binary.BigEndian.Uint16(p[2:]), p[4:]
	}
	switch etype {
	case 0x0800:
		if len(p) < 20 || p[0]>>4 != 4 {
			return
		}
		ihl, total := int(p[0]&0x0f)*4, int(binary.BigEndian.Uint16(p[2:]))
		if total > len(p) || total == 0 {
			total = len(p) // 0 with TSO on a veth: the frame is the packet
		}
		if ihl < 20 || ihl > total || binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
			return // fragments other than the first are not parsed
		}
		return netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[9], p[ihl:total], true
	case 0x86dd:
		if len(p) < 40 {
			return
		}
		end := min(40+int(binary.BigEndian.Uint16(p[4:])), len(p))
		return netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[6], p[40:end], true
	}
	return
}
