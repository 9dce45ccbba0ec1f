package discovery

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// pyZeroconfAnswer is python-zeroconf 0.47.3's answer (Debian 12's
// python3-zeroconf) to a PTR query for _home-assistant._tcp.local: the PTR,
// then A, NSEC, TXT and SRV as additional records. Its NSEC has a two-byte
// window and length ("0000 0004"), which miekg/dns refuses.
const pyZeroconfAnswer = "0000840000000001000000040f5f686f6d652d617373697374616e74045f746370056c6f63616c00000c000100001194000704486f6d65c00c0d686f6d65617373697374616e74c02100018001000000780004c6120014c039002f800100001194000ac0390000000400000008c0320010800100001194002111626173655f75726c3d687474703a2f2f780e76657273696f6e3d323032342e31c03200218001000000780008000000001fbbc039"

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pack packs a response with rrs as answers and extra as additional records.
func pack(t *testing.T, rrs, extra []dns.RR) []byte {
	t.Helper()
	m := &dns.Msg{Answer: rrs, Extra: extra}
	m.Response, m.Authoritative = true, true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResponseRecordsSkipsBadRecords(t *testing.T) {
	pkt := mustHex(t, pyZeroconfAnswer)
	// The cause of the interop bug: the whole message fails in miekg/dns,
	// so zeroconf's browser dropped it.
	if err := new(dns.Msg).Unpack(pkt); err == nil || !strings.Contains(err.Error(), "NSEC") {
		t.Fatalf("dns.Msg.Unpack = %v, want the NSEC error this fixture exists for", err)
	}
	rrs, skipped, err := responseRecords(pkt)
	if err != nil || skipped != 1 {
		t.Fatalf("responseRecords: skipped %d, err %v; want 1 skipped (the NSEC), no error", skipped, err)
	}
	var types []string
	for _, rr := range rrs {
		types = append(types, dns.TypeToString[rr.Header().Rrtype])
	}
	if diff := cmp.Diff([]string{"PTR", "A", "TXT", "SRV"}, types); diff != "" {
		t.Errorf("record types (-want +got):\n%s", diff)
	}
}

func TestResponseRecordsRefuses(t *testing.T) {
	query := new(dns.Msg)
	query.SetQuestion("_http._tcp.local.", dns.TypePTR)
	q, err := query.Pack()
	if err != nil {
		t.Fatal(err)
	}
	refused := new(dns.Msg)
	refused.SetRcode(query, dns.RcodeRefused)
	r, err := refused.Pack()
	if err != nil {
		t.Fatal(err)
	}
	withQuestion := new(dns.Msg)
	withQuestion.SetReply(query)
	wq, err := withQuestion.Pack()
	if err != nil {
		t.Fatal(err)
	}
	full := mustHex(t, pyZeroconfAnswer)
	for _, tc := range []struct {
		name        string
		pkt         []byte
		wantRecords int
		wantErr     string
	}{
		{"query", q, 0, errNotResponse.Error()},
		{"non-zero rcode", r, 0, errNotResponse.Error()},
		{"short", full[:5], 0, "shorter than a DNS header"},
		{"cut in the question", wq[:20], 0, "question 1"},
		{"cut in the first record", full[:20], 0, "record 1 of 5"},
		{"cut in the second record", full[:80], 1, "record 2 of 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rrs, _, err := responseRecords(tc.pkt)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if len(rrs) != tc.wantRecords {
				t.Errorf("%d records, want %d", len(rrs), tc.wantRecords)
			}
		})
	}
}

