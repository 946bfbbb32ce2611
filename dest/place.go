package dest

import (
	"cmp"
	"context"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/ring"
)

// router places batches on destination queues. Each distributing goroutine
// owns one; it is not safe for concurrent use.
type router struct {
	p      *Set
	out    []*batch.Batch // per-destination batches being built (hash-route, routed)
	pls    []Placement    // routed: one line's placements
	line   []byte         // routed: a renamed line being built
	routes Routes         // routed: the table route was made from
	route  RouteFunc      // routed: this router's own, with its scratch
	// routed: the table hashes names on a carbon_ch ring
	prefetch bool
	// routed: the table sends every line to one member of this ring (to:
	// each node's placement); pos are a batch's positions on it
	one    *ring.Carbon
	to     []Placement
	toNode []int32 // to's destinations in the view of the batch being placed (-1: none)
	pos    []uint32
	cur    *batch.Batch       // the batch being placed, for nameOf
	nameOf func(i int) []byte // cur's i-th name
	tick   *time.Ticker       // re-checks destination state while blocked
}

func newRouter(p *Set) *router {
	r := &router{p: p, tick: time.NewTicker(100 * time.Millisecond)}
	r.nameOf = func(i int) []byte { return r.cur.Name(i) }
	return r
}

// positions are b's names' ring positions, looked up together.
func (r *router) positions(b *batch.Batch) []uint32 {
	r.cur = b
	r.pos = ring.Positions(r.pos[:0], len(b.Lines), r.nameOf)
	r.cur = nil
	return r.pos
}

func (r *router) stop() { r.tick.Stop() }

// place distributes b according to the mode and takes ownership of it.
func (r *router) place(ctx context.Context, b *batch.Batch) {
	p := r.p
	v := p.acquire()
	defer v.users.Add(-1)
	if p.console != nil {
		b.Retain(1)
		if !p.console.push(ctx, b, func() bool { return false }, nil) { // policy: block
			p.drops.add(DropShutdown, uint64(b.Len()))
			b.Release()
		}
	}
	if len(v.dests) == 0 {
		if p.console == nil {
			p.drops.add(DropNoDestination, uint64(b.Len()))
		}
		b.Release()
		return
	}
	if p.cfg.Mode == Broadcast {
		b.Retain(len(v.dests) - 1)
		for _, d := range v.dests {
			r.deliver(ctx, v, d, b)
		}
		return
	}
	if p.cfg.Mode == Routed {
		r.placeRouted(ctx, v, b)
		return
	}
	t := v.live
	if t == nil {
		t = v.all
	}
	if cap(r.out) < len(v.dests) {
		r.out = make([]*batch.Batch, len(v.dests))
	}
	out := r.out[:len(v.dests)]
	nodes := r.positions(b)
	for i, pos := range nodes { // a tight pass: the table loads overlap
		nodes[i] = uint32(t[pos])
	}
	for i, node := range nodes {
		if out[node] == nil {
			out[node] = batch.Get()
		}
		out[node].AppendLine(b, i)
	}
	r.deliverAll(ctx, v, b)
}

// deliverAll releases b, whose lines were placed in r.out, and delivers
// each destination's batch.
func (r *router) deliverAll(ctx context.Context, v *view, b *batch.Batch) {
	b.Release()
	for node, ob := range r.out[:len(v.dests)] {
		if ob != nil {
			r.out[node] = nil
			r.deliver(ctx, v, v.dests[node], ob)
		}
	}
}

// node is the index in v of the destination pl names: its Node, or by its
// name when the table's numbering is not v's (a reload is adding it).
func (r *router) node(v *view, pl Placement) (int, bool) {
	if pl.Node >= 0 && pl.Node < len(v.dests) {
		return pl.Node, true
	}
	node, ok := v.byName[pl.Dest]
	return node, ok
}

// prefetchNames starts loading the position-cache slots of b's names, so
// that the misses of a batch overlap rather than come one per line.
func prefetchNames(b *batch.Batch) {
	for i := range b.Lines {
		ring.Prefetch(b.Name(i))
	}
}

