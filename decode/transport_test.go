package decode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// Each transport round-trips many flushes on one stream, and the formats
// are carbon-c-relay's: one gzip stream, one LZ4 frame per flush, one raw
// snappy block per flush.
func TestTransportsRoundTrip(t *testing.T) {
	for _, kind := range []string{Plain, Gzip, LZ4, Snappy} {
		t.Run(kind, func(t *testing.T) {
			var wire bytes.Buffer
			enc := NewEncoder(kind, &wire)
			var want strings.Builder
			var flushes []int // wire length after each flush
			for f := range 20 {
				for i := range 50 + f*37 {
					line := fmt.Sprintf("link.%s.f%d.m%d %d 1700000000\n", kind, f, i, i)
					enc.Write([]byte(line))
					want.WriteString(line)
				}
				if err := enc.Flush(); err != nil {
					t.Fatal(err)
				}
				flushes = append(flushes, wire.Len())
			}
			if kind == LZ4 && bytes.Count(wire.Bytes(), []byte{0x04, 0x22, 0x4d, 0x18}) != 20 {
				t.Fatalf("want 20 LZ4 frames (one per flush)")
			}
			var r io.Reader = &wire
			if kind == Snappy {
				r = &chunks{b: wire.Bytes(), ends: flushes} // blocks arrive whole, as on a quiet link
			}
			dec, err := NewDecoder(kind, r, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(dec)
			if kind == Gzip && errors.Is(err, io.ErrUnexpectedEOF) {
				err = nil // a continuous stream: the connection ends it, not a gzip trailer
			}
			if err != nil || string(got) != want.String() {
				t.Fatalf("%d bytes back (%v), want %d; wire %d bytes", len(got), err, want.Len(), flushes[len(flushes)-1])
			}
			t.Logf("%s: %d bytes of lines in %d bytes on the wire", kind, want.Len(), flushes[len(flushes)-1])
		})
	}
}

// chunks returns its bytes one flush at a time.
type chunks struct {
	b    []byte
	ends []int
	off  int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.ends) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.b[c.off:c.ends[0]])
	c.off += n
	if c.off == c.ends[0] {
		c.ends = c.ends[1:]
	}
	return n, nil
}

func TestTransportsRefuseGarbage(t *testing.T) {
	for _, kind := range []string{Gzip, LZ4, Snappy} {
		dec, _ := NewDecoder(kind, strings.NewReader("this is not "+kind+" at all, just plaintext 1 2\n"), 1<<20)
		_, err := io.ReadAll(dec)
		var de *Error
		if !errors.As(err, &de) {
			t.Errorf("%s: plaintext gave %v, want a counted *Error", kind, err)
		}
	}
}

func FuzzTransports(f *testing.F) {
	for _, kind := range []string{Gzip, LZ4, Snappy} {
		var wire bytes.Buffer
		e := NewEncoder(kind, &wire)
		e.Write([]byte("a.b 1 2\nc.d 3 4\n"))
		e.Flush()
		f.Add(kind, wire.Bytes())
	}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		if !ValidTransport(kind) {
			return
		}
		dec, _ := NewDecoder(kind, bytes.NewReader(data), 1<<16)
		io.Copy(io.Discard, io.LimitReader(dec, 1<<22))
	})
}

// Snappy blocks glued together in one read, or split over many, are read
// whole (carbon-c-relay needs a read to be exactly one block).
func TestSnappyBlocksGluedAndSplit(t *testing.T) {
	var wire bytes.Buffer
	enc := NewEncoder(Snappy, &wire)
	var want strings.Builder
	for f := range 30 {
		for i := range 40 + f {
			line := fmt.Sprintf("sn.f%d.m%d %d 1700000000\n", f, i, i*f)
			enc.Write([]byte(line))
			want.WriteString(line)
		}
		enc.Flush()
	}
	for _, size := range []int{1, 7, 100, 4096, 1 << 20} {
		dec, _ := NewDecoder(Snappy, &chunked{b: wire.Bytes(), size: size}, 1<<20)
		got, err := io.ReadAll(dec)
		if err != nil || string(got) != want.String() {
			t.Fatalf("reads of %d bytes: %d of %d bytes (%v)", size, len(got), want.Len(), err)
		}
	}
}

type chunked struct {
	b    []byte
	size int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.b)
	c.b = c.b[n:]
	return n, nil
}
