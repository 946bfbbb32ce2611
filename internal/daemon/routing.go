package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/aggregate"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/route"
)

// routing is polymur -config: the configuration file, the runtime edits of
// its clusters (putdest/deldest, kept in -state-file and applied over the
// file after every reload and restart) and the table in force. The table
// and the destinations it names reach the destination set together (Set.Apply).
type routing struct {
	path  string // "" when the table was made from flags (-distribution any_of…)
	state string // -state-file, "" for none
	ca    string // -destination-ca, for servers with transport … ssl|mtls
	log   *slog.Logger
	set   *dest.Set
	agg   *aggregate.Engine // nil without aggregates

	mu     sync.Mutex    // serialises reloads, edits and Consul changes
	edits  []route.Edit  // under mu
	base   *route.Table  // the file's table (under mu): edits and Consul members go over it
	consul *consulSource // -config's Consul clusters; nil without
	cur    atomic.Pointer[route.Table]

	reloads, reloadFails       atomic.Uint64
	consulChanges, consulFails atomic.Uint64
}

// newRouting starts from the file's table t with the state file's edits over
// it (an edit that no longer applies is dropped with a warning).
func newRouting(path, state, ca string, t *route.Table, cs consulStart, log *slog.Logger) (*routing, error) {
	r := &routing{path: path, state: state, ca: ca, log: log, base: t}
	if err := r.startConsul(t, cs); err != nil {
		return nil, err
	}
	var err error
	if t, err = r.withConsul(t); err != nil {
		return nil, err
	}
	if state != "" {
		edits, err := readEdits(state)
		if err != nil {
			return nil, fmt.Errorf("-state-file: %w", err)
		}
		if len(edits) > 0 {
			log.Warn("the state file changes the configuration's clusters (runtime putdest/deldest of an earlier run)", "state_file", state, "edits", route.EditsText(edits))
		}
		t, r.edits = r.withEdits(t, edits)
	}
	if err := deliverable(t); err != nil {
		return nil, err
	}
	if r.consul != nil {
		r.save() // the membership, for -consul-start-from-state
	}
	r.cur.Store(t)
	return r, nil
}

// readConfig reads a configuration file and expands its useall clusters'
// hostnames into their addresses.
func readConfig(path string) (*route.Table, error) {
	t, err := route.ParseFile(path)
	if err != nil {
		return nil, err
	}
	return t.Expand(func(host string) ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return net.DefaultResolver.LookupHost(ctx, host)
	})
}

// withEdits applies edits over t one by one, leaving out (with a warning)
// those that no longer apply to it.
func (r *routing) withEdits(t *route.Table, edits []route.Edit) (*route.Table, []route.Edit) {
	var kept []route.Edit
	for _, e := range edits {
		nt, err := t.Apply(e)
		if err != nil {
			r.log.Warn("a runtime change no longer applies to the configuration and is dropped", "config", r.path, "change", e.String(), "err", err)
			continue
		}
		t, kept = nt, append(kept, e)
	}
	return t, kept
}

// deliverable refuses what -config can trace but not deliver.
func deliverable(t *route.Table) error {
	if len(t.Servers) == 0 && !hasFiles(t) {
		return errors.New("the configuration has no servers to send to")
	}
	for _, c := range t.Clusters {
		for _, path := range c.Files {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", c.Name, err)
			}
			f.Close()
		}
	}
	return nil
}

func hasFiles(t *route.Table) bool {
	for _, c := range t.Clusters {
		if c.Kind == route.File {
			return true
		}
	}
	return false
}

// destinations are the table's servers as destinations (host:port),
// then its files (file:PATH, fileip:PATH).
func destinations(t *route.Table, ca string) ([]dest.Destination, error) {
	var out []dest.Destination
	for _, s := range t.Servers {
		d, err := dest.ParseDestination(s.Addr())
		if err != nil {
			return nil, err
		}
		d.Pickle, d.Transport = s.Pickle, s.Transport
		if s.TLS != "" {
			if d.TLS, err = ClientTLS(ca, s.Cert, s.Key); err != nil {
				return nil, fmt.Errorf("server %s (transport %s %s): %w", s.Addr(), s.Transport, s.TLS, err)
			}
		}
		out = append(out, d)
	}
	seen := map[string]bool{}
	for _, c := range t.Clusters {
		if c.Kind != route.File {
			continue
		}
		for _, f := range c.Files {
			if name := fileDest(f, c.FileIP); !seen[name] {
				seen[name] = true
				out = append(out, dest.Destination{Name: name, File: f})
			}
		}
	}
	return out, nil
}

// fileDest names a file cluster's file as a destination.
func fileDest(path string, ip bool) string {
	if ip {
		return "fileip:" + path
	}
	return "file:" + path
}

