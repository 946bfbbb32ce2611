package route

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/polymur/polymur/internal/testutil"
	"github.com/polymur/polymur/ring"
)

// benchConfig mirrors bench/routing.go's scenario: 4 clusters, 10
// rewrites, 100 matches, most lines falling through.
func benchConfig() string {
	dcs := []string{"us-east-1", "us-west-2", "eu-west-1", "ap-south-1"}
	groups := []string{"cpu", "memory", "disk", "net", "nginx", "jvm", "postgres", "redis"}
	var b strings.Builder
	b.WriteString("cluster fw forward 127.0.0.1:2003;\ncluster ch carbon_ch replication 2 127.0.0.1:2004=a 127.0.0.2:2004=b 127.0.0.3:2004=c;\n")
	b.WriteString("cluster fnv fnv1a_ch 127.0.0.1:2005 127.0.0.1:2006;\ncluster any any_of 127.0.0.1:2007 127.0.0.1:2008;\n")
	for i := range 10 {
		fmt.Fprintf(&b, "rewrite ^bench\\.%s\\.host(%d[0-9]*)\\.legacy%d\\.(.*)$ into bench.%s.host\\1.new.\\_2;\n", dcs[i%4], i, i, dcs[i%4])
	}
	cl := []string{"fw", "ch", "fnv", "any"}
	for i := range 80 {
		fmt.Fprintf(&b, "match ^bench\\.%s\\.host%d\\.%s\\.nomatch send to %s;\n", dcs[i%4], i, groups[i%8], cl[i%4])
	}
	for i := range 19 {
		fmt.Fprintf(&b, "match ^bench\\.[a-z]+-[a-z]+-[0-9]\\.host%d[0-9]*\\.(%s|%s)\\.zz send to %s;\n", i, groups[i%8], groups[(i+1)%8], cl[(i+1)%4])
	}
	b.WriteString("match ^bench\\.us- send to ch;\nmatch \\.jvm\\. \\.redis\\. send to fnv stop;\nmatch * send to any;\n")
	return b.String()
}

func BenchmarkRoute(b *testing.B) {
	tb, err := Parse("bench.conf", benchConfig())
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, 4096)
	for i := range names {
		names[i] = fmt.Sprintf("bench.us-east-1.host%d.%s.user.0", i%5000, []string{"cpu", "jvm", "net", "redis"}[i%4])
	}
	live := func(*Server) bool { return true }
	var ds []Delivery
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ds = tb.Route(ds[:0], names[i%len(names)], "", live)
		i++
	}
}

// BenchmarkRouteCarbonCH is the traffic-shapes scenario's routing: one
// carbon_ch cluster of three, 100k names of 40–120 bytes, each again in
// turn (every interval).
func BenchmarkRouteCarbonCH(b *testing.B) {
	tb, err := Parse("bench.conf", "cluster out carbon_ch\n 127.0.0.1:2101=a\n 127.0.0.1:2102=b\n 127.0.0.1:2103=c\n ;\nmatch * send to out stop;\n")
	if err != nil {
		b.Fatal(err)
	}
	names := testutil.RealisticNames(100_000)
	live := func(*Server) bool { return true }
	for _, prefetch := range []bool{false, true} {
		// prefetched: as the relay routes a batch, its names' position
		// slots loaded first, 512 at a time.
		b.Run(map[bool]string{false: "one-by-one", true: "prefetched"}[prefetch], func(b *testing.B) {
			var ds []Delivery
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if prefetch && i%512 == 0 {
					for j := i; j < i+512; j++ {
						ring.Prefetch(names[j%len(names)])
					}
				}
				n := names[i%len(names)]
				ds = tb.Route(ds[:0], unsafe.String(unsafe.SliceData(n), len(n)), "", live)
				i++
			}
		})
	}
}
