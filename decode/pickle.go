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
	"unicode/utf8"
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

// pyList is a list (mutable: APPEND works on it through the memo).
type pyList struct{ items []any }

// pyTuple is a tuple.
type pyTuple []any

// mark is the MARK opcode's stack marker.
type mark struct{}

// machine is a restricted pickle machine: lists, tuples, strings, bytes,
// ints, floats, bools and None, with the memo — nothing that names a class
// or calls one.
type machine struct {
	stack []any
	memo  map[uint64]any
}

func (m *machine) pop() (any, error) {
	if len(m.stack) == 0 {
		return nil, errf(ReasonMalformed, "pickle: stack underflow")
	}
	v := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	if _, isMark := v.(mark); isMark {
		return nil, errf(ReasonMalformed, "pickle: unexpected MARK")
	}
	return v, nil
}

// popMark pops everything above the topmost MARK (and the MARK).
func (m *machine) popMark() ([]any, error) {
	for i := len(m.stack) - 1; i >= 0; i-- {
		if _, ok := m.stack[i].(mark); ok {
			items := append([]any(nil), m.stack[i+1:]...)
			m.stack = m.stack[:i]
			return items, nil
		}
	}
	return nil, errf(ReasonMalformed, "pickle: no MARK on the stack")
}

// run executes one frame and returns the value STOP leaves.
func (m *machine) run(b []byte) (any, error) {
	m.stack = m.stack[:0]
	clear(m.memo)
	if m.memo == nil {
		m.memo = map[uint64]any{}
	}
	i := 0
	need := func(n int) ([]byte, error) {
		if n < 0 || i+n > len(b) {
			return nil, errf(ReasonMalformed, "pickle: truncated at byte %d", i)
		}
		s := b[i : i+n]
		i += n
		return s, nil
	}
	line := func() (string, error) {
		j := i
		for j < len(b) && b[j] != '\n' {
			j++
		}
		if j == len(b) {
			return "", errf(ReasonMalformed, "pickle: unterminated argument at byte %d", i)
		}
		s := string(b[i:j])
		i = j + 1
		return s, nil
	}
	u := func(n int) (uint64, error) {
		s, err := need(n)
		if err != nil {
			return 0, err
		}
		var v uint64
		for k := n - 1; k >= 0; k-- {
			v = v<<8 | uint64(s[k])
		}
		return v, nil
	}
	push := func(v any) { m.stack = append(m.stack, v) }
	for i < len(b) {
		op := b[i]
		i++
		switch op {
		case 0x80: // PROTO
			if _, err := need(1); err != nil {
				return nil, err
			}
		case 0x95: // FRAME (protocol 4): an 8-byte length, nothing to do
			if _, err := need(8); err != nil {
				return nil, err
			}
		case '.': // STOP
			v, err := m.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case '(': // MARK
			push(mark{})
		case ']': // EMPTY_LIST
			push(&pyList{})
		case ')': // EMPTY_TUPLE
			push(pyTuple{})
		case 'l', 't': // LIST, TUPLE
			items, err := m.popMark()
			if err != nil {
				return nil, err
			}
			if op == 'l' {
				push(&pyList{items: items})
			} else {
				push(pyTuple(items))
			}
		case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
			n := int(op - 0x84)
			if len(m.stack) < n {
				return nil, errf(ReasonMalformed, "pickle: stack underflow")
			}
			t := make(pyTuple, n)
			for k := n - 1; k >= 0; k-- {
				v, err := m.pop()
				if err != nil {
					return nil, err
				}
				t[k] = v
			}
			push(t)
		case 'a': // APPEND
			v, err := m.pop()
			if err != nil {
				return nil, err
			}
			l, err := m.topList()
			if err != nil {
				return nil, err
			}
			l.items = append(l.items, v)
		case 'e': // APPENDS
			items, err := m.popMark()
			if err != nil {
				return nil, err
			}
			l, err := m.topList()
			if err != nil {
				return nil, err
			}
			l.items = append(l.items, items...)
		case 'N':
			push(nil)
		case 0x88:
			push(true)
		case 0x89:
			push(false)
		case 'I': // INT (also I00/I01 for bools)
			s, err := line()
			if err != nil {
				return nil, err
			}
			switch s {
			case "00":
				push(false)
			case "01":
				push(true)
			default:
				v, err := parseInt(s)
				if err != nil {
					return nil, err
				}
				push(v)
			}
		case 'L': // LONG
			s, err := line()
			if err != nil {
				return nil, err
			}
			v, err := parseInt(strings.TrimSuffix(s, "L"))
			if err != nil {
				return nil, err
			}
			push(v)
		case 'J': // BININT
			v, err := u(4)
			if err != nil {
				return nil, err
			}
			push(int64(int32(uint32(v))))
		case 'K': // BININT1
			v, err := u(1)
			if err != nil {
				return nil, err
			}
			push(int64(v))
		case 'M': // BININT2
			v, err := u(2)
			if err != nil {
				return nil, err
			}
			push(int64(v))
		case 0x8a, 0x8b: // LONG1, LONG4
			w := 1
			if op == 0x8b {
				w = 4
			}
			n, err := u(w)
			if err != nil {
				return nil, err
			}
			s, err := need(int(min(n, uint64(len(b)+1))))
			if err != nil {
				return nil, err
			}
			push(littleSigned(s))
		case 'F': // FLOAT
			s, err := line()
			if err != nil {
				return nil, err
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, errf(ReasonMalformed, "pickle: bad FLOAT %q", s)
			}
			push(f)
		case 'G': // BINFLOAT (big-endian)
			s, err := need(8)
			if err != nil {
				return nil, err
			}
			push(math.Float64frombits(binary.BigEndian.Uint64(s)))
		case 'S': // STRING: a quoted Python literal
			s, err := line()
			if err != nil {
				return nil, err
			}
			v, err := unquote(s)
			if err != nil {
				return nil, err
			}
			push(v)
		case 'V': // UNICODE: raw-unicode-escape, newline-terminated
			s, err := line()
			if err != nil {
				return nil, err
			}
			v, err := rawUnicodeEscape(s)
			if err != nil {
				return nil, err
			}
			push(v)
		case 'T', 'X', 'B', 'U', 0x8c, 'C', 0x8d, 0x8e: // strings and bytes with a length
			w := map[byte]int{'T': 4, 'X': 4, 'B': 4, 'U': 1, 0x8c: 1, 'C': 1, 0x8d: 8, 0x8e: 8}[op]
			n, err := u(w)
			if err != nil {
				return nil, err
			}
			if n > uint64(len(b)) {
				return nil, errf(ReasonMalformed, "pickle: string of %d bytes in a frame of %d", n, len(b))
			}
			s, err := need(int(n))
			if err != nil {
				return nil, err
			}
			if op == 'X' || op == 0x8c || op == 0x8d {
				if !utf8.Valid(s) {
					return nil, errf(ReasonMalformed, "pickle: string is not UTF-8")
				}
			}
			push(string(s)) // Python 2 str, bytes and str are all text to Graphite
		case 'p', 'q', 'r', 0x94: // PUT, BINPUT, LONG_BINPUT, MEMOIZE
			var k uint64
			var err error
			switch op {
			case 'p':
				var s string
				if s, err = line(); err == nil {
					k, err = strconv.ParseUint(s, 10, 32)
				}
			case 'q':
				k, err = u(1)
			case 'r':
				k, err = u(4)
			case 0x94:
				k = uint64(len(m.memo))
			}
			if err != nil {
				return nil, errf(ReasonMalformed, "pickle: bad memo key")
			}
			if len(m.stack) == 0 {
				return nil, errf(ReasonMalformed, "pickle: memo of an empty stack")
			}
			m.memo[k] = m.stack[len(m.stack)-1]
		case 'g', 'h', 'j': // GET, BINGET, LONG_BINGET
			var k uint64
			var err error
			switch op {
			case 'g':
				var s string
				if s, err = line(); err == nil {
					k, err = strconv.ParseUint(s, 10, 32)
				}
			case 'h':
				k, err = u(1)
			case 'j':
				k, err = u(4)
			}
			if err != nil {
				return nil, errf(ReasonMalformed, "pickle: bad memo key")
			}
			v, ok := m.memo[k]
			if !ok {
				return nil, errf(ReasonMalformed, "pickle: memo key %d not set", k)
			}
			push(v)
		case '0': // POP
			if _, err := m.pop(); err != nil {
				return nil, err
			}
		case '1': // POP_MARK
			if _, err := m.popMark(); err != nil {
				return nil, err
			}
		case '2': // DUP
			if len(m.stack) == 0 {
				return nil, errf(ReasonMalformed, "pickle: DUP of an empty stack")
			}
			push(m.stack[len(m.stack)-1])
		case 'c', 0x93, 'R', 'b', 'i', 'o', 0x81, 0x92, 'P', 'Q', 0x82, 0x83, 0x84, '}', 'd', 's', 'u', 0x8f, 0x90, 0x91, 0x96, 0x97, 0x98:
			return nil, errf(ReasonForbidden, "pickle opcode %q at byte %d is not allowed (only lists, tuples, strings and numbers are decoded)", op, i-1)
		default:
			return nil, errf(ReasonMalformed, "pickle: unknown opcode 0x%02x at byte %d", op, i-1)
		}
	}
	return nil, errf(ReasonMalformed, "pickle: no STOP in the frame")
}