// placeRouted places each line of b (owned) where the routing table says,
// under its rewritten name when it has one; a line that goes nowhere is
// counted by its reason.
func (r *router) placeRouted(ctx context.Context, v *view, b *batch.Batch) {
	p := r.p
	if cap(r.out) < len(v.dests) {
		r.out = make([]*batch.Batch, len(v.dests))
	}
	out := r.out[:len(v.dests)]
	if r.routes != v.routes { // a new table: this router's RouteFunc for it
		r.routes, r.route = v.routes, v.routes.NewRoute()
		cr, ok := v.routes.(carbonRoutes)
		r.prefetch = ok && cr.HashesCarbon()
		r.one, r.to = nil, nil
		if or, ok := v.routes.(oneRing); ok {
			r.one, r.to = or.OneRing()
		}
	}
	if r.one != nil && b.Via == nil {
		// One ring member per line, by position: each ring node's
		// destination in this view, once a batch; the batch's positions
		// together; then one table load per line.
		r.toNode = r.toNode[:0]
		for _, pl := range r.to {
			node, ok := r.node(v, pl)
			if !ok {
				node = -1
			}
			r.toNode = append(r.toNode, int32(node))
		}
		nodes := r.positions(b)
		for i, pos := range nodes { // a tight pass: the table loads overlap
			nodes[i] = uint32(r.toNode[r.one.OwnerAt(pos)])
		}
		for i, node := range nodes {
			if int32(node) < 0 {
				// The table names a destination this view does not have
				// (a reload is adding it): counted, never silent.
				p.drops.add(DropNoDestination, 1)
				continue
			}
			if out[node] == nil {
				out[node] = batch.Get()
			}
			out[node].AppendLine(b, i)
		}
		r.deliverAll(ctx, v, b)
		return
	}
	if r.prefetch {
		prefetchNames(b)
	}
	up := p.upFunc(v)
	for i := range b.Lines {
		line := b.Line(i)
		name := b.Name(i)
		rest := line[min(len(name)+1, len(line)) : len(line)-1]
		var why string
		r.pls, why = r.route(r.pls[:0], name, rest, b.Via, up)
		if len(r.pls) == 0 {
			if why != Absorbed {
				p.drops.add(cmp.Or(why, DropUnrouted), 1)
			}
			continue
		}
		for _, pl := range r.pls {
			node, ok := r.node(v, pl)
			if !ok {
				// The table names a destination this view does not have
				// (a reload is adding it): counted, never silent.
				p.drops.add(DropNoDestination, 1)
				continue
			}
			if out[node] == nil {
				out[node] = batch.Get()
			}
			switch {
			case pl.SourceIP:
				src := cmp.Or(b.Src, "-")
				r.line = append(append(r.line[:0], src...), ' ')
				if pl.Name != "" {
					r.line = append(r.line, pl.Name...)
				} else {
					r.line = append(r.line, name...)
				}
				r.line = append(append(append(r.line, ' '), rest...), '\n')
				out[node].Append(r.line, len(r.line)-len(rest)-2)
			case pl.Name == "":
				out[node].AppendLine(b, i)
			default:
				r.line = append(append(append(append(r.line[:0], pl.Name...), ' '), rest...), '\n')
				out[node].Append(r.line, len(pl.Name))
			}
		}
	}
	r.deliverAll(ctx, v, b)
}

// deliver queues b (owned) for d, blocking while d is healthy or being
// reconnected, re-routing when a hash-route destination is dead or removed,
// and counting a drop only when there is nowhere to keep the points.
func (r *router) deliver(ctx context.Context, v *view, d *target, b *batch.Batch) {
	p := r.p
	if p.cfg.SpoolAlways && r.spoolAhead(ctx, d, b) {
		return
	}
	for {
		if d.q.tryPush(b) {
			return
		}
		st := d.state.Load()
		removed := d.isRemoved()
		if d.sp != nil && !removed {
			why := p.trySpool(d, b)
			if why == "" {
				return // policy: spool (the queue is full)
			}
			if st != stateUp {
				p.drops.add(why, uint64(b.Len()))
				d.dropped.Add(uint64(b.Len()))
				b.Release()
				return
			}
			// Spool full but the destination is healthy: backpressure below.
		}
		if p.cfg.Mode == HashRoute && (removed || st == stateDead) {
			if p.view.Load() == v {
				// The state changes under p.mu before the view is replaced:
				// taking the lock waits for the new view.
				p.mu.Lock()
				//lint:ignore SA2001 the lock is a barrier: the new view is published under it
				p.mu.Unlock()
			}
			nv := p.view.Load()
			if nv.live != nil && nv != v && !nv.routesTo(d) {
				r.place(ctx, b) // re-route among the live destinations
				return
			}
			if removed {
				p.drops.add(DropRemoved, uint64(b.Len()))
				b.Release()
				return
			}
		}
		if removed {
			// Placed by a table that still had it: its writer delivers what
			// it holds while connected (or counts it, dest_removed).
			if d.q.pushAnyway(b) {
				return
			}
			p.drops.add(DropRemoved, uint64(b.Len()))
			b.Release()
			return
		}
		// Broadcast drops for a destination only once it is declared dead
		// (-dead-after failed reconnects); while it connects for the first
		// time or reconnects after a blip its full queue holds the input
		// back like a slow one, so a restart of polymur or of a carbon
		// never costs points.
		if st == stateDead {
			p.drops.add(DropDestDown, uint64(b.Len()))
			d.dropped.Add(uint64(b.Len()))
			b.Release()
			return
		}
		giveUp := func() bool { return d.state.Load() != st || d.isRemoved() }
		if d.q.push(ctx, b, giveUp, r.tick.C) { // policy: block (healthy or reconnecting)
			return
		}
		if ctx.Err() != nil {
			p.drops.add(DropShutdown, uint64(b.Len()))
			b.Release()
			return
		}
	}
}

// spoolAhead is delivery in write-ahead mode: b (owned) goes to d's spool.
// Policy: block while d is up and its spool is full (backpressure);
// drop-and-count when d is down and its spool full. It returns false,
// leaving b to the memory queue, when the disk refuses the write (logged
// and counted: those lines are not durable) or d was removed.
func (r *router) spoolAhead(ctx context.Context, d *target, b *batch.Batch) bool {
	p := r.p
	for !d.isRemoved() {
		switch p.trySpool(d, b) {
		case "":
			return true
		case DropSpoolError:
			return false
		}
		if d.state.Load() != stateUp {
			p.drops.add(DropSpoolFull, uint64(b.Len()))
			d.dropped.Add(uint64(b.Len()))
			b.Release()
			return true
		}
		select {
		case <-r.tick.C: // policy: block (the spool is full, the destination healthy)
		case <-ctx.Done():
			p.drops.add(DropShutdown, uint64(b.Len()))
			b.Release()
			return true
		}
	}
	return false
}

// routesTo reports whether the live table of v can still send to d.
func (v *view) routesTo(d *target) bool {
	for _, x := range v.dests {
		if x == d {
			return x.state.Load() != stateDead
		}
	}
	return false
}
