// Package route is polymur's routing table: clusters, match rules and
// rewrites read from a carbon-c-relay configuration, placing each metric
// exactly where carbon-c-relay would (carbon_ch follows carbon where the
// two differ). A Table is immutable once built and safe for concurrent use;
// it decides deliveries and leaves the sending to the destinations.
package route

import (
	"fmt"
	"slices"

	"github.com/polymur/polymur/ring"
)

// Kind is a cluster's type.
type Kind uint8

// Cluster kinds, as carbon-c-relay names them.
const (
	Forward Kind = iota
	AnyOf
	Failover
	CarbonCH
	FNV1aCH
	JumpFNV1aCH
	File
)

var kindNames = [...]string{"forward", "any_of", "failover", "carbon_ch", "fnv1a_ch", "jump_fnv1a_ch", "file"}

func (k Kind) String() string { return kindNames[k] }

func (k Kind) hashed() bool { return k == CarbonCH || k == FNV1aCH || k == JumpFNV1aCH }

// Server is one destination (host:port); one server however many clusters
// name it.
type Server struct {
	Host        string
	Port        int
	Instance    string
	HasInstance bool
	Proto       string // tcp (udp comes with the protocols work)
	Pickle      bool   // type pickle: carbon's pickle protocol (a polymur extension)
	Transport   string // plain
	TLS         string // "", ssl or mtls
	Cert, Key   string
	pos         token
	addrText    string // host:port, made once
	index       int    // in Table.Servers
}

// Index is the server's place in Table.Servers.
func (s *Server) Index() int { return s.index }

// Addr is host:port.
func (s *Server) Addr() string {
	if s.addrText == "" {
		return s.addr()
	}
	return s.addrText
}

// Cluster is a named set of members and how a metric picks among them.
type Cluster struct {
	Name        string
	Kind        Kind
	Replication int
	Dynamic     bool
	UseAll      bool
	FileIP      bool
	Members     []*Server
	Files       []string
	// Consul, when set, says the members come from a Consul service's
	// instances (a polymur extension); the file gives none.
	Consul  *Consul
	pos     string
	replPos token

	carbon *ring.Carbon
	fnv    *ring.FNV1a
	jump   *ring.Jump
}

// Consul is the service a cluster's members come from.
type Consul struct {
	Service, Tag, Datacenter string
}

// ConsulClusters are the clusters whose members come from Consul.
func (t *Table) ConsulClusters() []*Cluster {
	var out []*Cluster
	for _, c := range t.Clusters {
		if c.Consul != nil {
			out = append(out, c)
		}
	}
	return out
}

// WithMembers returns t with cluster name's members replaced (checked as
// a cluster line would be); t is unchanged.
func (t *Table) WithMembers(name string, members []*Server) (*Table, error) {
	if t.byName[name] == nil {
		return nil, fmt.Errorf("%w: no cluster %q", ErrEdit, name)
	}
	ms := make(map[string][]*Server, len(t.Clusters))
	for _, c := range t.Clusters {
		ms[c.Name] = slices.Clone(c.Members)
	}
	ms[name] = members
	return t.rebuild(ms, "members of "+name)
}

// Match is a match rule.
type Match struct {
	All         bool
	Exprs       []*Expr
	Validate    *Expr
	ValidateLog bool
	RouteUsing  *Expr
	Clusters    []*Cluster
	Blackhole   bool
	Stop        bool
	dests       []token
	pos         string
}

// Rewrite is a rewrite rule.
type Rewrite struct {
	Expr *Expr
	Into string
	repl []replPart
	pos  string
}

// Rule is one rule in order: a match, a rewrite or an aggregate.
type Rule struct {
	Match     *Match
	Rewrite   *Rewrite
	Aggregate *Aggregate
}

// Table is a parsed, checked configuration.
type Table struct {
	Clusters  []*Cluster
	Rules     []Rule
	Servers   []*Server // every distinct host:port, in order of appearance
	Ignored   []string  // statements read and not applied (statistics)
	Listeners []Listener
	byName    map[string]*Cluster
	byAddr    map[string]*Server
	index     []*prefixIndex // per rule: the prefix index covering it, or nil
	needsRest bool
	lits      []literalTest // distinct required literals of the rules' regexes
}

func newTable() *Table {
	return &Table{byName: map[string]*Cluster{}, byAddr: map[string]*Server{}}
}

