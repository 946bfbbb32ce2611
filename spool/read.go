package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"time"

	"github.com/polymur/polymur/batch"
)

// Record is one spooled batch as Chan yields it; Batch turns it back into a
// batch.
type Record struct {
	buf   []byte
	lines int
	at    pos
	end   int64
}

// Lines is the number of lines in the record.
func (r Record) Lines() int { return r.lines }

// taken is a record handed out and not yet acknowledged.
type taken struct {
	at    pos
	size  int64
	lines int
	acked bool
}

// Chan yields spooled records, oldest first. Each must be turned into a
// batch with Batch, whose release acknowledges it.
func (s *Spool) Chan() <-chan Record { return s.out }

// Batch turns a record from Chan into a batch (names located again). The
// record stays in the spool until the batch's last reference is released.
func (s *Spool) Batch(r Record) *batch.Batch {
	b := ToBatch(r.buf)
	b.Done = func() { s.ack(r) }
	return b
}

// readLoop hands out records in order until Close.
func (s *Spool) readLoop() {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	s.amu.Lock()
	at := s.readEnd
	s.amu.Unlock()
	var hdr [hdrLen]byte
	fsize := int64(-1) // size of f once it is no longer the write segment
	for {
		w := *s.wpos.Load()
		if !at.less(w) {
			select {
			case <-s.wrote:
				continue
			case <-s.closing:
				return
			}
		}
		if f == nil {
			var err error
			if f, err = os.Open(s.segPath(at.seg)); err != nil {
				s.log.Error("spool segment unreadable; skipped", "segment", at.seg, "err", err)
				at = s.nextSegment(at.seg)
				continue
			}
			fsize = -1
		}
		limit := w.off
		if at.seg != w.seg {
			if fsize < 0 {
				fsize = 0
				if st, err := f.Stat(); err == nil {
					fsize = st.Size()
				}
			}
			limit = fsize
		}
		if at.off >= limit && at.seg != w.seg {
			f.Close()
			f = nil
			at = s.nextSegment(at.seg)
			continue
		}
		n, lines, ok := readHeader(f, at.off, limit, hdr[:])
		var buf []byte
		if ok {
			buf = make([]byte, n)
			_, err := f.ReadAt(buf, at.off+hdrLen)
			ok = err == nil && crc32.Checksum(buf, castagnoli) == binary.LittleEndian.Uint32(hdr[8:])
		}
		if !ok {
			s.log.Error("spool segment damaged: the rest of it is skipped", "segment", at.seg, "offset", at.off, "bytes", limit-at.off)
			s.corrupt.Add(limit - at.off)
			s.bytes.Add(-(limit - at.off))
			f.Close()
			f = nil
			if at.seg == w.seg {
				return // cannot happen: this run wrote it
			}
			at = s.nextSegment(at.seg)
			continue
		}
		rec := Record{buf: buf, lines: lines, at: at, end: at.off + hdrLen + int64(n)}
		s.amu.Lock()
		s.inflight = append(s.inflight, taken{at: at, size: hdrLen + int64(n), lines: lines})
		s.readEnd = pos{at.seg, rec.end}
		s.amu.Unlock()
		select {
		case s.out <- rec:
		case <-s.closing:
			return // not handed out: it stays before the cursor
		}
		at.off = rec.end
	}
}

// nextSegment is the first segment on disk after seg (the write segment at
// the latest).
func (s *Spool) nextSegment(seg uint64) pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.segs {
		if n > seg {
			s.amu.Lock()
			s.readEnd = pos{n, 0}
			if len(s.inflight) == 0 {
				s.cursor, s.curDirty = s.readEnd, true
			}
			s.amu.Unlock()
			return pos{n, 0}
		}
	}
	return pos{s.wseg, 0}
}

// ack acknowledges a record: the cursor moves past every acknowledged
// record at the head.
func (s *Spool) ack(r Record) {
	s.amu.Lock()
	for i := range s.inflight {
		if s.inflight[i].at == r.at && !s.inflight[i].acked {
			s.inflight[i].acked = true
			s.bytes.Add(-s.inflight[i].size)
			s.lines.Add(-int64(s.inflight[i].lines))
			break
		}
	}
	moved := false
	for len(s.inflight) > 0 && s.inflight[0].acked {
		s.inflight = s.inflight[1:]
		moved = true
	}
	if moved {
		if len(s.inflight) > 0 {
			s.cursor = s.inflight[0].at
		} else {
			s.cursor = s.readEnd
		}
		s.curDirty = true
	}
	s.amu.Unlock()
	if moved {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// syncLoop writes the cursor after acknowledgements (at most every
// CursorDelay), deletes segments behind it, and fsyncs on the Fsync period.
func (s *Spool) syncLoop() {
	period := s.opt.Fsync
	if period <= 0 {
		period = time.Hour
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-s.kick:
			s.flushCursor(false)
			t := time.NewTimer(CursorDelay)
			select {
			case <-t.C:
			case <-s.closing:
				t.Stop()
				return
			}
		case <-tick.C:
			if s.opt.Fsync > 0 {
				s.mu.Lock()
				if s.dirty && s.w != nil {
					s.w.Sync()
					s.dirty = false
				}
				s.mu.Unlock()
				s.flushCursor(true)
			}
		case <-s.closing:
			return
		}
	}
}

// flushCursor persists the cursor if it moved and removes the segments it
// has left behind.
func (s *Spool) flushCursor(sync bool) {
	s.amu.Lock()
	cur, dirty := s.cursor, s.curDirty
	s.curDirty = false
	s.amu.Unlock()
	if dirty {
		var b [cursorLen]byte
		binary.LittleEndian.PutUint32(b[0:], cursorMagic)
		binary.LittleEndian.PutUint64(b[4:], cur.seg)
		binary.LittleEndian.PutUint64(b[12:], uint64(cur.off))
		binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
		if _, err := s.curFile.WriteAt(b[:], 0); err != nil {
			s.log.Error("spool cursor write failed (lines may be delivered twice after a restart)", "err", err)
		}
	}
	if sync {
		s.curFile.Sync()
	}
	s.mu.Lock()
	s.amu.Lock()
	if len(s.inflight) == 0 && !s.readEnd.less(*s.wpos.Load()) {
		s.bytes.Store(0) // caught up: what the counters say is exact again
		s.lines.Store(0)
	}
	s.amu.Unlock()
	for len(s.segs) > 0 && s.segs[0] < cur.seg && s.segs[0] != s.wseg {
		if err := os.Remove(s.segPath(s.segs[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing a delivered spool segment failed", "segment", s.segs[0], "err", err)
			break
		}
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
}

func (s *Spool) readCursor() (pos, bool) {
	var b [cursorLen]byte
	if _, err := s.curFile.ReadAt(b[:], 0); err != nil {
		return pos{}, false
	}
	if binary.LittleEndian.Uint32(b[0:]) != cursorMagic || crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:]) {
		return pos{}, false
	}
	return pos{binary.LittleEndian.Uint64(b[4:]), int64(binary.LittleEndian.Uint64(b[12:]))}, true
}
