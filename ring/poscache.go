package ring

import (
	"hash/maphash"
	"sync/atomic"
)

// posCache remembers metric names' carbon_ch positions (an MD5 each; a
// name's position is the same on every ring). Graphite traffic repeats
// every name every interval, so most lookups are hits. A slot keys its
// name by 112 bits of two independent hashes: a wrong hit needs both to
// collide, about 1e-18 for a hundred million distinct names. The table
// grows fourfold (to maxBuckets) while hits are rare for want of room, and the cache
// switches itself off for a while when names do not repeat (then it would
// only add its cost). Safe for concurrent use without locks: a writer
// clears a slot's first word, writes the second, then the first; a reader
// takes a hit only when the first word reads the same before and after the
// second.
type posCache struct {
	seed1, seed2 maphash.Seed
	tab          atomic.Pointer[posTable]
	off          atomic.Bool
	// Lookups of one name in 64 (by its hash) are sampled: counting all
	// would make the counters' cache line bounce between cores.
	sampled, hits atomic.Uint64
	offUntil      atomic.Uint64 // sampled count at which the cache comes back on
	settle        atomic.Uint64 // sampled count before which a period is not judged (a new table fills)
	judging       atomic.Bool
}

const (
	firstBuckets = 1 << 12 // 16,384 names in 256 KiB
	maxBuckets   = 1 << 16 // 4 ways: 262,144 names in 4 MiB
	period       = 1024    // sampled lookups per judgement (65,536 lookups)
	offPeriods   = 16      // how long it stays off when names do not repeat
)

// A bucket is one 64-byte cache line of four slots: the first hash, and
// the second's top 48 bits with the position in the low 16.
type posBucket [4][2]atomic.Uint64

type posTable struct {
	b    []posBucket
	mask uint64
}

// positions is the process's cache of name positions.
var positions = newPosCache()

// CachedPosition is Position(name), remembered for names seen before.
func CachedPosition(name []byte) uint32 { return positions.get(name, Position) }

func newPosCache() *posCache {
	c := &posCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	c.tab.Store(newPosTable(firstBuckets))
	return c
}

func newPosTable(n int) *posTable { return &posTable{b: make([]posBucket, n), mask: uint64(n - 1)} }

// get is find(name) (a position below 65536), from the cache or from find
// and then remembered.
func (c *posCache) get(name []byte, find func([]byte) uint32) uint32 {
	k1 := maphash.Bytes(c.seed1, name)
	sample := k1>>58 == 0
	if sample {
		if n := c.sampled.Add(1); n%period == 0 {
			c.judge(n)
		}
	}
	if c.off.Load() {
		return find(name)
	}
	if k1 == 0 {
		k1 = 1 // 0 marks an empty slot
	}
	k2 := maphash.Bytes(c.seed2, name) &^ 0xffff
	t := c.tab.Load()
	bk := &t.b[k1&t.mask]
	for w := range bk {
		s := &bk[w]
		if s[0].Load() != k1 {
			continue
		}
		v := s[1].Load()
		if s[0].Load() == k1 && v&^0xffff == k2 {
			if sample {
				c.hits.Add(1)
			}
			return uint32(v & 0xffff)
		}
	}
	p := find(name)
	// An empty way, else now and then (one miss in eight) a way chosen by
	// the miss count: names that keep coming stay, and a full bucket does
	// not thrash.
	w := -1
	for i := range bk {
		if bk[i][0].Load() == 0 {
			w = i
			break
		}
	}
	if w < 0 {
		r := (k2 >> 16) ^ c.sampled.Load()
		if r&7 != 0 {
			return p
		}
		w = int(r>>3) & 3
	}
	s := &bk[w]
	s[0].Store(0)
	s[1].Store(k2 | uint64(p&0xffff))
	s[0].Store(k1)
	return p
}

// judge looks at the last period's hit rate: a low one grows the table,
// or at its largest switches the cache off for offPeriods.
func (c *posCache) judge(n uint64) {
	if !c.judging.CompareAndSwap(false, true) {
		return
	}
	defer c.judging.Store(false)
	hits := c.hits.Swap(0)
	if c.off.Load() {
		if n >= c.offUntil.Load() {
			c.tab.Store(newPosTable(len(c.tab.Load().b))) // afresh
			c.settle.Store(n + 2*period)
			c.off.Store(false)
		}
		return
	}
	if n < c.settle.Load() {
		return
	}
	rate := float64(hits) / period
	if rate >= 0.5 {
		return
	}
	t := c.tab.Load()
	switch {
	case len(t.b) < maxBuckets:
		c.tab.Store(newPosTable(min(maxBuckets, 4*len(t.b))))
		c.settle.Store(n + 2*period)
	case rate < 0.3:
		c.offUntil.Store(n + offPeriods*period)
		c.off.Store(true)
	}
}

// Prefetch starts loading the cache slots of names that are about to be
// looked up, so that their lookups (one per line, each a miss in a table of
// megabytes) overlap instead of waiting one after the other. A hint only.
func Prefetch(name []byte) { positions.prefetch(name) }

var prefetched atomic.Uint64

func (c *posCache) prefetch(name []byte) {
	if c.off.Load() {
		return
	}
	k1 := maphash.Bytes(c.seed1, name)
	t := c.tab.Load()
	if t.b[k1&t.mask][0][0].Load() == 1 {
		prefetched.Add(1) // never: the load must not be dropped
	}
}
