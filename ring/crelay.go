package ring

import (
	"cmp"
	"slices"
	"strconv"
)

// FNV-1a as carbon-c-relay computes it: over C chars, which are signed on
// x86-64, so a byte >= 0x80 is sign-extended before the XOR. For ASCII it is
// plain FNV-1a.

// FNV1a32 is carbon-c-relay's 32-bit FNV-1a of s.
func FNV1a32(s []byte) uint32 {
	h := uint32(0x811C9DC5)
	for _, c := range s {
		h ^= uint32(int32(int8(c)))
		h *= 0x01000193
	}
	return h
}

// FNV1a64 is carbon-c-relay's 64-bit FNV-1a of s.
func FNV1a64(s []byte) uint64 {
	h := uint64(0xCBF29CE484222325)
	for _, c := range s {
		h ^= uint64(int64(int8(c)))
		h *= 0x100000001B3
	}
	return h
}

// fold16 is the 16-bit ring position of a 32-bit FNV-1a hash.
func fold16(h uint32) uint32 { return (h >> 16) ^ (h & 0xFFFF) }

// Member is one node of a carbon-c-relay hash cluster as its placement sees
// it.
type Member struct {
	Host        string
	Port        int
	Instance    string
	HasInstance bool
}

// FNV1a is carbon-c-relay's fnv1a_ch ring: 100 points per member, text
// "<i>-<instance>" (or "<i>-<host>:<port>" without an instance), 16-bit
// folded FNV-1a positions; equal positions are ordered by host, then port,
// and the first of a run owns it. Immutable; safe for concurrent use.
type FNV1a struct {
	entries []Entry
	members []Member
}

// NewFNV1a builds the ring of members.
func NewFNV1a(members []Member) *FNV1a {
	r := &FNV1a{members: members, entries: make([]Entry, 0, Replicas*len(members))}
	var key []byte
	for node, m := range members {
		for i := range Replicas {
			key = strconv.AppendInt(key[:0], int64(i), 10)
			key = append(key, '-')
			if m.HasInstance {
				key = append(key, m.Instance...)
			} else {
				key = append(key, m.Host...)
				key = append(key, ':')
				key = strconv.AppendInt(key, int64(m.Port), 10)
			}
			r.entries = append(r.entries, Entry{Pos: fold16(FNV1a32(key)), Node: node})
		}
	}
	slices.SortStableFunc(r.entries, func(a, b Entry) int {
		if c := cmp.Compare(a.Pos, b.Pos); c != 0 {
			return c
		}
		ma, mb := members[a.Node], members[b.Node]
		if c := cmp.Compare(ma.Host, mb.Host); c != 0 {
			return c
		}
		return cmp.Compare(ma.Port, mb.Port)
	})
	return r
}

// Pick appends to dst up to n distinct members for name, walking clockwise
// from its position; live (nil: all) filters members that have failed.
func (r *FNV1a) Pick(dst []int, name []byte, n int, live func(int) bool) []int {
	return walk(dst, r.entries, fold16(FNV1a32(name)), n, len(r.members), live)
}

// PickCarbon is carbon's lookup on a carbon_ch ring with replication:
// walking clockwise from name's position, each node the first time it is
// seen, skipping nodes whose host (hostOf) was already used (carbon's
// DIVERSE_REPLICAS, and what carbon-c-relay's distinct servers amount to on
// distinct hosts), until n are chosen.
func (r *Carbon) PickCarbon(dst []int, name []byte, n int, hostOf func(int) string, live func(int) bool) []int {
	start := len(dst)
	if len(r.entries) == 0 || n <= 0 {
		return dst
	}
	pos := CachedPosition(name)
	if n == 1 && live == nil {
		return append(dst, r.OwnerAt(pos))
	}
	i := int(r.lower[pos])
	var hostBuf [8]string
	hosts := hostBuf[:0]
	for k := 0; k < len(r.entries) && len(dst)-start < n; k++ {
		node := r.entries[(i+k)%len(r.entries)].Node
		if live != nil && !live(node) || slices.Contains(dst[start:], node) {
			continue
		}
		if h := hostOf(node); slices.Contains(hosts, h) {
			continue
		} else {
			hosts = append(hosts, h)
		}
		dst = append(dst, node)
	}
	return dst
}

// OwnerAt is the node a name at position pos (below 65536) goes to on a
// ring that is not empty, with one replica and every node live
// (PickCarbon's answer then).
func (r *Carbon) OwnerAt(pos uint32) int {
	switch {
	case r.owner8 != nil:
		return int(r.owner8[pos])
	case r.owner != nil:
		return int(r.owner[pos])
	}
	return r.entries[int(r.lower[pos])%len(r.entries)].Node
}

// walk is carbon-c-relay's lookup: the first entry at or after pos (lower
// bound, wrapping), then clockwise, each live node once, until n.
func walk(dst []int, entries []Entry, pos uint32, n, nodes int, live func(int) bool) []int {
	start := len(dst)
	if len(entries) == 0 || n <= 0 {
		return dst
	}
	i, _ := slices.BinarySearchFunc(entries, pos, func(e Entry, p uint32) int { return cmp.Compare(e.Pos, p) })
	for k := 0; k < len(entries) && len(dst)-start < min(n, nodes); k++ {
		node := entries[(i+k)%len(entries)].Node
		if live != nil && !live(node) || slices.Contains(dst[start:], node) {
			continue
		}
		dst = append(dst, node)
	}
	return dst
}

// Jump is carbon-c-relay's jump_fnv1a_ch: members as buckets — those with an
// instance first, ordered by instance (numerically when both are integers),
// then the others in configuration order — and Lamping & Veach's jump hash
// of the 64-bit FNV-1a of the name. Immutable; safe for concurrent use.
type Jump struct {
	order []int // bucket → member index
}

// NewJump orders members into buckets.
func NewJump(members []Member) *Jump {
	var with, without []int
	for i, m := range members {
		if m.HasInstance {
			with = append(with, i)
		} else {
			without = append(without, i)
		}
	}
	slices.SortStableFunc(with, func(a, b int) int {
		ia, ib := members[a].Instance, members[b].Instance
		na, ea := strconv.ParseInt(ia, 10, 64)
		nb, eb := strconv.ParseInt(ib, 10, 64)
		if ea == nil && eb == nil {
			return cmp.Compare(na, nb)
		}
		return cmp.Compare(ia, ib)
	})
	return &Jump{order: append(with, without...)}
}

func jump(key uint64, buckets int) int {
	b, j := int64(-1), int64(0)
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// Pick appends to dst n distinct members for name (replicas: the hash
// scrambled and the chosen bucket replaced by the last one each time).
func (r *Jump) Pick(dst []int, name []byte, n int) []int {
	buckets := slices.Clone(r.order)
	h := FNV1a64(name)
	for k := 0; k < n && len(buckets) > 0; k++ {
		if k > 0 {
			h ^= h >> 12
			h ^= h << 25
			h ^= h >> 27
			h *= 2685821657736338717
		}
		b := jump(h, len(buckets))
		dst = append(dst, buckets[b])
		buckets[b] = buckets[len(buckets)-1]
		buckets = buckets[:len(buckets)-1]
	}
	return dst
}
