package dest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/decode"
)

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
		if err != nil && !errors.Is(err, errStop) && !errors.Is(err, errRemoved) && !errors.Is(err, errHeld) && !errors.Is(err, errMoved) {
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
				if w.d.sp != nil {
					w.rlog.idle(w.log, time.Now(), w.d.sp.Lines())
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
					if w.d.moved.Load() {
						return errMoved
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
		if idle && w.p.cfg.Window != nil {
			// The first lines after a quiet spell, most likely from the
			// first of the readers one window tick woke: let the others
			// run and place theirs first, then write them all at once.
			runtime.Gosched()
			w.pending = w.d.q.popAll(w.pending)
			w.d.pending.Store(int64(w.pendingPoints()))
		}
		select {
		case <-peerGone:
			return errPeerClose
		default:
		}
		if idle && peerClosed(conn, &w.raw) {
			return errPeerClose
		}
		if w.d.held.Load() {
			return errHeld
		}
		if w.d.moved.Load() {
			return errMoved
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
	} else if rn, ok, rerr := w.rawWrite(conn, bufs); ok {
		n, err = rn, rerr
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

// rawSmall is the largest write made as raw system calls: the small
// writes of ordinary rates, where waking the runtime's monitor costs more
// than the write (rawWritev). A burst's large writes are announced as
// ordinary system calls, so that the runtime can hand their P to another
// thread meanwhile.
const rawSmall = 64 << 10

// rawWrite is rawWritev for a small write; ok is false otherwise.
func (w *writer) rawWrite(conn net.Conn, bufs net.Buffers) (int64, bool, error) {
	size := 0
	for _, b := range bufs {
		if size += len(b); size > rawSmall {
			return 0, false, nil
		}
	}
	return rawWritev(conn, bufs, &w.raw)
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
