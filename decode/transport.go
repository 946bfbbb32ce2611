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

// snappyReader decompresses raw snappy blocks, as carbon-c-relay does: each
// read is taken to end a block; when what was read does not decompress yet,
// more is read until it does (up to max). This only works when blocks
// arrive whole and apart, carbon-c-relay's own limitation.
type snappyReader struct {
	r   io.Reader
	max int
	in  []byte
	out []byte
	off int
}

func (s *snappyReader) Read(p []byte) (int, error) {
	for s.off == len(s.out) {
		if len(s.in) >= cap(s.in) {
			s.in = append(s.in, make([]byte, 64<<10)...)[:len(s.in)]
		}
		n, err := s.r.Read(s.in[len(s.in):cap(s.in)])
		s.in = s.in[:len(s.in)+n]
		if len(s.in) > 0 {
			if size, derr := snappy.DecodedLen(s.in); derr == nil && size <= s.max {
				if out, derr := snappy.Decode(s.out[:0], s.in); derr == nil {
					s.out, s.off, s.in = out, 0, s.in[:0]
					continue
				}
			} else if derr == nil {
				return 0, &Error{Reason: ReasonSnappy, Msg: fmt.Sprintf("snappy block of %d bytes exceeds %d", size, s.max)}
			}
			if len(s.in) > s.max {
				return 0, &Error{Reason: ReasonSnappy, Msg: "snappy: data that is no whole block"}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(s.in) > 0 {
				return 0, &Error{Reason: ReasonSnappy, Msg: "snappy: stream ended in a block"}
			}
			return 0, err
		}
	}
	n := copy(p, s.out[s.off:])
	s.off += n
	return n, nil
}
