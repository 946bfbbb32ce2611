package listener

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// collector is a SendFunc that records lines.
type collector struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) send(_ context.Context, b *batch.Batch) error {
	c.mu.Lock()
	for i := range b.Lines {
		l := b.Line(i)
		c.lines = append(c.lines, string(l[:len(l)-1]))
	}
	c.mu.Unlock()
	b.Release()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got := append([]string(nil), c.lines...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("got %d of %d lines: %q", len(got), n, got)
		}
	}
}

func startTCP(t *testing.T, send SendFunc) (*TCP, func()) {
	t.Helper()
	return startTCPWith(t, TCPConfig{Send: send})
}

func startTCPWith(t *testing.T, cfg TCPConfig) (*TCP, func()) {
	t.Helper()
	cfg.Addr, cfg.Logger, cfg.MaxLine = "127.0.0.1:0", quiet, 1024
	l, err := NewTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	return l, stop
}

func dial(t *testing.T, l *TCP) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHostileInput sends each bad input on its own connection followed by a
// good line: the bad part is counted, the good line still arrives.
func TestHostileInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		input  string
		reason batch.Reason
	}{
		{"blank line", "\n", batch.ReasonEmpty},
		{"whitespace", " \t \n", batch.ReasonEmpty},
		{"one field", "just.a.name\n", batch.ReasonFields},
		{"two fields", "a.b 1\n", batch.ReasonFields},
		{"NaN", "a.b NaN 1700000000\n", batch.ReasonNaN},
		{"non-numeric value", "a.b abc 1700000000\n", batch.ReasonValue},
		{"non-numeric timestamp", "a.b 1 yesterday\n", batch.ReasonTimestamp},
		{"NUL byte", "a\x00b 1 1700000000\n", batch.ReasonName},
		{"binary", "\xff\xfe\xfd\x00\x01 1 2\n", batch.ReasonName},
		{"over max length", strings.Repeat("x", 2000) + " 1 2\n", batch.ReasonTooLong},
		{"10 MiB without newline", strings.Repeat("y", 10<<20) + "\n", batch.ReasonTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector()
			l, stop := startTCP(t, col.send)
			c := dial(t, l)
			if _, err := io.WriteString(c, tc.input+"good.line 1 1700000000\n"); err != nil {
				t.Fatal(err)
			}
			got := col.waitFor(t, 1)
			c.Close()
			stop()
			if len(got) != 1 || got[0] != "good.line 1 1700000000" {
				t.Fatalf("got %q", got)
			}
			if n := l.Rejected[tc.reason].Load(); n != 1 {
				t.Fatalf("rejected[%v] = %d, want 1 (%v)", tc.reason, n, l.Rejections())
			}
		})
	}
}

func TestAcceptedForms(t *testing.T) {
	col := newCollector()
	l, stop := startTCP(t, col.send)
	c := dial(t, l)
	io.WriteString(c, "a 1 2\r\nb  2\t3\ninf.v Inf 4\ntagged;k=v 1 5\nlast 9 9")
	c.Close() // the final line has no newline: dropped and counted, as carbon does
	got := col.waitFor(t, 4)
	testutil.WaitFor(t, "the unterminated line counted", 30*time.Second, func() bool { return l.Rejected[batch.ReasonUnterminated].Load() == 1 })
	stop()
	want := "a 1 2|b 2 3|inf.v Inf 4|tagged;k=v 1 5"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestConnectAndCloseAndManyClients(t *testing.T) {
	col := newCollector()
	l, stop := startTCP(t, col.send)
	for range 50 {
		c := dial(t, l)
		c.Close()
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			io.WriteString(c, "m"+strings.Repeat("x", i%7)+" 1 2\n")
		})
	}
	wg.Wait()
	col.waitFor(t, 200)
	stop()
	if s := l.Stats(); s.ConnsTotal != 250 || s.Accepted != 200 {
		t.Fatalf("stats %+v", s)
	}
}

