package ring

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// The cache gives Position's answer for every name: repeated names (hits),
// unique names (it grows, then switches off and back on), from several
// goroutines at once, one by one and in batches (go test -race checks the
// slots' sequence numbers).
func TestPosCacheIsPosition(t *testing.T) {
	c := &posCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	var misses int
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			bad := 0
			var names [][]byte
			var got []uint32
			for i := range 400_000 {
				var name []byte
				if i < 200_000 {
					name = fmt.Appendf(nil, "servers.host%d.cpu.total.user", rng.IntN(50_000)) // repeats
				} else {
					name = fmt.Appendf(nil, "unique.%d.%d.requests", g, i) // never again
				}
				if g%2 == 0 { // one by one
					if c.get(name, Position) != Position(name) {
						bad++
					}
					continue
				}
				// in batches of 1–100, as a distributor looks them up
				if names = append(names, name); len(names) < 1+(i*7919)%100 && i < 399_999 {
					continue
				}
				got = c.many(got[:0], len(names), func(i int) []byte { return names[i] }, Position)
				for j, n := range names {
					if got[j] != Position(n) {
						bad++
					}
				}
				names = names[:0]
			}
			mu.Lock()
			misses += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	if misses > 0 {
		t.Fatalf("%d lookups differ from Position", misses)
	}
}

// Repeated names are hits once the table has grown to hold them; names
// that never repeat switch the cache off.
func TestPosCacheAdapts(t *testing.T) {
	c := &posCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	names := make([][]byte, 100_000)
	for i := range names {
		names[i] = fmt.Appendf(nil, "collectd.web%03d.load.load.shortterm.%d", i%1000, i)
	}
	finds := 0
	find := func(b []byte) uint32 { finds++; return Position(b) }
	for range 12 {
		for _, n := range names {
			c.get(n, find)
		}
	}
	finds = 0
	for _, n := range names {
		c.get(n, find)
	}
	if finds > len(names)/10 {
		t.Fatalf("an interval of repeated names after 12 took %d MD5s of %d", finds, len(names))
	}
	if c.off.Load() {
		t.Fatal("100k repeated names switched the cache off")
	}
	for i := range 3_000_000 {
		c.get(fmt.Appendf(nil, "unique.%d", i), Position)
	}
	if !c.off.Load() {
		t.Fatal("3M names that never repeat did not switch the cache off")
	}
}

// The lower-bound table is what a binary search finds, on sparse and
// dense rings.
func TestLowerIsBinarySearch(t *testing.T) {
	for _, n := range []int{1, 3, 40, 670} {
		r := NewCarbon(manyKeys(n))
		for p := range uint32(65536) {
			want, _ := slices.BinarySearchFunc(r.entries, p, func(e Entry, p uint32) int { return cmp.Compare(e.Pos, p) })
			if int(r.lower[p]) != want {
				t.Fatalf("%d nodes, position %d: table %d, binary search %d", n, p, r.lower[p], want)
			}
		}
	}
}

func FuzzCachedPosition(f *testing.F) {
	for _, s := range []string{"", "a", "carbon.agents.a.cpuUsage", "x;tag=v", "\xff\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, name []byte) {
		for range 2 { // the second from the cache
			if got, want := CachedPosition(name), Position(name); got != want {
				t.Fatalf("CachedPosition(%q) = %d, Position %d", name, got, want)
			}
		}
	})
}

// BenchmarkPosition: 100k names of about 80 bytes, every one again in turn.
func BenchmarkPosition(b *testing.B) {
	names := make([][]byte, 100_000)
	for i := range names {
		names[i] = fmt.Appendf(nil, "prod.eu-west-1.collectd.web%03d.interface.eth0.if_octets.rx.%d.rate", i%1000, i)
	}
	b.Run("md5", func(b *testing.B) {
		i := 0
		for b.Loop() {
			Position(names[i%len(names)])
			i++
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := &posCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
		i := 0
		for b.Loop() {
			c.get(names[i%len(names)], Position)
			i++
		}
	})
}

// BenchmarkPositions: the same names a batch of 500 at a time, as a
// distributor looks them up (ns per name).
func BenchmarkPositions(b *testing.B) {
	names := make([][]byte, 100_000)
	for i := range names {
		names[i] = fmt.Appendf(nil, "prod.eu-west-1.collectd.web%03d.interface.eth0.if_octets.rx.%d.rate", i%1000, i)
	}
	c := &posCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	var dst []uint32
	i := 0
	for b.Loop() {
		batch := names[i%len(names):][:500]
		dst = c.many(dst[:0], len(batch), func(j int) []byte { return batch[j] }, Position)
		i += 500
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/name")
}
