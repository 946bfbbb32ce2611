package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// Instance is one registered instance of a Consul service: a cluster
// member. Name is its "instance" service metadata, else its service ID.
type Instance struct {
	Name    string
	Address string // the service address, else the node's
	Port    int
	Passing bool // no critical check
}

// Member is the instance as a cluster member: host:port=instance.
func (i Instance) Member() string {
	host := i.Address
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(i.Port) + "=" + i.Name
}

// Service says which instances a Watch follows.
type Service struct {
	Name, Tag, Datacenter string
}

func (s Service) String() string {
	out := s.Name
	if s.Tag != "" {
		out += " tag " + s.Tag
	}
	if s.Datacenter != "" {
		out += " datacenter " + s.Datacenter
	}
	return out
}

// Watch follows a service's instances with blocking queries. When Consul
// cannot be reached the last membership stays (OnChange is not called),
// the failure is logged and counted, and the query is retried with
// backoff.
type Watch struct {
	Service Service
	Address string        // Consul's HTTP address; "" for CONSUL_HTTP_ADDR
	Wait    time.Duration // longest blocking query; default 30s
	// OnChange is called with every new membership (sorted by name; the
	// instances' health may be the only change).
	OnChange func([]Instance)
	Logger   *slog.Logger

	health  *api.Health
	mu      sync.Mutex
	last    []Instance
	updated time.Time
	errors  atomic.Uint64
	failing atomic.Bool
}

// WatchStats is what a Watch reports.
type WatchStats struct {
	Service   string    `json:"service"`
	Instances int       `json:"instances"`
	Passing   int       `json:"passing"`
	Updated   time.Time `json:"updated"` // last answer from Consul; zero before the first
	Errors    uint64    `json:"errors"`
	Reachable bool      `json:"reachable"`
}

// Stats returns the watch's state.
func (w *Watch) Stats() WatchStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := WatchStats{Service: w.Service.String(), Instances: len(w.last), Updated: w.updated, Errors: w.errors.Load(), Reachable: !w.failing.Load() && !w.updated.IsZero()}
	for _, i := range w.last {
		if i.Passing {
			s.Passing++
		}
	}
	return s
}

func (w *Watch) client() (*api.Health, error) {
	if w.health != nil {
		return w.health, nil
	}
	conf := api.DefaultConfig()
	if w.Address != "" {
		conf.Address = w.Address
	}
	c, err := api.NewClient(conf)
	if err != nil {
		return nil, err
	}
	w.health = c.Health()
	return w.health, nil
}

// Fetch reads the instances once (no blocking): the start's membership.
func (w *Watch) Fetch(ctx context.Context) ([]Instance, uint64, error) {
	h, err := w.client()
	if err != nil {
		return nil, 0, err
	}
	return w.read(ctx, h, 0)
}

func (w *Watch) read(ctx context.Context, h *api.Health, index uint64) ([]Instance, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: cmp.Or(w.Wait, 30*time.Second), Datacenter: w.Service.Datacenter, AllowStale: false}).WithContext(ctx)
	entries, meta, err := h.Service(w.Service.Name, w.Service.Tag, false, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul service %s: %w", w.Service, err)
	}
	out, err := Instances(entries)
	if err != nil {
		return nil, 0, fmt.Errorf("consul service %s: %w", w.Service, err)
	}
	w.mu.Lock()
	w.updated = time.Now()
	w.mu.Unlock()
	return out, meta.LastIndex, nil
}

// Instances turns Consul's health entries into members, sorted by name so
// that every relay builds the same ring. Two instances with one name are
// an error (they would hash alike).
func Instances(entries []*api.ServiceEntry) ([]Instance, error) {
	var out []Instance
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		name := cmp.Or(e.Service.Meta["instance"], e.Service.ID)
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		if name == "" || addr == "" || e.Service.Port < 1 || e.Service.Port > 65535 {
			continue // not a usable member: no name, address or port
		}
		out = append(out, Instance{Name: name, Address: addr, Port: e.Service.Port, Passing: e.Checks.AggregatedStatus() != api.HealthCritical})
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.Name, b.Name) })
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return nil, errors.New("two instances are named " + out[i].Name + " (give each its own \"instance\" metadata)")
		}
	}
	return out, nil
}

// Run follows the service until ctx ends, starting after index (Fetch's).
func (w *Watch) Run(ctx context.Context, index uint64) error {
	h, err := w.client()
	if err != nil {
		return err
	}
	log := cmp.Or(w.Logger, slog.Default())
	fails := 0
	for ctx.Err() == nil {
		ins, next, err := w.read(ctx, h, index)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fails++
			w.errors.Add(1)
			w.failing.Store(true)
			if fails == 1 || fails%10 == 0 {
				log.Error("consul unreachable: keeping the last membership", "service", w.Service.String(), "err", err, "attempt", fails)
			}
			index = 0
			sleep(ctx, min(time.Duration(fails)*time.Second, 10*time.Second))
			continue
		}
		if fails > 0 {
			log.Info("consul reachable again", "service", w.Service.String(), "after_failures", fails)
		}
		fails = 0
		w.failing.Store(false)
		if next < index {
			next = 0 // the index went backwards (a restore): start over
		}
		index = next
		w.mu.Lock()
		changed := !slices.Equal(ins, w.last)
		if changed {
			w.last = ins
		}
		w.mu.Unlock()
		if changed && w.OnChange != nil {
			w.OnChange(ins)
		}
	}
	return nil
}

// Seed sets the membership the watch starts from (Fetch's answer).
func (w *Watch) Seed(ins []Instance) {
	w.mu.Lock()
	w.last = ins
	w.mu.Unlock()
}
