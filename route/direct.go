package route

import (
	"unsafe"

	"github.com/polymur/polymur/ring"
)

// Direct returns the clusters every metric goes to, under its own name,
// when that is all the table does: its first rule is "match * send to …"
// with no validate, route using or blackhole, that stops or is the only
// rule, and no cluster is a file. Routing then needs no rule walk: a
// metric's deliveries are its picks in these clusters, in order. nil
// otherwise.
func (t *Table) Direct() []*Cluster {
	if len(t.Rules) == 0 {
		return nil
	}
	m := t.Rules[0].Match
	if m == nil || !m.All || m.Validate != nil || m.RouteUsing != nil || m.Blackhole || len(m.Clusters) == 0 {
		return nil
	}
	if !m.Stop && len(t.Rules) > 1 {
		return nil
	}
	for _, c := range m.Clusters {
		if c.Kind == File {
			return nil
		}
	}
	return m.Clusters
}

// Pick appends the indexes (in c.Members) of the members that get key, as
// routing a metric placed by key does. live, when not nil, says whether a
// server is up.
func (c *Cluster) Pick(dst []int, key []byte, live func(*Server) bool) []int {
	return c.pick(dst, unsafe.String(unsafe.SliceData(key), len(key)), live)
}

// Single reports whether c sends every key to exactly one member chosen by
// the key alone, whatever is up (carbon_ch with one replica, not dynamic).
func (c *Cluster) Single() bool {
	return c.Kind == CarbonCH && c.Replication == 1 && !c.Dynamic && c.carbon != nil
}

// Ring is a Single cluster's ring (node i is member i); nil for the others
// and while the cluster has no members.
func (c *Cluster) Ring() *ring.Carbon {
	if !c.Single() || len(c.Members) == 0 {
		return nil
	}
	return c.carbon
}
