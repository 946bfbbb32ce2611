package dest

import (
	"slices"
	"time"
)

// acquire returns the current view, counted as in use until the caller
// decrements users: a router places a whole batch by one view.
func (p *Set) acquire() *view {
	for {
		v := p.view.Load()
		v.users.Add(1)
		if p.view.Load() == v {
			return v
		}
		v.users.Add(-1) // replaced meanwhile: it must not gain users
	}
}

// retire tells removed destinations they are gone once no router can still
// place on them: at once when no older view is in use, else from a
// goroutine that waits for their routers (a router blocked on one of them
// stops waiting when it sees it removing). Callers hold p.mu, after the
// view without them is published.
func (p *Set) retire(ds []*target) {
	for _, d := range ds {
		d.removing.Store(true)
	}
	busy := p.inUse()
	p.older = busy
	finish := func() {
		for _, d := range ds {
			d.remove()
			if p.runCtx == nil {
				d.q.close()
			}
		}
	}
	if len(busy) == 0 || p.runCtx == nil {
		finish()
		return
	}
	wait := slices.Clone(busy)
	p.writers.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
	wait:
		for _, v := range wait {
			for v.users.Load() > 0 {
				select {
				case <-t.C:
				case <-p.stop:
					break wait
				}
			}
		}
		p.mu.Lock()
		finish()
		p.mu.Unlock()
	})
}

// inUse prunes the replaced views no router uses any more (they cannot
// gain users) and returns the rest. Callers hold p.mu.
func (p *Set) inUse() []*view {
	busy := p.older[:0]
	for _, v := range p.older {
		if v.users.Load() > 0 {
			busy = append(busy, v)
		}
	}
	clear(p.older[len(busy):])
	return busy
}

// PutDest registers a destination at runtime. It fails, changing nothing,
// when the destination is invalid or already registered.
func (p *Set) PutDest(spec string) error {
	d, err := ParseDestination(spec)
	if err != nil {
		return err
	}
	if p.cfg.RingByAddr {
		d.Key = d.Addr()
	}
	d.Pickle, d.TLS, d.Transport = p.cfg.Pickle, p.cfg.TLS, p.cfg.Transport
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.view.Load().dests
	have := make([]Destination, len(cur))
	for i, c := range cur {
		have[i] = c.Destination
	}
	if err := checkDuplicate(have, d, p.cfg.Mode == HashRoute); err != nil {
		return err
	}
	nd, err := p.newDest(d)
	if err != nil {
		return err
	}
	p.setView(append(cur[:len(cur):len(cur)], nd), p.view.Load().routes)
	p.startWriter(nd)
	p.log.Info("registered destination", "dest", d.Name)
	p.changed()
	return nil
}

// DelDest unregisters a destination. Its queued points are re-routed in
// hash-route; in broadcast they are delivered if it is connected, otherwise
// counted as dropped (dest_removed).
func (p *Set) DelDest(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.view.Load().dests
	for i, d := range cur {
		if d.Name != name {
			continue
		}
		rest := append(append([]*target(nil), cur[:i]...), cur[i+1:]...)
		p.setView(rest, p.view.Load().routes)
		p.retire([]*target{d})
		p.noteRemoved(name)
		p.changed()
		return nil
	}
	return destErr(ErrNotRegistered, "destination %s is not registered", name)
}

// noteRemoved logs a removal and remembers it for stats. Callers hold p.mu.
func (p *Set) noteRemoved(name string) {
	p.log.Info("unregistered destination", "dest", name)
	p.removed = append(p.removed, RemovedDest{Name: name, At: time.Now()})
	if len(p.removed) > maxRemembered {
		p.removed = p.removed[len(p.removed)-maxRemembered:]
	}
}

