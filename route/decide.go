package route

import (
	"unsafe"

	"github.com/polymur/polymur/ring"
)

// Delivery is one place a metric goes: its name as sent, the outcome, the
// cluster and the server (or file) — nil for blackhole and unrouted.
type Delivery struct {
	Name    string
	Outcome string
	Cluster *Cluster
	Server  *Server
	File    string
	// Aggregate, for outcome Aggregated (Name: the metric it takes, Loc:
	// where its expression matched, as Aggregate.Match gives it).
	Aggregate *Aggregate
	Loc       []int
}

// Route decides where the metric name (with rest, the line after the name,
// for validate clauses) goes, appending to dst. live, when not nil, says
// whether a server is up (failover, any_of and dynamic hash clusters skip
// the others).
func (t *Table) Route(dst []Delivery, name, rest string, live func(*Server) bool) []Delivery {
	rt := routing{t: t, dst: dst, name: name, rest: rest, live: live}
	for ri := 0; ri < len(t.Rules); {
		r := t.Rules[ri]
		if rw := r.Rewrite; rw != nil {
			if rt.mayRewrite(rw) {
				var changed bool
				if rt.name, changed = rw.apply(rt.name); changed {
					rt.known, rt.holds = 0, 0 // a new name: literals tested afresh
				}
			}
			ri++
			continue
		}
		if x := t.index[ri]; x != nil && ri == x.start {
			// A run with a prefix index: one trie walk finds the indexed
			// rules that match; they and the others are taken in order.
			hits := x.hits(rt.name)
			oi := 0
			for b := 0; b <= x.n; b++ {
				next := x.end
				if b < x.n {
					if hits[b>>6]&(1<<(b&63)) == 0 {
						continue
					}
					next = x.rules[b]
				}
				for ; oi < len(x.others) && x.others[oi] < next; oi++ {
					if m := t.Rules[x.others[oi]].Match; rt.matches(m) && rt.apply(m) {
						return rt.dst
					}
				}
				if b < x.n && rt.apply(t.Rules[next].Match) {
					return rt.dst
				}
			}
			ri = x.end
			continue
		}
		if a := r.Aggregate; a != nil {
			if loc, ok := rt.aggregates(a); ok {
				rt.feed(a, loc)
				if a.Stop {
					return rt.dst
				}
			}
			ri++
			continue
		}
		if m := r.Match; rt.matches(m) && rt.apply(m) {
			return rt.dst
		}
		ri++
	}
	if !rt.matched {
		rt.dst = append(rt.dst, Delivery{Name: rt.name, Outcome: Unrouted})
	}
	return rt.dst
}

// routing is one metric's way through the rules.
type routing struct {
	t          *Table
	dst        []Delivery
	name, rest string
	live       func(*Server) bool
	matched    bool
	idx        [8]int
	// known and holds memoise the table's first 64 required literals for
	// the current name (reset when a rewrite changes it).
	known, holds uint64
}

// matches reports whether one of m's expressions matches the name.
func (rt *routing) matches(m *Match) bool {
	if m.All {
		return true
	}
	for _, e := range m.Exprs {
		if rt.exprMatches(e) {
			return true
		}
	}
	return false
}

func (rt *routing) exprMatches(e *Expr) bool {
	if e.re == nil || e.lit || e.all {
		return e.matches(rt.name)
	}
	return rt.mayMatch(e) && e.re.MatchString(rt.name)
}

// literal tests required literal id on the name, once per name.
func (rt *routing) literal(id int) bool {
	if id >= 64 {
		return rt.t.lits[id].holds(rt.name)
	}
	bit := uint64(1) << id
	if rt.known&bit == 0 {
		rt.known |= bit
		if rt.t.lits[id].holds(rt.name) {
			rt.holds |= bit
		}
	}
	return rt.holds&bit != 0
}

// mayRewrite applies rw's required-literal tests through the memo.
func (rt *routing) mayRewrite(rw *Rewrite) bool { return rt.mayMatch(rw.Expr) }

// mayMatch applies e's required-literal tests through the memo.
func (rt *routing) mayMatch(e *Expr) bool {
	for _, id := range e.needIDs {
		if !rt.literal(id) {
			return false
		}
	}
	return true
}

// apply carries out a match rule that matched; it reports whether routing
// stops here.
func (rt *routing) apply(m *Match) (stop bool) {
	rt.matched = true
	name := rt.name
	if m.Validate != nil && !m.Validate.matches(rt.rest) {
		// The rule is aborted (carbon-c-relay goes on with the next one);
		// "else drop" is a counted outcome, "else log" a log line. A
		// validate-only rule (a global check, no destinations) that fails
		// with drop stops the metric.
		if !m.ValidateLog {
			rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Invalid})
			return len(m.Clusters) == 0 && !m.Blackhole
		}
		rt.dst = append(rt.dst, Delivery{Name: name, Outcome: InvalidLogged})
		return false
	}
	if m.Blackhole {
		rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Blackhole})
		return true
	}
	key := name
	if m.RouteUsing != nil {
		key = routeKey(m.RouteUsing, name)
	}
	for _, c := range m.Clusters {
		rt.send(c, name, key)
	}
	return m.Stop
}

// send appends c's deliveries of name (placed by key).
func (rt *routing) send(c *Cluster, name, key string) {
	if c.Kind == File {
		for _, f := range c.Files {
			rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Send, Cluster: c, File: f})
		}
		return
	}
	for _, i := range c.pick(rt.idx[:0], key, rt.live) {
		rt.dst = append(rt.dst, Delivery{Name: name, Outcome: Send, Cluster: c, Server: c.Members[i]})
	}
}

// routeKey is the hash key a "route using" expression makes of name: its
// first capture group when it has one, else what it matches (the whole name
// when it does not match).
func routeKey(e *Expr, name string) string {
	if e.all || e.re == nil {
		return name
	}
	loc := e.re.FindStringSubmatchIndex(name)
	switch {
	case loc == nil:
		return name
	case len(loc) >= 4 && loc[2] >= 0:
		return name[loc[2]:loc[3]]
	}
	return name[loc[0]:loc[1]]
}

// pick appends the indexes of the members that get key.
func (c *Cluster) pick(dst []int, key string, live func(*Server) bool) []int {
	up := func(i int) bool { return live == nil || live(c.Members[i]) }
	n := len(c.Members)
	if n == 0 {
		return dst // a Consul cluster before its first membership
	}
	// The hashes only read the key: hand them the string's bytes, not a
	// copy (a copy per line was a tenth of the routing run's CPU).
	kb := unsafe.Slice(unsafe.StringData(key), len(key))
	switch c.Kind {
	case Forward:
		for i := range n {
			dst = append(dst, i)
		}
	case AnyOf:
		start := int(ring.FNV1a32(kb) % uint32(n))
		for k := range n {
			if i := (start + k) % n; up(i) {
				return append(dst, i)
			}
		}
	case Failover:
		for i := range n {
			if up(i) {
				return append(dst, i)
			}
		}
	case CarbonCH:
		var alive func(int) bool
		if c.Dynamic && live != nil {
			alive = up
		}
		dst = c.carbon.PickCarbon(dst, kb, c.Replication, func(i int) string { return c.Members[i].Host }, alive)
	case FNV1aCH:
		var alive func(int) bool
		if c.Dynamic && live != nil {
			alive = up
		}
		dst = c.fnv.Pick(dst, kb, c.Replication, alive)
	case JumpFNV1aCH:
		dst = c.jump.Pick(dst, kb, c.Replication)
	}
	return dst
}
