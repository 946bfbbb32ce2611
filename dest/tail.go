package dest

import (
	"net"
	"slices"
	"time"

	"github.com/polymur/polymur/batch"
)

// settleTail lets go of the kept first-after-idle lines once the kernel
// holds nothing unacknowledged for conn.
// A reset purges the kernel's queue too, so the connection must also still
// be open: a peer that reset it never took them.
func (w *writer) settleTail(conn net.Conn, peerGone <-chan struct{}) {
	if len(w.tail) == 0 || peerClosed(conn, &w.raw) {
		return
	}
	// A peer that closed answers within a round trip; one that is still
	// taking the data after a second is alive, just busy: stop holding (a
	// held spool batch holds its spool's cursor back).
	if unsentBytes(conn) != 0 && time.Since(w.tailAt) < time.Second {
		return
	}
	select {
	case <-peerGone:
		return
	default:
	}
	w.releaseTail()
}

func (w *writer) releaseTail() {
	for i, b := range w.tail {
		b.Release()
		w.tail[i] = nil
	}
	w.tail = w.tail[:0]
}

// requeueTail puts the kept first-after-idle lines that were written whole
// back at the head of the queue (the connection was lost before the peer
// acknowledged them) and returns their bytes.
func (w *writer) requeueTail() int {
	if len(w.tail) == 0 {
		return 0
	}
	var back []*batch.Batch
	n, bytes := 0, 0
	for i, b := range w.tail {
		if slices.Contains(w.pending, b) {
			b.Release() // still pending: it goes again anyway
		} else {
			back = append(back, b)
			n += b.Len()
			bytes += len(b.Buf)
		}
		w.tail[i] = nil
	}
	w.tail = w.tail[:0]
	if len(back) > 0 {
		w.d.sent.Add(^uint64(n - 1))
		w.d.sentBytes.Add(^uint64(bytes - 1))
		w.d.q.pushFront(back)
		w.d.resent.Add(uint64(n))
	}
	return bytes
}

// noteUnacked counts, when a connection is lost, the lines the kernel still
// held for it: written, so counted as sent, but never acknowledged by the
// peer and probably lost with the connection. An estimate from the bytes
// left (SIOCOUTQ) and the destination's mean line length.
func (w *writer) noteUnacked(conn net.Conn, requeued int) {
	left := unsentBytes(conn) - requeued // what goes again is not lost
	if left <= 0 {
		return
	}
	lines, bytes := w.d.sent.Load(), w.d.sentBytes.Load()
	if lines == 0 || bytes == 0 {
		return
	}
	est := (uint64(left)*lines + bytes - 1) / bytes
	w.d.unacked.Add(est)
	w.p.log.Warn("connection lost with data the destination never acknowledged", "dest", w.d.Name, "bytes", left, "lines_estimate", est)
}