// reload re-reads the configuration and applies the runtime edits over it;
// on success the new table and its destinations replace the running ones
// in one step (servers in both keep their connections, queues and spools).
// On failure the running table stays.
func (r *routing) reload() error {
	if r.path == "" {
		r.log.Info("reload asked for, but there is no -config to re-read; nothing changes")
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	base, err := readConfig(r.path)
	var kept []route.Edit
	var t *route.Table
	if err == nil {
		if t, err = r.withConsul(base); err == nil {
			t, kept = r.withEdits(t, r.edits)
			err = deliverable(t)
		}
	}
	var added, removed []string
	if err == nil {
		added, removed, err = r.swap(t)
	}
	if err != nil {
		r.reloadFails.Add(1)
		r.log.Error("configuration not reloaded; the running one stays", "config", r.path, "err", err)
		return err
	}
	r.base = base
	if len(kept) != len(r.edits) {
		r.edits = kept
		r.save()
	}
	r.applyHealth()
	r.reloads.Add(1)
	r.log.Info("configuration reloaded", "config", r.path, "clusters", len(t.Clusters), "rules", len(t.Rules),
		"servers_added", len(added), "servers_removed", len(removed), "runtime_changes", len(r.edits))
	return nil
}

// compose is base with the Consul members and the runtime edits over it
// (an edit that no longer applies is dropped with a warning and kept out
// of r.edits). Callers hold r.mu.
func (r *routing) compose(base *route.Table) (*route.Table, error) {
	t, err := r.withConsul(base)
	if err != nil {
		return nil, err
	}
	t, r.edits = r.withEdits(t, r.edits)
	return t, deliverable(t)
}

// swap hands t and its destinations to the destination set. Callers hold r.mu.
func (r *routing) swap(t *route.Table) (added, removed []string, err error) {
	dests, err := destinations(t, r.ca)
	if err != nil {
		return nil, nil, err
	}
	if r.agg != nil {
		// The aggregates first: the new table's are there when it arrives.
		r.agg.Apply(context.Background(), t.Aggregates())
	}
	added, removed, err = r.set.Apply(dests, newTableRoutes(t, r.agg))
	if err == nil {
		r.cur.Store(t)
	}
	return added, removed, err
}

// putDest is putdest under -config: "host:port[=instance] [CLUSTER]" adds a
// member to a cluster (the only one when there is one).
func (r *routing) putDest(arg string) error {
	return r.edit(route.EditPut, arg)
}

// delDest is deldest under -config: "host:port [CLUSTER]" removes a member
// from that cluster, or from every cluster that has it.
func (r *routing) delDest(arg string) error {
	return r.edit(route.EditDel, arg)
}

func (r *routing) edit(op, arg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.cur.Load()
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		return errors.New("no member given")
	}
	var clusters []string
	if last := fields[len(fields)-1]; len(fields) > 1 && t.Cluster(last) != nil {
		clusters, fields = []string{last}, fields[:len(fields)-1]
	}
	var names, all []string
	for _, c := range t.Clusters {
		if c.Kind != route.File {
			all = append(all, c.Name)
		}
	}
	member := strings.Join(fields, " ")
	s, err := route.ParseMember(member)
	if err != nil && clusters == nil && len(fields) > 1 {
		return fmt.Errorf("name the cluster: there is no cluster %q (clusters: %s)", fields[len(fields)-1], strings.Join(all, ", "))
	}
	if err != nil {
		return err
	}
	if clusters == nil {
		for _, c := range t.Clusters {
			if c.Kind == route.File {
				continue
			}
			if op == route.EditDel && slices.ContainsFunc(c.Members, func(m *route.Server) bool { return m.Addr() == s.Addr() }) {
				names = append(names, c.Name)
			}
		}
		switch {
		case op == route.EditDel && len(names) == 0:
			return fmt.Errorf("%w: %s is in no cluster", dest.ErrNotRegistered, s.Addr())
		case op == route.EditDel:
			clusters = names
		case len(all) == 1:
			clusters = all
		default:
			return fmt.Errorf("name the cluster: putdest %s CLUSTER (clusters: %s)", member, strings.Join(all, ", "))
		}
	}
	var edits []route.Edit
	for _, c := range clusters {
		edits = append(edits, route.Edit{Op: op, Cluster: c, Member: member})
	}
	nt, err := t.Apply(edits...)
	if err != nil {
		if errors.Is(err, route.ErrEdit) && strings.Contains(err.Error(), "already a member") {
			return fmt.Errorf("%w: %v", dest.ErrDuplicate, err)
		}
		if errors.Is(err, route.ErrEdit) && strings.Contains(err.Error(), "not a member") {
			return fmt.Errorf("%w: %v", dest.ErrNotRegistered, err)
		}
		return err
	}
	if _, _, err := r.swap(nt); err != nil {
		return err
	}
	for _, e := range edits {
		r.edits = compact(r.edits, e)
		r.log.Info("cluster changed at runtime", "change", e.String())
	}
	r.save()
	return nil
}
