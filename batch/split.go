package batch

import (
	"bytes"
	"io"
	"sync"
)

// Counts are the per-stream line counters a Splitter keeps; the owner folds
// them into shared counters as often as it likes (Take resets them).
type Counts struct {
	Accepted uint64
	Rejected [NumReasons]uint64
}

// Add adds o into c.
func (c *Counts) Add(o *Counts) {
	c.Accepted += o.Accepted
	for i := range c.Rejected {
		c.Rejected[i] += o.Rejected[i]
	}
}

const smallBuf = 2048

var bigBufs = sync.Pool{}

// Splitter turns a byte stream into validated lines. It owns its read
// buffer: while a stream is idle it holds only a small buffer, and it borrows
// a large one from a shared pool while data flows, so that thousands of idle
// connections stay cheap.
//
// A Splitter is used by one goroutine at a time.
type Splitter struct {
	level   Level
	maxLine int
	bigSize int

	buf        []byte
	start, end int  // unconsumed bytes are buf[start:end]
	skipping   bool // discarding the rest of an over-long line
	big        bool
	lastN      int

	slow   bool   // every line the full way (tests: the one-pass way must agree)
	prefix []byte // prepended to every accepted line's name
	tags   bool   // normalise tagged names (carbon's TAG_RELAY_NORMALIZED)
	tagBuf []byte

	Counts Counts
	// OnReject, when set, is told each rejected line (valid during the
	// call) and why: the reject log of the last bad lines.
	OnReject func(r Reason, line []byte)
}

// SetPrefix makes the splitter prepend p to every accepted metric name
// (polymur-gateway's -key-prefix).
func (s *Splitter) SetPrefix(p string) { s.prefix = []byte(p) }

// SetNormalizeTags makes the splitter send tagged names ("name;k=v;…")
// normalised as carbon's TAG_RELAY_NORMALIZED does (NormalizeTags), so that
// every spelling of a series is hashed and stored as one.
func (s *Splitter) SetNormalizeTags(on bool) { s.tags = on }

// NewSplitter returns a splitter that rejects lines longer than maxLine
// bytes (excluding the newline).
func NewSplitter(level Level, maxLine int) *Splitter {
	big := 64 << 10
	if maxLine+1 > big {
		big = maxLine + 1
	}
	return &Splitter{level: level, maxLine: maxLine, bigSize: big, buf: make([]byte, smallBuf)}
}

func (s *Splitter) getBig() []byte {
	if v, ok := bigBufs.Get().(*[]byte); ok && len(*v) >= s.bigSize {
		return *v
	}
	return make([]byte, s.bigSize)
}

// Fill reads once from r into the free part of the buffer and returns what
// Read returned.
func (s *Splitter) Fill(r io.Reader) (int, error) {
	pending := s.end - s.start
	switch {
	case pending == 0 && s.big && s.lastSmall():
		// Idle again: give the large buffer back.
		b := s.buf
		bigBufs.Put(&b)
		s.buf, s.big = make([]byte, smallBuf), false
		s.start, s.end = 0, 0
	case !s.big && (s.end == len(s.buf)):
		// A busy stream: move to a large buffer.
		nb := s.getBig()
		copy(nb, s.buf[s.start:s.end])
		s.buf, s.big = nb, true
		s.start, s.end = 0, pending
	case s.start > 0 && (s.end == len(s.buf) || pending == 0):
		copy(s.buf, s.buf[s.start:s.end])
		s.start, s.end = 0, pending
	}
	if s.end == len(s.buf) {
		// Cannot happen after Next (an over-long partial line is discarded),
		// but never hand Read an empty slice.
		s.start, s.end, s.skipping = 0, 0, true
	}
	n, err := r.Read(s.buf[s.end:])
	s.end += n
	s.lastN = n
	return n, err
}

func (s *Splitter) lastSmall() bool { return s.lastN < smallBuf }

