package dest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/decode"
	"github.com/polymur/polymur/spool"
)

// Destination states.
const (
	stateConnecting int32 = iota // not connected yet, or reconnecting
	stateUp                      // connected
	stateDead                    // DeadAfter reconnects failed: out of the hash-route ring
)

var stateNames = [...]string{"connecting", "up", "dead"}

// dest is one destination: its queue, its counters and its writer's state.
// The connection itself belongs to the writer goroutine alone.
type target struct {
	Destination
	q          *queue
	registered time.Time
	state      atomic.Int32
	pending    atomic.Int64 // points popped by the writer and not yet written

	sent      atomic.Uint64
	sentBytes atomic.Uint64
	unacked   atomic.Uint64 // lines (estimated) left in the kernel when a connection was lost
	// closedAfterWrite counts lines written in the second before the peer
	// closed the connection (a protocol mismatch discards them).
	closedAfterWrite atomic.Uint64
	resent           atomic.Uint64 // lines sent again: their connection was lost before the peer acknowledged them
	dropped          atomic.Uint64
	reconnects       atomic.Uint64
	lastErr          atomic.Pointer[string]

	sp          *spool.Spool // nil without -spool-dir
	spooled     atomic.Uint64
	replayed    atomic.Uint64
	spoolErrors atomic.Uint64

	// removing is set when the destination leaves the set: routers stop
	// waiting for room and hand it their last batches. removed is closed
	// once no router can place on it any more (Set.retire): the writer
	// delivers what it holds, then ends.
	removing   atomic.Bool
	removeOnce sync.Once
	removed    chan struct{}

	held     atomic.Bool   // out of service by Hold
	holds    atomic.Uint64 // times held
	holdKick chan struct{} // 1-slot: held changed
}

func (d *target) remove() { d.removing.Store(true); d.removeOnce.Do(func() { close(d.removed) }) }

// isRemoved reports whether the destination has left the set (it may still
// be delivering what it holds).
func (d *target) isRemoved() bool { return d.removing.Load() }

// retired reports whether no router can place on the destination any more.
func (d *target) retired() bool {
	select {
	case <-d.removed:
		return true
	default:
		return false
	}
}

var (
	errHeld      = errors.New("taken out of service")
	errStop      = errors.New("stop")
	errRemoved   = errors.New("destination removed")
	errPeerClose = errors.New("destination closed the connection")
)

// writer is the state the writer goroutine keeps across connections: popped
// batches not yet fully written, and how far into the first one it got.
type writer struct {
	p       *Set
	d       *target
	pending []*batch.Batch
	off     int // bytes of pending[0] already delivered (a line boundary)
	bufs    net.Buffers

	enc    *decode.Encoder // the connection's compressor (transport gzip, lz4, snappy); nil for plain
	tail   []*batch.Batch  // written first after a quiet spell, kept until acknowledged (settleTail)
	tailAt time.Time       // when the tail was written
	// quietSince is when the writer last found nothing to write.
	quietSince time.Time
	pbuf       []byte         // pickle: the frames of one write
	frames     []decode.Frame // pickle: where they end
	marks      []int          // pickle: frames of pending[:i+1]

	tokens     float64 // spool replay budget in lines (token bucket)
	lastRefill time.Time

	// What the current connection took: lines written in the last second
	// (recent) and when the last write was; mismatch counts connections in
	// a row that the peer closed right after a write.
	recent    uint64
	lastWrite time.Time
	mismatch  int
}

// wrote notes n lines written on the current connection.
func (w *writer) wrote(n int) {
	now := time.Now()
	if now.Sub(w.lastWrite) > time.Second {
		w.recent = 0
	}
	w.recent += uint64(n)
	w.lastWrite = now
}

