package dest

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
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
	holdKick chan struct{} // 1-slot: held (or moved) changed
	// moved is set when the hostname now resolves to addresses the
	// connection's peer is not among: the writer reconnects.
	moved  atomic.Bool
	peerIP atomic.Pointer[string] // the connected peer's address; nil while not connected
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
	errMoved     = errors.New("the destination's name resolves elsewhere now")
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
	raw     rawScratch // the raw writev's iovecs

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
	rlog       replayLog
	log        *slog.Logger // the set's, with the destination's name

	// What the current connection took: lines written in the last second
	// (recent) and when the last write was; mismatch counts connections in
	// a row that the peer closed right after a write.
	recent    uint64
	lastWrite time.Time
	mismatch  int
}

func (p *Set) runDest(ctx context.Context, d *target) {
	log := p.log.With("dest", d.Name)
	w := &writer{p: p, d: d, log: log}
	defer w.exit()
	failures, quick := 0, 0
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
		if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
			ip := a.IP.String()
			d.peerIP.Store(&ip)
		}
		d.moved.Store(false)
		err = w.writeLoop(ctx, conn)
		d.peerIP.Store(nil)
		conn.Close()
		if errors.Is(err, errPeerClose) {
			w.peerClosedAfterWrite(log)
		} else if err != nil && !errors.Is(err, errHeld) && !errors.Is(err, errMoved) {
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
		case errors.Is(err, errMoved):
			log.Info("destination's name resolves elsewhere now: reconnecting", "host", d.Host)
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

func (w *writer) dial(ctx context.Context) (net.Conn, error) {
	if w.d.File != "" {
		return openFile(w.d.File)
	}
	dctx, cancel := context.WithTimeout(ctx, w.p.cfg.DialTimeout)
	defer cancel()
	if w.d.TLS != nil {
		// The handshake is part of the dial (and of its timeout): a
		// certificate that does not verify is a failed connection attempt.
		d := tls.Dialer{Config: w.d.TLS, NetDialer: &net.Dialer{Resolver: w.p.cfg.Resolver}}
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
