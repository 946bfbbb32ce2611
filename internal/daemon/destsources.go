package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/route"
)

// distribution maps -distribution (polymur's, carbon's and carbon-c-relay's
// names) and -replication to a carbon-c-relay cluster kind, or "" for the
// destination set's own broadcast and hash-route (carbon's carbon_ch without
// replication, with re-routing of dead destinations).
func distribution(name string, replication int) (string, error) {
	if replication < 1 || replication > 255 {
		return "", errors.New("-replication must be from 1 to 255")
	}
	switch name {
	case "broadcast", "forward":
		if replication > 1 {
			return "", fmt.Errorf("-replication %d with -distribution %s: every destination gets every point already", replication, name)
		}
		return "", nil
	case "hash-route", "consistent-hashing", "carbon_ch":
		if replication > 1 {
			return "carbon_ch", nil
		}
		return "", nil
	case "fnv1a_ch", "jump_fnv1a_ch":
		return name, nil
	case "any_of", "failover":
		if replication > 1 {
			return "", fmt.Errorf("-replication with -distribution %s: it sends each point to one destination", name)
		}
		return name, nil
	}
	return "", fmt.Errorf("-distribution: unknown distribution %q (want broadcast, hash-route (consistent-hashing, carbon_ch), fnv1a_ch, jump_fnv1a_ch, any_of or failover)", name)
}

// synthesize turns -destinations into the one-cluster configuration
// "cluster default KIND [replication N] dynamic …; match * send to default"
// for the kinds the destination set has no mode of its own for.
func (f *RelayFlags) synthesize(kind string) error {
	if f.StateFile != "" {
		return fmt.Errorf("-state-file with -distribution %s is not supported: its destinations are fixed at start", f.Distribution)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster default %s", kind)
	if kind == "carbon_ch" || kind == "fnv1a_ch" || kind == "jump_fnv1a_ch" {
		fmt.Fprintf(&b, " replication %d dynamic", f.Replication)
	}
	for _, d := range f.Dests {
		host := d.Host
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		fmt.Fprintf(&b, " %s:%d", host, d.Port)
		if d.HasInstance {
			b.WriteString("=" + d.Instance)
		}
	}
	b.WriteString(";\nmatch * send to default;\n")
	if len(f.Dests) == 0 {
		return fmt.Errorf("-distribution %s needs -destinations", f.Distribution)
	}
	t, err := route.Parse("-destinations", b.String())
	if err != nil {
		return fmt.Errorf("-destinations with -distribution %s -replication %d: %w", f.Distribution, f.Replication, err)
	}
	f.Table = t
	if f.NoDelivery {
		return nil
	}
	if f.Dests, err = destinations(t, f.DestCA); err != nil {
		return err
	}
	f.Mode = dest.Routed
	f.APIReadOnly = true
	f.ReadOnlyHint = "destinations are fixed with -distribution " + f.Distribution
	return nil
}

// fromConsul is -destinations consul:SERVICE[?tag=TAG&dc=DC]: the
// one-cluster configuration "cluster default KIND … consul SERVICE …;
// match * send to default;", its members the service's instances.
func (f *RelayFlags) fromConsul(spec string) error {
	name, query, _ := strings.Cut(spec, "?")
	q, err := url.ParseQuery(query)
	if err != nil || name == "" || strings.ContainsAny(name, " \t;#\"") {
		return fmt.Errorf("-destinations consul:%s: want consul:SERVICE[?tag=TAG&dc=DATACENTER]", spec)
	}
	for k := range q {
		if k != "tag" && k != "dc" {
			return fmt.Errorf("-destinations consul:%s: unknown parameter %q (want tag or dc)", spec, k)
		}
	}
	kind, err := distribution(f.Distribution, f.Replication)
	if err != nil {
		return err
	}
	if kind == "" {
		kind = "carbon_ch"
		if f.Mode == dest.Broadcast {
			kind = "forward"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster default %s", kind)
	if kind == "carbon_ch" || kind == "fnv1a_ch" || kind == "jump_fnv1a_ch" {
		fmt.Fprintf(&b, " replication %d dynamic", f.Replication)
	}
	fmt.Fprintf(&b, " consul %q", name)
	if v := q.Get("tag"); v != "" {
		fmt.Fprintf(&b, " tag %q", v)
	}
	if v := q.Get("dc"); v != "" {
		fmt.Fprintf(&b, " datacenter %q", v)
	}
	b.WriteString(";\nmatch * send to default;\n")
	if f.Table, err = route.Parse("-destinations", b.String()); err != nil {
		return fmt.Errorf("-destinations consul:%s: %w", spec, err)
	}
	f.Mode = dest.Routed
	f.APIReadOnly = true
	f.ReadOnlyHint = "the destinations come from Consul (-destinations consul:" + name + ")"
	return nil
}

// loadConfig reads -config; for delivery its servers become the
// destinations and the set routes by its rules.
func (f *RelayFlags) loadConfig() error {
	if f.Destinations != "" {
		return errors.New("-config and -destinations both given: the configuration's clusters are the destinations")
	}
	t, err := readConfig(f.ConfigFile)
	if err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	f.Table = t
	if f.NoDelivery {
		return nil
	}
	if f.StateFile != "" {
		if _, err := readEdits(f.StateFile); err != nil {
			return fmt.Errorf("-state-file: %w", err)
		}
	}
	f.Mode = dest.Routed
	if len(t.ConsulClusters()) > 0 {
		return nil // the members come from Consul at start (NewRelay)
	}
	if err := deliverable(t); err != nil {
		return fmt.Errorf("-config %s: %w", f.ConfigFile, err)
	}
	if f.Dests, err = destinations(t, f.DestCA); err != nil {
		return fmt.Errorf("-config %s: %w", f.ConfigFile, err)
	}
	return nil
}

// Resolver is the resolver of destination hostnames: -dns-server's, or
// nil for the system's.
func (f *RelayFlags) Resolver() *net.Resolver {
	if f.DNSServer == "" {
		return nil
	}
	server := f.DNSServer
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

// checkResolves fails when a destination hostname does not resolve
// (unless -dns-retry-unresolved).
func (f *RelayFlags) checkResolves(dests []dest.Destination) error {
	if f.DNSRetry {
		return nil
	}
	r := cmp.Or(f.Resolver(), net.DefaultResolver)
	for _, d := range dests {
		if d.File != "" || d.Host == "" || net.ParseIP(d.Host) != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := r.LookupHost(ctx, d.Host)
		cancel()
		if err != nil {
			return fmt.Errorf("destination %s: %s does not resolve: %v (-dns-retry-unresolved starts anyway and retries)", d.Name, d.Host, err)
		}
	}
	return nil
}