// Next moves complete lines from the buffer into out until out holds max
// lines or no complete line is left. It reports whether it stopped because
// out is full.
func (s *Splitter) Next(out *Batch, max int) (full bool) {
	// The ordinary line, at a level that checks lines and with nothing to
	// add to it, is read in one pass up to its newline and copied whole.
	// A run of such lines, contiguous in the buffer, is copied at once
	// when it ends.
	plain := s.level != LevelOff && s.level != LevelStatsd && !s.tags && len(s.prefix) == 0 && !s.slow
	run := s.start // the run is s.buf[run:s.start]
	flush := func() {
		out.Buf = append(out.Buf, s.buf[run:s.start]...)
		run = s.start
	}
	defer flush()
	for out.Len() < max {
		data := s.buf[s.start:s.end]
		if plain && !s.skipping {
			if nameLen, _, end := plainScan(data); nameLen > 0 && end < len(data) && data[end] == '\n' && end <= s.maxLine {
				off := len(out.Buf) + s.start - run
				out.Lines = append(out.Lines, Line{Off: uint32(off), NameLen: uint32(nameLen), Len: uint32(end + 1)})
				s.Counts.Accepted++
				s.start += end + 1
				continue
			}
		}
		flush()
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			s.checkOverlong()
			run = s.start
			return false
		}
		if s.skipping {
			s.skipping = false
		} else {
			s.take(out, data[:nl])
		}
		s.start += nl + 1
		run = s.start
	}
	return true
}

func (s *Splitter) rejected(r Reason, line []byte) {
	s.Counts.Rejected[r]++
	if s.OnReject != nil {
		s.OnReject(r, line)
	}
}

// checkOverlong starts discarding a partial line that can no longer fit.
func (s *Splitter) checkOverlong() {
	pending := s.end - s.start
	if s.skipping {
		s.start = s.end // drop everything until the next newline
		return
	}
	if pending > s.maxLine {
		s.rejected(ReasonTooLong, s.buf[s.start:s.end])
		s.skipping = true
		s.start = s.end
	}
}

// Final treats an unterminated last line (stream closed without '\n') as a
// line, as carbon clients like `echo -n … | nc` expect.
func (s *Splitter) Final(out *Batch) {
	if s.end > s.start && !s.skipping {
		s.take(out, s.buf[s.start:s.end])
	}
	s.start, s.end, s.skipping = 0, 0, false
}

// Abandon ends a stream that closed in the middle of a line: the partial
// line is dropped and counted (ReasonUnterminated), as carbon does — on a
// TCP connection it is what a crashed or killed sender leaves.
func (s *Splitter) Abandon() {
	if s.end > s.start && !s.skipping {
		s.rejected(ReasonUnterminated, s.buf[s.start:s.end])
	}
	s.start, s.end, s.skipping = 0, 0, false
}

// Release returns a borrowed large buffer; the splitter must not be used
// afterwards.
func (s *Splitter) Release() {
	if s.big {
		b := s.buf
		bigBufs.Put(&b)
	}
	s.buf, s.big = nil, false
}

func (s *Splitter) take(out *Batch, line []byte) {
	if len(line) > s.maxLine {
		s.rejected(ReasonTooLong, line)
		return
	}
	if s.level == LevelStatsd && len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	p, r := Parse(line, s.level)
	if r != ReasonOK {
		s.rejected(r, line)
		return
	}
	s.Counts.Accepted++
	if s.tags && IsTagged(p.Name) {
		if n, ok := NormalizeTags(s.tagBuf[:0], p.Name); ok {
			s.tagBuf = n
			if !bytes.Equal(n, p.Name) {
				p.Name, p.Canonical = n, false
			}
		}
	}
	if len(s.prefix) > 0 {
		off := len(out.Buf)
		out.Buf = append(out.Buf, s.prefix...)
		if p.Canonical {
			out.Buf = append(out.Buf, bytes.TrimLeft(line, " \t\r\v\f")...)
			out.Buf = append(out.Buf, '\n')
		} else {
			out.Buf = append(append(append(append(append(out.Buf, p.Name...), ' '), p.Value...), ' '), p.TS...)
			out.Buf = append(out.Buf, '\n')
		}
		out.Lines = append(out.Lines, Line{Off: uint32(off), NameLen: uint32(len(s.prefix) + len(p.Name)), Len: uint32(len(out.Buf) - off)})
		return
	}
	if p.Canonical {
		off := len(out.Buf)
		out.Buf = append(out.Buf, line...)
		out.Buf = append(out.Buf, '\n')
		out.Lines = append(out.Lines, Line{Off: uint32(off), NameLen: uint32(len(p.Name)), Len: uint32(len(line) + 1)})
		return
	}
	out.AppendParts(p.Name, p.Value, p.TS)
}

// AddLine validates one line (without '\n') and appends it to out when it is
// accepted, counting the outcome in s.Counts. It is the entry point for
// callers that already hold whole lines (the HTTP ingest).
func (s *Splitter) AddLine(out *Batch, line []byte) { s.take(out, line) }