// addCluster registers c, merging its members with servers already known
// (a server keeps its first instance: another one is an error, as in
// carbon-c-relay).
func (t *Table) addCluster(c *Cluster, at token) error {
	for i, m := range c.Members {
		if old, ok := t.byAddr[m.addr()]; ok {
			if old.Pickle != m.Pickle {
				return errAt(m.pos, "server %s is type pickle in one cluster and linemode in another (it is one destination: give it one type)", m.addr())
			}
			if old.HasInstance != m.HasInstance || old.Instance != m.Instance {
				return errAt(m.pos, "cannot set instance %q for server %s: it was defined with instance %q at %s", m.Instance, m.addr(), old.Instance, old.pos.pos())
			}
			c.Members[i] = old
			continue
		}
		m.addrText = m.addr()
		m.index = len(t.Servers)
		t.byAddr[m.addr()] = m
		t.Servers = append(t.Servers, m)
	}
	for i, m := range c.Members {
		for _, o := range c.Members[:i] {
			if o == m {
				return errAt(m.pos, "server %s is twice in cluster %s", m.addr(), c.Name)
			}
			if c.Kind == CarbonCH && o.Host == m.Host && o.Instance == m.Instance && o.HasInstance == m.HasInstance {
				return errAt(m.pos, "%s and %s have the same host and instance in carbon_ch cluster %s: they would hash identically (give them distinct instances)", o.addr(), m.addr(), c.Name)
			}
		}
	}
	if c.Kind.hashed() && c.Replication > 1 {
		limit, what := len(c.Members), "members"
		if c.Kind == CarbonCH {
			hosts := map[string]bool{}
			for _, m := range c.Members {
				hosts[m.Host] = true
			}
			limit, what = len(hosts), "distinct hosts"
		}
		if c.Replication > limit {
			return errAt(c.replPos, "replication %d in cluster %s exceeds its %d %s", c.Replication, c.Name, limit, what)
		}
	}
	members := make([]ring.Member, len(c.Members))
	keys := make([]string, len(c.Members))
	for i, m := range c.Members {
		members[i] = ring.Member{Host: m.Host, Port: m.Port, Instance: m.Instance, HasInstance: m.HasInstance}
		if m.HasInstance {
			keys[i] = "('" + m.Host + "', '" + m.Instance + "')"
		} else {
			keys[i] = "('" + m.Host + "', None)"
		}
	}
	switch c.Kind {
	case CarbonCH:
		c.carbon = ring.NewCarbon(keys)
	case FNV1aCH:
		c.fnv = ring.NewFNV1a(members)
	case JumpFNV1aCH:
		c.jump = ring.NewJump(members)
	}
	t.byName[c.Name] = c
	t.Clusters = append(t.Clusters, c)
	return nil
}

// finish resolves cluster names in matches and builds the indexes.
func (t *Table) finish() error {
	if err := t.resolve(); err != nil {
		return err
	}
	t.buildIndexes()
	t.numberLiterals()
	for _, r := range t.Rules {
		if r.Match != nil && r.Match.Validate != nil {
			t.needsRest = true
		}
	}
	return nil
}

// resolve gives each match the clusters it names.
func (t *Table) resolve() error {
	for _, r := range t.Rules {
		switch {
		case r.Match != nil:
			cs, err := t.clusters(r.Match.dests)
			if err != nil {
				return err
			}
			r.Match.Clusters = cs
		case r.Aggregate != nil:
			cs, err := t.clusters(r.Aggregate.dests)
			if err != nil {
				return err
			}
			r.Aggregate.Clusters = cs
		}
	}
	return nil
}

// clusters are the clusters named by a send to.
func (t *Table) clusters(names []token) ([]*Cluster, error) {
	var out []*Cluster
	for _, d := range names {
		c, ok := t.byName[d.text]
		if !ok {
			return nil, errAt(d, "send to unknown cluster %q", d.text)
		}
		out = append(out, c)
	}
	return out, nil
}

// Aggregates are the table's aggregate rules, in order.
func (t *Table) Aggregates() []*Aggregate {
	var out []*Aggregate
	for _, r := range t.Rules {
		if r.Aggregate != nil {
			out = append(out, r.Aggregate)
		}
	}
	return out
}

// NeedsRest reports whether a rule looks at what follows the metric name
// (a validate clause); when none does, Route may be given "" for it.
func (t *Table) NeedsRest() bool { return t.needsRest }

// Cluster returns the cluster called name.
func (t *Table) Cluster(name string) *Cluster { return t.byName[name] }

// Outcome of one delivery decision.
const (
	Send      = "send"
	Blackhole = "blackhole"
	Unrouted  = "unrouted"
	Invalid   = "invalid" // a validate clause failed with else drop
	// InvalidLogged: a validate clause failed with else log (the rule is
	// skipped and the line logged; -test does not print it).
	InvalidLogged = "invalid_logged"
	// Aggregated: the metric feeds an aggregate (Delivery.Aggregate, its
	// Compute, under the series name Delivery.Name).
	Aggregated = "aggregate"
)
