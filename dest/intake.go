package dest

import (
	"context"

	"github.com/polymur/polymur/batch"
)

// admit takes b's footprint from the incoming byte budget, blocking while
// it is spent (policy: block, backpressure to the client); it returns what
// it took.
func (p *Set) admit(ctx context.Context, b *batch.Batch) (int64, error) {
	if p.inBytes == nil {
		return 0, nil
	}
	return p.inBytes.Acquire(ctx, b.Footprint())
}

func (p *Set) release(w int64) {
	if w > 0 {
		p.inBytes.Release(w)
	}
}

// taken is b leaving the incoming queue: its bytes go back to the budget.
func (p *Set) taken(b *batch.Batch) *batch.Batch {
	if p.inBytes != nil {
		p.release(min(b.Footprint(), p.cfg.IncomingBytes))
	}
	return b
}

// Send hands b to the set; the set owns it afterwards. It blocks while the
// incoming queue is full (policy: block, backpressure to the client) and
// fails only when ctx ends first, in which case the caller still owns b.
func (p *Set) Send(ctx context.Context, b *batch.Batch) error {
	n := b.Len()
	if n == 0 {
		b.Release()
		return nil
	}
	if p.cfg.SpoolAlways {
		// Write-ahead: on disk before Send returns (and before it counts
		// as received). Blocks while a healthy destination's spool is full.
		r := p.routers.Get().(*router)
		r.place(ctx, b)
		p.routers.Put(r)
		p.received.Add(uint64(n))
		return nil
	}
	w, err := p.admit(ctx, b)
	if err != nil {
		return err
	}
	select {
	case p.in <- b: // policy: block
		p.received.Add(uint64(n))
		return nil
	case <-ctx.Done():
		p.release(w)
		return ctx.Err()
	}
}

// Direct returns a Send for a single producer goroutine that places its
// batches on the destination queues itself, instead of through the
// incoming queue and a distributing goroutine: one goroutine hand-off less
// per batch, which is most of the cost at statsd rates. Same policies as
// Send (it blocks while a healthy destination's queue is full). Not safe
// for concurrent use; call stop when the producer is done.
func (p *Set) Direct() (send func(ctx context.Context, b *batch.Batch) error, stop func()) {
	r := newRouter(p)
	return func(ctx context.Context, b *batch.Batch) error {
		n := b.Len()
		if n == 0 {
			b.Release()
			return nil
		}
		p.received.Add(uint64(n))
		r.place(ctx, b)
		return nil
	}, r.stop
}

// CloseInput tells the set that every producer has returned; Run then
// delivers what is queued and returns. Safe to call more than once.
func (p *Set) CloseInput() { p.closeOnce.Do(func() { close(p.inClosed) }) }
