package decode

import (
	"encoding/binary"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

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
