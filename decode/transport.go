package decode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/pierrec/lz4/v4"
)

// Transports of a link, as carbon-c-relay names them.
const (
	Plain  = "plain"
	Gzip   = "gzip"
	LZ4    = "lz4"
	Snappy = "snappy"
)

// ValidTransport reports whether t is one of the transports.
func ValidTransport(t string) bool {
	return t == Plain || t == Gzip || t == LZ4 || t == Snappy
}

// Encoder compresses one connection's stream the way carbon-c-relay does:
// gzip is one continuous stream, flushed at every Flush; lz4 writes one
// complete LZ4 frame per Flush; snappy one raw snappy block per Flush (no
// framing). Not safe for concurrent use.
type Encoder struct {
	kind string
	w    io.Writer
	gz   *gzip.Writer
	buf  bytes.Buffer // lz4, snappy: what the next Flush compresses
	out  []byte
	lz   *lz4.Writer
}

// NewEncoder compresses onto w (plain: passes through).
func NewEncoder(kind string, w io.Writer) *Encoder {
	e := &Encoder{kind: kind, w: w}
	if kind == Gzip {
		e.gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
	}
	return e
}

// Write takes data for the next Flush (plain: writes it at once).
func (e *Encoder) Write(p []byte) (int, error) {
	switch e.kind {
	case Gzip:
		return e.gz.Write(p)
	case LZ4, Snappy:
		return e.buf.Write(p)
	}
	return e.w.Write(p)
}

// Flush writes what was written since the last Flush, compressed, to the
// connection; the error is the connection's.
func (e *Encoder) Flush() error {
	switch e.kind {
	case Gzip:
		return e.gz.Flush()
	case LZ4:
		if e.buf.Len() == 0 {
			return nil
		}
		var frame bytes.Buffer
		if e.lz == nil {
			e.lz = lz4.NewWriter(&frame)
			// 64 KiB blocks, liblz4's default: a reader needs no more.
			if err := e.lz.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
				return err
			}
		} else {
			e.lz.Reset(&frame)
		}
		if _, err := e.lz.Write(e.buf.Bytes()); err != nil {
			return err
		}
		if err := e.lz.Close(); err != nil {
			return err
		}
		e.buf.Reset()
		_, err := e.w.Write(frame.Bytes())
		return err
	case Snappy:
		if e.buf.Len() == 0 {
			return nil
		}
		e.out = snappy.Encode(e.out[:cap(e.out)], e.buf.Bytes())
		e.buf.Reset()
		_, err := e.w.Write(e.out)
		return err
	}
	return nil
}

// NewDecoder reads a connection's stream compressed with kind as lines
// (plain: r itself). maxBlock bounds what a snappy block may decompress
// to. Errors are *Error (counted, the connection closed) or the
// connection's.
func NewDecoder(kind string, r io.Reader, maxBlock int) (io.Reader, error) {
	switch kind {
	case Gzip:
		return &gzipReader{r: r}, nil
	case LZ4:
		return newLZ4Reader(r), nil
	case Snappy:
		return &snappyReader{r: r, max: maxBlock}, nil
	case Plain, "":
		return r, nil
	}
	return nil, fmt.Errorf("unknown transport %q", kind)
}

// Reasons a compressed stream is refused.
const (
	ReasonGzip   = "gzip_malformed"
	ReasonLZ4    = "lz4_malformed"
	ReasonSnappy = "snappy_malformed"
)

// gzipReader opens the stream at the first read (the header blocks).
type gzipReader struct {
	r  io.Reader
	zr *gzip.Reader
}

func (g *gzipReader) Read(p []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.r)
		if err != nil {
			return 0, streamErr(ReasonGzip, err)
		}
		g.zr = zr
	}
	n, err := g.zr.Read(p)
	return n, streamErr(ReasonGzip, err)
}

