package route

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// A carbon_ch cluster places names exactly as carbon does, collisions
// included (carbon's +1 bump in configuration order, which graphite-web
// follows; carbon-c-relay 3.7 differs there): checked on the
// collision-heavy vectors produced by the model verified against carbon.
func TestCarbonCHFollowsCarbon(t *testing.T) {
	f, err := os.Open("../dest/testdata/carbon_ch_model_vectors.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tables := map[string]*Table{}
	sc := bufio.NewScanner(f)
	checked := 0
	for sc.Scan() {
		row := strings.Split(sc.Text(), "\t")
		if len(row) != 3 || row[0] == "destinations" {
			continue
		}
		tb, ok := tables[row[0]]
		if !ok {
			var members []string
			for _, d := range strings.Split(row[0], ",") {
				host, rest := d, ""
				if strings.HasPrefix(d, "[") {
					end := strings.IndexByte(d, ']')
					host, rest = d[:end+1], d[end+2:]
				} else {
					host, rest, _ = strings.Cut(d, ":")
				}
				port, inst, hasInst := strings.Cut(rest, ":")
				if hasInst && inst == "" {
					members = nil // carbon-c-relay's syntax has no empty instance
					break
				}
				m := host + ":" + port
				if hasInst {
					m += "=" + inst
				}
				members = append(members, m)
			}
			if members != nil {
				tb, err = Parse("vectors", "cluster c carbon_ch "+strings.Join(members, " ")+";\nmatch * send to c;\n")
				if err != nil {
					t.Fatalf("%s: %v", row[0], err)
				}
			}
			tables[row[0]] = tb
		}
		if tb == nil {
			continue
		}
		ds := tb.Route(nil, row[1], "", nil)
		if len(ds) != 1 || ds[0].Server == nil {
			t.Fatalf("%s: %v", row[1], ds)
		}
		if got := ds[0].Server.Addr(); !strings.HasPrefix(row[2], got) {
			t.Errorf("%s on %s: %s, carbon puts it on %s", row[1], row[0], got, row[2])
		}
		checked++
	}
	if checked < 500 {
		t.Fatalf("only %d vectors checked", checked)
	}
	t.Logf("%d vectors, every one where carbon puts it", checked)
}

// TestDirect: the tables whose every metric goes unchanged to the clusters
// of a first "match *" rule, and those that need the rule walk.
func TestDirect(t *testing.T) {
	cl := "cluster a forward 127.0.0.1:2003;\ncluster b carbon_ch 127.0.0.1:2004 127.0.0.2:2004;\ncluster f file /dev/null;\n"
	for _, tc := range []struct {
		rules string
		want  []string
	}{
		{"match * send to a;", []string{"a"}},
		{"match * send to a b stop;\nmatch x send to b;", []string{"a", "b"}},
		{"match * send to b stop;\nrewrite x into y;", []string{"b"}},
		{"match * send to a;\nmatch x send to b;", nil},       // no stop: the next rule may match too
		{"match x send to a;", nil},                           // not every metric
		{"match * x send to a stop;", []string{"a"}},          // * among others is every metric
		{"rewrite x into y;\nmatch * send to a;", nil},        // a rewrite first
		{"match * validate ^[0-9] else drop send to a;", nil}, // validated
		{"match * route using ^a send to b;", nil},            // another key
		{"match * send to blackhole;", nil},                   // nothing sent
		{"match * send to a f;", nil},                         // a file cluster
		{"aggregate a.* every 10 seconds expire after 20 seconds compute sum write to s;\nmatch * send to a;", nil},
	} {
		tb, err := Parse("t.conf", cl+tc.rules)
		if err != nil {
			t.Fatalf("%s: %v", tc.rules, err)
		}
		var got []string
		for _, c := range tb.Direct() {
			got = append(got, c.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: direct %v, want %v", tc.rules, got, tc.want)
		}
	}
}
