package dest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/decode"
	"github.com/polymur/polymur/internal/testutil"
)

// cutConn takes limit bytes of the next write, then fails it, as a
// connection reset in the middle of a write does.
type cutConn struct {
	net.Conn
	out   bytes.Buffer
	limit int // <0: no limit
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.limit >= 0 && len(p) > c.limit {
		c.out.Write(p[:c.limit])
		return c.limit, errors.New("connection reset by peer")
	}
	c.out.Write(p)
	return len(p), nil
}

func (c *cutConn) SetWriteDeadline(time.Time) error { return nil }

// A pickle destination counts only whole frames as written: after a write
// cut in the middle of a frame, that frame's lines go again, whole, on the
// next connection, and every line arrives once — counting the frames the
// cut connection took whole.
func TestPickleWriteCutInAFrame(t *testing.T) {
	for _, cut := range []int{0, 3, 1000, 12_345, 40_000, 1 << 30} {
		p, err := New(Config{Mode: Broadcast, Destinations: []Destination{{Name: "x", Host: "127.0.0.1", Port: 1, Pickle: true}}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		d := p.view.Load().dests[0]
		w := &writer{p: p, d: d}
		ls := lines("pk", 1700)
		for i := 0; i < len(ls); i += 600 {
			b := batch.Get()
			for _, l := range ls[i:min(i+600, len(ls))] {
				b.Append([]byte(l+"\n"), strings.IndexByte(l, ' '))
			}
			w.pending = append(w.pending, b)
		}
		first := &cutConn{limit: cut}
		err = w.writePickle(first)
		if (err != nil) != (cut < 1<<30) {
			t.Fatalf("cut %d: err %v", cut, err)
		}
		second := &cutConn{limit: -1}
		if len(w.pending) > 0 {
			if err := w.writePickle(second); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for _, c := range []*cutConn{first, second} {
			out, _ := io.ReadAll(decode.NewPickleReader(&c.out, 0)) // the cut frame ends the first stream
			got = append(got, strings.Split(strings.TrimSpace(string(out)), "\n")...)
		}
		got = slices.DeleteFunc(got, func(s string) bool { return s == "" })
		if !slices.Equal(got, ls) || len(w.pending) != 0 || d.sent.Load() != uint64(len(ls)) {
			t.Fatalf("cut at %d bytes: %d lines arrived (%d pending, %d counted sent), want the %d once each in order", cut, len(got), len(w.pending), d.sent.Load(), len(ls))
		}
	}
}

// pickleSink is carbon-cache's pickle port: it decodes frames.
type pickleSink struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
	errs  []error
}

func newPickleSink(t *testing.T) *pickleSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &pickleSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				pr := decode.NewPickleReader(c, 0)
				buf := make([]byte, 64<<10)
				var rest string
				for {
					n, err := pr.Read(buf)
					text := rest + string(buf[:n])
					cut := strings.LastIndexByte(text, '\n') + 1
					s.mu.Lock()
					for _, l := range strings.Split(strings.TrimSpace(text[:cut]), "\n") {
						if l != "" {
							s.lines = append(s.lines, l)
						}
					}
					if err != nil && !errors.Is(err, io.EOF) {
						s.errs = append(s.errs, err)
					}
					s.mu.Unlock()
					rest = text[cut:]
					if err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return s
}

func (s *pickleSink) snapshot() ([]string, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines), slices.Clone(s.errs)
}

// A pickle destination delivers every line in carbon's frames.
func TestPickleDestination(t *testing.T) {
	s := newPickleSink(t)
	ds, err := ParseDestinations(s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, Pickle: true, QueueCap: 100_000})
	ls := lines("pk", 20_000)
	send(t, h.p, ls)
	testutil.WaitFor(t, "every line in pickle frames", wait, func() bool {
		got, errs := s.snapshot()
		return len(got) >= len(ls) || len(errs) > 0
	})
	got, errs := s.snapshot()
	if len(errs) > 0 {
		t.Fatalf("frames did not decode: %v", errs)
	}
	if !slices.Equal(got, ls) {
		t.Fatalf("%d lines arrived, not the %d sent in order", len(got), len(ls))
	}
}
