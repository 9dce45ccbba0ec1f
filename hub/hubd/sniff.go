package hubd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// sniffListener serves TLS and plain HTTP on one port: a connection whose
// first byte is a TLS handshake record (0x16) is wrapped in tls.Server, any
// other is passed through. net/http then sees a *tls.Conn for the TLS ones
// (and sets Request.TLS), so handlers can tell which they got.
//
// Each new connection is sniffed in its own goroutine, so a client that
// connects and says nothing delays nobody else.
type sniffListener struct {
	net.Listener
	tls *tls.Config

	once  sync.Once
	conns chan net.Conn
	errc  chan error
}

// sniffTimeout bounds the wait for a new connection's first byte.
const sniffTimeout = 10 * time.Second

func newSniffListener(ln net.Listener, cfg *tls.Config) *sniffListener {
	return &sniffListener{Listener: ln, tls: cfg, conns: make(chan net.Conn), errc: make(chan error, 1)}
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
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close() // went away or said nothing
		return
	}
	var out net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 {
		out = tls.Server(out, l.tls)
	}
	select {
	case l.conns <- out:
	case err := <-l.errc:
		l.errc <- err
		c.Close() // the listener is closed
	}
}

// peekedConn is a net.Conn whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
