package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// The pre-authentication guard. mochi reads a new connection's first packet
// with no deadline, and allocates a packet's whole announced remaining
// length (up to MaximumPacketSize) before reading it; on a TLS listener the
// handshake runs inside that first read. So a client that connects and says
// nothing, stalls its TLS handshake, or announces a large CONNECT and stalls
// would hold a goroutine, a socket and up to 256 KiB for ever, without ever
// authenticating.
//
// Before mochi sees a connection, admit completes the TLS handshake and
// reads the whole CONNECT packet itself, within ConnectTimeout, refusing a
// first packet that is not a CONNECT or announces more than MaxConnectSize.
// The body is buffered as it arrives, never allocated up front. mochi then
// reads the CONNECT from that buffer; the deadline stays set (bounding the
// CONNACK write) until mochi replaces it with the client's keepalive, which
// it does before its next read from the network.

// The first byte of a CONNECT packet: type 1, flags 0.
const connectByte = 0x10

// Reasons a connection is closed before it authenticated, as logged and
// counted in Stats.Dropped. ("" is a client that went away before sending a
// byte, or a listener closing: not counted.)
const (
	reasonConnectTimeout      = "connect_timeout"       // no whole CONNECT within ConnectTimeout
	reasonConnectTooLarge     = "connect_too_large"     // CONNECT larger than MaxConnectSize
	reasonConnectMalformed    = "connect_malformed"     // first packet not a CONNECT, bad length, or cut short
	reasonTLSHandshakeTimeout = "tls_handshake_timeout" // TLS handshake not done within ConnectTimeout
	reasonTLSHandshakeFailed  = "tls_handshake_failed"  // TLS handshake failed (not TLS, bad certificate…)
)

// Dropped counts connections closed before they authenticated, by reason.
type Dropped struct {
	ConnectTimeout      uint64 // no whole CONNECT within Config.ConnectTimeout (silent or stalled)
	ConnectTooLarge     uint64 // CONNECT announcing more than Config.MaxConnectSize
	ConnectMalformed    uint64 // first packet not a CONNECT, a bad length, or cut short
	TLSHandshakeTimeout uint64 // TLS handshake not done within Config.ConnectTimeout
	TLSHandshakeFailed  uint64 // TLS handshake failed (not TLS, a certificate not from the CA…)
}

// dropCounters count connections closed by the guard, by reason.
type dropCounters struct {
	connectTimeout, connectTooLarge, connectMalformed atomic.Uint64
	tlsTimeout, tlsFailed                             atomic.Uint64
	pending                                           atomic.Int64 // connections in admit now
}

func (d *dropCounters) count(reason string) {
	switch reason {
	case reasonConnectTimeout:
		d.connectTimeout.Add(1)
	case reasonConnectTooLarge:
		d.connectTooLarge.Add(1)
	case reasonConnectMalformed:
		d.connectMalformed.Add(1)
	case reasonTLSHandshakeTimeout:
		d.tlsTimeout.Add(1)
	case reasonTLSHandshakeFailed:
		d.tlsFailed.Add(1)
	}
}

func (d *dropCounters) load() Dropped {
	return Dropped{
		ConnectTimeout:      d.connectTimeout.Load(),
		ConnectTooLarge:     d.connectTooLarge.Load(),
		ConnectMalformed:    d.connectMalformed.Load(),
		TLSHandshakeTimeout: d.tlsTimeout.Load(),
		TLSHandshakeFailed:  d.tlsFailed.Load(),
	}
}

// guard admits connections to mochi. It is safe for concurrent use.
type guard struct {
	timeout time.Duration
	maxSize int // largest CONNECT remaining length accepted
	drops   *dropCounters
}

// admitError is why admit refused a connection.
type admitError struct {
	reason string
	err    error
}

func (e *admitError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *admitError) Unwrap() error { return e.err }

// admit completes c's TLS handshake, if c is a *tls.Conn, and reads its
// CONNECT packet, all within g.timeout. It returns a connection that yields
// the CONNECT again before the rest of the stream, or an *admitError; it
// does not close c and counts nothing.
func (g *guard) admit(c net.Conn) (net.Conn, error) {
	if err := c.SetDeadline(time.Now().Add(g.timeout)); err != nil {
		return nil, &admitError{"", fmt.Errorf("set deadline: %w", err)} // closed already
	}
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, &admitError{"", err} // closed without a word
			}
			if isTimeout(err) {
				return nil, &admitError{reasonTLSHandshakeTimeout, err}
			}
			return nil, &admitError{reasonTLSHandshakeFailed, err}
		}
	}
	pk, err := readConnect(c, g.maxSize)
	if err != nil {
		return nil, err
	}
	return &admittedConn{Conn: c, pending: pk}, nil
}

// readConnect reads one whole CONNECT packet (fixed header included) from
// r, refusing one whose remaining length exceeds limit. Memory grows with the
// bytes received, not with the length announced.
func readConnect(r io.Reader, limit int) ([]byte, error) {
	fail := func(reason string, err error) ([]byte, error) {
		if isTimeout(err) {
			reason = reasonConnectTimeout
		}
		return nil, &admitError{reason, err}
	}
	var b [1]byte
	pk := make([]byte, 0, 5) // the fixed header: type byte, 1-4 length bytes
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fail("", fmt.Errorf("read first packet: %w", err)) // silent until a timeout, or gone
	}
	if b[0] != connectByte {
		return fail(reasonConnectMalformed, fmt.Errorf("first packet header %#02x is not a CONNECT", b[0]))
	}
	pk = append(pk, b[0])
	n := 0
	for i := 0; ; i++ {
		if i == 4 {
			return fail(reasonConnectMalformed, errors.New("CONNECT remaining length longer than 4 bytes"))
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return fail(reasonConnectMalformed, fmt.Errorf("read CONNECT length: %w", err))
		}
		pk = append(pk, b[0])
		n |= int(b[0]&0x7f) << (7 * i)
		if b[0]&0x80 == 0 {
			break
		}
	}
	if n > limit {
		return fail(reasonConnectTooLarge, fmt.Errorf("CONNECT announces %d bytes, limit %d", n, limit))
	}
	total := len(pk) + n
	for len(pk) < total {
		if len(pk) == cap(pk) {
			pk = slices.Grow(pk, min(max(cap(pk), 512), total-len(pk)))
		}
		m, err := r.Read(pk[len(pk):min(cap(pk), total)])
		pk = pk[:len(pk)+m]
		if err != nil && len(pk) < total {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fail(reasonConnectMalformed, fmt.Errorf("read CONNECT (%d of %d bytes): %w", len(pk), total, err))
		}
	}
	return pk, nil
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// admittedConn is a connection whose CONNECT packet admit has read: Read
// returns it first, then reads the connection.
type admittedConn struct {
	net.Conn
	pending []byte
}

func (c *admittedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil // let the CONNECT's bytes go
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// tlsConn returns the TLS connection under a client's connection, if any.
func tlsConn(c net.Conn) (*tls.Conn, bool) {
	if ac, ok := c.(*admittedConn); ok {
		c = ac.Conn
	}
	tc, ok := c.(*tls.Conn)
	return tc, ok
}
