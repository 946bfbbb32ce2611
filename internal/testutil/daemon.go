package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// RunFunc is a daemon's run(): it binds, calls ready with its addresses by
// role ("listen", "api", "stat", "http", "https"), serves until ctx ends and
// drains.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(map[string]string)) error

// Daemon is a daemon's run() going in a goroutine of the test.
type Daemon struct {
	Addrs          map[string]string
	Stdout, Stderr *SyncBuffer
	cancel         context.CancelFunc
	done           chan error
	once           sync.Once
	err            error
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartDaemon runs run(args) and waits until it is ready; it fails the test
// if run returns first. The daemon is stopped at cleanup.
func StartDaemon(t testing.TB, run RunFunc, args ...string) *Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cancel: cancel, done: make(chan error, 1), Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}}
	ready := make(chan map[string]string, 1)
	go func() {
		d.done <- run(ctx, args, d.Stdout, d.Stderr, func(a map[string]string) { ready <- a })
	}()
	select {
	case d.Addrs = <-ready:
	case err := <-d.done:
		cancel()
		t.Fatalf("daemon did not start: %v\n%s", err, d.Stderr)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	return d
}

// Stop cancels the daemon's context (SIGTERM) and waits for run to return.
func (d *Daemon) Stop() error {
	d.once.Do(func() {
		d.cancel()
		select {
		case d.err = <-d.done:
		case <-time.After(2 * time.Minute):
			d.err = fmt.Errorf("run did not return after cancel")
		}
	})
	return d.err
}

// Ask sends one command line to the daemon's role port and returns the reply.
func (d *Daemon) Ask(t testing.TB, role, cmd string) string {
	t.Helper()
	c, err := net.Dial("tcp", d.Addrs[role])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintln(c, cmd)
	out, _ := io.ReadAll(c)
	return string(out)
}

// Send writes data to the daemon's role port on one connection and closes it.
func (d *Daemon) Send(t testing.TB, role, data string) {
	t.Helper()
	c, err := net.Dial("tcp", d.Addrs[role])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatal(err)
	}
}

// WaitTotal waits until the sinks together hold n lines and reports whether
// they hold exactly n. limit only keeps a broken test from hanging.
func WaitTotal(n int, limit time.Duration, sinks ...*Sink) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		total := 0
		for _, s := range sinks {
			total += s.Count()
		}
		if total >= n {
			return total == n
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}
