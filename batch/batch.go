// Package batch is the leaf of polymur's data flow: it defines the Batch that
// carries Graphite plaintext lines from a listener through the destination set to a
// destination writer, the line validation that decides which lines enter the
// pipeline, and the splitter that turns a byte stream into batches.
//
// A Batch holds complete, newline-terminated lines in one contiguous buffer so
// that a destination writer can hand whole batches to a single write call.
// Batches are recycled through a sync.Pool and reference counted, so one batch
// can be queued to several destinations (broadcast) without copying.
package batch

import (
	"bytes"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Line locates one line inside Batch.Buf: the line starts at Off, its metric
// name is Buf[Off:Off+NameLen] and it ends with the '\n' at Off+Len-1.
type Line struct {
	Off     uint32
	NameLen uint32
	Len     uint32
}

// Batch is a run of complete Graphite lines, each terminated by '\n'.
//
// A Batch is not safe for concurrent mutation. Once handed to another stage
// (a channel, a queue, Pool.Send) the sender must not touch it again; readers
// that share it (broadcast) only read. The last holder calls Release.
type Batch struct {
	Buf   []byte
	Lines []Line
	// Done, when set, is called once when the last reference is released:
	// a batch replayed from a disk spool acknowledges its record then
	// (delivered, spooled again or counted as dropped, it is accounted for).
	Done func()
	// Src is the address of the client the lines came from (host only;
	// "" when unknown): what a "file ip" cluster writes before each line.
	Src string
	// Via, when set, is what made the lines inside the relay (an
	// aggregate's output: the routing table routes them by its rule).
	Via  any
	refs atomic.Int32
}

var pool = sync.Pool{New: func() any { return &Batch{Buf: make([]byte, 0, 8192), Lines: make([]Line, 0, 128)} }}

// Get returns an empty batch holding one reference.
func Get() *Batch {
	b := pool.Get().(*Batch)
	b.refs.Store(1)
	return b
}

// Len returns the number of lines in b.
func (b *Batch) Len() int { return len(b.Lines) }

// Bytes returns the size of b's buffer in bytes.
func (b *Batch) Bytes() int { return len(b.Buf) }

// Footprint is the memory b holds: its buffer's and line index's capacity.
func (b *Batch) Footprint() int64 {
	return int64(cap(b.Buf)) + int64(cap(b.Lines))*int64(unsafe.Sizeof(Line{}))
}

// Name returns the metric name of line i. The slice aliases b.Buf.
func (b *Batch) Name(i int) []byte {
	l := b.Lines[i]
	return b.Buf[l.Off : l.Off+l.NameLen]
}

// Line returns line i including its trailing '\n'. The slice aliases b.Buf.
func (b *Batch) Line(i int) []byte {
	l := b.Lines[i]
	return b.Buf[l.Off : l.Off+l.Len]
}

// Append adds one complete line (with its '\n') whose name is the first
// nameLen bytes.
func (b *Batch) Append(line []byte, nameLen int) {
	off := len(b.Buf)
	b.Buf = append(b.Buf, line...)
	b.Lines = append(b.Lines, Line{Off: uint32(off), NameLen: uint32(nameLen), Len: uint32(len(line))})
}

// AppendLine adds line i of src to b.
func (b *Batch) AppendLine(src *Batch, i int) {
	l := src.Lines[i]
	b.Append(src.Buf[l.Off:l.Off+l.Len], int(l.NameLen))
}

// AppendParts adds "name value ts\n" built from its parts; used for lines
// that needed normalising and for self-generated metrics.
func (b *Batch) AppendParts(name, value, ts []byte) {
	off := len(b.Buf)
	b.Buf = append(b.Buf, name...)
	b.Buf = append(b.Buf, ' ')
	b.Buf = append(b.Buf, value...)
	b.Buf = append(b.Buf, ' ')
	b.Buf = append(b.Buf, ts...)
	b.Buf = append(b.Buf, '\n')
	b.Lines = append(b.Lines, Line{Off: uint32(off), NameLen: uint32(len(name)), Len: uint32(len(b.Buf) - off)})
}

// Retain adds n references; each holder calls Release once.
func (b *Batch) Retain(n int) { b.refs.Add(int32(n)) }

// Release drops one reference and recycles the batch when none are left.
func (b *Batch) Release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		if done := b.Done; done != nil {
			b.Done = nil
			done()
		}
		if cap(b.Buf) > 1<<20 { // keep the pool from pinning rare huge buffers
			return
		}
		b.Buf = b.Buf[:0]
		b.Lines = b.Lines[:0]
		b.Src, b.Via = "", nil
		pool.Put(b)
	case n < 0:
		panic("batch: Release of a released batch")
	}
}

// LinesFrom returns a new batch holding the lines of b that start at or after
// byte offset off (which must be a line boundary), and the count of lines
// before it. It is used to requeue what a failed write did not deliver.
func (b *Batch) LinesFrom(off int) (rest *Batch, skipped int) {
	rest = Get()
	rest.Done, b.Done = b.Done, nil // the rest carries the acknowledgement
	rest.Src, rest.Via = b.Src, b.Via
	for i, l := range b.Lines {
		if int(l.Off) < off {
			skipped++
			continue
		}
		rest.AppendLine(b, i)
	}
	return rest, skipped
}

// Split copies the lines of b into at most ceil(len/max) batches of at most
// max lines each. b itself is left untouched.
func Split(b *Batch, max int) []*Batch {
	var out []*Batch
	for i := 0; i < b.Len(); i += max {
		n := Get()
		n.Src, n.Via = b.Src, b.Via
		for j := i; j < i+max && j < b.Len(); j++ {
			n.AppendLine(b, j)
		}
		out = append(out, n)
	}
	return out
}

// LineBoundary returns the end of the last complete line within buf[:n]
// (0 when no '\n' is in it): the number of bytes a partial write delivered
// as whole lines.
func LineBoundary(buf []byte, n int) int {
	return bytes.LastIndexByte(buf[:n], '\n') + 1
}
