package route

import (
	"bufio"
	"os"
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
