package route

// A prefix index over a run of match rules: most real rule sets are long
// lists of literal prefixes (^foo\.bar\.), and trying each on every metric
// is most of the routing cost. Within a run of consecutive match rules (a
// rewrite ends a run: it changes the name), the rules whose expressions are
// all literal prefixes are put in a byte trie; one walk along the name finds
// every one of them that matches, and the others are tried as before. The
// order of rules (and so fall-through and stop) is unchanged.

// maxIndexed is how many rules one index covers (its bitset's size).
const maxIndexed = 256

type trieNode struct {
	edges []trieEdge
	rules []uint8 // indexed rules whose prefix ends here
}

type trieEdge struct {
	b    byte
	next int32
}

type prefixIndex struct {
	start, end int // rule indexes covered: [start, end)
	nodes      []trieNode
	n          int   // indexed rules
	rules      []int // bit → rule index (ascending)
	others     []int // rule indexes in the run that are tried as usual (ascending)
}

// hits returns the bitset of indexed rules matching name.
func (x *prefixIndex) hits(name string) (set [maxIndexed / 64]uint64) {
	n := 0
	for i := 0; ; i++ {
		for _, r := range x.nodes[n].rules {
			set[r>>6] |= 1 << (r & 63)
		}
		if i == len(name) {
			return set
		}
		next := int32(-1)
		for _, e := range x.nodes[n].edges {
			if e.b == name[i] {
				next = e.next
				break
			}
		}
		if next < 0 {
			return set
		}
		n = int(next)
	}
}

func (x *prefixIndex) add(prefix string, bit uint8) {
	n := 0
	for i := 0; i < len(prefix); i++ {
		next := int32(-1)
		for _, e := range x.nodes[n].edges {
			if e.b == prefix[i] {
				next = e.next
				break
			}
		}
		if next < 0 {
			x.nodes = append(x.nodes, trieNode{})
			next = int32(len(x.nodes) - 1)
			x.nodes[n].edges = append(x.nodes[n].edges, trieEdge{b: prefix[i], next: next})
		}
		n = int(next)
	}
	x.nodes[n].rules = append(x.nodes[n].rules, bit)
}

// indexable reports whether every expression of m is a literal prefix.
func indexable(m *Match) bool {
	if m.All || len(m.Exprs) == 0 {
		return false
	}
	for _, e := range m.Exprs {
		if !e.lit || e.prefix == "" {
			return false
		}
	}
	return true
}

// buildIndexes makes a prefix index for each run of consecutive match
// rules with at least 8 indexable ones.
func (t *Table) buildIndexes() {
	t.index = make([]*prefixIndex, len(t.Rules))
	for start := 0; start < len(t.Rules); {
		if t.Rules[start].Match == nil {
			start++
			continue
		}
		end := start
		for end < len(t.Rules) && t.Rules[end].Match != nil {
			end++
		}
		for s := start; s < end; s += maxIndexed {
			e := min(end, s+maxIndexed)
			x := &prefixIndex{start: s, end: e, nodes: []trieNode{{}}}
			for i := s; i < e; i++ {
				if m := t.Rules[i].Match; indexable(m) {
					b := uint8(x.n)
					x.n++
					x.rules = append(x.rules, i)
					for _, ex := range m.Exprs {
						x.add(ex.prefix, b)
					}
				} else {
					x.others = append(x.others, i)
				}
			}
			if x.n >= 8 {
				for i := s; i < e; i++ {
					t.index[i] = x
				}
			}
		}
		start = end
	}
}
