//go:build unix

package listener

import (
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

// TestTricklerReadDoesNotAllocate: a tick's non-blocking read, with data
// or without, allocates nothing (at ordinary rates every connection reads
// every tick).
func TestTricklerReadDoesNotAllocate(t *testing.T) {
	c, s := testutil.TCPPair(t)
	tr := newTrickler(s)
	if tr == nil {
		t.Fatal("no trickler for a TCP connection")
	}
	buf := make([]byte, 64)
	if a := testing.AllocsPerRun(200, func() {
		if _, err := tr.Read(buf); err != errWouldBlock {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("an empty tick's read: %.1f allocations, want 0", a)
	}
	line := []byte("a.b 1 2\n")
	if a := testing.AllocsPerRun(200, func() {
		c.Write(line)
		for n := 0; n < len(line); {
			m, err := tr.Read(buf)
			if err != nil && err != errWouldBlock {
				t.Fatal(err)
			}
			n += m
		}
	}); a != 0 {
		t.Errorf("a tick's read of a line: %.1f allocations, want 0", a)
	}
}