// peerClosedAfterWrite handles a connection the peer closed: when it came
// right after a write (within a second), the lines of that last second
// were most likely thrown away — the symptom of a protocol mismatch
// (plaintext into carbon's pickle port, or pickle into the line port).
// They are counted (closed_after_write), and three such connections in a
// row get a warning.
func (w *writer) peerClosedAfterWrite(log *slog.Logger) {
	if w.recent == 0 || time.Since(w.lastWrite) > time.Second {
		w.mismatch = 0
		return
	}
	w.d.closedAfterWrite.Add(w.recent)
	w.mismatch++
	if w.mismatch == 3 || w.mismatch%100 == 0 {
		proto := "plaintext lines"
		if w.d.Pickle {
			proto = "pickle frames"
		}
		log.Warn("destination closes the connection right after receiving data: is it the right protocol? We send "+proto+
			"; carbon-cache takes plaintext on its line port (2003) and pickle on 2004 (-destination-protocol pickle, or type pickle in -config)",
			"times_in_a_row", w.mismatch, "lines_probably_discarded", w.d.closedAfterWrite.Load())
	}
	w.recent = 0
}

func (p *Set) runDest(ctx context.Context, d *target) {
	w := &writer{p: p, d: d}
	defer w.exit()
	failures, quick := 0, 0
	log := p.log.With("dest", d.Name)
	for {
		if w.finished(ctx) {
			return
		}
		if d.held.Load() {
			w.whileHeld(ctx)
			continue
		}
		conn, err := w.dial(ctx)
		if err != nil {
			failures++
			w.noteErr(err)
			if failures == 1 || failures == p.cfg.DeadAfter || failures%30 == 0 {
				log.Warn("destination unreachable", "err", err, "attempt", failures)
			}
			if d.sp != nil && p.draining.Load() {
				w.spoolPending() // shutting down while it is away: keep it on disk
			}
			if failures >= p.cfg.DeadAfter && d.state.Load() != stateDead && d.sp == nil {
				p.setState(d, stateDead)
				log.Error("destination declared dead", "failed_reconnects", failures, "queued", d.q.depth()+int(d.pending.Load()))
			}
			if d.state.Load() == stateDead && p.cfg.Mode == HashRoute {
				w.reroute(ctx)
			}
			w.sleep(ctx, p.backoff(failures))
			continue
		}
		if d.state.Load() == stateDead {
			log.Info("destination back, rejoining", "after_failures", failures)
		} else if failures > 0 {
			log.Info("destination reconnected", "after_failures", failures)
		}
		failures = 0
		p.setState(d, stateUp)
		connected := time.Now()
		w.recent = 0
		err = w.writeLoop(ctx, conn)
		conn.Close()
		if errors.Is(err, errPeerClose) {
			w.peerClosedAfterWrite(log)
		} else if err != nil && !errors.Is(err, errHeld) {
			w.mismatch = 0
		}
		switch {
		case errors.Is(err, errStop):
			return
		case errors.Is(err, errRemoved):
			w.onRemoved(ctx, false)
			return
		case errors.Is(err, errHeld):
			continue
		case ctx.Err() != nil:
			return // exit keeps or counts what is pending
		}
		p.setState(d, stateConnecting)
		d.reconnects.Add(1)
		w.noteErr(err)
		if time.Since(connected) < time.Second {
			// Lost at once (a UDP destination refusing, a peer that accepts
			// and closes): back off as after a failed dial, or this spins.
			quick++
			if quick == 1 || quick%30 == 0 {
				log.Warn("destination connection lost at once", "err", err, "times", quick)
			}
			w.sleep(ctx, p.backoff(quick))
			continue
		}
		quick = 0
		log.Warn("destination connection lost", "err", err, "queued", d.q.depth()+int(d.pending.Load()))
	}
}

// whileHeld keeps a held destination out of service: dead, its points
// re-routed in hash-route, until Unhold, removal or shutdown.
func (w *writer) whileHeld(ctx context.Context) {
	d := w.d
	if d.state.Load() != stateDead {
		w.p.setState(d, stateDead)
	}
	for d.held.Load() {
		if w.p.cfg.Mode == HashRoute {
			w.reroute(ctx)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-d.holdKick:
		case <-t.C:
		case <-d.removed:
		case <-w.p.stop:
		case <-ctx.Done():
		}
		t.Stop()
		if d.retired() || ctx.Err() != nil {
			return
		}
		select {
		case <-w.p.stop:
			return
		default:
		}
	}
}

