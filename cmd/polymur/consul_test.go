package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
	"github.com/polymur/polymur/route"
)

// carbonTier is sinks registered in Consul as instances of a service.
type carbonTier struct {
	t      *testing.T
	consul *testutil.Consul
	sinks  map[string]*testutil.Sink // by instance name
	addrs  map[string]string         // instance name → sink address
}

func (c *carbonTier) register(name string) {
	s := testutil.NewSink(c.t)
	c.sinks[name], c.addrs[name] = s, s.Addr()
	c.registerTTL(name, "10m")
}

// registerTTL (re-)registers instance name with a passing TTL check of
// ttl: left alone, it turns critical when ttl has passed.
func (c *carbonTier) registerTTL(name, ttl string) {
	_, port, _ := strings.Cut(c.sinks[name].Addr(), ":")
	c.consul.API("PUT", "agent/service/register", fmt.Sprintf(`{"ID": %q, "Name": "carbon", "Address": "127.0.0.1", "Port": %s, "Meta": {"instance": %q},
		"Check": {"CheckID": "ttl-%s", "TTL": %q, "Status": "passing"}}`, "carbon-"+name, port, name, name, ttl))
}

// expected is where carbon's ring over the registered instances (those in
// live) puts each name.
func (c *carbonTier) expected(t *testing.T, names []string, dead string) map[string]string {
	var b strings.Builder
	b.WriteString("cluster carbon carbon_ch dynamic")
	for _, name := range slices.Sorted(maps.Keys(c.addrs)) { // the relays' order: by instance name
		b.WriteString(" " + c.addrs[name] + "=" + name)
	}
	b.WriteString(";\nmatch * send to carbon;\n")
	tb, err := route.Parse("expected", b.String())
	if err != nil {
		t.Fatal(err)
	}
	live := func(s *route.Server) bool { return s.Instance != dead }
	out := map[string]string{}
	for _, n := range names {
		ds := tb.Route(nil, n, "", live)
		out[n] = ds[0].Server.Instance
	}
	return out
}

