package batch

import (
	"math/rand/v2"
	"testing"
)

// scanInput is a line-like input: mostly the ordinary grammar, with every
// kind of deviation and cut at any length.
func scanInput(rng *rand.Rand) []byte {
	var b []byte
	for range rng.IntN(40) {
		b = append(b, byte(0x21+rng.IntN(0x5e)))
	}
	parts := []string{" ", "-", ".", "0", "7", "9", "\n", "  ", "e", "+", "\x00", "\x7f", "\x80", "\t", "1234567890", "12.5", " 1700000000\n"}
	for range rng.IntN(12) {
		if rng.IntN(10) == 0 {
			b = append(b, byte(rng.Uint32()))
			continue
		}
		b = append(b, parts[rng.IntN(len(parts))]...)
	}
	return b[:rng.IntN(len(b)+1)]
}

// TestPlainScan: the assembly reads every input as the Go does, and never
// outside the slice it is given (each input ends where a page that may not
// be read begins, where the system allows).
func TestPlainScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	guard := newGuarded(t)
	cases := [][]byte{
		nil, []byte(" "), []byte("a"), []byte("a "), []byte("a 1"), []byte("a 1 2"), []byte("a -1 2\n"),
		[]byte("a 1. 2"), []byte("a .5 2"), []byte("a 1.5 2"), []byte("a 1.5 -2"), []byte("a - 2"),
		[]byte("abcdefghijklmnop 1 2"), []byte("abcdefghijklmnopq 12345678 1234567890\n"),
		[]byte("abcdefghijklmno 123456789012345678 1"),
	}
	for range 200_000 {
		cases = append(cases, scanInput(rng))
	}
	for _, c := range cases {
		sameScan(t, guard(c))
	}
}

// sameScan fails t when the assembly and the Go read b differently.
func sameScan(t *testing.T, b []byte) {
	n1, v1, t1 := plainScan(b)
	n2, v2, t2 := plainScanGo(b)
	if n1 != n2 || v1 != v2 || t1 != t2 {
		t.Fatalf("plainScan(%q) = %d %d %d, in Go %d %d %d", b, n1, v1, t1, n2, v2, t2)
	}
}

func FuzzPlainScan(f *testing.F) {
	for _, s := range []string{"a.b.c 1 2\n", "x -1.5 1700000000\n", "n 1.e 2", "abcdefghijklmnopqrstuvwxyz0123456789 99999999 12345678\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(sameScan)
}
