package dest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/polymur/polymur/batch"
)

// Run distributes until CloseInput has been called after ctx ended and all
// queued points are delivered, or DrainTimeout after ctx ended, whichever is
// first. What is still queued then is counted as dropped (shutdown) and
// logged. It returns nil.
func (p *Set) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("dest: Run called twice")
	}
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	p.mu.Lock()
	p.runCtx = hard
	for _, d := range p.view.Load().dests {
		p.startWriter(d)
	}
	p.mu.Unlock()

	var wg sync.WaitGroup
	defer p.startDrain()
	wg.Go(func() {
		<-ctx.Done()
		p.drainAt.Store(time.Now().Add(p.cfg.DrainTimeout).UnixNano())
		p.startDrain()
		t := time.NewTimer(p.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelHard()
		case <-hard.Done():
		}
	})
	if p.console != nil {
		wg.Go(func() { p.runConsole(hard) })
	}
	if p.cfg.StatusInterval > 0 {
		wg.Go(func() { p.statusLoop(hard) })
	}
	if p.cfg.DNSRefresh > 0 {
		wg.Go(func() { p.resolveLoop(hard) })
	}

	p.distributeLoop(hard)
	p.awaitQuiet(hard)
	close(p.stop)
	if p.console != nil {
		p.console.close()
	}
	p.writers.Wait()
	p.countLeftovers()
	cancelHard()
	wg.Wait()
	p.lock.Unlock()
	return nil
}

// drainDeadline is when the hard stop comes (zero before shutdown).
func (p *Set) drainDeadline() time.Time {
	if at := p.drainAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return time.Time{}
}

// startWriter launches d's writer under Run. Callers hold p.mu.
func (p *Set) startWriter(d *target) {
	if p.runCtx == nil {
		return // Run will start it
	}
	ctx := p.runCtx
	p.writers.Go(func() { p.runDest(ctx, d) })
}

// distributeLoop places batches from the incoming and retry queues until the
// input is closed and drained.
func (p *Set) distributeLoop(ctx context.Context) {
	r := newRouter(p)
	defer r.stop()
	for {
		select {
		case b := <-p.in:
			r.place(ctx, p.taken(b))
		case b := <-p.retry:
			n := b.Len()
			r.place(ctx, b)
			p.inflight.Add(-int64(n))
		case <-p.inClosed:
			for {
				select {
				case b := <-p.in:
					r.place(ctx, p.taken(b))
				default:
					if end := p.cfg.InputEnd; end != nil {
						end(func(b *batch.Batch) {
							p.received.Add(uint64(b.Len()))
							r.place(ctx, b)
						})
					}
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// awaitQuiet keeps re-placing retried batches after the input closed until
// nothing is queued anywhere, or ctx (the drain deadline) ends.
func (p *Set) awaitQuiet(ctx context.Context) {
	p.draining.Store(true)
	r := newRouter(p)
	defer r.stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case b := <-p.retry:
			n := b.Len()
			r.place(ctx, b)
			p.inflight.Add(-int64(n))
			continue
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.settleDown()
		if p.quiet() {
			return
		}
	}
}

// settleDown spools what waits for destinations that are down, so that a
// shutdown does not wait the drain timeout for them.
func (p *Set) settleDown() {
	for _, d := range p.view.Load().dests {
		if d.sp == nil || d.state.Load() == stateUp {
			continue
		}
		for _, b := range d.q.popAll(nil) {
			if !p.spoolBatch(d, b) {
				d.q.pushFront([]*batch.Batch{b})
				return
			}
		}
	}
}

func (p *Set) quiet() bool {
	if len(p.retry) > 0 || p.inflight.Load() > 0 {
		return false
	}
	if p.console != nil && p.console.depth() > 0 {
		return false
	}
	for _, d := range p.view.Load().dests {
		if d.sp != nil && d.state.Load() != stateUp {
			continue // settled: what it holds goes to its spool
		}
		if d.q.depth() > 0 || d.pending.Load() > 0 {
			return false
		}
		if p.cfg.SpoolAlways && !d.sp.Empty() {
			return false // write-ahead: deliver from the spool until the deadline
		}
	}
	return true
}

func (p *Set) countLeftovers() {
	var lost int
	take := func(q *queue, d *target) {
		for _, b := range q.popAll(nil) {
			if d != nil && d.sp != nil && p.spoolBatch(d, b) {
				continue
			}
			lost += b.Len()
			b.Release()
		}
	}
	for {
		select {
		case b := <-p.in:
			lost += p.taken(b).Len()
			b.Release()
			continue
		case b := <-p.retry:
			lost += b.Len()
			b.Release()
			continue
		default:
		}
		break
	}
	for _, d := range p.view.Load().dests {
		take(d.q, d)
		if d.sp != nil {
			if err := d.sp.Close(); err != nil {
				p.log.Error("closing spool", "dest", d.Name, "err", err)
			}
		}
	}
	if p.console != nil {
		take(p.console, nil)
	}
	if lost > 0 {
		p.drops.add(DropShutdown, uint64(lost))
		p.log.Error("points not delivered within the drain timeout", "n", lost, "drain_timeout", p.cfg.DrainTimeout)
	}
}

// IncomingDepth returns the batches waiting in the incoming queue and its capacity.
func (p *Set) IncomingDepth() (int, int) { return len(p.in), cap(p.in) }

func (p *Set) runConsole(ctx context.Context) {
	var pending []*batch.Batch
	for {
		pending = p.console.popAll(pending[:0])
		for _, b := range pending {
			if _, err := p.cfg.Console.Write(b.Buf); err != nil {
				p.log.Error("console write failed", "err", err)
			}
			p.consoleN.Add(uint64(b.Len()))
			b.Release()
		}
		if len(pending) > 0 {
			continue
		}
		if n, closed := p.console.state(); closed && n == 0 {
			return
		}
		select {
		case <-p.console.ready:
		case <-ctx.Done():
			return
		}
	}
}

// backoff returns the delay before reconnect attempt n (1-based): doubling
// from ReconnectMin up to ReconnectMax, with ±20% jitter.
func (p *Set) backoff(n int) time.Duration {
	d := p.cfg.ReconnectMin
	for i := 1; i < n && d < p.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, p.cfg.ReconnectMax)
	j := time.Duration(rand.Int64N(int64(d)/5 + 1))
	if rand.IntN(2) == 0 {
		return d - j
	}
	return d + j
}