// TestConsulMembership: three relays with one configuration whose cluster
// takes its members from a Consul service (the real agent) place every
// name on the same sink, the one carbon's ring over the registered
// instances names; they follow a new instance, a removed one and a failed
// check; every line sent arrives once.
func TestConsulMembership(t *testing.T) {
	consul := testutil.StartConsul(t)
	tier := &carbonTier{t: t, consul: consul, sinks: map[string]*testutil.Sink{}, addrs: map[string]string{}}
	for _, n := range []string{"c1", "c2", "c3", "c4", "c5"} {
		tier.register(n)
	}
	conf := filepath.Join(t.TempDir(), "relay.conf")
	os.WriteFile(conf, []byte("cluster carbon carbon_ch dynamic consul carbon;\nmatch * send to carbon;\n"), 0o600)
	var relays []*testutil.Daemon
	for range 3 {
		relays = append(relays, start(t, "-config", conf, "-consul-addr", consul.Addr, "-admin-addr", "127.0.0.1:0"))
	}
	// A stream through the first relay all along, membership changes and
	// Consul's outage included: every line arrives once.
	bg, err := net.Dial("tcp", relays[0].Addrs["listen"])
	if err != nil {
		t.Fatal(err)
	}
	stopBG, bgDone := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stopBG:
				bg.Close()
				bgDone <- n
				return
			case <-time.After(2 * time.Millisecond):
			}
			var b strings.Builder
			for range 10 {
				fmt.Fprintf(&b, "bg.m%d 1 1700000000\n", n)
				n++
			}
			if _, err := bg.Write([]byte(b.String())); err != nil {
				bgDone <- -1
				return
			}
		}
	}()
	round := func(label, dead string, instances, passing int) {
		t.Helper()
		for _, d := range relays {
			testutil.WaitFor(t, label+": relay sees the membership", limit, func() bool {
				m := testutil.Scrape(t, "http://"+d.Addrs["admin"]+"/metrics")
				return strings.Contains(m, fmt.Sprintf(`polymur_consul_instances{service="carbon"} %d`, instances)) &&
					strings.Contains(m, fmt.Sprintf(`polymur_consul_instances_passing{service="carbon"} %d`, passing))
			})
		}
		var names []string
		for i := range 300 {
			names = append(names, fmt.Sprintf("%s.host%d.metric%d", label, i%17, i))
		}
		want := tier.expected(t, names, dead)
		for ri, d := range relays {
			var b strings.Builder
			for _, n := range names {
				fmt.Fprintf(&b, "%s %d 1700000000\n", n, ri)
			}
			d.Send(t, "listen", b.String())
		}
		// (Counted by prefix: the background stream arrives meanwhile.)
		got := map[string]map[string]int{} // name → instance → lines
		testutil.WaitFor(t, label+": every line delivered", limit, func() bool {
			clear(got)
			total := 0
			for inst, s := range tier.sinks {
				for _, l := range s.Lines() {
					n, _, _ := strings.Cut(l, " ")
					if strings.HasPrefix(n, label+".") {
						if got[n] == nil {
							got[n] = map[string]int{}
						}
						got[n][inst]++
						total++
					}
				}
			}
			return total >= len(names)*len(relays)
		})
		for _, n := range names {
			if len(got[n]) != 1 || got[n][want[n]] != len(relays) {
				t.Fatalf("%s: %s arrived %v, want all %d on %s (carbon's ring over the registered instances)", label, n, got[n], len(relays), want[n])
			}
		}
		t.Logf("%s: %d names through %d relays, each on the sink carbon's ring names", label, len(names), len(relays))
	}
	round("five", "", 5, 5)
	tier.register("c6")
	round("six", "", 6, 6)
	consul.API("PUT", "agent/service/deregister/carbon-c2", "")
	delete(tier.addrs, "c2") // its sink keeps what it got
	round("removed", "", 5, 5)
	tier.registerTTL("c3", "1s") // and nothing passes it: it expires
	round("failing", "c3", 5, 4)
	tier.registerTTL("c3", "10m")
	consul.API("PUT", "agent/check/pass/ttl-c3", "") // its state survives the registration: pass it
	round("recovered", "", 5, 5)

	// Consul gone: the relays keep the last membership and say so.
	consul.Stop()
	for _, d := range relays {
		testutil.WaitFor(t, "the relay notices Consul is gone", limit, func() bool {
			return strings.Contains(testutil.Scrape(t, "http://"+d.Addrs["admin"]+"/metrics"), `polymur_consul_reachable{service="carbon"} 0`)
		})
	}
	round("consul-down", "", 5, 5)
	// Back (its registrations kept in its data directory): a change made
	// now is picked up.
	consul.Start()
	// Consul restores TTL checks as critical: the instances' own health
	// reports (here: the test) pass them again.
	for name := range tier.addrs {
		consul.API("PUT", "agent/check/pass/ttl-"+name, "")
	}
	tier.register("c7")
	round("consul-back", "", 6, 6)
	_, stats := testutil.Get(t, "http://"+relays[0].Addrs["admin"]+"/api/v1/stats")
	testutil.HasAll(t, "stats", stats, `"consul": {`, `"service": "carbon"`, `"instances": 6`, `"reachable": true`)
	close(stopBG)
	sentBG := <-bgDone
	if sentBG < 0 {
		t.Fatal("the background stream's connection failed")
	}
	testutil.WaitFor(t, "the background stream delivered", limit, func() bool {
		n := 0
		for _, s := range tier.sinks {
			for _, l := range s.Lines() {
				if strings.HasPrefix(l, "bg.") {
					n++
				}
			}
		}
		return n >= sentBG
	})
	seen := map[string]int{}
	for _, s := range tier.sinks {
		for _, l := range s.Lines() {
			if n, _, _ := strings.Cut(l, " "); strings.HasPrefix(n, "bg.") {
				seen[n]++
			}
		}
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("%s arrived %d times", n, c)
		}
	}
	if len(seen) != sentBG {
		t.Fatalf("background stream: %d distinct lines arrived, %d sent", len(seen), sentBG)
	}
	t.Logf("background stream: %d lines through every change and the outage, each once", sentBG)
	dom := testutil.RenderPage(t, "http://"+relays[0].Addrs["admin"]+"/", 5*time.Second, "")
	testutil.HasAll(t, "the status page", dom, `data-loaded="yes"`, "Members from Consul", `data-service="carbon"`, "reachable", " s ago",
		`data-cluster="carbon"`, "carbon_ch dynamic · consul carbon")
}

