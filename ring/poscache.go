package ring

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"
)

// posCache remembers metric names' carbon_ch positions (an MD5 each; a
// name's position is the same on every ring). Graphite traffic repeats
// every name every interval, so most lookups are hits. A slot keys its
// name by 112 bits of two independent hashes: a wrong hit needs both to
// collide, about 1e-18 for a hundred million distinct names. The table is
// 4 MiB (262,144 names), made at the first lookup; when the names do not
// repeat within it (few hits while misses find their buckets full) the
// cache switches itself off for a while, since then it would only add its
// cost. Safe for concurrent use without locks: a writer clears a slot's
// first word, writes the second, then the first; a reader takes a hit only
// when the first word reads the same before and after the second.
type posCache struct {
	seed1, seed2 maphash.Seed
	once         sync.Once
	tab          atomic.Pointer[posTable]
	off          atomic.Bool
	// Lookups of one name in 64 (by its hash) are sampled: counting all
	// would make the counters' cache line bounce between cores.
	sampled, hits, full atomic.Uint64
	allHits             atomic.Uint64 // sampled hits since the start
	offUntil            atomic.Uint64 // sampled count at which the cache comes back on
	judging             atomic.Bool
}

const (
	buckets    = 1 << 16 // 4 ways: 262,144 names in 4 MiB
	period     = 1024    // sampled lookups per judgement (about 65,536 lookups)
	offPeriods = 16      // how long it stays off when names do not repeat
)

// A bucket is one 64-byte cache line of four slots: the first hash, and
// the second's top 48 bits with the position in the low 16.
type posBucket [4][2]atomic.Uint64

type posTable [buckets]posBucket

// positions is the process's cache of name positions.
var positions = &posCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}

// CachedPosition is Position(name), remembered for names seen before.
func CachedPosition(name []byte) uint32 { return positions.get(name, Position) }

// Positions appends CachedPosition of n names, name(i) the i-th: the
// lookups of a batch, each name hashed once and the misses overlapping.
func Positions(dst []uint32, n int, name func(i int) []byte) []uint32 {
	return positions.many(dst, n, name, Position)
}

// Prefetch starts loading the cache slot of a name about to be looked up,
// so that the lookups of a batch (each a miss in a table of megabytes)
// overlap instead of waiting one after the other. A hint only.
func Prefetch(name []byte) { positions.prefetch(name) }

// CacheStats is what the position cache has done: of the lookups sampled
// (one name in 64), how many were hits, and whether it is switched off now
// (names not repeating).
func CacheStats() (sampled, hits uint64, off bool) {
	return positions.sampled.Load(), positions.allHits.Load(), positions.off.Load()
}

func (c *posCache) table() *posTable {
	c.once.Do(func() { c.tab.Store(newPosTable()) })
	return c.tab.Load()
}

// get is find(name) (a position below 65536), from the cache or from find
// and then remembered.
func (c *posCache) get(name []byte, find func([]byte) uint32) uint32 {
	k1 := maphash.Bytes(c.seed1, name)
	if c.sample(k1) {
		return find(name)
	}
	return c.lookup(c.table(), name, k1, maphash.Bytes(c.seed2, name), find)
}

// sample counts the sampled lookups (judging the cache every period) and
// reports whether the cache is off.
func (c *posCache) sample(k1 uint64) (off bool) {
	if k1>>58 == 0 {
		if n := c.sampled.Add(1); n%period == 0 {
			c.judge(n)
		}
	}
	return c.off.Load()
}

// chunk is how many names many hashes and prefetches before it looks them
// up: enough for the first slot to have arrived when its turn comes.
const chunk = 32

// many appends the positions of n names (name(i) the i-th), each name
// hashed once: a chunk's names are hashed and their slots prefetched, then
// looked up.
func (c *posCache) many(dst []uint32, n int, name func(int) []byte, find func([]byte) uint32) []uint32 {
	var keys [chunk][2]uint64
	var names [chunk][]byte
	var tab *posTable
	for base := 0; base < n; base += chunk {
		m := min(chunk, n-base)
		if c.off.Load() {
			for j := range m {
				nm := name(base + j)
				c.sample(maphash.Bytes(c.seed1, nm))
				dst = append(dst, find(nm))
			}
			continue
		}
		if tab == nil {
			tab = c.table()
		}
		for j := range m {
			nm := name(base + j)
			k1 := maphash.Bytes(c.seed1, nm)
			keys[j], names[j] = [2]uint64{k1, maphash.Bytes(c.seed2, nm)}, nm
			prefetch(uintptr(unsafe.Pointer(&tab[(k1|1)>>1%buckets])))
		}
		for j := range m {
			nm := names[j]
			if c.sample(keys[j][0]) {
				dst = append(dst, find(nm))
				continue
			}
			dst = append(dst, c.lookup(tab, nm, keys[j][0], keys[j][1], find))
		}
	}
	return dst
}

// lookup is find(name) from the cache or from find and then remembered;
// k1 and k2 are the name's hashes under the two seeds.
func (c *posCache) lookup(tab *posTable, name []byte, k1, k2 uint64, find func([]byte) uint32) uint32 {
	sample := k1>>58 == 0
	k1 |= 1 // 0 marks an empty slot
	k2 &^= 0xffff
	bk := &tab[k1>>1%buckets]
	for w := range bk {
		s := &bk[w]
		if s[0].Load() != k1 {
			continue
		}
		v := s[1].Load()
		if s[0].Load() == k1 && v&^0xffff == k2 {
			if sample {
				c.hits.Add(1)
				c.allHits.Add(1)
			}
			return uint32(v & 0xffff)
		}
	}
	p := find(name)
	// An empty way, else now and then (one miss in eight) a way chosen by
	// the hash: names that keep coming stay, and a full bucket does not
	// thrash.
	w := -1
	for i := range bk {
		if bk[i][0].Load() == 0 {
			w = i
			break
		}
	}
	if w < 0 {
		if sample {
			c.full.Add(1)
		}
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

func (c *posCache) prefetch(name []byte) {
	if c.off.Load() {
		return
	}
	k1 := maphash.Bytes(c.seed1, name) | 1
	prefetch(uintptr(unsafe.Pointer(&c.table()[k1>>1%buckets])))
}

// judge looks at the last period: few hits while most misses found their
// bucket full (names that do not come again within the table) switch the
// cache off for offPeriods, and then on again (what the table holds is
// still right: a name's position never changes).
func (c *posCache) judge(n uint64) {
	if !c.judging.CompareAndSwap(false, true) {
		return
	}
	defer c.judging.Store(false)
	hits, full := c.hits.Swap(0), c.full.Swap(0)
	if c.off.Load() {
		if n >= c.offUntil.Load() {
			c.off.Store(false) // what the table holds is still right: a name's position never changes
		}
		return
	}
	if misses := period - hits; hits < period*3/10 && full > misses/2 {
		c.offUntil.Store(n + offPeriods*period)
		c.off.Store(true)
	}
}
