package daemon

import (
	"slices"
	"strconv"
	"strings"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/route"
)

// sample is the status page's chart reading: points in, out and dropped,
// and what waits for each destination.
func (r *Relay) sample() admin.Sample {
	s := r.Dests.Stats()
	out := admin.Sample{Received: r.intake.Accepted(), Sent: s.Sent, Queued: make(map[string]int64, len(s.Destinations))}
	for _, n := range s.Dropped {
		out.Dropped += n
	}
	for _, d := range s.Destinations {
		out.Queued[d.Name] = int64(d.QueueDepth) + d.InFlight + d.SpoolLines
	}
	return out
}

// Running is what GET /api/v1/config shows: the running configuration.
type Running struct {
	Daemon       string            `json:"daemon"`
	Version      string            `json:"version"`
	Distribution string            `json:"distribution"`
	Listeners    []RunningListener `json:"listeners"`
	ConfigFile   string            `json:"config_file,omitempty"`
	Clusters     []RunningCluster  `json:"clusters,omitempty"`
	Rules        int               `json:"rules"`
	Aggregates   int               `json:"aggregates"`
	// Destinations are those of the flags or the state file (not with
	// -config), in ring order for hash-route.
	Destinations []string `json:"destinations,omitempty"`
	SpoolMode    string   `json:"spool_mode,omitempty"`
	SpoolDir     string   `json:"spool_dir,omitempty"`
}

// RunningListener is one bound port: what it is and where.
type RunningListener struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// RunningCluster is one -config cluster with its current members (after
// runtime edits and Consul).
type RunningCluster struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Replication int      `json:"replication,omitempty"`
	Dynamic     bool     `json:"dynamic,omitempty"`
	Consul      string   `json:"consul,omitempty"`
	Members     []string `json:"members"`
}

func (r *Relay) running() Running {
	f := r.flags
	run := Running{Daemon: r.name, Version: Version(), Distribution: f.Mode.String(), Listeners: []RunningListener{}}
	for name, addr := range r.Addrs {
		run.Listeners = append(run.Listeners, RunningListener{name, addr})
	}
	slices.SortFunc(run.Listeners, func(a, b RunningListener) int { return strings.Compare(a.Name, b.Name) })
	if f.SpoolDir != "" {
		run.SpoolMode, run.SpoolDir = f.SpoolMode, f.SpoolDir
	}
	if r.routing == nil {
		run.Destinations = r.destNames()
		return run
	}
	t := r.routing.cur.Load()
	run.ConfigFile, run.Rules, run.Aggregates = r.routing.path, len(t.Rules), len(t.Aggregates())
	if run.ConfigFile != "" {
		run.Distribution = "config"
	}
	for _, c := range t.Clusters {
		rc := RunningCluster{Name: c.Name, Kind: c.Kind.String(), Dynamic: c.Dynamic, Members: []string{}}
		if c.Replication > 1 {
			rc.Replication = c.Replication
		}
		if c.Consul != nil {
			rc.Consul = c.Consul.Service
		}
		for _, m := range c.Members {
			rc.Members = append(rc.Members, memberText(m))
		}
		rc.Members = append(rc.Members, c.Files...)
		run.Clusters = append(run.Clusters, rc)
	}
	return run
}

func memberText(m *route.Server) string {
	s := m.Host + ":" + strconv.Itoa(m.Port)
	if m.HasInstance {
		s += "=" + m.Instance
	}
	return s
}

func (r *Relay) destNames() []string {
	var names []string
	for _, d := range r.Dests.Stats().Destinations {
		names = append(names, d.Name)
	}
	return names
}
