package decode

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkTransport compresses and decompresses realistic lines (flushes
// of 500 lines, what a writer sends at once under load) and reports wire
// bytes per line; ns/op is per line, so 1e9/ns is lines per CPU-second.
func BenchmarkTransport(b *testing.B) {
	// Eight different flushes (values and timestamps move on, as they do):
	// repeating one would flatter gzip's window.
	var flushes [8][]byte
	for f := range flushes {
		var lines bytes.Buffer
		for i := range 500 {
			fmt.Fprintf(&lines, "servers.dc%d.host%03d.%s.%s %d.%d %d\n", i%3, i%97, []string{"cpu", "disk", "net", "mem"}[i%4],
				[]string{"user", "system", "used_bytes", "rx_packets"}[i%4], (i*7+f*13)%1000, (i+f)%10, 1700000000+f*10)
		}
		flushes[f] = lines.Bytes()
	}
	chunk := flushes[0]
	for _, kind := range []string{Plain, Gzip, LZ4, Snappy} {
		b.Run("encode/"+kind, func(b *testing.B) {
			var wire countWriter
			enc := NewEncoder(kind, &wire)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				enc.Write(flushes[n%8])
				enc.Flush()
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*500), "ns/line")
			b.ReportMetric(float64(wire.n)/float64(n*500), "wire-B/line")
			b.ReportMetric(float64(len(chunk))/500, "raw-B/line")
		})
		b.Run("decode/"+kind, func(b *testing.B) {
			var wire bytes.Buffer
			enc := NewEncoder(kind, &wire)
			var ends []int
			for i := range 200 {
				enc.Write(flushes[i%8])
				enc.Flush()
				ends = append(ends, wire.Len())
			}
			buf := make([]byte, 64<<10)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				dec, _ := NewDecoder(kind, &chunks{b: wire.Bytes(), ends: append([]int(nil), ends...)}, 1<<20)
				for {
					if _, err := dec.Read(buf); err != nil {
						break
					}
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*200*500), "ns/line")
		})
	}
}

type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
