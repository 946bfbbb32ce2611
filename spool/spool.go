// Package spool is polymur's durable overflow: an append-only, on-disk FIFO
// of line batches per destination (or, for polymur-proxy, per gateway),
// bounded in bytes. It is built on github.com/nsqio/go-diskqueue — the queue
// nsqd and carbon-relay-ng use for exactly this — which gives segment files,
// crash-safe read/write positions and deletion of fully read segments, so we
// do not maintain a file format of our own. Like batch, it is a leaf of the
// data flow: pool and output use it; it uses only batch.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	diskqueue "github.com/nsqio/go-diskqueue"

	"github.com/polymur/polymur/batch"
)

// ErrFull is returned by Put when the spool has reached its byte bound.
var ErrFull = errors.New("spool full")

// Spool is one on-disk queue. Put and Chan are safe for concurrent use.
type Spool struct {
	name  string
	dq    diskqueue.Interface
	max   int64
	bytes atomic.Int64 // approximate bytes held (written minus read)
	lines atomic.Int64 // approximate lines held
}

const segmentBytes = 16 << 20

// Open opens (or creates) the spool called name in dir, bounded to max
// bytes. What a previous run left in it is read back first.
func Open(dir, name string, max int64, log *slog.Logger) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	file := FileName(name)
	logf := func(lvl diskqueue.LogLevel, f string, args ...any) {
		if lvl >= diskqueue.WARN {
			log.Warn("spool: "+fmt.Sprintf(f, args...), "spool", name)
		}
	}
	s := &Spool{name: name, max: max}
	s.dq = diskqueue.New(file, dir, segmentBytes, 1, 64<<20, 2500, time.Second, logf)
	// The bound counts what earlier runs left on disk.
	matches, _ := filepath.Glob(filepath.Join(dir, file+".diskqueue.*.dat"))
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil {
			s.bytes.Add(st.Size())
		}
	}
	return s, nil
}

// FileName makes a destination name safe as a file name.
func FileName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, name)
}

// Put appends b's lines. It fails with ErrFull beyond the bound; the caller
// keeps ownership of b either way.
func (s *Spool) Put(b *batch.Batch) error {
	n := int64(len(b.Buf)) + 4
	if s.bytes.Load()+n > s.max {
		return ErrFull
	}
	if err := s.dq.Put(b.Buf); err != nil {
		return err
	}
	s.bytes.Add(n)
	s.lines.Add(int64(b.Len()))
	return nil
}

// Chan yields spooled line buffers, oldest first. A received buffer is
// gone from the spool: the receiver must deliver it or Put it back.
func (s *Spool) Chan() <-chan []byte { return s.dq.ReadChan() }

// Taken accounts for a buffer received from Chan.
func (s *Spool) Taken(buf []byte, lines int) {
	s.bytes.Add(-int64(len(buf)) - 4)
	s.lines.Add(-int64(lines))
}

// Depth is the number of spooled batches.
func (s *Spool) Depth() int64 { return s.dq.Depth() }

// Bytes is the approximate size on disk.
func (s *Spool) Bytes() int64 { return max(s.bytes.Load(), 0) }

// Lines is the approximate number of spooled lines (this run's view).
func (s *Spool) Lines() int64 { return max(s.lines.Load(), 0) }

// Close flushes positions to disk; the spool can be opened again.
func (s *Spool) Close() error { return s.dq.Close() }

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