// TestDestinationsFromConsul: -destinations consul:SERVICE?tag=TAG in the
// flag mode: hash-route over the tagged instances, as carbon's ring puts it.
func TestDestinationsFromConsul(t *testing.T) {
	consul := testutil.StartConsul(t)
	tier := &carbonTier{t: t, consul: consul, sinks: map[string]*testutil.Sink{}, addrs: map[string]string{}}
	for _, n := range []string{"a", "b", "c"} {
		tier.register(n)
	}
	// One more instance, untagged: not a member.
	other := testutil.NewSink(t)
	_, port, _ := strings.Cut(other.Addr(), ":")
	consul.API("PUT", "agent/service/register", `{"ID": "carbon-x", "Name": "carbon", "Address": "127.0.0.1", "Port": `+port+`, "Tags": ["staging"]}`)
	for n := range tier.addrs {
		consul.API("PUT", "agent/service/register", fmt.Sprintf(`{"ID": "carbon-%s", "Name": "carbon", "Address": "127.0.0.1", "Port": %s, "Meta": {"instance": %q}, "Tags": ["prod"]}`,
			n, tier.addrs[n][strings.LastIndexByte(tier.addrs[n], ':')+1:], n))
	}
	d := start(t, "-distribution", "hash-route", "-destinations", "consul:carbon?tag=prod", "-consul-addr", consul.Addr)
	var names []string
	var b strings.Builder
	for i := range 200 {
		names = append(names, fmt.Sprintf("flag.m%d", i))
		fmt.Fprintf(&b, "flag.m%d 1 1700000000\n", i)
	}
	d.Send(t, "listen", b.String())
	want := tier.expected(t, names, "")
	testutil.WaitFor(t, "every line delivered", limit, func() bool {
		n := 0
		for _, s := range tier.sinks {
			n += s.Count()
		}
		return n >= len(names)
	})
	for inst, s := range tier.sinks {
		for _, l := range s.Lines() {
			n, _, _ := strings.Cut(l, " ")
			if want[n] != inst {
				t.Fatalf("%s arrived on %s, carbon's ring says %s", n, inst, want[n])
			}
		}
	}
	if other.Count() != 0 {
		t.Fatalf("the untagged instance got %d lines", other.Count())
	}
	if got := d.Ask(t, "api", "putdest 127.0.0.1:9"); !strings.Contains(got, "Consul") {
		t.Fatalf("putdest with consul destinations: %q", got)
	}
}

// TestConsulRegister: -consul-register puts the relay in the catalog with
// its listen address and a passing check on /readyz; it is gone after the
// shutdown.
func TestConsulRegister(t *testing.T) {
	consul := testutil.StartConsul(t)
	sink := testutil.NewSink(t)
	d := start(t, "-destinations", sink.Addr(), "-admin-addr", "127.0.0.1:0", "-consul-register", "-consul-service", "relays", "-consul-addr", consul.Addr)
	_, port, _ := strings.Cut(d.Addrs["listen"], ":")
	testutil.WaitFor(t, "the relay registered with a passing check", limit, func() bool {
		h := consul.API("GET", "health/service/relays?passing=true", "")
		return strings.Contains(h, `"Port":`+port) && strings.Contains(h, `"Status":"passing"`) && strings.Contains(h, `/readyz`)
	})
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := consul.API("GET", "catalog/service/relays", ""); strings.Contains(got, `"ServicePort":`+port) {
		t.Fatalf("still registered after shutdown: %s", got)
	}
}