func TestSessionRead(t *testing.T) {
	const svc = "_alicia-hub._tcp.local."
	hdr := func(name string, typ uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
	}
	ptr := func(inst string, ttl uint32) dns.RR {
		return &dns.PTR{Hdr: hdr(svc, dns.TypePTR, ttl), Ptr: inst + "." + svc}
	}
	srv := func(inst, host string, port uint16, ttl uint32) dns.RR {
		return &dns.SRV{Hdr: hdr(inst+"."+svc, dns.TypeSRV, ttl), Target: host, Port: port}
	}
	txt := func(inst string, s ...string) dns.RR {
		return &dns.TXT{Hdr: hdr(inst+"."+svc, dns.TypeTXT, 120), Txt: s}
	}
	a := func(host, ip string, ttl uint32) dns.RR {
		return &dns.A{Hdr: hdr(host, dns.TypeA, ttl), A: net.ParseIP(ip)}
	}
	aaaa := func(host, ip string) dns.RR {
		return &dns.AAAA{Hdr: hdr(host, dns.TypeAAAA, 120), AAAA: net.ParseIP(ip)}
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	hub := func(inst string, port int, txt map[string]string, addrs ...string) Candidate {
		c := Candidate{Instance: inst, Port: port, TXT: txt, Seen: now}
		for _, s := range addrs {
			c.Addrs = append(c.Addrs, netip.MustParseAddr(s))
		}
		return c
	}
	fp := map[string]string{"v": "1", "id": "hub-1", "fp": "sha256:ab"}

	for _, tc := range []struct {
		name    string
		packets [][]dns.RR // read in order; want is what the last one gives
		want    []Candidate
	}{
		{
			name:    "all in one, addresses sorted, IPv6 link-local with the zone",
			packets: [][]dns.RR{{ptr("hub", 4500), aaaa("h.local.", "fe80::1"), aaaa("h.local.", "2001:db8::1"), a("h.local.", "198.18.0.2", 120), a("h.local.", "198.18.0.1", 120), srv("hub", "h.local.", 8470, 120), txt("hub", "v=1", "id=hub-1", "fp=sha256:ab")}},
			want:    []Candidate{hub("hub", 8470, fp, "198.18.0.1", "198.18.0.2", "2001:db8::1", "fe80::1%eth7")},
		},
		{
			name:    "names differ in case; escaped instance",
			packets: [][]dns.RR{{ptr(`Hub\ \(x\)`, 4500), &dns.SRV{Hdr: hdr(`HUB\ \(X\)._ALICIA-HUB._TCP.LOCAL.`, dns.TypeSRV, 120), Target: "H.local.", Port: 1}, a("h.LOCAL.", "198.18.0.1", 120)}},
			want:    []Candidate{hub("Hub (x)", 1, map[string]string{}, "198.18.0.1")},
		},
		{
			name:    "TXT from an earlier response of the session",
			packets: [][]dns.RR{{txt("hub", "v=1", "id=hub-1", "fp=sha256:ab")}, {srv("hub", "h.local.", 8470, 120), a("h.local.", "198.18.0.1", 120)}},
			want:    []Candidate{hub("hub", 8470, fp, "198.18.0.1")},
		},
		{
			name:    "no address for the target",
			packets: [][]dns.RR{{ptr("hub", 4500), srv("hub", "h.local.", 8470, 120), a("other.local.", "198.18.0.1", 120)}},
		},
		{
			name:    "no SRV",
			packets: [][]dns.RR{{ptr("hub", 4500), txt("hub", "v=1"), a("h.local.", "198.18.0.1", 120)}},
		},
		{
			name:    "goodbye",
			packets: [][]dns.RR{{ptr("hub", 0), srv("hub", "h.local.", 8470, 0), a("h.local.", "198.18.0.1", 0)}},
		},
		{
			name:    "goodbye forgets the TXT",
			packets: [][]dns.RR{{txt("hub", "v=1")}, {ptr("hub", 0)}, {srv("hub", "h.local.", 8470, 120), a("h.local.", "198.18.0.1", 120)}},
			want:    []Candidate{hub("hub", 8470, map[string]string{}, "198.18.0.1")},
		},
		{
			name:    "an address withdrawn",
			packets: [][]dns.RR{{srv("hub", "h.local.", 8470, 120), a("h.local.", "198.18.0.1", 0), a("h.local.", "198.18.0.3", 120)}},
			want:    []Candidate{hub("hub", 8470, map[string]string{}, "198.18.0.3")},
		},
		{
			name: "other services and sub-names ignored",
			packets: [][]dns.RR{{
				&dns.PTR{Hdr: hdr("_http._tcp.local.", dns.TypePTR, 4500), Ptr: "web._http._tcp.local."},
				&dns.SRV{Hdr: hdr("web._http._tcp.local.", dns.TypeSRV, 120), Target: "h.local.", Port: 80},
				&dns.SRV{Hdr: hdr("a.b."+svc, dns.TypeSRV, 120), Target: "h.local.", Port: 81},
				&dns.SRV{Hdr: hdr(svc, dns.TypeSRV, 120), Target: "h.local.", Port: 82},
				a("h.local.", "198.18.0.1", 120),
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession("_alicia-hub._tcp")
			var got []Candidate
			for _, p := range tc.packets {
				got = s.read(p, "eth7", now)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}

	// The real python-zeroconf answer.
	rrs, _, err := responseRecords(mustHex(t, pyZeroconfAnswer))
	if err != nil {
		t.Fatal(err)
	}
	got := newSession("_home-assistant._tcp").read(rrs, "eth0", now)
	want := []Candidate{hub("Home", 8123, map[string]string{"base_url": "http://x", "version": "2024.1"}, "198.18.0.20")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("python-zeroconf's answer (-want +got):\n%s", diff)
	}
}

func TestBrowseQuery(t *testing.T) {
	b, err := browseQuery("_alicia-hub._tcp")
	if err != nil {
		t.Fatal(err)
	}
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		t.Fatal(err)
	}
	want := []dns.Question{{Name: "_alicia-hub._tcp.local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET}}
	if m.Id != 0 || m.Response || m.RecursionDesired || len(m.Answer) != 0 || !cmp.Equal(want, m.Question) {
		t.Errorf("query = %v", &m)
	}
}
