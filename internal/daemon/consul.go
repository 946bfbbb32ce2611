package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/route"
)

// consulSource is the membership of -config's Consul clusters: one watch
// per cluster, the instances last seen (under routing.mu), applied over
// the file's table like the runtime edits.
type consulSource struct {
	watches map[string]*consul.Watch // by cluster
	members map[string][]consul.Instance
	order   []string // clusters, in configuration order
}

// consulStart is how the first membership is read.
type consulStart struct {
	addr      string        // Consul's HTTP address ("" for CONSUL_HTTP_ADDR)
	wait      time.Duration // how long to wait for Consul's first answer
	fromState bool          // without one, start from the state file's last membership
}

// startConsul reads the first membership of t's Consul clusters, waiting
// up to wait for Consul to answer: without it the relay does not start,
// unless fromState and the state file holds the cluster's last membership.
func (r *routing) startConsul(t *route.Table, cs consulStart) error {
	addr, wait := cs.addr, cs.wait
	clusters := t.ConsulClusters()
	if len(clusters) == 0 {
		return nil
	}
	src := &consulSource{watches: map[string]*consul.Watch{}, members: map[string][]consul.Instance{}}
	for _, c := range clusters {
		svc := consul.Service{Name: c.Consul.Service, Tag: c.Consul.Tag, Datacenter: c.Consul.Datacenter}
		w := &consul.Watch{Service: svc, Address: addr, Logger: r.log}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		var ins []consul.Instance
		var err error
		for {
			if ins, _, err = w.Fetch(ctx); err == nil || ctx.Err() != nil {
				break
			}
			sleepCtx(ctx, 250*time.Millisecond)
		}
		cancel()
		if err != nil && cs.fromState && r.state != "" {
			saved, at, serr := readConsulState(r.state)
			if serr == nil && len(saved[c.Name]) > 0 {
				r.log.Warn("consul unreachable at start: the cluster starts with the state file's last membership", "cluster", c.Name, "service", svc.String(), "saved", at, "members", instanceList(saved[c.Name]), "err", err)
				ins, err = saved[c.Name], nil
			}
		}
		if err != nil {
			return fmt.Errorf("cluster %s: %w (is Consul reachable at %s? -consul-addr, CONSUL_HTTP_ADDR; -consul-start-from-state with -state-file starts with the last membership)", c.Name, err, consulAddr(addr))
		}
		if len(ins) == 0 {
			return fmt.Errorf("cluster %s: consul service %s has no registered instances", c.Name, svc)
		}
		w.Seed(ins)
		src.watches[c.Name], src.members[c.Name] = w, ins
		src.order = append(src.order, c.Name)
		r.log.Info("cluster members from consul", "cluster", c.Name, "service", svc.String(), "instances", len(ins), "members", instanceList(ins))
	}
	r.consul = src
	return nil
}

func consulAddr(addr string) string {
	if addr == "" {
		return "CONSUL_HTTP_ADDR or 127.0.0.1:8500"
	}
	return addr
}

func instanceList(ins []consul.Instance) string {
	var s []string
	for _, i := range ins {
		s = append(s, i.Member())
	}
	return strings.Join(s, " ")
}

// withConsul gives t's Consul clusters the members last seen. A
// membership the cluster refuses (replication above its hosts, say) keeps
// the cluster's previous one: err says so.
func (r *routing) withConsul(t *route.Table) (*route.Table, error) {
	if r.consul == nil {
		if len(t.ConsulClusters()) > 0 {
			return nil, errors.New("a cluster takes its members from consul but the relay started without: restart to add Consul clusters")
		}
		return t, nil
	}
	var errs []error
	for _, c := range t.ConsulClusters() {
		ins, ok := r.consul.members[c.Name]
		if !ok {
			return nil, fmt.Errorf("cluster %s: consul clusters added by a reload need a restart (they are watched from the start)", c.Name)
		}
		var ms []*route.Server
		for _, i := range ins {
			s, err := route.ParseMember(i.Member())
			if err != nil {
				errs = append(errs, fmt.Errorf("cluster %s: consul instance %s: %w", c.Name, i.Name, err))
				continue
			}
			ms = append(ms, s)
		}
		nt, err := t.WithMembers(c.Name, ms)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: consul membership refused: %w", c.Name, err))
			continue
		}
		t = nt
	}
	return t, errors.Join(errs...)
}