// lz4Reader reads a sequence of LZ4 frames (LZ4F format, as liblz4 and
// carbon-c-relay write them: independent or linked blocks, with or without
// checksums) and yields each block as soon as it is read — a frame need not
// be followed by the next one for its data to come out.
type lz4Reader struct {
	r       *bufio.Reader
	inFrame bool
	linked  bool
	blockCk bool
	contCk  bool
	maxBlk  int
	in, out []byte
	off     int
	dict    []byte // the last 64 KiB of output, for linked blocks
}

func newLZ4Reader(r io.Reader) *lz4Reader { return &lz4Reader{r: bufio.NewReaderSize(r, 64<<10)} }

func (l *lz4Reader) Read(p []byte) (int, error) {
	for l.off == len(l.out) {
		if err := l.next(); err != nil {
			return 0, streamErr(ReasonLZ4, err)
		}
	}
	n := copy(p, l.out[l.off:])
	l.off += n
	return n, nil
}

func lz4Err(format string, args ...any) error {
	return &Error{Reason: ReasonLZ4, Msg: "lz4: " + fmt.Sprintf(format, args...)}
}

// next reads one block (or a frame header or end) into l.out.
func (l *lz4Reader) next() error {
	l.out, l.off = l.out[:0], 0
	if !l.inFrame {
		var hdr [7]byte
		if _, err := io.ReadFull(l.r, hdr[:4]); err != nil {
			return err // io.EOF between frames
		}
		if binary.LittleEndian.Uint32(hdr[:4]) != 0x184D2204 {
			return lz4Err("not an LZ4 frame (magic %x)", hdr[:4])
		}
		if _, err := io.ReadFull(l.r, hdr[4:6]); err != nil {
			return noEOF(err)
		}
		flg, bd := hdr[4], hdr[5]
		if flg>>6 != 1 {
			return lz4Err("frame version %d", flg>>6)
		}
		l.linked, l.blockCk, l.contCk = flg&0x20 == 0, flg&0x10 != 0, flg&0x04 != 0
		sizes := map[byte]int{4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}
		if l.maxBlk = sizes[bd>>4&7]; l.maxBlk == 0 {
			return lz4Err("block size code %d", bd>>4&7)
		}
		skip := 1 // the header checksum
		if flg&0x08 != 0 {
			skip += 8 // content size
		}
		if flg&0x01 != 0 {
			skip += 4 // dictionary id
		}
		if _, err := l.r.Discard(skip); err != nil {
			return noEOF(err)
		}
		l.inFrame, l.dict = true, l.dict[:0]
		return nil
	}
	var sz [4]byte
	if _, err := io.ReadFull(l.r, sz[:]); err != nil {
		return noEOF(err)
	}
	size := binary.LittleEndian.Uint32(sz[:])
	if size == 0 { // end mark
		l.inFrame = false
		if l.contCk {
			if _, err := l.r.Discard(4); err != nil {
				return noEOF(err)
			}
		}
		return nil
	}
	raw, n := size&0x80000000 != 0, int(size&0x7fffffff)
	if n > l.maxBlk {
		return lz4Err("block of %d bytes in a frame of %d-byte blocks", n, l.maxBlk)
	}
	if cap(l.in) < n {
		l.in = make([]byte, n)
	}
	l.in = l.in[:n]
	if _, err := io.ReadFull(l.r, l.in); err != nil {
		return noEOF(err)
	}
	if l.blockCk {
		if _, err := l.r.Discard(4); err != nil {
			return noEOF(err)
		}
	}
	if raw {
		l.out = append(l.out, l.in...)
	} else {
		if cap(l.out) < l.maxBlk {
			l.out = make([]byte, l.maxBlk)
		}
		var m int
		var err error
		if l.linked && len(l.dict) > 0 {
			m, err = lz4.UncompressBlockWithDict(l.in, l.out[:l.maxBlk], l.dict)
		} else {
			m, err = lz4.UncompressBlock(l.in, l.out[:l.maxBlk])
		}
		if err != nil {
			return lz4Err("%v", err)
		}
		l.out = l.out[:m]
	}
	if l.linked {
		l.dict = append(l.dict, l.out...)
		if len(l.dict) > 64<<10 {
			l.dict = append(l.dict[:0], l.dict[len(l.dict)-64<<10:]...)
		}
	}
	return nil
}

