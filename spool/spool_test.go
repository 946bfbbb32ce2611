package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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

func open(t testing.TB, dir, name string, max int64) *Spool {
	t.Helper()
	s, err := Open(dir, name, Options{MaxBytes: max, Fsync: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// drain takes what the spool yields until it is idle for a moment; each
// batch is acknowledged when each returns true (released), else kept.
func drain(s *Spool, idle time.Duration, each func(*batch.Batch) bool) (kept []*batch.Batch) {
	for {
		select {
		case rec := <-s.Chan():
			b := s.Batch(rec)
			if each(b) {
				b.Release()
			} else {
				kept = append(kept, b)
			}
		case <-time.After(idle):
			return kept
		}
	}
}

func all(*batch.Batch) bool { return true }

// drainEmpty takes and acknowledges everything until the spool is empty.
func drainEmpty(t testing.TB, s *Spool, each func(*batch.Batch)) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case rec := <-s.Chan():
			b := s.Batch(rec)
			each(b)
			b.Release()
			continue
		default:
		}
		if s.Empty() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("spool never empty")
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func TestPutReadReopenInOrder(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "127.0.0.1:2003:a", 1<<20)
	for i := range 10 {
		if err := s.Put(lines(fmt.Sprintf("m%d 1 2\nm%d 3 4\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	if s.Lines() != 20 {
		t.Fatalf("lines %d, want 20", s.Lines())
	}
	first := s.Batch(<-s.Chan())
	if got := string(first.Buf); got != "m0 1 2\nm0 3 4\n" {
		t.Fatalf("first = %q", got)
	}
	first.Release() // delivered: acknowledged
	second := s.Batch(<-s.Chan())
	_ = second // taken, never released: not acknowledged
	s.Close()

	s = open(t, dir, "127.0.0.1:2003:a", 1<<20)
	defer s.Close()
	if s.Lines() != 18 {
		t.Fatalf("reopened: lines %d, want 18", s.Lines())
	}
	var got []string
	drain(s, 200*time.Millisecond, func(b *batch.Batch) bool { got = append(got, string(b.Buf)); return true })
	if len(got) != 9 || got[0] != "m1 1 2\nm1 3 4\n" || got[8] != "m9 1 2\nm9 3 4\n" {
		t.Fatalf("after reopening: %q", got)
	}
}

// Acknowledgements out of order (the proxy's workers) move the cursor only
// past the acknowledged head.
func TestOutOfOrderAcks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "gw", 1<<20)
	for i := range 5 {
		s.Put(lines(fmt.Sprintf("m%d 1 2\n", i)))
	}
	var bs []*batch.Batch
	for range 5 {
		bs = append(bs, s.Batch(<-s.Chan()))
	}
	bs[0].Release()
	bs[2].Release()
	bs[3].Release() // 1 and 4 are not delivered
	s.Close()
	s = open(t, dir, "gw", 1<<20)
	defer s.Close()
	var got []string
	drain(s, 100*time.Millisecond, func(b *batch.Batch) bool { got = append(got, string(b.Buf)); return true })
	if strings.Join(got, "") != "m1 1 2\nm2 1 2\nm3 1 2\nm4 1 2\n" {
		t.Fatalf("replayed %q: want m1..m4 (at least once from the oldest unacknowledged)", got)
	}
}

func TestBoundRefusesWithErrFull(t *testing.T) {
	s := open(t, t.TempDir(), "d", 64)
	defer s.Close()
	if err := s.Put(lines("a.b 1 2\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(lines(string(bytes.Repeat([]byte("x"), 80)) + " 1 2\n")); err != ErrFull {
		t.Fatalf("over the bound: %v", err)
	}
}

// A batch larger than MaxRecord (the gateway's 66 MB request after
// -key-prefix) is kept as several records, every line once.
func TestLargeBatchIsChunked(t *testing.T) {
	s := open(t, t.TempDir(), "big", 1<<30)
	defer s.Close()
	b := batch.Get()
	const n = 60000
	for i := range n {
		l := fmt.Sprintf("prefix.tenant.%s.m%d %d 1700000000\n", strings.Repeat("x", 20), i, i)
		b.Append([]byte(l), strings.IndexByte(l, ' '))
	}
	if len(b.Buf) < 3*MaxRecord {
		t.Fatalf("test batch only %d bytes", len(b.Buf))
	}
	if err := s.Put(b); err != nil {
		t.Fatal(err)
	}
	got, records := 0, 0
	drain(s, 100*time.Millisecond, func(r *batch.Batch) bool {
		records++
		got += r.Len()
		if len(r.Buf) > MaxRecord {
			t.Fatalf("record of %d bytes", len(r.Buf))
		}
		return true
	})
	if got != n || records < 3 {
		t.Fatalf("%d lines in %d records, want %d in ≥3", got, records, n)
	}
}

// Names are one-to-one: host:port:x_y and host:port:x:y have separate spools.
func TestFileNamesAreOneToOne(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []string{"h:1:x_y", "h:1:x:y", "h_3A1", "h:1", "[::1]:2003", "..", ".", "a/b", "a\\b", "h:1:x.y"} {
		f := FileName(n)
		if prev, ok := seen[f]; ok {
			t.Fatalf("%q and %q share %q", prev, n, f)
		}
		if f == "." || f == ".." || strings.ContainsAny(f, "/\\:") {
			t.Fatalf("%q → unsafe %q", n, f)
		}
		seen[f] = n
	}
}

// Damaged cursor files never hang and never abandon data: a huge segment
// number, an empty file, garbage, a missing file — each replays from the
// oldest segment (at least once).
func TestDamagedCursorReplaysEverything(t *testing.T) {
	huge := make([]byte, cursorLen)
	binary.LittleEndian.PutUint32(huge, cursorMagic)
	binary.LittleEndian.PutUint64(huge[4:], 1<<62)
	for _, tc := range []struct {
		name   string
		cursor []byte // nil: removed
	}{
		{"missing", nil},
		{"empty", []byte{}},
		{"garbage", []byte("not a cursor at all, really not")},
		{"huge segment number, bad checksum", huge},
		{"huge segment number, good checksum", func() []byte {
			b := append([]byte(nil), huge...)
			binary.LittleEndian.PutUint32(b[20:], crcOf(b[:20]))
			return b
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, "d", 1<<20)
			for i := range 300 {
				s.Put(lines(fmt.Sprintf("m%d 1 2\n", i)))
			}
			s.Close()
			path := filepath.Join(dir, "d", "cursor")
			if tc.cursor == nil {
				os.Remove(path)
			} else {
				os.WriteFile(path, tc.cursor, 0o600)
			}
			s = open(t, dir, "d", 1<<20)
			defer s.Close()
			n := 0
			drain(s, 100*time.Millisecond, func(b *batch.Batch) bool { n += b.Len(); return true })
			if n != 300 {
				t.Fatalf("replayed %d of 300", n)
			}
		})
	}
}

// A torn tail (power loss in the middle of a write) is cut off at open;
// everything before it is replayed.
func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "d", 1<<20)
	for i := range 10 {
		s.Put(lines(fmt.Sprintf("m%d 1 2\n", i)))
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "d", "*.seg"))
	var last string
	for _, f := range segs {
		if st, _ := os.Stat(f); st.Size() > 0 {
			last = f
		}
	}
	data, _ := os.ReadFile(last)
	os.WriteFile(last, data[:len(data)-3], 0o600)
	s = open(t, dir, "d", 1<<20)
	defer s.Close()
	n := 0
	drain(s, 100*time.Millisecond, func(b *batch.Batch) bool { n += b.Len(); return true })
	if n != 9 || s.Corrupt() == 0 {
		t.Fatalf("replayed %d (want 9), corrupt bytes %d", n, s.Corrupt())
	}
}

