package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// errNotResponse is returned by responseRecords for packets that are not
// mDNS responses to read: queries, and responses with an opcode or rcode
// other than zero (RFC 6762 18.3, 18.11).
var errNotResponse = errors.New("not an mDNS response")

// responseRecords returns the records of the answer, authority and additional
// sections of the mDNS response pkt, in order, skipping (and counting) those
// whose data cannot be parsed.
//
// Unlike dns.Msg.Unpack, which fails the whole message, one malformed record
// costs only itself: python-zeroconf before 0.129 (Debian 12 ships 0.47)
// writes the NSEC records it adds to its answers with a two-byte window and
// length, which miekg/dns refuses ("empty NSEC block"). A packet cut short
// returns the records before the cut with an error.
func responseRecords(pkt []byte) (rrs []dns.RR, skipped int, err error) {
	if len(pkt) < 12 {
		return nil, 0, fmt.Errorf("packet of %d bytes is shorter than a DNS header", len(pkt))
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	if flags&0x8000 == 0 || flags&0x7800 != 0 || flags&0x000f != 0 { // QR, opcode, rcode
		return nil, 0, errNotResponse
	}
	questions := int(binary.BigEndian.Uint16(pkt[4:]))
	records := int(binary.BigEndian.Uint16(pkt[6:])) + int(binary.BigEndian.Uint16(pkt[8:])) + int(binary.BigEndian.Uint16(pkt[10:]))
	off := 12
	for i := range questions {
		if _, off, err = dns.UnpackDomainName(pkt, off); err != nil || off+4 > len(pkt) {
			return nil, 0, fmt.Errorf("question %d: cut short or malformed (%v)", i+1, err)
		}
		off += 4 // type, class
	}
	for i := range records {
		rr, next, err := dns.UnpackRR(pkt, off)
		if err == nil {
			rrs = append(rrs, rr)
			off = next
			continue
		}
		skipped++
		if next <= off || next >= len(pkt) && i+1 < records {
			// The record's header or length is broken: nothing after it
			// can be found.
			return rrs, skipped, fmt.Errorf("record %d of %d: %w", i+1, records, err)
		}
		off = next // its data alone is bad: skip to the next record
	}
	return rrs, skipped, nil
}

// session assembles candidates for one service type from the responses
// read during one browser session.
type session struct {
	service string // FQDN in .local, e.g. "_alicia-hub._tcp.local."
	labels  int    // labels in service
	// txt is the last TXT record seen for each instance (by lower-case
	// FQDN) during the session, for responses that carry SRV and addresses
	// but no TXT (answers to someone else's SRV query).
	txt map[string]map[string]string
}

func newSession(service string) *session {
	s := service + ".local."
	return &session{service: s, labels: dns.CountLabel(s), txt: map[string]map[string]string{}}
}

// instance returns the instance label of name in presentation form, or ""
// if name is not an instance of s.service.
func (s *session) instance(name string) string {
	n := len(name) - len(s.service)
	if n < 2 || name[n-1] != '.' || !strings.EqualFold(name[n:], s.service) || dns.CountLabel(name) != s.labels+1 {
		return ""
	}
	return name[:n-1]
}

// read returns the candidates that one response's records rrs announce:
// instances of the service with an SRV record and at least one address of
// its target host in the same response. The TXT record may come from an
// earlier response of the session. An instance withdrawn by the response
// (its PTR or SRV record with TTL 0, a goodbye) is not returned. IPv6
// link-local addresses get zone, the name of the interface the response came
// in on. Candidates come sorted by instance name.
func (s *session) read(rrs []dns.RR, zone string, now time.Time) []Candidate {
	type inst struct {
		label     string // presentation form
		target    string
		port      int
		srv, gone bool
		txt       map[string]string
		hasTXT    bool
	}
	insts := map[string]*inst{}
	get := func(name string) *inst {
		label := s.instance(name)
		if label == "" {
			return nil
		}
		k := strings.ToLower(name)
		if insts[k] == nil {
			insts[k] = &inst{label: label}
		}
		return insts[k]
	}
	addrs := map[string][]netip.Addr{} // by lower-case host name
	for _, rr := range rrs {
		h := rr.Header()
		switch rr := rr.(type) {
		case *dns.PTR:
			if !strings.EqualFold(h.Name, s.service) {
				continue
			}
			if in := get(rr.Ptr); in != nil && h.Ttl == 0 {
				in.gone = true
			}
		case *dns.SRV:
			if in := get(h.Name); in != nil {
				in.target, in.port, in.srv = rr.Target, int(rr.Port), true
				in.gone = in.gone || h.Ttl == 0
			}
		case *dns.TXT:
			if in := get(h.Name); in != nil && h.Ttl > 0 {
				in.txt, in.hasTXT = parseTXT(rr.Txt), true
			}
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok && h.Ttl > 0 {
				k := strings.ToLower(h.Name)
				addrs[k] = append(addrs[k], a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok && h.Ttl > 0 {
				if a.Is6() && a.IsLinkLocalUnicast() && zone != "" {
					a = a.WithZone(zone)
				}
				k := strings.ToLower(h.Name)
				addrs[k] = append(addrs[k], a)
			}
		}
	}
	var out []Candidate
	for _, k := range slices.Sorted(maps.Keys(insts)) {
		in := insts[k]
		if in.gone {
			delete(s.txt, k)
			continue
		}
		if in.hasTXT {
			s.txt[k] = in.txt
		}
		as := slices.Compact(slices.SortedFunc(slices.Values(addrs[strings.ToLower(in.target)]), netip.Addr.Compare))
		if !in.srv || len(as) == 0 {
			continue
		}
		txt := s.txt[k]
		if txt == nil {
			txt = map[string]string{}
		}
		out = append(out, Candidate{Instance: unescape(in.label), Addrs: as, Port: in.port, TXT: maps.Clone(txt), Seen: now})
	}
	return out
}