// TestShutdownHandsOnWhatWasRead: lines sent before shutdown are handed on
// even though the client keeps its connection open.
func TestShutdownHandsOnWhatWasRead(t *testing.T) {
	col := newCollector()
	l, stop := startTCP(t, col.send)
	c := dial(t, l)
	defer c.Close()
	var sb strings.Builder
	for range 1000 {
		sb.WriteString("shut.down 1 2\n")
	}
	io.WriteString(c, sb.String())
	col.waitFor(t, 1)
	stop()
	if got := col.waitFor(t, 1000); len(got) != 1000 {
		t.Fatalf("got %d of 1000", len(got))
	}
}

func TestPortInUse(t *testing.T) {
	col := newCollector()
	l, stop := startTCP(t, col.send)
	defer stop()
	if _, err := NewTCP(TCPConfig{Addr: l.Addr().String(), Send: col.send}); err == nil {
		t.Fatal("second bind on the same port succeeded")
	}
}

// An idle client is disconnected after IdleTimeout (carbon-c-relay does it
// after 10 minutes), and connections beyond MaxConns are refused; both are
// counted. A client that keeps sending stays.
func TestIdleTimeoutAndMaxConnections(t *testing.T) {
	col := newCollector()
	l, stop := startTCPWith(t, TCPConfig{Send: col.send, IdleTimeout: 200 * time.Millisecond, MaxConns: 2})
	defer stop()
	idle := dial(t, l)
	busy := dial(t, l)
	testutil.WaitFor(t, "two open", 30*time.Second, func() bool { return l.Stats().Connections == 2 })
	third := dial(t, l)
	third.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("a third connection over MaxConns 2 was served")
	}
	for i := range 10 { // busy keeps talking across several idle periods
		fmt.Fprintf(busy, "busy.m%d 1 2\n", i)
		time.Sleep(50 * time.Millisecond)
	}
	idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection not closed")
	}
	col.waitFor(t, 10)
	st := l.Stats()
	if st.IdleClosed < 1 || st.Refused != 1 {
		t.Fatalf("stats %+v: want ≥1 idle close and 1 refusal", st)
	}
}

// With a coalescing window, trickling connections read on its ticks (and,
// on unix, with the receive low-water mark raised): a paced stream arrives
// whole and in order, lone lines a while apart each arrive (the tick that
// finds nothing goes back to an ordinary read), a burst after trickling
// and a close right after a write lose nothing, and an idle trickler is
// still closed after IdleTimeout.
func TestTrickleWindow(t *testing.T) {
	col := newCollector()
	l, stop := startTCPWith(t, TCPConfig{Send: col.send, Window: batch.NewWindow(2 * time.Millisecond), IdleTimeout: 300 * time.Millisecond})
	defer stop()
	lone := dial(t, l)
	for i := range 5 {
		fmt.Fprintf(lone, "lone.m%d 1 2\n", i)
		col.waitFor(t, i+1)
		time.Sleep(30 * time.Millisecond) // several empty ticks
	}
	paced := dial(t, l)
	var want []string
	for i := range 1000 {
		l := fmt.Sprintf("paced.m%d %d 2", i, i)
		want = append(want, l)
		fmt.Fprintln(paced, l)
		if i%2 == 1 {
			time.Sleep(time.Millisecond)
		}
	}
	var burst strings.Builder
	for i := range 5000 { // far more than a trickle
		l := fmt.Sprintf("paced.b%d %d 2", i, i)
		want = append(want, l)
		burst.WriteString(l + "\n")
	}
	paced.Write([]byte(burst.String()))
	paced.Close()
	got := col.waitFor(t, 5+len(want))
	var mine []string
	for _, g := range got {
		if strings.HasPrefix(g, "paced.") {
			mine = append(mine, g)
		}
	}
	if !slices.Equal(mine, want) {
		t.Fatalf("paced stream: %d lines, in order: %v", len(mine), len(mine) == len(want))
	}
	lone.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := lone.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle trickling connection not closed")
	}
	if st := l.Stats(); st.IdleClosed != 1 {
		t.Fatalf("stats %+v: want 1 idle close", st)
	}
}
