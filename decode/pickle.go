// Package decode turns the protocols polymur accepts besides plaintext into
// plaintext Graphite lines, so that every point goes through the same
// validation, routing and delivery: carbon's pickle protocol (what Python
// carbon-relay and carbon-relay-ng send to port 2004). Decoders read an
// io.Reader and are io.Readers of lines; they never construct arbitrary
// objects.
package decode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// DefaultMaxFrame is the largest pickle frame accepted by default (1 MiB;
// carbon-relay sends at most MAX_DATAPOINTS_PER_MESSAGE = 500 points, a few
// tens of KiB).
const DefaultMaxFrame = 1 << 20

// Error is a frame that cannot be decoded: the connection is closed, and
// Reason is the counted rejection.
type Error struct {
	Reason string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Reasons of Error, as counted in rejections.
const (
	ReasonFrameTooLarge = "pickle_frame_too_large"
	ReasonMalformed     = "pickle_malformed"
	ReasonForbidden     = "pickle_forbidden_opcode" // GLOBAL, REDUCE, BUILD…: objects we never construct
	ReasonNotPoints     = "pickle_not_points"       // a frame that is not a list
)

// ReasonBadPoint counts points of a good frame that are not (path,
// (timestamp, value)) with a string path and numbers; they are skipped, as
// carbon skips them.
const ReasonBadPoint = "pickle_bad_point"

func errf(reason, format string, args ...any) error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// PickleReader reads carbon pickle frames (a 4-byte big-endian length, then
// a pickled list of (path, (timestamp, value)) tuples, protocols 0 to 5)
// from r and yields them as plaintext lines "path value timestamp\n". Not
// safe for concurrent use.
type PickleReader struct {
	r        *bufio.Reader
	max      int
	hdr      [4]byte
	hdrN     int // header bytes read
	frame    []byte
	got      int    // frame bytes read
	out      []byte // decoded lines not yet read
	BadPoint uint64 // points skipped (ReasonBadPoint)
	Frames   uint64
	vm       machine
}

// NewPickleReader reads frames of at most maxFrame bytes (≤0: DefaultMaxFrame).
func NewPickleReader(r io.Reader, maxFrame int) *PickleReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &PickleReader{r: bufio.NewReaderSize(r, 64<<10), max: maxFrame}
}

// Read fills p with decoded lines. At the end of the stream between frames
// it returns io.EOF; a stream cut inside a frame is io.ErrUnexpectedEOF; a
// frame that cannot be decoded is an *Error.
func (pr *PickleReader) Read(p []byte) (int, error) {
	for len(pr.out) == 0 {
		if err := pr.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, pr.out)
	pr.out = pr.out[n:]
	return n, nil
}

func (pr *PickleReader) next() error {
	// Resumable: a read that fails (a deadline, say) leaves the frame half
	// read, and the next call goes on from there.
	for pr.hdrN < 4 {
		n, err := pr.r.Read(pr.hdr[pr.hdrN:])
		pr.hdrN += n
		if err != nil {
			if errors.Is(err, io.EOF) && pr.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	size := binary.BigEndian.Uint32(pr.hdr[:])
	if int64(size) > int64(pr.max) {
		return errf(ReasonFrameTooLarge, "pickle frame of %d bytes exceeds the limit of %d (-pickle-max-frame)", size, pr.max)
	}
	if cap(pr.frame) < int(size) {
		pr.frame = make([]byte, 0, size)
	}
	pr.frame = pr.frame[:size]
	for pr.got < int(size) {
		n, err := pr.r.Read(pr.frame[pr.got:])
		pr.got += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	pr.hdrN, pr.got = 0, 0
	v, err := pr.vm.run(pr.frame)
	if err != nil {
		return err
	}
	pr.Frames++
	list, ok := v.(*pyList)
	if !ok {
		tup, isTuple := v.(pyTuple)
		if !isTuple {
			return errf(ReasonNotPoints, "pickle frame holds %s, not a list of points", typeName(v))
		}
		list = &pyList{items: tup}
	}
	out := pr.out[:0]
	for _, it := range list.items {
		var ok bool
		if out, ok = appendPoint(out, it); !ok {
			pr.BadPoint++
		}
	}
	pr.out = out
	return nil
}

// appendPoint appends "path value ts\n" for (path, (ts, value)).
func appendPoint(dst []byte, v any) ([]byte, bool) {
	pair := sequence(v)
	if len(pair) != 2 {
		return dst, false
	}
	path, ok := pair[0].(string)
	if !ok || path == "" || strings.ContainsAny(path, " \t\r\n") {
		return dst, false
	}
	dp := sequence(pair[1])
	if len(dp) != 2 {
		return dst, false
	}
	ts, ok1 := number(dp[0])
	val, ok2 := number(dp[1])
	if !ok1 || !ok2 || math.IsNaN(ts) || math.IsInf(ts, 0) {
		return dst, false
	}
	dst = append(dst, path...)
	dst = append(dst, ' ')
	dst = strconv.AppendFloat(dst, val, 'f', -1, 64)
	dst = append(dst, ' ')
	if ts == math.Trunc(ts) && math.Abs(ts) < 1<<53 {
		dst = strconv.AppendInt(dst, int64(ts), 10)
	} else {
		dst = strconv.AppendFloat(dst, ts, 'f', -1, 64)
	}
	return append(dst, '\n'), true
}

func sequence(v any) []any {
	switch s := v.(type) {
	case pyTuple:
		return s
	case *pyList:
		return s.items
	}
	return nil
}

// number is carbon's float(x) for the values a point may hold.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case bool:
		if n {
			return 1, true
		}
		return 0, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(n).Float64()
		return f, !math.IsInf(f, 0)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		return f, err == nil
	}
	return 0, false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "a string"
	case int64, *big.Int:
		return "an int"
	case float64:
		return "a float"
	case bool:
		return "a bool"
	case []byte:
		return "bytes"
	}
	return fmt.Sprintf("%T", v)
}
