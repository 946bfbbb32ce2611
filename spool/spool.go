// Package spool is polymur's durable queue: an append-only, on-disk FIFO of
// line batches per destination (or, for polymur-proxy, per gateway),
// bounded in bytes. Like batch, it is a leaf of the data flow: dest and
// output use it; it uses only batch.
//
// On disk a spool is a directory (its name escaped one-to-one, see
// FileName) of segment files, NNNNNNNNNNNNNNNNNNNN.seg, each a run of
// records
//
//	[payload length u32][lines u32][CRC-32C of payload u32][payload]
//
// (little endian), and a 24-byte cursor file holding the position of the
// oldest record not yet acknowledged, rewritten in place (never a temporary
// file). A record leaves the spool only when the batch made from it is
// released — delivered, spooled again or counted as dropped — so a crash
// replays what was in flight: delivery is at least once, and after kill -9
// the duplicates are at most the records acknowledged within the last
// cursor write (CursorDelay, 10 ms). Segments behind the cursor are deleted.
//
// Opening never trusts more than it can check: segments are found by
// listing the directory, a missing or damaged cursor replays from the
// oldest segment (logged), a torn tail is cut off (logged with its size),
// and a damaged record skips the rest of its segment (logged, counted).
package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/batch"
)

var (
	// ErrFull is returned by Put when the spool has reached its byte bound.
	ErrFull = errors.New("spool full")
	// ErrWrite wraps a failed disk write (disk full, I/O error, read-only
	// file system); nothing of the batch was kept.
	ErrWrite = errors.New("spool write failed")
	// ErrClosed is returned by Put after Close.
	ErrClosed = errors.New("spool closed")
)

const (
	hdrLen = 12
	// MaxRecord is the largest payload of one record; a larger batch is
	// stored as several records, split at line boundaries.
	MaxRecord = 1 << 20
	// SegmentBytes is the size at which a new segment file is started.
	SegmentBytes = 64 << 20
	// CursorDelay is the longest an acknowledgement waits before the cursor
	// is written: it bounds the duplicates a kill -9 can cause.
	CursorDelay = 10 * time.Millisecond
	cursorLen   = 24
	cursorMagic = 0x504d5331 // "PMS1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configures Open.
type Options struct {
	MaxBytes int64 // bound of what the spool holds; default 1 GiB
	// Fsync is how often written segments and the cursor are fsynced: what
	// a power loss can take. 0 fsyncs after every Put; <0 never (the page
	// cache only: survives a crash of the process, not of the machine).
	Fsync  time.Duration
	Logger *slog.Logger
}

// pos is a record's place: segment number and byte offset.
type pos struct {
	seg uint64
	off int64
}

func (p pos) less(q pos) bool { return p.seg < q.seg || (p.seg == q.seg && p.off < q.off) }

// Spool is one on-disk queue. Put, Chan, Batch and the accessors are safe
// for concurrent use.
type Spool struct {
	name, dir string
	opt       Options
	log       *slog.Logger

	mu     sync.Mutex // the write side
	segs   []uint64   // segment numbers on disk, ascending
	w      *os.File
	wseg   uint64
	woff   int64
	broken bool // the write segment's tail is unknown after a failed write
	wbuf   []byte
	dirty  bool // written since the last fsync
	closed bool

	wpos  atomic.Pointer[pos] // end of the last complete record written
	wrote chan struct{}       // 1-slot: a record was written

	out chan Record

	amu      sync.Mutex // acknowledgements
	inflight []taken
	readEnd  pos // just past the last record handed out
	cursor   pos // oldest record not acknowledged
	curDirty bool
	curFile  *os.File
	kick     chan struct{} // 1-slot: the cursor moved

	bytes   atomic.Int64
	lines   atomic.Int64
	corrupt atomic.Int64 // bytes skipped as damaged

	closing chan struct{}
	wg      sync.WaitGroup
}

// FileName makes a destination name a directory name, one-to-one: letters,
// digits, '-' and '.' stay, every other byte becomes _XX (hex).
func FileName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String()
}

// Open opens (or creates) the spool called name under dir. What a previous
// run left in it is yielded first.
func Open(dir, name string, opt Options) (*Spool, error) {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 1 << 30
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := &Spool{name: name, dir: filepath.Join(dir, FileName(name)), opt: opt, log: opt.Logger.With("spool", name),
		wrote: make(chan struct{}, 1), out: make(chan Record), kick: make(chan struct{}, 1), closing: make(chan struct{})}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool %s: %w", name, err)
	}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", name, err)
	}
	s.wg.Go(s.readLoop)
	s.wg.Go(s.syncLoop)
	return s, nil
}

