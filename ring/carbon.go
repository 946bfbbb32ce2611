// Package ring holds the consistent-hash placements polymur must reproduce
// exactly: carbon's carbon_ch ring (what graphite-web looks up) and
// carbon-c-relay's fnv1a_ch and jump_fnv1a_ch. Like batch it is a leaf: no
// I/O, no imports of polymur packages.
package ring

import (
	"crypto/md5"
	"slices"
	"strconv"
)

// Replicas is the number of points each node has on a carbon ring.
const Replicas = 100

// Entry is one point of a ring.
type Entry struct {
	Pos  uint32 // may exceed 65535 after collision bumps
	Node int    // index into the ring's nodes
}

// Carbon is carbon's ConsistentHashRing (carbon_ch): 100 points per node,
// node text "<key>:i" (carbon's key is "('host', 'instance')" or
// "('host', None)"), MD5's first two bytes as position, a taken position
// bumped by +1 in insertion order. It is immutable once built and safe for
// concurrent use.
type Carbon struct {
	entries []Entry // sorted by Pos
	n       int
	lower   []uint32 // for every position, the first entry at or after it (len(entries): wrap)
	owner   []uint16 // for every position, the node of that entry: a lookup of one replica is one load
	owner8  []uint8  // owner in a byte, for rings of up to 256 nodes (64 KiB stays in a core's cache)
}

// Position is a key's place on a carbon ring: MD5's first two bytes.
func Position(key []byte) uint32 {
	sum := md5.Sum(key)
	return uint32(sum[0])<<8 | uint32(sum[1])
}

// NewCarbon builds the ring of nodes whose key texts are keys, in order.
func NewCarbon(keys []string) *Carbon {
	total := Replicas * len(keys)
	r := &Carbon{n: len(keys), entries: make([]Entry, 0, total)}
	// free finds the first position at or after p not yet taken — carbon's
	// "while pos in taken: pos += 1" — with a union-find over positions
	// (path halving), so a dense ring of thousands of nodes builds in near
	// linear time instead of walking ever longer runs of taken positions.
	next := make([]uint32, 65536+total+1) // next[p]-1 is a candidate at or after p; 0: p is free
	free := func(p uint32) uint32 {
		for next[p] != 0 {
			if n := next[next[p]-1]; n != 0 {
				next[p] = n // halve the path
			}
			p = next[p] - 1
		}
		return p
	}
	var key []byte
	for node, k := range keys {
		base := k + ":"
		for i := range Replicas {
			key = strconv.AppendInt(append(key[:0], base...), int64(i), 10)
			pos := free(Position(key))
			next[pos] = pos + 2 // taken: continue at pos+1
			r.entries = append(r.entries, Entry{Pos: pos, Node: node})
		}
	}
	slices.SortFunc(r.entries, func(a, b Entry) int { return int(a.Pos) - int(b.Pos) })
	// What a binary search for each position would find, so a lookup is
	// one load.
	r.lower = make([]uint32, 65536)
	ei := uint32(0)
	for p := range r.lower {
		for int(ei) < len(r.entries) && r.entries[ei].Pos < uint32(p) {
			ei++
		}
		r.lower[p] = ei
	}
	if len(r.entries) > 0 && len(keys) <= 1<<16 {
		r.owner = make([]uint16, 65536)
		for p, i := range r.lower {
			r.owner[p] = uint16(r.entries[int(i)%len(r.entries)].Node)
		}
		if len(keys) <= 1<<8 {
			r.owner8 = make([]uint8, 65536)
			for p, o := range r.owner {
				r.owner8[p] = uint8(o)
			}
			r.owner = nil
		}
	}
	return r
}

// Entries returns the ring's points, sorted by position (do not modify).
func (r *Carbon) Entries() []Entry { return r.entries }

// Table precomputes, for every key position, the node that owns it among the
// nodes for which alive reports true: the first live entry at or after the
// position, wrapping around. This equals carbon removing the dead nodes'
// entries from the ring. It returns nil when no node is alive.
func (r *Carbon) Table(alive func(node int) bool) *[65536]uint16 {
	first := -1
	for i, e := range r.entries {
		if alive(e.Node) {
			first = i
			break
		}
	}
	if first < 0 {
		return nil
	}
	t := new([65536]uint16)
	// Walk positions downwards so each position learns the next live entry.
	next := r.entries[first].Node // wrap-around owner
	ei := len(r.entries) - 1
	for pos := 65535; pos >= 0; pos-- {
		for ei >= 0 && int(r.entries[ei].Pos) >= pos {
			if alive(r.entries[ei].Node) {
				next = r.entries[ei].Node
			}
			ei--
		}
		t[pos] = uint16(next)
	}
	return t
}