// Segments behind the cursor are deleted; an emptied spool is removable.
func TestDeliveredSegmentsAreDeleted(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "d", 1<<30)
	big := lines(strings.Repeat("m.x 1 2\n", 1<<16)) // 512 KiB
	for range 3 * SegmentBytes / (512 << 10) {
		if err := s.Put(big); err != nil {
			t.Fatal(err)
		}
	}
	drain(s, 300*time.Millisecond, all)
	time.Sleep(3 * CursorDelay)
	s.flushCursor(false)
	segs, _ := filepath.Glob(filepath.Join(dir, "d", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("%d segments left after delivering everything, want the write segment only", len(segs))
	}
	if s.Bytes() != 0 || s.Lines() != 0 {
		t.Fatalf("empty spool reports %d bytes %d lines", s.Bytes(), s.Lines())
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
}

func TestRemoveRefusesWhileHolding(t *testing.T) {
	s := open(t, t.TempDir(), "d", 1<<20)
	defer s.Close()
	s.Put(lines("a 1 2\n"))
	if err := s.Remove(); err == nil {
		t.Fatal("Remove of a spool holding a line succeeded")
	}
}

func TestLockDirRefusesASecondHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(dir); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	l.Unlock()
	l2, err := LockDir(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	l2.Unlock()
	file := filepath.Join(dir, "plain-file")
	os.WriteFile(file, nil, 0o600)
	if _, err := LockDir(file); err == nil {
		t.Fatal("a file accepted as a spool directory")
	}
}

func TestToBatchDropsUnterminatedTail(t *testing.T) {
	b := ToBatch([]byte("a 1 2\nnoname\npartial 1"))
	if b.Len() != 2 || string(b.Buf) != "a 1 2\nnoname\n" {
		t.Fatalf("ToBatch = %d lines %q", b.Len(), b.Buf)
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FuzzSegment feeds arbitrary bytes to the spool as a segment file and a
// cursor left on disk by an earlier run (torn writes, disk corruption, a
// file from somewhere else): opening and reading never panics or hangs,
// every line it yields is newline-terminated, and it still takes new data.
func FuzzSegment(f *testing.F) {
	dir := f.TempDir()
	s := open(f, dir, "seed", 1<<20)
	s.Put(lines("a.b 1 1700000000\nc.d 2 1700000000\n"))
	s.Put(lines("e.f 3 1700000000\n"))
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seed", "*.seg"))
	valid, _ := os.ReadFile(segs[0])
	cur, _ := os.ReadFile(filepath.Join(dir, "seed", "cursor"))
	f.Add(valid, cur)
	f.Add(valid[:len(valid)-3], cur)
	f.Add(valid, []byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'x'}, []byte("x"))
	f.Add([]byte{0, 0, 0, 0}, cur)
	f.Fuzz(func(t *testing.T, data, cursor []byte) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "x"), 0o700)
		os.WriteFile(filepath.Join(dir, "x", fmt.Sprintf("%020d.seg", 1)), data, 0o600)
		os.WriteFile(filepath.Join(dir, "x", "cursor"), cursor, 0o600)
		s, err := Open(dir, "x", Options{MaxBytes: 1 << 20, Fsync: -1, Logger: quiet})
		if err != nil {
			return
		}
		n := 0
		drainEmpty(t, s, func(b *batch.Batch) {
			n++
			if len(b.Buf) > 0 && b.Buf[len(b.Buf)-1] != '\n' {
				t.Fatalf("unterminated line in %q", b.Buf)
			}
		})
		if n > len(data)/hdrLen+1 {
			t.Fatalf("%d records out of %d bytes", n, len(data))
		}
		if err := s.Put(lines("new.line 1 2\n")); err != nil {
			t.Fatalf("put after a damaged segment: %v", err)
		}
		got := ""
		drainEmpty(t, s, func(b *batch.Batch) { got += string(b.Buf) })
		if !strings.HasSuffix(got, "new.line 1 2\n") {
			t.Fatalf("new line not read back after damage: %q", got)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
}
