//go:build unix

package dest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// loopbackPair is a connected TCP pair on 127.0.0.1 with 64 KiB buffers,
// so that a write fills the socket quickly.
func loopbackPair(t *testing.T) (w, r *net.TCPConn) {
	c, s := testutil.TCPPair(t)
	c.SetWriteBuffer(64 << 10)
	s.SetReadBuffer(64 << 10)
	return c, s
}

// The raw writev delivers every byte in order, across more buffers than
// one call takes, partial writes and waits for room: 3 MiB through 64 KiB
// socket buffers fill them long before the reader has taken it all (the
// wait itself, with nobody reading, is TestRawWritevDeadline's).
func TestRawWritevDeliversAll(t *testing.T) {
	w, r := loopbackPair(t)
	var bufs [][]byte
	var want bytes.Buffer
	for i := range 3000 { // more than iovMax buffers, about 3 MiB
		b := fmt.Appendf(nil, "line.%d %s 1700000000\n", i, bytes.Repeat([]byte{'x'}, i%2000))
		bufs = append(bufs, b)
		want.Write(b)
	}
	bufs = append(bufs, nil, []byte{}) // empty buffers are skipped
	got := make(chan []byte, 1)
	go func() {
		var all bytes.Buffer
		buf := make([]byte, 64<<10)
		for all.Len() < want.Len() {
			n, err := r.Read(buf)
			all.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- all.Bytes()
	}()
	var s rawScratch
	n, ok, err := rawWritev(w, bufs, &s)
	if !ok || err != nil || n != int64(want.Len()) {
		t.Fatalf("rawWritev = %d, %v, %v; want %d bytes", n, ok, err, want.Len())
	}
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("read %d bytes, not the %d written in order", len(g), want.Len())
	}
}

// A write the peer does not take within the deadline returns what was
// written and the deadline's error, as an ordinary write does; a
// connection that is not a socket is left to the ordinary write.
func TestRawWritevDeadline(t *testing.T) {
	w, _ := loopbackPair(t)
	w.SetWriteDeadline(time.Now().Add(500 * time.Millisecond)) // room for a loaded machine to make the first call in time
	big := bytes.Repeat([]byte("a.b 1 2\n"), 1<<20)            // 8 MiB: more than the buffers hold
	var s rawScratch
	n, ok, err := rawWritev(w, [][]byte{big}, &s)
	if !ok || !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= int64(len(big)) {
		t.Fatalf("rawWritev = %d, %v, %v; want part written and the deadline", n, ok, err)
	}
	p, _ := net.Pipe()
	defer p.Close()
	if _, ok, _ := rawWritev(p, [][]byte{big}, &s); ok {
		t.Fatal("a pipe was written raw")
	}
}

// TestRawCallsDoNotAllocate: a small write and an idle peek on a
// connection already seen allocate nothing (at ordinary rates they come
// every tick).
func TestRawCallsDoNotAllocate(t *testing.T) {
	w, r := loopbackPair(t)
	var s rawScratch
	bufs := [][]byte{[]byte("a.b 1 2\n"), []byte("c.d 3 4\n")}
	go func() { // take what is written
		b := make([]byte, 4096)
		for {
			if _, err := r.Read(b); err != nil {
				return
			}
		}
	}()
	rawWritev(w, bufs, &s)
	peerClosed(w, &s)
	if a := testing.AllocsPerRun(200, func() {
		if _, ok, err := rawWritev(w, bufs, &s); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}); a != 0 {
		t.Errorf("rawWritev: %.1f allocations a write, want 0", a)
	}
	if a := testing.AllocsPerRun(200, func() {
		if peerClosed(w, &s) {
			t.Fatal("peer closed")
		}
	}); a != 0 {
		t.Errorf("peerClosed: %.1f allocations a peek, want 0", a)
	}
}
