package sim

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
)

// spiPort is a loopback SPI port: MISO is wired to MOSI, so a full-duplex
// transfer reads back what it wrote.
type spiPort struct {
	board *Board
	name  string

	// mu guards the fields below.
	mu        sync.Mutex
	closed    bool
	connected bool
	limit     physic.Frequency
}

var _ spi.PortCloser = (*spiPort)(nil)

func (p *spiPort) String() string { return "sim-spi-" + p.name }

// Connect implements spi.Port. As on Linux, it may be called once per
// opening.
func (p *spiPort) Connect(f physic.Frequency, mode spi.Mode, bits int) (spi.Conn, error) {
	if err := p.board.checkOpen(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if f < 0 {
		return nil, fmt.Errorf("%s: invalid frequency %v", p, f)
	}
	if bits != 8 {
		return nil, fmt.Errorf("%s: %d bits per word not supported, use 8", p, bits)
	}
	if mode&^(spi.Mode3|spi.HalfDuplex|spi.NoCS|spi.LSBFirst) != 0 {
		return nil, fmt.Errorf("%s: invalid mode %v", p, mode)
	}
	if mode&spi.HalfDuplex != 0 {
		return nil, fmt.Errorf("%s: half duplex not supported by the loopback", p)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("%s: %w", p, errHandleClosed)
	}
	if p.connected {
		return nil, fmt.Errorf("%s: Connect called twice", p)
	}
	p.connected = true
	return &spiConn{port: p}, nil
}

// LimitSpeed implements spi.PortCloser.
func (p *spiPort) LimitSpeed(f physic.Frequency) error {
	if f <= 0 {
		return fmt.Errorf("%s: invalid speed limit %v", p, f)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit = f
	return nil
}

// Close implements spi.PortCloser.
func (p *spiPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func (p *spiPort) check() error {
	if err := p.board.checkOpen(); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: %w", p, errHandleClosed)
	}
	return nil
}

type spiConn struct{ port *spiPort }

var _ spi.Conn = (*spiConn)(nil)

func (c *spiConn) String() string { return c.port.String() }

// Duplex implements conn.Conn.
func (c *spiConn) Duplex() conn.Duplex { return conn.Full }

// Tx implements conn.Conn: r receives w.
func (c *spiConn) Tx(w, r []byte) error {
	if err := c.port.check(); err != nil {
		return err
	}
	if len(r) != 0 && len(r) != len(w) {
		return fmt.Errorf("%s: read buffer of %d bytes for a write of %d", c, len(r), len(w))
	}
	copy(r, w)
	return nil
}

// TxPackets implements spi.Conn.
func (c *spiConn) TxPackets(packets []spi.Packet) error {
	for _, p := range packets {
		if err := c.Tx(p.W, p.R); err != nil {
			return err
		}
	}
	return nil
}
