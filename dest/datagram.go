package dest

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
)

// DatagramStats counts what DatagramDial's connections sent.
type DatagramStats struct {
	Datagrams  atomic.Uint64 // datagrams written
	Lines      atomic.Uint64 // lines in them
	SendErrors atomic.Uint64 // writes refused (nobody listening: ICMP port unreachable)
}

// DatagramDial returns a Config.Dial for UDP destinations (statsd mode).
// Each write of queued lines is packed into datagrams of at most max bytes,
// split only between lines (a single longer line goes alone), without the
// trailing newline. A refused write fails the connection like a TCP error,
// so the lines not yet sent stay queued and go out after the reconnect.
func DatagramDial(max int, st *DatagramStats) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		return &datagramConn{Conn: c, max: max, st: st}, nil
	}
}

// datagramConn packs newline-terminated lines into datagrams.
type datagramConn struct {
	net.Conn
	max int
	st  *DatagramStats
}

// Write sends p (whole lines) as datagrams and returns the bytes of the
// lines sent, so that a failure leaves the rest pending at a line boundary.
func (c *datagramConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		end := done
		lines := 0
		for end < len(p) {
			nl := bytes.IndexByte(p[end:], '\n')
			next := len(p)
			if nl >= 0 {
				next = end + nl + 1
			}
			// The datagram holds p[done:next] minus its last newline.
			if lines > 0 && next-1-done > c.max {
				break
			}
			end = next
			lines++
		}
		dgram := p[done:end]
		if dgram[len(dgram)-1] == '\n' {
			dgram = dgram[:len(dgram)-1]
		}
		if _, err := c.Conn.Write(dgram); err != nil {
			c.st.SendErrors.Add(1)
			return done, err
		}
		c.st.Datagrams.Add(1)
		c.st.Lines.Add(uint64(lines))
		done = end
	}
	return done, nil
}
