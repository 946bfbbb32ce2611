package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/polymur/polymur/pool"
	"github.com/polymur/polymur/route"
)

// routing is polymur -config: the routing table in force (swapped whole on
// reload) and the pool's Route func over it.
type routing struct {
	path string
	cur  atomic.Pointer[route.Table]
	log  *slog.Logger

	mu                   sync.Mutex // serialises reloads
	reloads, reloadFails atomic.Uint64
}

func newRouting(path string, t *route.Table, log *slog.Logger) (*routing, error) {
	if err := deliverable(t); err != nil {
		return nil, err
	}
	r := &routing{path: path, log: log}
	r.cur.Store(t)
	return r, nil
}

// deliverable refuses what -config can trace but not deliver yet.
func deliverable(t *route.Table) error {
	for _, c := range t.Clusters {
		if c.Kind == route.File {
			return fmt.Errorf("cluster %s: file clusters work with -test only for now", c.Name)
		}
	}
	if len(t.Servers) == 0 {
		return errors.New("the configuration has no servers to send to")
	}
	return nil
}

// destinations are the table's servers as pool destinations (host:port).
func destinations(t *route.Table) ([]pool.Destination, error) {
	var out []pool.Destination
	for _, s := range t.Servers {
		d, err := pool.ParseDestination(s.Addr())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// newRoute makes a RouteFunc for one goroutine, with its own scratch.
func (r *routing) newRoute() pool.RouteFunc {
	st := &routeState{}
	st.live = func(s *route.Server) bool { return st.up(s.Addr()) }
	return func(dst []pool.Placement, name, rest []byte, up func(string) bool) ([]pool.Placement, string) {
		return r.route(st, dst, name, rest, up)
	}
}

// route is the table's deliveries for one line, as pool placements.
func (r *routing) route(st *routeState, dst []pool.Placement, name, rest []byte, up func(string) bool) ([]pool.Placement, string) {
	t := r.cur.Load()
	st.up = up
	// The name is only read during the call (deliveries keep it as their
	// Name only when unchanged, and those are not retained): no copy.
	n := unsafe.String(unsafe.SliceData(name), len(name))
	var restText string
	if t.NeedsRest() {
		restText = string(rest)
	}
	live := st.live
	if up == nil {
		live = nil
	}
	buf := &st.ds
	*buf = t.Route((*buf)[:0], n, restText, live)
	why := ""
	for _, d := range *buf {
		switch d.Outcome {
		case route.Send:
			pl := pool.Placement{Dest: d.Server.Addr()}
			if d.Name != n {
				pl.Name = d.Name
			}
			dst = append(dst, pl)
		case route.Blackhole, route.Invalid, route.Unrouted:
			why = d.Outcome
		}
	}
	st.up = nil
	return dst, why
}

// routeState is one call's scratch: the deliveries and the liveness
// adapter (made once, not per line).
type routeState struct {
	ds   []route.Delivery
	up   func(string) bool
	live func(*route.Server) bool
}

// reload re-reads the configuration; on success the new table is swapped in:
// new servers are added first, removed ones deleted after (they deliver what
// they hold while connected). On failure the running table stays.
func (r *routing) reload(p *pool.Pool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, err := route.ParseFile(r.path)
	if err == nil {
		err = deliverable(t)
	}
	if err != nil {
		r.reloadFails.Add(1)
		r.log.Error("configuration not reloaded; the running one stays", "config", r.path, "err", err)
		return err
	}
	old := r.cur.Load()
	have := map[string]bool{}
	for _, s := range old.Servers {
		have[s.Addr()] = true
	}
	keep := map[string]bool{}
	var added, removed int
	for _, s := range t.Servers {
		keep[s.Addr()] = true
		if !have[s.Addr()] {
			if err := p.PutDest(s.Addr()); err != nil {
				r.reloadFails.Add(1)
				r.log.Error("configuration not reloaded: a new server could not be added", "server", s.Addr(), "err", err)
				return err
			}
			added++
		}
	}
	r.cur.Store(t)
	for _, s := range old.Servers {
		if !keep[s.Addr()] {
			if err := p.DelDest(s.Addr()); err != nil {
				r.log.Warn("removing a server after reload", "server", s.Addr(), "err", err)
			}
			removed++
		}
	}
	r.reloads.Add(1)
	r.log.Info("configuration reloaded", "config", r.path, "clusters", len(t.Clusters), "rules", len(t.Rules), "servers_added", added, "servers_removed", removed)
	return nil
}
