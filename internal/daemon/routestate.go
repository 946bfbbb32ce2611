package daemon

import (
	"cmp"
	"unsafe"

	"github.com/polymur/polymur/aggregate"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/ring"
	"github.com/polymur/polymur/route"
)

// tableRoutes is one table as the destination set's Routes. Destinations
// are numbered as destinations(t) lists them: the servers in t.Servers'
// order, then the files.
type tableRoutes struct {
	t     *route.Table
	files map[string]int    // file destination name → index + 1
	agg   *aggregate.Engine // the table's aggregates; nil when it has none
}

func newTableRoutes(t *route.Table, agg *aggregate.Engine) *tableRoutes {
	tr := &tableRoutes{t: t, files: map[string]int{}, agg: agg}
	for _, c := range t.Clusters {
		if c.Kind != route.File {
			continue
		}
		for _, f := range c.Files {
			if name := fileDest(f, c.FileIP); tr.files[name] == 0 {
				tr.files[name] = len(t.Servers) + len(tr.files) + 1
			}
		}
	}
	return tr
}

// HashesCarbon reports whether a cluster of the table is carbon_ch: then
// the names' ring positions are worth prefetching a batch at a time.
func (tr *tableRoutes) HashesCarbon() bool {
	for _, c := range tr.t.Clusters {
		if c.Kind == route.CarbonCH {
			return true
		}
	}
	return false
}

// OneRing is the ring of the table's one carbon_ch cluster and its members'
// placements, when the table sends every metric, unchanged, to one member
// of it (dest then looks a batch's positions up together).
func (tr *tableRoutes) OneRing() (*ring.Carbon, []dest.Placement) {
	d := tr.t.Direct()
	if len(d) != 1 || d[0].Ring() == nil {
		return nil, nil
	}
	to := make([]dest.Placement, len(d[0].Members))
	for i, s := range d[0].Members {
		to[i] = dest.Placement{Dest: s.Addr(), Node: s.Index()}
	}
	return d[0].Ring(), to
}

// NewRoute makes a RouteFunc for one goroutine, with its own scratch.
func (tr *tableRoutes) NewRoute() dest.RouteFunc {
	st := &routeState{t: tr.t, files: tr.files, agg: tr.agg}
	st.live = func(s *route.Server) bool { return st.up(s.Index()) }
	if st.direct = tr.t.Direct(); st.direct != nil {
		return st.routeDirect
	}
	return st.route
}

// routeState is one goroutine's router over a table: the deliveries and the
// liveness adapter (made once, not per line).
type routeState struct {
	t     *route.Table
	files map[string]int
	agg   *aggregate.Engine
	ds    []route.Delivery
	up    func(int) bool
	live  func(*route.Server) bool
	// direct: the clusters every metric goes to, when that is all the
	// table does (route.Table.Direct), and the picks' scratch.
	direct []*route.Cluster
	idx    []int
}

// route is the table's deliveries for one line, as placements.
func (st *routeState) route(dst []dest.Placement, name, rest []byte, via any, up func(int) bool) ([]dest.Placement, string) {
	t := st.t
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
	if a, ok := via.(*route.Aggregate); ok {
		st.ds = t.RouteOutput(st.ds[:0], a, n, restText, live)
	} else {
		st.ds = t.Route(st.ds[:0], n, restText, live)
	}
	why := ""
	for _, d := range st.ds {
		switch d.Outcome {
		case route.Aggregated:
			if st.agg != nil {
				st.agg.Put(d.Aggregate, d.Name, d.Loc, rest)
			}
			why = cmp.Or(why, dest.Absorbed)
		case route.Send:
			var pl dest.Placement
			if d.Server != nil {
				pl.Dest, pl.Node = d.Server.Addr(), d.Server.Index()
			} else {
				pl.Dest, pl.SourceIP = fileDest(d.File, d.Cluster.FileIP), d.Cluster.FileIP
				pl.Node = st.files[pl.Dest] - 1
			}
			if d.Name != n {
				pl.Name = d.Name
			}
			dst = append(dst, pl)
		case route.Blackhole, route.Invalid, route.Unrouted:
			if why == "" || why == dest.Absorbed {
				why = d.Outcome
			}
		}
	}
	st.up = nil
	return dst, why
}

// routeDirect is route for a table that sends every metric, unchanged, to
// its direct clusters: the picks, without walking the rules. An
// aggregate's output goes the full way.
func (st *routeState) routeDirect(dst []dest.Placement, name, rest []byte, via any, up func(int) bool) ([]dest.Placement, string) {
	if via != nil {
		return st.route(dst, name, rest, via, up)
	}
	st.up = up
	live := st.live
	if up == nil {
		live = nil
	}
	for _, c := range st.direct {
		st.idx = c.Pick(st.idx[:0], name, live)
		for _, i := range st.idx {
			s := c.Members[i]
			dst = append(dst, dest.Placement{Dest: s.Addr(), Node: s.Index()})
		}
	}
	st.up = nil
	return dst, ""
}
