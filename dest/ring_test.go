package dest

import (
	"bufio"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/polymur/polymur/ring"
)

// loadVectors reads destinations/metric/expected rows.
func loadVectors(t testing.TB, path string) [][3]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][3]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), "\t")
		if len(p) != 3 || p[0] == "destinations" {
			continue
		}
		rows = append(rows, [3]string{p[0], p[1], p[2]})
	}
	return rows
}

func lookupName(t testing.TB, dests string, metric string) string {
	ds, err := ParseDestinations(dests)
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(ds)
	tab := r.Table(func(int) bool { return true })
	return ds[tab[position([]byte(metric))]].Name
}

// TestRingGolden checks every vector produced by Graphite's own carbon
// router (testdata/carbon_ch_vectors.tsv), and the collision-heavy sets
// produced by the reference model that was verified against carbon
// (testdata/carbon_ch_model_vectors.tsv: 12 nodes, IPv6, host names, empty
// and ':'-containing instances, names landing on bumped positions).
func TestRingGolden(t *testing.T) {
	for _, file := range []string{"testdata/carbon_ch_vectors.tsv", "testdata/carbon_ch_model_vectors.tsv"} {
		rows := loadVectors(t, file)
		if len(rows) < 1000 {
			t.Fatalf("%s: only %d vectors", file, len(rows))
		}
		bad := 0
		for _, row := range rows {
			if got := lookupName(t, row[0], row[1]); got != row[2] {
				bad++
				if bad < 10 {
					t.Errorf("%s: %s via %s = %s, want %s", file, row[1], row[0], got, row[2])
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d of %d vectors differ", file, bad, len(rows))
		}
	}
}

func TestRingKnownPositions(t *testing.T) {
	if p := position([]byte("('10.0.0.1', 'a'):0")); p != 31534 {
		t.Fatalf("vnode position = %d, want 31534", p)
	}
	dests := "10.0.0.1:2004:a,10.0.0.2:2004:b,10.0.0.3:2004:c"
	for metric, want := range map[string]string{
		"servers.web01.cpu.user":            "10.0.0.2:2004:b",
		"stats.counters.requests.count":     "10.0.0.3:2004:c",
		"carbon.agents.host1.cpuUsage":      "10.0.0.3:2004:c",
		"a":                                 "10.0.0.3:2004:c",
		"collectd.db01.load.load.shortterm": "10.0.0.2:2004:b",
		"polymur.test.metric42":             "10.0.0.3:2004:c",
	} {
		if got := lookupName(t, dests, metric); got != want {
			t.Errorf("%s → %s, want %s", metric, got, want)
		}
	}
	// The peers' shared smoke vector: carbon, carbon-c-relay and
	// carbon-relay-ng agree on this split.
	split := map[string]string{}
	for i := range 10 {
		m := "test.peer.m" + string(rune('0'+i))
		split[m] = lookupName(t, "127.0.0.1:24201:a,127.0.0.1:24202:b", m)
	}
	var a []string
	for m, d := range split {
		if d == "127.0.0.1:24201:a" {
			a = append(a, m[len(m)-2:])
		}
	}
	sort.Strings(a)
	if strings.Join(a, ",") != "m1,m4,m7,m8" {
		t.Fatalf("instance a got %v, want m1,m4,m7,m8", a)
	}
	// Without instances the node is (host, None), not (host, '').
	for m, want := range map[string]string{"test.peer.m2": "127.0.0.2:24301", "test.peer.m5": "127.0.0.3:24302",
		"test.peer.m8": "127.0.0.3:24302", "test.peer.m9": "127.0.0.3:24302"} {
		if got := lookupName(t, "127.0.0.2:24301,127.0.0.3:24302", m); got != want {
			t.Errorf("%s → %s, want %s", m, got, want)
		}
	}
}

// TestRingLiveTable checks that excluding a node equals removing its entries
// from the ring: keys of live nodes never move.
func TestRingLiveTable(t *testing.T) {
	ds, _ := ParseDestinations("10.0.0.1:2004:a,10.0.0.2:2004:b,10.0.0.3:2004:c,10.0.0.4:2004:d")
	r := newRing(ds)
	all := r.Table(func(int) bool { return true })
	live := r.Table(func(i int) bool { return i != 2 })
	moved := 0
	for pos := range all {
		switch {
		case all[pos] != 2 && live[pos] != all[pos]:
			t.Fatalf("position %d moved from live node %d to %d", pos, all[pos], live[pos])
		case all[pos] == 2:
			if live[pos] == 2 {
				t.Fatalf("position %d still on the dead node", pos)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("dead node owned nothing")
	}
	if r.Table(func(int) bool { return false }) != nil {
		t.Fatal("table with no live node should be nil")
	}
}

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in, host, inst string
		port           int
		hasInst        bool
		err            bool
	}{
		{in: "10.0.0.1:2004", host: "10.0.0.1", port: 2004},
		{in: "10.0.0.1:2004:a", host: "10.0.0.1", port: 2004, inst: "a", hasInst: true},
		{in: "h:2004:", host: "h", port: 2004, inst: "", hasInst: true},
		{in: "h:2004:a:b", host: "h", port: 2004, inst: "a:b", hasInst: true},
		{in: "[::1]:2004", host: "::1", port: 2004},
		{in: "[2001:db8::1]:2004:x", host: "2001:db8::1", port: 2004, inst: "x", hasInst: true},
		{in: "localhost", err: true},
		{in: "host:", err: true},
		{in: ":2004", err: true},
		{in: "h:port", err: true},
		{in: "h:0", err: true},
		{in: "h:65536", err: true},
		{in: "[::1:2004", err: true},
		{in: "[::1]2004", err: true},
		{in: "h'x:2004", err: true},
		{in: "h:2004:in stance", err: true},
		{in: "h:2004:a\\b", err: true},
		{in: "garbage!!", err: true},
	} {
		d, err := ParseDestination(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseDestination(%q) accepted", tc.in)
			}
			continue
		}
		if err != nil || d.Host != tc.host || d.Port != tc.port || d.Instance != tc.inst || d.HasInstance != tc.hasInst {
			t.Errorf("ParseDestination(%q) = %+v, %v", tc.in, d, err)
		}
	}
	if _, err := ParseDestinations("h:1,h:1"); err == nil {
		t.Error("duplicate name accepted")
	}
	same, err := ParseDestinations("h:1,h:2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Mode: HashRoute, Destinations: same}); err == nil || !strings.Contains(err.Error(), "distinct instances") {
		t.Errorf("hash-route with the same (host, None) on two ports: %v", err)
	}
	if _, err := New(Config{Mode: Broadcast, Destinations: same}); err != nil {
		t.Errorf("broadcast to two ports of one host: %v", err)
	}
	if ds, err := ParseDestinations("h:1:a, ,h:2:b,"); err != nil || len(ds) != 2 {
		t.Errorf("list with empty items: %v, %v", ds, err)
	}
}

func FuzzRing(f *testing.F) {
	f.Add("10.0.0.1:2004:a,10.0.0.2:2004", "some.metric")
	f.Add("[::1]:1,h:2:x:y", "")
	f.Fuzz(func(t *testing.T, dests, metric string) {
		ds, err := ParseDestinations(dests)
		if err != nil || len(ds) == 0 || len(ds) > 20 {
			return
		}
		r := newRing(ds)
		if len(r.Entries()) != ring.Replicas*len(ds) {
			t.Fatalf("%d entries for %d nodes", len(r.Entries()), len(ds))
		}
		tab := r.Table(func(int) bool { return true })
		pos := position([]byte(metric))
		// The table must agree with a lower-bound search with wrap-around.
		i := sort.Search(len(r.Entries()), func(k int) bool { return r.Entries()[k].Pos >= pos })
		if i == len(r.Entries()) {
			i = 0
		}
		if int(tab[pos]) != r.Entries()[i].Node {
			t.Fatalf("table %d, search %d", tab[pos], r.Entries()[i].Node)
		}
	})
}

func BenchmarkRingLookup(b *testing.B) {
	ds, _ := ParseDestinations("10.0.0.1:2004:a,10.0.0.2:2004:b,10.0.0.3:2004:c")
	tab := newRing(ds).Table(func(int) bool { return true })
	name := []byte("servers.web01.cpu.user.percent")
	b.ReportAllocs()
	for b.Loop() {
		_ = tab[position(name)]
	}
}