// recover finds the segments, the cursor and what they hold, and opens a
// new write segment.
func (s *Spool) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || len(n) != 20 {
			continue
		}
		if v, err := strconv.ParseUint(n, 10, 64); err == nil && e.Type().IsRegular() {
			s.segs = append(s.segs, v)
		}
	}
	slices.Sort(s.segs)
	if s.curFile, err = os.OpenFile(filepath.Join(s.dir, "cursor"), os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		return err
	}
	cur, ok := s.readCursor()
	switch {
	case len(s.segs) == 0:
		cur = pos{}
	case !ok:
		s.log.Warn("spool cursor missing or damaged: replaying from the oldest segment (lines may be delivered twice)", "segments", len(s.segs))
		cur = pos{s.segs[0], 0}
	case !slices.Contains(s.segs, cur.seg):
		if cur.seg < s.segs[0] || cur.seg > s.segs[len(s.segs)-1] {
			s.log.Warn("spool cursor names no segment on disk: replaying from the oldest segment", "cursor_segment", cur.seg, "oldest", s.segs[0])
			cur = pos{s.segs[0], 0}
		} else {
			i, _ := slices.BinarySearch(s.segs, cur.seg)
			cur = pos{s.segs[i], 0}
		}
	}
	// Segments behind the cursor were delivered.
	for len(s.segs) > 0 && s.segs[0] < cur.seg {
		os.Remove(s.segPath(s.segs[0]))
		s.segs = s.segs[1:]
	}
	for i, seg := range s.segs {
		from := int64(0)
		if seg == cur.seg {
			from = cur.off
		}
		b, l, err := s.scan(seg, from, i == len(s.segs)-1)
		if err != nil {
			return err
		}
		s.bytes.Add(b)
		s.lines.Add(l)
	}
	s.cursor, s.readEnd = cur, cur
	next := uint64(1)
	if len(s.segs) > 0 {
		next = s.segs[len(s.segs)-1] + 1
		if s.lines.Load() > 0 {
			s.log.Info("spool holds lines from an earlier run; they are replayed first", "lines", s.lines.Load(), "bytes", s.bytes.Load(), "segments", len(s.segs))
		}
	}
	if cur.seg == 0 {
		s.cursor, s.readEnd = pos{next, 0}, pos{next, 0}
	}
	return s.openSegment(next)
}

