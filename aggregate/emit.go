package aggregate

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/route"
)

// Run emits expired buckets every Tick until ctx ends. What is open then
// stays for Final (the shutdown drain).
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// Tick emits every bucket that has expired by now.
func (e *Engine) Tick(ctx context.Context) {
	now := e.cfg.Now().Unix()
	for _, a := range e.current() {
		e.emitDue(ctx, a, func(start int64) bool { return start+a.every+a.expire <= now })
	}
}

// Final emits every open bucket (partial ones included), or drops and
// counts them with DropAtExit; place hands the output on. It is the
// shutdown drain's last step (dest.Config.InputEnd).
func (e *Engine) Final(place func(*batch.Batch)) {
	for _, a := range e.current() {
		if e.cfg.DropAtExit {
			e.discard(a)
			continue
		}
		e.emitWith(a, func(int64) bool { return true }, func(d *route.Aggregate, b *batch.Batch) {
			b.Via = d
			place(b)
		})
	}
	if !e.cfg.DropAtExit {
		if n := e.Open(); n > 0 {
			e.cfg.Log.Warn("aggregates left points at exit", "points", n)
		}
	}
}

// flush empties a (a departing aggregate): emitted, or dropped by policy.
func (e *Engine) flush(ctx context.Context, a *agg, emit bool) {
	if !emit {
		e.discard(a)
		return
	}
	e.emitDue(ctx, a, func(int64) bool { return true })
}

// discard drops a's open buckets, counted.
func (e *Engine) discard(a *agg) {
	a.mu.Lock()
	var n uint64
	for _, m := range a.series {
		for _, s := range m {
			for _, b := range s.buckets {
				n += uint64(b.n)
				if s.values {
					e.values.Add(-int64(b.n))
				}
			}
		}
		for _, s := range m {
			s.dead = true
		}
		clear(m)
	}
	clear(a.inst)
	e.series.Add(-int64(a.nseries))
	a.nseries = 0
	clear(a.due)
	a.nbuck = 0
	a.mu.Unlock()
	a.drop(DropShutdown, n)
}

// emitDue emits a's buckets whose start due accepts through cfg.Emit.
func (e *Engine) emitDue(ctx context.Context, a *agg, due func(start int64) bool) {
	e.emitWith(a, due, func(d *route.Aggregate, b *batch.Batch) {
		n := b.Len()
		if err := e.cfg.Emit(ctx, d, b); err != nil {
			a.emitted.Add(-uint64(n))
			a.drop(DropShutdown, uint64(n))
			e.cfg.Log.Warn("aggregate output not taken: counted as dropped", "aggregate", d.Pos(), "lines", n, "err", err)
		}
	})
}

// emitWith takes a's due buckets out under its lock, then formats and
// hands them on in batches of at most maxBatch lines.
func (e *Engine) emitWith(a *agg, due func(start int64) bool, out func(*route.Aggregate, *batch.Batch)) {
	type done struct {
		s *series
		b bucket
	}
	d := a.def.Load()
	a.mu.Lock()
	var starts []int64
	for start := range a.due {
		if due(start) {
			starts = append(starts, start)
		}
	}
	slices.Sort(starts)
	var ready []done
	for _, start := range starts {
		for _, s := range a.due[start] {
			for i := range s.buckets {
				if s.buckets[i].start == start {
					ready = append(ready, done{s, s.buckets[i]})
					s.buckets = slices.Delete(s.buckets, i, i+1)
					break
				}
			}
			if len(s.buckets) == 0 {
				delete(a.series[s.c], s.name)
				s.dead = true
				a.nseries--
				e.series.Add(-1)
			}
		}
		a.nbuck -= len(a.due[start])
		delete(a.due, start)
	}
	if a.nseries == 0 {
		clear(a.inst)
	}
	a.mu.Unlock()
	var b *batch.Batch
	var line []byte
	for _, r := range ready {
		if b == nil {
			b = batch.Get()
		}
		c := d.Computes[r.s.c]
		line = append(line[:0], r.s.name...)
		line = append(line, ' ')
		line = appendValue(line, c, &r.b, e.cfg.SortedRanks)
		line = append(line, ' ')
		line = strconv.AppendInt(line, stamp(d, r.b.start), 10)
		line = append(line, '\n')
		b.Append(line, len(r.s.name))
		if r.s.values {
			e.values.Add(-int64(len(r.b.vals)))
		}
		a.emitted.Add(1)
		if b.Len() == maxBatch {
			out(d, b)
			b = nil
		}
	}
	if b != nil {
		out(d, b)
	}
}

// stamp is the timestamp an output line of the bucket at start carries.
func stamp(d *route.Aggregate, start int64) int64 {
	switch d.Timestamp {
	case route.AtStart:
		return start
	case route.AtMiddle:
		return start + int64(d.Every)/2
	}
	return start + int64(d.Every)
}

// Open is the points held in open buckets.
func (e *Engine) Open() int {
	n := 0
	for _, a := range e.current() {
		a.mu.Lock()
		for _, m := range a.series {
			for _, s := range m {
				for _, b := range s.buckets {
					n += b.n
				}
			}
		}
		a.mu.Unlock()
	}
	return n
}
