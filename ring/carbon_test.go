package ring

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// naiveCarbon is carbon's insertion loop as written: the reference for the
// union-find version on dense rings (more entries than positions).
func naiveCarbon(keys []string) []Entry {
	taken := map[uint32]bool{}
	var out []Entry
	for node, k := range keys {
		for i := range Replicas {
			pos := Position([]byte(k + ":" + strconv.Itoa(i)))
			for taken[pos] {
				pos++
			}
			taken[pos] = true
			out = append(out, Entry{Pos: pos, Node: node})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return int(a.Pos) - int(b.Pos) })
	return out
}

func manyKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("('10.%d.%d.%d', '%d')", i>>16&255, i>>8&255, i&255, i)
	}
	return keys
}

// Dense rings (650 and 670 nodes: 65,000 and 67,000 entries for 65,536
// positions) are placed exactly as carbon's loop places them.
func TestDenseCarbonMatchesCarbonLoop(t *testing.T) {
	for _, n := range []int{3, 650, 670} {
		keys := manyKeys(n)
		if got, want := NewCarbon(keys).Entries(), naiveCarbon(keys); !slices.Equal(got, want) {
			t.Fatalf("%d nodes: ring differs from carbon's insertion loop", n)
		}
	}
}

// BenchmarkCarbonBuild1000 builds a 1,000-node ring (it took 25.6 s with
// the taken-position walk).
func BenchmarkCarbonBuild1000(b *testing.B) {
	keys := manyKeys(1000)
	b.ReportAllocs()
	for b.Loop() {
		NewCarbon(keys)
	}
}

// The one-load owner table picks what the walk picks, on sparse and dense
// rings.
func TestOwnerIsWalk(t *testing.T) {
	all := func(int) bool { return true } // forces the walk
	host := func(i int) string { return strconv.Itoa(i) }
	for _, n := range []int{1, 3, 40, 256, 257, 670} {
		r := NewCarbon(manyKeys(n))
		for i := range 20000 {
			name := []byte(fmt.Sprintf("carbon.agents.host%d.cpu", i))
			fast := r.PickCarbon(nil, name, 1, host, nil)
			slow := r.PickCarbon(nil, name, 1, host, all)
			if !slices.Equal(fast, slow) {
				t.Fatalf("%d nodes, %s: table %v, walk %v", n, name, fast, slow)
			}
		}
	}
}