// finished handles removal and shutdown between connection attempts.
func (w *writer) finished(ctx context.Context) bool {
	switch {
	case w.d.retired():
		w.onRemoved(ctx, true)
		return true
	case ctx.Err() != nil:
		return true // exit keeps or counts what is pending
	}
	select {
	case <-w.p.stop:
		return true
	default:
		return false
	}
}

// onRemoved disposes of what a removed destination still holds: re-routed in
// hash-route, otherwise counted as dropped.
func (w *writer) onRemoved(ctx context.Context, down bool) {
	w.d.q.close()
	defer w.drainRemovedSpool(ctx)
	if w.p.cfg.Mode == HashRoute {
		w.reroute(ctx)
		return
	}
	w.pending = w.d.q.popAll(w.pending)
	n := w.pendingPoints()
	w.releaseAll()
	if n > 0 {
		w.p.drops.add(DropRemoved, uint64(n))
		w.p.log.Warn("removed destination had undelivered points", "dest", w.d.Name, "n", n, "connected", !down)
	}
}

// drainRemovedSpool empties a removed destination's spool: in hash-route
// its lines go to the remaining ring through the retry queue (each record
// acknowledged once delivered there), otherwise — or with no destination
// left — they are counted as dropped (dest_removed). The spool's files are
// deleted once it is empty; at a hard stop first, they are kept.
func (w *writer) drainRemovedSpool(ctx context.Context) {
	sp := w.d.sp
	if sp == nil {
		return
	}
	var rerouted, dropped int
	defer func() {
		if rerouted+dropped > 0 {
			w.p.log.Warn("removed destination's spool emptied", "dest", w.d.Name, "rerouted", rerouted, "dropped", dropped)
		}
	}()
	for !sp.Empty() {
		select {
		case rec := <-sp.Chan():
			b := sp.Batch(rec)
			n := b.Len()
			if w.p.cfg.Mode == HashRoute && w.p.view.Load().live != nil {
				w.p.inflight.Add(int64(n))
				select {
				case w.p.retry <- b: // policy: block (bounded by the drain deadline)
					w.p.retried.Add(uint64(n))
					rerouted += n
					continue
				case <-ctx.Done():
					w.p.inflight.Add(-int64(n))
					b.Done = nil // not accounted for: it stays in the spool
					b.Release()
					w.p.log.Warn("removed destination's spool kept at shutdown", "dest", w.d.Name, "lines", sp.Lines())
					sp.Close()
					return
				}
			}
			w.p.drops.add(DropRemoved, uint64(n))
			w.d.dropped.Add(uint64(n))
			dropped += n
			b.Release()
		case <-ctx.Done():
			w.p.log.Warn("removed destination's spool kept at shutdown", "dest", w.d.Name, "lines", sp.Lines())
			sp.Close()
			return
		case <-time.After(5 * time.Millisecond):
			// Acknowledgements of re-routed records arrive as they are
			// delivered; Empty waits for them too.
		}
	}
	if err := sp.Remove(); err != nil {
		w.p.log.Warn("removed destination's spool not deleted", "dest", w.d.Name, "err", err)
		sp.Close()
	}
}

func (w *writer) dial(ctx context.Context) (net.Conn, error) {
	if w.d.File != "" {
		return openFile(w.d.File)
	}
	dctx, cancel := context.WithTimeout(ctx, w.p.cfg.DialTimeout)
	defer cancel()
	if w.d.TLS != nil {
		// The handshake is part of the dial (and of its timeout): a
		// certificate that does not verify is a failed connection attempt.
		d := tls.Dialer{Config: w.d.TLS}
		return d.DialContext(dctx, "tcp", w.d.Addr())
	}
	return w.p.cfg.Dial(dctx, w.d.Addr())
}

func (w *writer) noteErr(err error) {
	s := err.Error()
	w.d.lastErr.Store(&s)
}

func (w *writer) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-w.d.removed:
	}
}