func (m *machine) topList() (*pyList, error) {
	if len(m.stack) == 0 {
		return nil, errf(ReasonMalformed, "pickle: APPEND to nothing")
	}
	l, ok := m.stack[len(m.stack)-1].(*pyList)
	if !ok {
		return nil, errf(ReasonMalformed, "pickle: APPEND to %s", typeName(m.stack[len(m.stack)-1]))
	}
	return l, nil
}

func parseInt(s string) (any, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.BitLen() > 4096 {
		return nil, errf(ReasonMalformed, "pickle: bad INT %q", s)
	}
	return v, nil
}

// littleSigned is LONG1/LONG4's two's-complement little-endian integer.
func littleSigned(s []byte) any {
	if len(s) <= 8 {
		var v int64
		for k := len(s) - 1; k >= 0; k-- {
			v = v<<8 | int64(s[k])
		}
		if len(s) > 0 && len(s) < 8 && s[len(s)-1]&0x80 != 0 {
			v -= 1 << (8 * len(s))
		}
		return v
	}
	be := make([]byte, len(s))
	for k := range s {
		be[len(s)-1-k] = s[k]
	}
	v := new(big.Int).SetBytes(be)
	if s[len(s)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(s))))
	}
	return v
}

// unquote reads protocol 0's STRING argument: 'text' or "text" with
// Python's backslash escapes.
func unquote(s string) (string, error) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", errf(ReasonMalformed, "pickle: bad STRING %q", s)
	}
	body := s[1 : len(s)-1]
	if !strings.Contains(body, `\`) {
		return body, nil
	}
	var out strings.Builder
	for k := 0; k < len(body); k++ {
		c := body[k]
		if c != '\\' || k+1 == len(body) {
			out.WriteByte(c)
			continue
		}
		k++
		switch e := body[k]; e {
		case 'n':
			out.WriteByte('\n')
		case 't':
			out.WriteByte('\t')
		case 'r':
			out.WriteByte('\r')
		case '\\', '\'', '"':
			out.WriteByte(e)
		case 'x':
			if k+2 >= len(body) {
				return "", errf(ReasonMalformed, "pickle: bad escape in %q", s)
			}
			v, err := strconv.ParseUint(body[k+1:k+3], 16, 8)
			if err != nil {
				return "", errf(ReasonMalformed, "pickle: bad escape in %q", s)
			}
			out.WriteByte(byte(v))
			k += 2
		default:
			out.WriteByte('\\')
			out.WriteByte(e)
		}
	}
	return out.String(), nil
}

// rawUnicodeEscape decodes protocol 0's UNICODE argument (\uXXXX and
// \UXXXXXXXX escapes; the rest is Latin-1).
func rawUnicodeEscape(s string) (string, error) {
	var out strings.Builder
	for k := 0; k < len(s); k++ {
		if s[k] == '\\' && k+1 < len(s) && (s[k+1] == 'u' || s[k+1] == 'U') {
			w := 4
			if s[k+1] == 'U' {
				w = 8
			}
			if k+2+w > len(s) {
				return "", errf(ReasonMalformed, "pickle: bad unicode escape")
			}
			v, err := strconv.ParseUint(s[k+2:k+2+w], 16, 32)
			if err != nil || v > utf8.MaxRune {
				return "", errf(ReasonMalformed, "pickle: bad unicode escape")
			}
			out.WriteRune(rune(v))
			k += 1 + w
			continue
		}
		out.WriteRune(rune(s[k]))
	}
	return out.String(), nil
}
