package dest

import (
	"context"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/spool"
)

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
		w.rlog.took(w.log, time.Now(), int64(b.Len()), w.d.sp.Lines(), w.d.sp.Bytes(), always)
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
