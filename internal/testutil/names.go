package testutil

import (
	"fmt"
	"strings"
)

// RealisticNames is n metric names of 40–120 bytes as Graphite traffic
// has them (hosts in a few data centres, dotted words below), each a slice
// of one buffer in order, as a relay reads its input: the names are where
// the line was just read, not cache misses of their own.
func RealisticNames(n int) [][]byte {
	words := []string{"cpu", "memory", "disk", "network", "interface", "eth0", "nginx", "requests", "latency", "upstream", "p99", "errors"}
	var all strings.Builder
	ends := make([]int, n)
	for i := range ends {
		name := fmt.Sprintf("bench.prod.dc%d.host-%05d", i%4, i/50)
		for j := 0; len(name) < 40+(i*7919)%81; j++ {
			name += "." + words[(i+j*13)%len(words)]
		}
		all.WriteString(name)
		ends[i] = all.Len()
	}
	buf := []byte(all.String())
	names := make([][]byte, n)
	start := 0
	for i, end := range ends {
		names[i] = buf[start:end:end]
		start = end
	}
	return names
}