// Apply makes dests the destination set and routes the routing table (nil
// keeps the running one) in one step, so that no line is placed by a table
// on a set that lacks its destinations: destinations in both keep their
// writer, queue, connection and spool; new ones start; removed ones deliver
// what they hold — including what routers still place on them by the
// previous table — and end (what they cannot deliver is counted,
// dest_removed). It fails, changing nothing, when a new destination cannot
// be set up or one is given twice.
func (p *Set) Apply(dests []Destination, routes Routes) (added, removed []string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.view.Load()
	have := make(map[string]*target, len(cur.dests))
	for _, d := range cur.dests {
		have[d.Name] = d
	}
	next := make([]*target, 0, len(dests))
	var fresh []*target
	abandon := func(err error) ([]string, []string, error) {
		for _, d := range fresh {
			if d.sp != nil {
				d.sp.Close()
			}
		}
		return nil, nil, err
	}
	seen := make(map[string]bool, len(dests))
	var list []Destination
	for _, d := range dests {
		if p.cfg.RingByAddr {
			d.Key = d.Addr()
		}
		if err := checkDuplicate(list, d, p.cfg.Mode == HashRoute); err != nil {
			return abandon(err)
		}
		list = append(list, d)
		seen[d.Name] = true
		if old, ok := have[d.Name]; ok {
			next = append(next, old)
			continue
		}
		nd, err := p.newDest(d)
		if err != nil {
			return abandon(err)
		}
		fresh = append(fresh, nd)
		next = append(next, nd)
	}
	var gone []*target
	for _, d := range cur.dests {
		if !seen[d.Name] {
			gone = append(gone, d)
		}
	}
	if routes == nil {
		routes = cur.routes
	}
	p.setView(next, routes)
	for _, d := range fresh {
		p.startWriter(d)
		p.log.Info("registered destination", "dest", d.Name)
		added = append(added, d.Name)
	}
	p.retire(gone)
	for _, d := range gone {
		p.noteRemoved(d.Name)
		removed = append(removed, d.Name)
	}
	if len(fresh)+len(gone) > 0 {
		p.changed()
	}
	return added, removed, nil
}

// Hold takes a destination out of service because an outside health check
// failed (statsd mode asks each backend's admin port): it is treated as
// dead — out of the hash-route ring, its queued points re-routed; in
// broadcast its points are dropped and counted — until Unhold.
func (p *Set) Hold(name, reason string) error {
	d := p.destByName(name)
	if d == nil {
		return destErr(ErrNotRegistered, "destination %s is not registered", name)
	}
	if !d.held.Swap(true) {
		p.log.Warn("destination taken out of service", "dest", name, "reason", reason)
		d.holds.Add(1)
		p.setState(d, stateDead)
		kick(d.holdKick)
	}
	return nil
}

// Unhold puts a held destination back into service; it rejoins once it
// connects.
func (p *Set) Unhold(name string) error {
	d := p.destByName(name)
	if d == nil {
		return destErr(ErrNotRegistered, "destination %s is not registered", name)
	}
	if d.held.Swap(false) {
		p.log.Info("destination back in service", "dest", name)
		kick(d.holdKick)
	}
	return nil
}

func (p *Set) destByName(name string) *target {
	for _, d := range p.view.Load().dests {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// changed reports the destination list to OnChange. Callers hold p.mu.
func (p *Set) changed() {
	if p.cfg.OnChange == nil {
		return
	}
	var names []string
	for _, d := range p.view.Load().dests {
		names = append(names, d.Name)
	}
	p.cfg.OnChange(names)
}

// Route returns the destinations a metric name goes to now.
func (p *Set) Route(name string) []string {
	v := p.view.Load()
	if len(v.dests) == 0 {
		return nil
	}
	if p.cfg.Mode == Broadcast {
		out := make([]string, len(v.dests))
		for i, d := range v.dests {
			out[i] = d.Name
		}
		return out
	}
	if p.cfg.Mode == Routed {
		var out []string
		pls, _ := v.routes.NewRoute()(nil, []byte(name), nil, nil, p.upFunc(v))
		for _, pl := range pls {
			out = append(out, pl.Dest)
		}
		return out
	}
	t := v.live
	if t == nil {
		t = v.all
	}
	return []string{v.dests[t[position([]byte(name))]].Name}
}

// upFunc reports, for a routed view, whether a destination is in service
// (connected or reconnecting: not declared dead, not held).
func (p *Set) upFunc(v *view) func(int) bool {
	return func(i int) bool {
		return i >= 0 && i < len(v.dests) && v.dests[i].state.Load() != stateDead
	}
}

// DestList is what getdest reports: destinations with a live connection, and
// every registered destination with its registration time.
type DestList struct {
	Active     []string             `json:"active"`
	Registered map[string]time.Time `json:"registered"`
}

// Destinations returns the current destination list.
func (p *Set) Destinations() DestList {
	l := DestList{Active: []string{}, Registered: map[string]time.Time{}}
	for _, d := range p.view.Load().dests {
		if d.state.Load() == stateUp {
			l.Active = append(l.Active, d.Name)
		}
		l.Registered[d.Name] = d.registered
	}
	return l
}
