package hubd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicia-home/alicia/hub/prom"
)

// sniffListener serves TLS and plain HTTP on one port: a connection whose
// first byte is a TLS handshake record (0x16) is wrapped in tls.Server, any
// other is passed through. net/http then sees a *tls.Conn for the TLS ones
// (and sets Request.TLS), so handlers can tell which they got.
//
// Each new connection is sniffed in its own goroutine, so a client that
// connects and says nothing delays nobody else. The first byte and, for
// TLS, the whole handshake must arrive within the listener's timeout: a
// silent or stalled client is closed and counted, never handed to
// net/http (whose ReadHeaderTimeout and ReadTimeout bound what follows).
type sniffListener struct {
	net.Listener
	tls     *tls.Config
	timeout time.Duration

	once  sync.Once
	conns chan net.Conn
	errc  chan error

	// Connections closed before net/http saw them.
	silent, tlsTimeout, tlsFailed atomic.Uint64
}

// sniffTimeout bounds the wait for a new connection's first byte and TLS
// handshake on the hub's HTTP port.
const sniffTimeout = 10 * time.Second

func newSniffListener(ln net.Listener, cfg *tls.Config, timeout time.Duration) *sniffListener {
	return &sniffListener{Listener: ln, tls: cfg, timeout: timeout, conns: make(chan net.Conn), errc: make(chan error, 1)}
}

func (l *sniffListener) Accept() (net.Conn, error) {
	l.once.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept gets it too
		return nil, err
	}
}

func (l *sniffListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.errc <- err
				return
			}
			// Temporary (out of file descriptors, aborted connection):
			// back off and keep serving, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.sniff(c)
	}
}

func (l *sniffListener) sniff(c net.Conn) {
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	first, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			l.silent.Add(1)
		}
		c.Close() // went away or said nothing
		return
	}
	var out net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 {
		tc := tls.Server(out, l.tls)
		if err := tc.Handshake(); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				l.tlsTimeout.Add(1)
			case !errors.Is(err, io.EOF):
				l.tlsFailed.Add(1)
			}
			c.Close()
			return
		}
		out = tc
	}
	_ = c.SetDeadline(time.Time{}) // net/http sets its own
	select {
	case l.conns <- out:
	case err := <-l.errc:
		l.errc <- err
		c.Close() // the listener is closed
	}
}

// dropped returns the connections closed before net/http saw them, as
// labelled in the hub's metrics.
func (l *sniffListener) dropped() []prom.Dropped {
	return []prom.Dropped{
		{Listener: "http", Reason: "first_byte_timeout", Count: l.silent.Load()},
		{Listener: "http", Reason: "tls_handshake_timeout", Count: l.tlsTimeout.Load()},
		{Listener: "http", Reason: "tls_handshake_failed", Count: l.tlsFailed.Load()},
	}
}

// peekedConn is a net.Conn whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
