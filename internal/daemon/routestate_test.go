package daemon

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/internal/testutil"
	"github.com/polymur/polymur/ring"
	"github.com/polymur/polymur/route"
)

const directCarbon = "cluster out carbon_ch\n 127.0.0.1:2101=a\n 127.0.0.1:2102=b\n 127.0.0.1:2103=c\n ;\nmatch * send to out stop;\n"

// TestDirectRouteIsRoute: for tables that route.Table.Direct takes, the
// direct way gives every name the placements the rule walk gives, with
// every destination up, some down, and no liveness at all; and so does a
// batch's lookup by position when the table is one carbon_ch ring.
func TestDirectRouteIsRoute(t *testing.T) {
	servers := " 127.0.0.1:2101=a 127.0.0.2:2102=b 127.0.0.3:2103=c 127.0.0.4:2104=d;\n"
	rings := 0
	for _, conf := range []string{
		directCarbon,
		"cluster out carbon_ch replication 2" + servers + "match * send to out stop;\n",
		"cluster out carbon_ch dynamic replication 2" + servers + "match * send to out;\n",
		"cluster out fnv1a_ch dynamic" + servers + "match * send to out stop;\n",
		"cluster out jump_fnv1a_ch" + servers + "match * send to out stop;\n",
		"cluster a any_of 127.0.0.1:2101 127.0.0.1:2102;\ncluster b failover 127.0.0.1:2103 127.0.0.1:2104;\ncluster c forward 127.0.0.1:2105 127.0.0.1:2101;\nmatch * send to a b c stop;\nmatch foo send to a;\n",
	} {
		tb, err := route.Parse("t.conf", conf)
		if err != nil {
			t.Fatal(err)
		}
		if tb.Direct() == nil {
			t.Fatalf("not direct:\n%s", conf)
		}
		tr := newTableRoutes(tb, nil)
		st := tr.NewRoute()
		one, to := tr.OneRing()
		full := &routeState{t: tb}
		full.live = func(s *route.Server) bool { return full.up(s.Index()) }
		if one != nil {
			rings++
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for _, down := range [][]int{nil, {0}, {1, 2}, {0, 1, 2, 3, 4}} {
			up := func(i int) bool { return !slices.Contains(down, i) }
			for _, upf := range []func(int) bool{up, nil} {
				for i := range 3000 {
					name := fmt.Appendf(nil, "a.b%d.c%x", i, rng.Uint64())
					rest := []byte("1 2")
					got, gotWhy := st(nil, name, rest, nil, upf)
					want, wantWhy := full.route(nil, name, rest, nil, upf)
					if !slices.Equal(got, want) || gotWhy != wantWhy {
						t.Fatalf("down %v: %q: direct %v %q, rules %v %q\n%s", down, name, got, gotWhy, want, wantWhy, conf)
					}
					if one != nil { // and a batch's way, by position
						if pl := to[one.OwnerAt(ring.Positions(nil, 1, func(int) []byte { return name })[0])]; !slices.Equal([]dest.Placement{pl}, want) {
							t.Fatalf("down %v: %q: by position %v, rules %v\n%s", down, name, pl, want, conf)
						}
					}
				}
			}
		}
	}
	if rings != 1 {
		t.Fatalf("%d tables routed by one ring, want 1", rings)
	}
}

// BenchmarkTableRoute is the traffic-shapes scenario's routing through the
// daemon's RouteFunc (one carbon_ch cluster of three, 100k realistic names
// each again in turn, a batch's names prefetched): the rule walk against
// the direct way.
func BenchmarkTableRoute(b *testing.B) {
	tb, err := route.Parse("bench.conf", directCarbon)
	if err != nil {
		b.Fatal(err)
	}
	names := testutil.RealisticNames(100_000)
	up := func(int) bool { return true }
	full := &routeState{t: tb}
	full.live = func(s *route.Server) bool { return full.up(s.Index()) }
	for _, way := range []struct {
		name string
		f    dest.RouteFunc
	}{{"rules", full.route}, {"direct", newTableRoutes(tb, nil).NewRoute()}} {
		b.Run(way.name, func(b *testing.B) {
			var pls []dest.Placement
			rest := []byte("1 1700000000")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%512 == 0 {
					for j := i; j < i+512; j++ {
						ring.Prefetch(names[j%len(names)])
					}
				}
				pls, _ = way.f(pls[:0], names[i%len(names)], rest, nil, up)
				i++
			}
		})
	}
}