// TestDestinationFollowsDNS: a destination given by hostname is looked up
// again while connected; when its name resolves elsewhere, polymur
// reconnects there and the next lines go to the new address. A name that
// does not resolve is an error at start.
func TestDestinationFollowsDNS(t *testing.T) {
	dns := testutil.StartDNS(t)
	first := testutil.NewSinkAt(t, "127.0.0.2:0")
	_, port, _ := strings.Cut(first.Addr(), ":")
	second := testutil.NewSinkAt(t, "127.0.0.3:"+port)
	dns.Set("carbon.polymur.test", "127.0.0.2")
	d := start(t, "-destinations", "carbon.polymur.test:"+port, "-dns-server", dns.Addr, "-dns-refresh", "100ms")
	d.Send(t, "listen", "before 1 1700000000\n")
	if !first.WaitCount(1, limit) {
		t.Fatal("nothing arrived at the first address")
	}
	dns.Set("carbon.polymur.test", "127.0.0.3")
	i := 0
	testutil.WaitFor(t, "lines at the new address", limit, func() bool {
		i++
		d.Send(t, "listen", fmt.Sprintf("after.%d 1 1700000000\n", i))
		return second.Count() > 0
	})
	testutil.WaitFor(t, "every line delivered", limit, func() bool { return first.Count()+second.Count() >= i+1 })
	if n := first.Count() + second.Count(); n != i+1 {
		t.Fatalf("%d lines arrived for %d sent", n, i+1)
	}
	err := run(t.Context(), []string{"-listen-addr", "127.0.0.1:0", "-api-addr", "", "-stat-addr", "", "-destinations", "nowhere.polymur.test:2003", "-dns-server", dns.Addr},
		strings.NewReader(""), io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "nowhere.polymur.test does not resolve") || !strings.Contains(err.Error(), "-dns-retry-unresolved") {
		t.Fatalf("unresolvable destination at start: %v", err)
	}
}

// TestConsulStartFromState: without Consul at start the relay fails,
// naming the way out; with -consul-start-from-state it starts from the
// membership the state file kept and delivers.
func TestConsulStartFromState(t *testing.T) {
	consul := testutil.StartConsul(t)
	tier := &carbonTier{t: t, consul: consul, sinks: map[string]*testutil.Sink{}, addrs: map[string]string{}}
	tier.register("s1")
	dir := t.TempDir()
	conf, state := filepath.Join(dir, "relay.conf"), filepath.Join(dir, "state.json")
	os.WriteFile(conf, []byte("cluster carbon carbon_ch consul carbon;\nmatch * send to carbon;\n"), 0o600)
	d := start(t, "-config", conf, "-state-file", state, "-consul-addr", consul.Addr)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	consul.Stop()
	args := []string{"-listen-addr", "127.0.0.1:0", "-api-addr", "", "-stat-addr", "", "-config", conf, "-state-file", state, "-consul-addr", consul.Addr, "-consul-wait", "500ms"}
	err := run(t.Context(), args, strings.NewReader(""), io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-consul-start-from-state") {
		t.Fatalf("start without Consul: %v", err)
	}
	d = start(t, "-config", conf, "-state-file", state, "-consul-addr", consul.Addr, "-consul-wait", "500ms", "-consul-start-from-state")
	d.Send(t, "listen", "kept.membership 1 1700000000\n")
	if !tier.sinks["s1"].WaitCount(1, limit) {
		t.Fatal("nothing delivered with the state file's membership")
	}
}
