package spool

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/polymur/polymur/batch"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func lines(s string) *batch.Batch {
	b := batch.Get()
	for _, l := range bytes.SplitAfter([]byte(s), []byte("\n")) {
		if len(l) > 0 {
			b.Append(l, bytes.IndexByte(l, ' '))
		}
	}
	return b
}

// drain reads what the spool yields until it is idle for a moment.
func drain(s *Spool, idle time.Duration, each func([]byte)) {
	for {
		select {
		case buf := <-s.Chan():
			each(buf)
		case <-time.After(idle):
			return
		}
	}
}

func TestPutReadReopenInOrder(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "127.0.0.1:2003:a", 1<<20, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := s.Put(lines(fmt.Sprintf("m%d 1 2\nm%d 3 4\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	first := <-s.Chan()
	s.Taken(first, 2)
	if got := string(first); got != "m0 1 2\nm0 3 4\n" {
		t.Fatalf("first = %q", got)
	}
	s.Close()

	s, err = Open(dir, "127.0.0.1:2003:a", 1<<20, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	drain(s, 200*time.Millisecond, func(buf []byte) {
		b := ToBatch(buf)
		got = append(got, string(b.Buf))
		s.Taken(buf, b.Len())
		b.Release()
	})
	if len(got) != 9 || got[0] != "m1 1 2\nm1 3 4\n" || got[8] != "m9 1 2\nm9 3 4\n" {
		t.Fatalf("after reopening: %q", got)
	}
}

func TestBoundRefusesWithErrFull(t *testing.T) {
	s, err := Open(t.TempDir(), "d", 64, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(lines("a.b 1 2\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(lines(string(bytes.Repeat([]byte("x"), 80)) + " 1 2\n")); err != ErrFull {
		t.Fatalf("over the bound: %v", err)
	}
}

func TestToBatchDropsUnterminatedTail(t *testing.T) {
	b := ToBatch([]byte("a 1 2\nnoname\npartial 1"))
	if b.Len() != 2 || string(b.Buf) != "a 1 2\nnoname\n" {
		t.Fatalf("ToBatch = %d lines %q", b.Len(), b.Buf)
	}
}

// FuzzSegment feeds arbitrary bytes to the spool reader as a segment file
// left on disk by an earlier run (torn writes, disk corruption, a file from
// somewhere else): opening and reading it never panics or hangs, and every
// line it yields is newline-terminated.
func FuzzSegment(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, "seed", 1<<20, quiet)
	if err != nil {
		f.Fatal(err)
	}
	s.Put(lines("a.b 1 1700000000\nc.d 2 1700000000\n"))
	s.Put(lines("e.f 3 1700000000\n"))
	s.Close()
	valid, _ := os.ReadFile(filepath.Join(dir, "seed.diskqueue.000000.dat"))
	f.Add(valid, uint8(2))
	f.Add(valid[:len(valid)-3], uint8(2))
	f.Add(valid, uint8(9))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'x'}, uint8(1))
	f.Add([]byte{0, 0, 0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, depth uint8) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "x.diskqueue.000000.dat"), data, 0o600)
		meta := fmt.Sprintf("%d\n0,0\n0,%d\n", depth%16, len(data))
		os.WriteFile(filepath.Join(dir, "x.diskqueue.meta.dat"), []byte(meta), 0o600)
		s, err := Open(dir, "x", 1<<20, quiet)
		if err != nil {
			return
		}
		n := 0
		drain(s, 2*time.Millisecond, func(buf []byte) {
			n++
			b := ToBatch(buf)
			if len(b.Buf) > 0 && b.Buf[len(b.Buf)-1] != '\n' {
				t.Fatalf("unterminated line in %q", b.Buf)
			}
			s.Taken(buf, b.Len())
			b.Release()
		})
		if n > len(data)/4+1 {
			t.Fatalf("%d messages out of %d bytes", n, len(data))
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
}