// scan adds up the records of a segment from off; in the newest segment
// (last) the payloads are checked too and a torn or damaged tail is cut off.
func (s *Spool) scan(seg uint64, off int64, last bool) (size, lines int64, err error) {
	f, err := os.OpenFile(s.segPath(seg), os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	end := st.Size()
	var hdr [hdrLen]byte
	var payload []byte
	for off < end {
		n, lc, ok := readHeader(f, off, end, hdr[:])
		if ok && last {
			payload = slices.Grow(payload[:0], n)[:n]
			_, err := f.ReadAt(payload, off+hdrLen)
			ok = err == nil && crc32.Checksum(payload, castagnoli) == binary.LittleEndian.Uint32(hdr[8:])
		}
		if !ok {
			if last {
				s.log.Warn("spool segment has a torn or damaged tail; cut off", "segment", seg, "offset", off, "bytes", end-off)
				s.corrupt.Add(end - off)
				if err := f.Truncate(off); err != nil {
					return 0, 0, err
				}
			}
			break // an older segment's damage is met (and logged) when read
		}
		size += hdrLen + int64(n)
		lines += int64(lc)
		off += hdrLen + int64(n)
	}
	return size, lines, nil
}

// readHeader reads the record header at off; ok is false when it is cut
// short or implausible.
func readHeader(f *os.File, off, size int64, hdr []byte) (n, lines int, ok bool) {
	if off+hdrLen > size {
		return 0, 0, false
	}
	if _, err := f.ReadAt(hdr, off); err != nil {
		return 0, 0, false
	}
	n = int(binary.LittleEndian.Uint32(hdr[0:]))
	lines = int(binary.LittleEndian.Uint32(hdr[4:]))
	if n == 0 || n > MaxRecord || lines == 0 || lines > n || off+hdrLen+int64(n) > size {
		return 0, 0, false
	}
	return n, lines, true
}

func (s *Spool) segPath(seg uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", seg))
}

// openSegment starts write segment seg. Callers hold s.mu (or own s).
func (s *Spool) openSegment(seg uint64) error {
	f, err := os.OpenFile(s.segPath(seg), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if s.w != nil {
		if s.dirty && s.opt.Fsync >= 0 {
			s.w.Sync()
		}
		s.w.Close()
	}
	s.w, s.wseg, s.woff, s.broken, s.dirty = f, seg, 0, false, false
	if len(s.segs) == 0 || s.segs[len(s.segs)-1] != seg {
		s.segs = append(s.segs, seg)
	}
	s.wpos.Store(&pos{seg, 0})
	return nil
}

// Put appends b's lines (as one record, or several of at most MaxRecord
// bytes). All or nothing: on error nothing of b is kept. It fails with
// ErrFull beyond the bound and with an ErrWrite error when the disk
// refuses; the caller keeps ownership of b either way.
func (s *Spool) Put(b *batch.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	size := int64(len(b.Buf)) + hdrLen*int64(len(b.Buf)/MaxRecord+1)
	if s.bytes.Load()+size > s.opt.MaxBytes {
		return ErrFull
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.wbuf = appendRecords(s.wbuf[:0], b)
	if s.broken || s.woff >= SegmentBytes {
		if err := s.openSegment(s.wseg + 1); err != nil {
			return fmt.Errorf("%w: %v", ErrWrite, err)
		}
	}
	if _, err := s.w.WriteAt(s.wbuf, s.woff); err != nil {
		// Take back a partial write so the segment stays readable; if even
		// that fails, the next Put starts a new segment.
		if s.w.Truncate(s.woff) != nil {
			s.broken = true
		}
		return fmt.Errorf("%w: %v", ErrWrite, err)
	}
	if s.opt.Fsync == 0 {
		if err := s.w.Sync(); err != nil {
			s.broken = true
			return fmt.Errorf("%w: fsync: %v", ErrWrite, err)
		}
	} else {
		s.dirty = true
	}
	s.woff += int64(len(s.wbuf))
	s.bytes.Add(int64(len(s.wbuf)))
	s.lines.Add(int64(b.Len()))
	s.wpos.Store(&pos{s.wseg, s.woff})
	if cap(s.wbuf) > 4*MaxRecord {
		s.wbuf = nil
	}
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return nil
}

// appendRecords encodes b as records of at most MaxRecord payload bytes,
// split at line boundaries (a line longer than MaxRecord is a record alone).
func appendRecords(dst []byte, b *batch.Batch) []byte {
	for i := 0; i < b.Len(); {
		start := int(b.Lines[i].Off)
		end, lines := start, 0
		for ; i < b.Len(); i++ {
			l := b.Lines[i]
			if lines > 0 && int(l.Off+l.Len)-start > MaxRecord {
				break
			}
			end = int(l.Off + l.Len)
			lines++
		}
		payload := b.Buf[start:end]
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(lines))
		dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
		dst = append(dst, payload...)
	}
	return dst
}

// Bytes is the size of what the spool holds (records not acknowledged).
func (s *Spool) Bytes() int64 { return max(s.bytes.Load(), 0) }

// Lines is the number of lines the spool holds.
func (s *Spool) Lines() int64 { return max(s.lines.Load(), 0) }

// Corrupt is the number of damaged bytes skipped since Open.
func (s *Spool) Corrupt() int64 { return s.corrupt.Load() }

// Empty reports whether everything spooled was acknowledged.
func (s *Spool) Empty() bool {
	s.amu.Lock()
	defer s.amu.Unlock()
	w := *s.wpos.Load()
	return len(s.inflight) == 0 && !s.readEnd.less(w)
}

// Close stops the reader, persists the cursor and fsyncs. Records handed
// out and not acknowledged are yielded again by the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.closing)
	s.wg.Wait()
	s.flushCursor(s.opt.Fsync >= 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.w != nil {
		if s.opt.Fsync >= 0 {
			err = s.w.Sync()
		}
		err = errors.Join(err, s.w.Close())
	}
	return errors.Join(err, s.curFile.Close())
}

// Remove closes the spool and deletes its directory; it fails, deleting
// nothing, unless the spool is empty.
func (s *Spool) Remove() error {
	if !s.Empty() {
		return fmt.Errorf("spool %s still holds %d lines", s.name, s.Lines())
	}
	if err := s.Close(); err != nil {
		return err
	}
	return os.RemoveAll(s.dir)
}

// ToBatch turns a spooled buffer back into a batch (names located again).
// Lines that are not newline-terminated are dropped; a spool written by
// polymur holds none.
func ToBatch(buf []byte) *batch.Batch {
	b := batch.Get()
	for len(buf) > 0 {
		nl := bytes.IndexByte(buf, '\n')
		if nl < 0 {
			break
		}
		line := buf[:nl+1]
		name := bytes.IndexByte(line, ' ')
		if name < 0 {
			name = nl
		}
		b.Append(line, name)
		buf = buf[nl+1:]
	}
	return b
}

var _ io.Closer = (*Spool)(nil)
