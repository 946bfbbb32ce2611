package route

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Edit is one runtime change of a cluster's members (putdest and deldest
// under -config). Edits are kept apart from the file (in the state file) and
// applied over it again after every reload and restart.
type Edit struct {
	Op      string `json:"op"`      // EditPut or EditDel
	Cluster string `json:"cluster"` // the cluster changed
	Member  string `json:"member"`  // host[:port][=instance] as a cluster line gives it
}

// Edit operations.
const (
	EditPut = "put"
	EditDel = "del"
)

func (e Edit) String() string {
	if e.Op == EditDel {
		return "deldest " + e.Member + " " + e.Cluster
	}
	return "putdest " + e.Member + " " + e.Cluster
}

// ErrEdit marks an edit that does not apply to the table (unknown cluster,
// member already there or not there); errors from the member's syntax and
// the cluster's checks are returned as they are.
var ErrEdit = errors.New("edit does not apply")

// ParseMember reads one cluster member, host[:port][=instance] with the
// options a cluster line allows (as refused or accepted there).
func ParseMember(spec string) (*Server, error) {
	toks, err := lex("member", spec)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 || toks[0].semi {
		return nil, errors.New("empty member")
	}
	p := &parser{t: newTable(), toks: toks}
	s, err := p.member()
	if err != nil {
		return nil, err
	}
	if !p.atEnd() {
		return nil, errAt(p.peek(), "unexpected %q after the member", p.peek().text)
	}
	s.addrText = s.addr()
	return s, nil
}

// Apply returns a new table: t with edits applied in order (t is unchanged
// and stays usable). A cluster changed by an edit is checked as a cluster
// line would be (replication against its hosts, instances distinct).
func (t *Table) Apply(edits ...Edit) (*Table, error) {
	if len(edits) == 0 {
		return t, nil
	}
	members := make(map[string][]*Server, len(t.Clusters))
	for _, c := range t.Clusters {
		members[c.Name] = slices.Clone(c.Members)
	}
	for _, e := range edits {
		c := t.byName[e.Cluster]
		if c == nil {
			return nil, fmt.Errorf("%w: %s: no cluster %q in the configuration", ErrEdit, e, e.Cluster)
		}
		if c.Kind == File {
			return nil, fmt.Errorf("%w: %s: cluster %s is a file cluster", ErrEdit, e, c.Name)
		}
		s, err := ParseMember(e.Member)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e, err)
		}
		ms := members[c.Name]
		at := slices.IndexFunc(ms, func(m *Server) bool { return m.Addr() == s.Addr() })
		switch e.Op {
		case EditPut:
			if at >= 0 {
				return nil, fmt.Errorf("%w: %s: %s is already a member of %s", ErrEdit, e, s.Addr(), c.Name)
			}
			members[c.Name] = append(ms, s)
		case EditDel:
			if at < 0 {
				return nil, fmt.Errorf("%w: %s: %s is not a member of %s", ErrEdit, e, s.Addr(), c.Name)
			}
			if len(ms) == 1 {
				return nil, fmt.Errorf("%w: %s: it is the last member of %s (a cluster cannot be empty)", ErrEdit, e, c.Name)
			}
			members[c.Name] = slices.Delete(ms, at, at+1)
		default:
			return nil, fmt.Errorf("%w: unknown operation %q", ErrEdit, e.Op)
		}
	}
	return t.rebuild(members, EditsText(edits))
}

// rebuild makes a new table with t's rules and clusters, the clusters'
// members replaced by members[name]; what names the change in errors.
func (t *Table) rebuild(members map[string][]*Server, what string) (*Table, error) {
	nt := newTable()
	for _, c := range t.Clusters {
		nc := &Cluster{Name: c.Name, Kind: c.Kind, Replication: c.Replication, Dynamic: c.Dynamic,
			UseAll: c.UseAll, FileIP: c.FileIP, Files: c.Files, Consul: c.Consul, pos: c.pos, replPos: c.replPos}
		for _, m := range members[c.Name] {
			cp := *m
			nc.Members = append(nc.Members, &cp)
		}
		if err := nt.addCluster(nc, token{file: "edit", line: 1, col: 1}); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	// The rules, their expressions and indexes are shared (immutable once
	// built); only the clusters the matches name are resolved afresh.
	for _, r := range t.Rules {
		if r.Match != nil {
			m := *r.Match
			m.Clusters = nil
			r.Match = &m
		}
		if r.Aggregate != nil {
			a := *r.Aggregate
			a.Clusters = nil
			r.Aggregate = &a
		}
		nt.Rules = append(nt.Rules, r)
	}
	if err := nt.resolve(); err != nil {
		return nil, err
	}
	nt.Ignored, nt.Listeners, nt.index, nt.lits, nt.needsRest = t.Ignored, t.Listeners, t.index, t.lits, t.needsRest
	return nt, nil
}

// EditsText is edits as the API commands that made them, joined by "; ".
func EditsText(edits []Edit) string {
	s := make([]string, len(edits))
	for i, e := range edits {
		s[i] = e.String()
	}
	return strings.Join(s, "; ")
}

// Expand returns t with the members of its useall clusters expanded: a
// hostname becomes one member per address lookup gives for it (in that
// order; an address given twice is kept once), as carbon-c-relay does.
// Members named by an IP address stay as they are.
func (t *Table) Expand(lookup func(host string) ([]string, error)) (*Table, error) {
	members := make(map[string][]*Server, len(t.Clusters))
	changed := false
	for _, c := range t.Clusters {
		if !c.UseAll {
			members[c.Name] = c.Members
			continue
		}
		seen := map[string]bool{}
		var ms []*Server
		for _, m := range c.Members {
			addrs := []string{m.Host}
			if net.ParseIP(m.Host) == nil {
				var err error
				if addrs, err = lookup(m.Host); err != nil {
					return nil, fmt.Errorf("%s: cluster %s useall: %w", m.pos.pos(), c.Name, err)
				}
				changed = true
			}
			for _, a := range addrs {
				cp := *m
				cp.Host = a
				if k := cp.addr(); !seen[k] {
					seen[k] = true
					ms = append(ms, &cp)
				}
			}
		}
		members[c.Name] = ms
	}
	if !changed {
		return t, nil
	}
	return t.rebuild(members, "useall")
}