// watchConsul follows every Consul cluster until ctx ends.
func (r *routing) watchConsul(ctx context.Context) error {
	if r.consul == nil {
		return nil
	}
	done := make(chan struct{})
	for _, name := range r.consul.order {
		w := r.consul.watches[name]
		w.OnChange = func(ins []consul.Instance) { r.consulChanged(name, ins) }
		go func() { defer func() { done <- struct{}{} }(); w.Run(ctx, 0) }()
	}
	for range r.consul.order {
		<-done
	}
	return nil
}

// consulChanged applies a cluster's new membership: a new table when the
// members changed (by difference: the others keep their connections), the
// health of each member as hold or unhold.
func (r *routing) consulChanged(cluster string, ins []consul.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.consul.members[cluster]
	r.consul.members[cluster] = ins
	if !sameMembers(old, ins) {
		t, err := r.compose(r.base)
		if err == nil {
			_, _, err = r.swap(t)
		}
		if err != nil {
			r.consulFails.Add(1)
			r.log.Error("consul membership not applied; the running one stays", "cluster", cluster, "err", err)
			r.consul.members[cluster] = old
			return
		}
		r.consulChanges.Add(1)
		r.save()
		r.log.Info("cluster members changed in consul", "cluster", cluster, "instances", len(ins), "members", instanceList(ins))
	}
	r.applyHealth()
}

// sameMembers reports whether two memberships have the same members
// (health aside).
func sameMembers(a, b []consul.Instance) bool {
	return slices.EqualFunc(a, b, func(x, y consul.Instance) bool { return x.Member() == y.Member() })
}

// applyHealth holds the members Consul calls critical and releases the
// others (callers hold r.mu).
func (r *routing) applyHealth() {
	if r.consul == nil || r.set == nil {
		return
	}
	for _, name := range r.consul.order {
		for _, i := range r.consul.members[name] {
			s, err := route.ParseMember(i.Member())
			if err != nil {
				continue
			}
			if i.Passing {
				r.set.Unhold(s.Addr())
			} else {
				r.set.Hold(s.Addr(), "consul: a check of "+i.Name+" is critical")
			}
		}
	}
}

// consulStats are the watches' states, for stats and /metrics.
func (r *routing) consulStats() []consul.WatchStats {
	if r.consul == nil {
		return nil
	}
	var out []consul.WatchStats
	for _, name := range r.consul.order {
		out = append(out, r.consul.watches[name].Stats())
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ConsulMetrics exposes the Consul clusters' membership source.
func ConsulMetrics(r *routing) admin.CollectFunc {
	return func(ch chan<- prometheus.Metric) {
		for _, s := range r.consulStats() {
			l := []string{"service", s.Service}
			Gauge(ch, "polymur_consul_instances", "Registered instances of the service (cluster members).", float64(s.Instances), l...)
			Gauge(ch, "polymur_consul_instances_passing", "Instances without a critical check.", float64(s.Passing), l...)
			up := 0.0
			if s.Reachable {
				up = 1
			}
			Gauge(ch, "polymur_consul_reachable", "1 when the last query of the service was answered.", up, l...)
			if !s.Updated.IsZero() {
				Gauge(ch, "polymur_consul_last_update_age_seconds", "Seconds since Consul last answered for the service.", time.Since(s.Updated).Seconds(), l...)
			}
			Counter(ch, "polymur_consul_errors_total", "Queries of the service that failed.", float64(s.Errors), l...)
		}
		Counter(ch, "polymur_consul_membership_changes_total", "Membership changes applied.", float64(r.consulChanges.Load()))
		Counter(ch, "polymur_consul_membership_refused_total", "Membership changes refused (the running one stayed).", float64(r.consulFails.Load()))
	}
}
