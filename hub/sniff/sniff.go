// Package sniff serves TLS and plain connections on one port: a listener
// that hands net/http a *tls.Conn for connections that start with a TLS
// handshake record and the raw connection for the others. Only the hub's
// root (hub/hubd) imports it, for the REST port that answers HTTP and
// HTTPS.
//
// Each new connection is sniffed in a goroutine of its own, so a client
// that connects and says nothing delays nobody else. The first byte and,
// for TLS, the whole handshake must arrive within the listener's timeout:
// a silent or stalled client is closed and counted (Counts), never handed
// to net/http (whose ReadHeaderTimeout and ReadTimeout bound what
// follows). Close closes the port and waits for every goroutine the
// listener started.
package sniff

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
)

// DefaultTimeout bounds the wait for a new connection's first byte and TLS
// handshake.
const DefaultTimeout = 10 * time.Second

// Listener is a net.Listener that serves TLS and plain connections on one
// port. Create it with New.
type Listener struct {
	net.Listener
	tls     *tls.Config
	timeout time.Duration

	start  sync.Once
	closed chan struct{} // closed by Close
	conns  chan net.Conn
	errc   chan error // holds the accept loop's final error
	wg     sync.WaitGroup

	// Connections closed before net/http saw them.
	silent, tlsTimeout, tlsFailed atomic.Uint64
}

// New wraps ln: connections starting with a TLS handshake record (0x16)
// are served with cfg. A timeout of 0 means DefaultTimeout. It starts no
// goroutine: the first Accept does.
func New(ln net.Listener, cfg *tls.Config, timeout time.Duration) *Listener {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Listener{Listener: ln, tls: cfg, timeout: timeout, closed: make(chan struct{}),
		conns: make(chan net.Conn), errc: make(chan error, 1)}
}

// Accept returns the next sniffed connection.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept gets it too
		return nil, err
	}
}

// Close closes the port and waits until the goroutines the listener
// started have returned (those sniffing a connection close it).
func (l *Listener) Close() error {
	var err error
	select {
	case <-l.closed:
	default:
		close(l.closed)
		err = l.Listener.Close()
	}
	l.wg.Wait()
	return err
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
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
			select {
			case <-time.After(delay):
			case <-l.closed:
				l.errc <- net.ErrClosed
				return
			}
			continue
		}
		delay = 0
		l.wg.Add(1)
		go l.sniff(c)
	}
}

func (l *Listener) sniff(c net.Conn) {
	defer l.wg.Done()
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	stop := watchClose(c, l.closed)
	defer stop()
	first, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && !l.isClosed() {
			l.silent.Add(1)
		}
		c.Close() // went away, said nothing, or the listener closed
		return
	}
	var out net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 {
		tc := tls.Server(out, l.tls)
		if err := tc.Handshake(); err != nil {
			switch {
			case l.isClosed():
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
	case <-l.closed:
		c.Close()
	}
}

func (l *Listener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// watchClose ends c's pending read when the listener closes (by setting
// its deadline to now). The returned func stops the watch.
func watchClose(c net.Conn, closed <-chan struct{}) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-closed:
			_ = c.SetDeadline(time.Now())
		case <-done:
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Counts are the connections closed before net/http saw them.
type Counts struct {
	Silent     uint64 // no first byte within the timeout
	TLSTimeout uint64 // TLS handshake not done within the timeout
	TLSFailed  uint64 // TLS handshake failed
}

// Counts returns the connections closed so far, by reason.
func (l *Listener) Counts() Counts {
	return Counts{Silent: l.silent.Load(), TLSTimeout: l.tlsTimeout.Load(), TLSFailed: l.tlsFailed.Load()}
}

// peekedConn is a net.Conn whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