// quietSpell is how long a writer must have had nothing to write for its
// next write to be held until acknowledged: long enough for a peer's close
// to have happened unnoticed, and rare under load.
const quietSpell = 10 * time.Millisecond

// writeLoop writes queued batches to conn until an error, removal or stop.
func (w *writer) writeLoop(ctx context.Context, conn net.Conn) (err error) {
	w.enc = nil
	if t := w.d.Transport; t != "" && t != decode.Plain {
		w.enc = decode.NewEncoder(t, conn) // a new stream per connection
	}
	peerGone := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	defer func() {
		if err != nil && !errors.Is(err, errStop) && !errors.Is(err, errRemoved) && !errors.Is(err, errHeld) {
			requeued := 0
			// Only when the peer ended the connection (closed, reset): at our
			// own shutdown or a stalled write the peer is alive and has, or
			// will read, what its kernel took.
			if ctx.Err() == nil && w.p.drainCtx.Err() == nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				requeued = w.requeueTail()
			}
			w.noteUnacked(conn, requeued)
		}
		w.releaseTail()
	}()
	// Shutdown brings the write deadline in to the drain deadline, so a
	// write blocked on a stalled peer cannot outlast -drain-timeout.
	stopDrain := context.AfterFunc(w.p.drainCtx, func() { conn.SetWriteDeadline(w.p.drainDeadline()) })
	defer stopDrain()
	// Carbon destinations never send; a read that returns means the peer
	// closed or reset. Noticing it before writing keeps lines from being
	// written into a connection the peer has already shut.
	wg.Go(func() {
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				close(peerGone)
				return
			}
		}
	})
	idle := true
	w.quietSince = time.Time{} // a new connection: its first write is after a quiet spell
	for {
		if len(w.pending) == 0 {
			w.pending = w.d.q.popAll(w.pending)
			w.replay(nil)
			w.d.pending.Store(int64(w.pendingPoints()))
			if len(w.pending) == 0 {
				if !idle {
					idle, w.quietSince = true, time.Now()
				}
				spoolCh, wait := w.replayChan()
				var tailCheck <-chan time.Time
				if len(w.tail) > 0 {
					w.settleTail(conn, peerGone)
					if len(w.tail) > 0 {
						tailCheck = time.After(20 * time.Millisecond) // until the peer has acknowledged them
					}
				}
				select {
				case <-tailCheck:
					continue
				case rec := <-spoolCh:
					w.replay(&rec)
					continue
				case <-wait:
					continue
				case <-w.d.q.ready:
					continue
				case <-w.d.holdKick:
					if w.d.held.Load() {
						return errHeld
					}
					continue
				case <-peerGone:
					return errPeerClose
				case <-w.d.removed:
					if w.d.q.depth() == 0 {
						return errRemoved
					}
					continue
				case <-w.p.stop:
					return errStop
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		select {
		case <-peerGone:
			return errPeerClose
		default:
		}
		if idle && peerClosed(conn) {
			return errPeerClose
		}
		if w.d.held.Load() {
			return errHeld
		}
		w.settleTail(conn, peerGone)
		if idle && time.Since(w.quietSince) >= quietSpell && len(w.tail) == 0 && w.enc == nil && !w.d.Pickle && w.d.File == "" {
			// The first write after a quiet spell may go into a connection
			// the peer closed a moment ago (its FIN still on the way): keep
			// those lines until the peer's TCP has acknowledged them, and
			// send them again on the next connection if it never does.
			for _, b := range w.pending {
				if b.Done != nil {
					continue // from the spool: held, it would hold the spool's read-ahead and cursor back
				}
				b.Retain(1)
				w.tail = append(w.tail, b)
			}
			w.tailAt = time.Now()
		}
		idle = false
		if err := w.writeOnce(conn); err != nil {
			return err
		}
	}
}

// settleTail lets go of the kept first-after-idle lines once the kernel
// holds nothing unacknowledged for conn.
// A reset purges the kernel's queue too, so the connection must also still
// be open: a peer that reset it never took them.
func (w *writer) settleTail(conn net.Conn, peerGone <-chan struct{}) {
	if len(w.tail) == 0 || peerClosed(conn) {
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

// writeOnce writes the pending batches with one vectored write. On error the
// lines not completely written stay pending for the next connection.
func (w *writer) writeOnce(conn net.Conn) error {
	if w.d.Pickle {
		return w.writePickle(conn)
	}
	w.bufs = w.bufs[:0]
	for i, b := range w.pending {
		if i == 0 {
			w.bufs = append(w.bufs, b.Buf[w.off:])
		} else {
			w.bufs = append(w.bufs, b.Buf)
		}
	}
	// One deadline for the whole write: a trickle of progress does not
	// stretch it (a peer that takes longer than -write-timeout for one
	// write is stalled and gets a new connection; nothing pending is
	// lost). Shutdown shortens it to the drain deadline.
	conn.SetWriteDeadline(w.writeDeadline())
	bufs := w.bufs
	start := time.Now()
	var n int64
	var err error
	if w.enc != nil {
		n, err = w.writeCompressed(bufs)
	} else {
		n, err = bufs.WriteTo(conn)
	}
	if obs := w.p.cfg.ObserveWrite; obs != nil {
		obs(time.Since(start))
	}
	w.consume(int(n))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("write not accepted within %v (%d bytes taken): %w", w.p.cfg.WriteTimeout, n, err)
	}
	return err
}

// writeDeadline is the deadline of one write: -write-timeout from now, or
// the drain deadline when that comes first.
func (w *writer) writeDeadline() time.Time {
	dl := time.Now().Add(w.p.cfg.WriteTimeout)
	if dd := w.p.drainDeadline(); !dd.IsZero() && dd.Before(dl) {
		dl = dd
	}
	return dl
}

// writePickle writes the pending lines as carbon pickle frames in one
// write. Only whole frames count: after a partial write the lines of the
// frame that was cut stay pending and go again, whole, on the next
// connection (carbon drops a frame it did not get whole).
func (w *writer) writePickle(conn net.Conn) error {
	w.pbuf, w.frames = w.pbuf[:0], w.frames[:0]
	marks := w.marks[:0]
	for bi, b := range w.pending {
		from := 0
		if bi == 0 && w.off > 0 {
			from = lineAt(b, w.off)
		}
		w.pbuf, w.frames, _ = decode.AppendPickle(w.pbuf, b, from, b.Len(), w.frames)
		marks = append(marks, len(w.frames))
	}
	w.marks = marks
	conn.SetWriteDeadline(w.writeDeadline())
	start := time.Now()
	var n int
	var err error
	if w.enc != nil {
		var m int64
		m, err = w.writeCompressed(net.Buffers{w.pbuf})
		n = int(m)
	} else {
		n, err = conn.Write(w.pbuf)
	}
	if obs := w.p.cfg.ObserveWrite; obs != nil {
		obs(time.Since(start))
	}
	// The line bytes behind the frames written whole.
	done, fi, skipped := 0, 0, 0
	for bi, b := range w.pending {
		from := 0
		if bi == 0 {
			from = w.off
		}
		if bi > 0 && marks[bi] == marks[bi-1] || bi == 0 && marks[0] == 0 {
			done += len(b.Buf) - from // nothing in it to encode
			continue
		}
		last := -1
		for ; fi < marks[bi] && w.frames[fi].Byte <= n; fi++ {
			last, skipped = w.frames[fi].Line, skipped+w.frames[fi].Skipped
		}
		if last < 0 {
			break
		}
		if last == b.Len() {
			done += len(b.Buf) - from
		} else {
			l := b.Lines[last]
			done += int(l.Off) - from
		}
		if fi < marks[bi] {
			break // this batch was cut
		}
	}
	w.consume(done)
	if skipped > 0 {
		w.p.drops.add(DropNotPickleable, uint64(skipped))
		w.d.sent.Add(^uint64(skipped - 1)) // counted as sent by consume
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("write not accepted within %v (%d bytes taken): %w", w.p.cfg.WriteTimeout, n, err)
	}
	return err
}

// writeCompressed sends bufs through the connection's compressor and
// flushes it. A compressed write is whole or nothing: when the connection
// fails, nothing counts as written (the lines go again on the next
// connection, in a new stream; what the peer had decoded of the lost one
// may arrive twice).
func (w *writer) writeCompressed(bufs net.Buffers) (int64, error) {
	var total int64
	for _, b := range bufs {
		if _, err := w.enc.Write(b); err != nil {
			return 0, err
		}
		total += int64(len(b))
	}
	if err := w.enc.Flush(); err != nil {
		return 0, err
	}
	return total, nil
}

// lineAt is the index of the line of b that starts at byte off.
func lineAt(b *batch.Batch, off int) int {
	i, _ := slices.BinarySearchFunc(b.Lines, off, func(l batch.Line, off int) int { return int(l.Off) - off })
	return i
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

// consume accounts for n bytes written from the pending batches.
func (w *writer) consume(n int) {
	for n > 0 && len(w.pending) > 0 {
		b := w.pending[0]
		rest := len(b.Buf) - w.off
		if n >= rest {
			lines := b.Len()
			if w.off > 0 {
				lines = countLines(b.Buf[w.off:])
			}
			w.d.sent.Add(uint64(lines))
			w.d.sentBytes.Add(uint64(rest))
			w.d.pending.Add(-int64(lines))
			w.wrote(lines)
			n -= rest
			w.off = 0
			b.Release()
			w.pending[0] = nil
			w.pending = w.pending[1:]
			continue
		}
		done := batch.LineBoundary(b.Buf[w.off:], n)
		lines := countLines(b.Buf[w.off : w.off+done])
		w.d.sent.Add(uint64(lines))
		w.d.sentBytes.Add(uint64(done))
		w.d.pending.Add(-int64(lines))
		w.wrote(lines)
		w.off += done
		return
	}
	if len(w.pending) == 0 {
		w.pending = w.pending[:0:0]
	}
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

func (w *writer) pendingPoints() int {
	n := 0
	for i, b := range w.pending {
		if i == 0 && w.off > 0 {
			n += countLines(b.Buf[w.off:])
			continue
		}
		n += b.Len()
	}
	return n
}

// takePending returns the undelivered lines as standalone batches and
// clears the writer's pending state.
func (w *writer) takePending() []*batch.Batch {
	out := w.pending
	if len(out) > 0 && w.off > 0 {
		rest, _ := out[0].LinesFrom(w.off)
		out[0].Release()
		out[0] = rest
	}
	w.pending, w.off = nil, 0
	w.d.pending.Store(0)
	return out
}

// reroute hands a dead or removed hash-route destination's points to the
// retry queue, to be placed on the live destinations. Policy: block (bounded
// by ctx, the drain deadline); what cannot be handed over is counted.
func (w *writer) reroute(ctx context.Context) {
	if w.p.view.Load().live == nil && !w.d.isRemoved() {
		return // nobody to take them: keep them queued here
	}
	all := w.takePending()
	all = w.d.q.popAll(all)
	for i, b := range all {
		n := b.Len()
		w.p.inflight.Add(int64(n))
		select {
		case w.p.retry <- b: // policy: block
			w.p.retried.Add(uint64(n))
		case <-ctx.Done():
			w.p.inflight.Add(-int64(n))
			lost := 0
			for _, r := range all[i:] {
				lost += r.Len()
				r.Release()
			}
			w.p.drops.add(DropShutdown, uint64(lost))
			return
		}
	}
}

func (w *writer) releaseAll() {
	for _, b := range w.takePending() {
		b.Release()
	}
}

// dropPending counts what the writer holds at the hard stop; the set counts
// the queues.
func (w *writer) dropPending() {
	if n := w.pendingPoints(); n > 0 {
		w.p.drops.add(DropShutdown, uint64(n))
		w.d.dropped.Add(uint64(n))
		w.p.log.Error("points not delivered before shutdown", "dest", w.d.Name, "n", n)
	}
	w.releaseAll()
}

// replayChan returns the spool's channel when the replay budget allows a
// read, else a timer channel for when it will (both nil without a spool).
func (w *writer) replayChan() (<-chan spool.Record, <-chan time.Time) {
	if w.d.sp == nil || (w.p.draining.Load() && !w.p.cfg.SpoolAlways) {
		return nil, nil
	}
	if w.p.cfg.SpoolAlways || w.d.q.depth() == 0 {
		// The spool is the queue (write-ahead), or no new point is waiting:
		// nothing to be fair to, so no replay budget.
		return w.d.sp.Chan(), nil
	}
	w.refill()
	if w.tokens > 0 {
		return w.d.sp.Chan(), nil
	}
	return nil, time.After(time.Duration(-w.tokens/float64(w.p.cfg.SpoolReplayRate)*float64(time.Second)) + time.Millisecond)
}

func (w *writer) refill() {
	now := time.Now()
	rate := float64(w.p.cfg.SpoolReplayRate)
	if w.lastRefill.IsZero() {
		w.tokens = rate
	} else {
		w.tokens = min(rate, w.tokens+now.Sub(w.lastRefill).Seconds()*rate)
	}
	w.lastRefill = now
}

// replay appends buf (when not nil) and then whatever the spool has ready
// within the replay budget to the pending batches: spooled points flow at a
// bounded rate beside new ones.
func (w *writer) replay(rec *spool.Record) {
	always := w.p.cfg.SpoolAlways
	if w.d.sp == nil || (w.p.draining.Load() && !always) {
		return
	}
	var bytes int
	take := func(rec spool.Record) {
		b := w.d.sp.Batch(rec) // acknowledged when released: delivered, spooled again or dropped
		bytes += len(b.Buf)
		if !always {
			w.tokens -= float64(b.Len())
			w.d.replayed.Add(uint64(b.Len()))
		}
		w.pending = append(w.pending, b)
	}
	if rec != nil {
		take(*rec)
	}
	if always || w.d.q.depth() == 0 {
		// Write-ahead, or no new point waiting: read ahead of the socket by
		// at most readAhead bytes, unpaced.
		for bytes < readAhead {
			select {
			case rec := <-w.d.sp.Chan():
				take(rec)
			default:
				return
			}
		}
		return
	}
	w.refill()
	for w.tokens > 0 {
		select {
		case rec := <-w.d.sp.Chan():
			take(rec)
		default:
			return
		}
	}
}

// readAhead bounds what a write-ahead writer takes from its spool for one
// write.
const readAhead = 1 << 20

// spoolPending writes the writer's pending points and its queue to the spool.
func (w *writer) spoolPending() {
	all := w.d.q.popAll(w.takePending())
	for i, b := range all {
		if !w.p.spoolBatch(w.d, b) {
			w.pending = all[i:]
			w.d.pending.Store(int64(w.pendingPoints()))
			return
		}
	}
}

// exit disposes of what the writer still holds when it stops: spooled when
// there is a spool, else counted as lost.
func (w *writer) exit() {
	if len(w.pending) == 0 {
		return
	}
	if w.d.sp != nil {
		for _, b := range w.takePending() {
			// Spooled again — for a batch read from the spool that
			// acknowledges the original record, so a partly written one
			// keeps only its undelivered lines and nothing repeats.
			if w.p.spoolBatch(w.d, b) {
				continue
			}
			if b.Done != nil {
				// The spool refused the copy: the original record stays,
				// unacknowledged, and is replayed at the next start.
				b.Done = nil
				b.Release()
				continue
			}
			w.p.drops.add(DropShutdown, uint64(b.Len()))
			b.Release()
		}
		return
	}
	w.dropPending()
}

// setState changes d's state, rebuilding the ring tables when d joins or
// leaves the live set. The change and the new view happen under p.mu.
func (p *Set) setState(d *target, s int32) {
	if (d.state.Load() == stateDead) == (s == stateDead) {
		d.state.Store(s)
		return
	}
	p.mu.Lock()
	d.state.Store(s)
	v := p.view.Load()
	p.setView(v.dests, v.routes)
	p.mu.Unlock()
}