// noEOF: the stream ended inside a frame.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// streamErr marks a decompressor's complaint about the data as an *Error;
// the connection's own errors (and io.EOF) pass as they are.
func streamErr(reason string, err error) error {
	var oe *net.OpError
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, net.ErrClosed), errors.As(err, &oe):
		return err
	}
	return &Error{Reason: reason, Msg: fmt.Sprintf("%s: %v", reason, err)}
}

// snappyReader decompresses raw snappy blocks, carbon-c-relay's format (a
// block per flush, no framing). It finds where each block ends by walking
// its elements, so blocks split over reads or glued together in one are
// read correctly (carbon-c-relay itself needs each read to be one block).
type snappyReader struct {
	r   io.Reader
	max int
	in  []byte
	out []byte
	off int
}

func (s *snappyReader) Read(p []byte) (int, error) {
	for s.off == len(s.out) {
		if end, err := snappyBlockEnd(s.in, s.max); err != nil {
			return 0, err
		} else if end > 0 {
			out, derr := snappy.Decode(s.out[:cap(s.out)], s.in[:end])
			if derr != nil {
				return 0, &Error{Reason: ReasonSnappy, Msg: "snappy: " + derr.Error()}
			}
			s.out, s.off = out, 0
			s.in = append(s.in[:0], s.in[end:]...)
			continue
		}
		if len(s.in) == cap(s.in) {
			s.in = append(s.in, make([]byte, 64<<10)...)[:len(s.in)]
		}
		n, err := s.r.Read(s.in[len(s.in):cap(s.in)])
		s.in = s.in[:len(s.in)+n]
		if err != nil {
			if n > 0 {
				continue // decode what came first
			}
			if errors.Is(err, io.EOF) && len(s.in) > 0 {
				return 0, &Error{Reason: ReasonSnappy, Msg: "snappy: the stream ended inside a block"}
			}
			return 0, err
		}
	}
	n := copy(p, s.out[s.off:])
	s.off += n
	return n, nil
}

// snappyBlockEnd returns the length of the whole raw snappy block at the
// start of b, 0 when b holds only part of one, or an *Error when it is not
// a block (or would decode to more than max bytes).
func snappyBlockEnd(b []byte, max int) (int, error) {
	bad := func(why string) (int, error) { return 0, &Error{Reason: ReasonSnappy, Msg: "snappy: " + why} }
	want, i := uint64(0), 0
	for shift := uint(0); ; shift += 7 {
		if i == len(b) {
			return 0, nil
		}
		if shift > 28 {
			return bad("bad block length")
		}
		c := b[i]
		i++
		want |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	if want > uint64(max) {
		return bad(fmt.Sprintf("block of %d bytes exceeds %d", want, max))
	}
	for got := uint64(0); got < want; {
		if i == len(b) {
			return 0, nil
		}
		tag := b[i]
		var n, skip int
		switch tag & 3 {
		case 0: // literal
			n = int(tag>>2) + 1
			skip = 1
			if x := int(tag >> 2); x >= 60 {
				w := x - 59 // 1..4 length bytes
				if i+1+w > len(b) {
					return 0, nil
				}
				n = 0
				for k := w - 1; k >= 0; k-- {
					n = n<<8 | int(b[i+1+k])
				}
				n++
				skip = 1 + w
			}
			skip += n
		case 1:
			n, skip = int(tag>>2&7)+4, 2
		case 2:
			n, skip = int(tag>>2)+1, 3
		case 3:
			n, skip = int(tag>>2)+1, 5
		}
		if i+skip > len(b) {
			return 0, nil
		}
		i += skip
		got += uint64(n)
		if got > want {
			return bad("block longer than its length")
		}
	}
	return i, nil
}
