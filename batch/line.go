package batch

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// Level is how strictly a line is checked before it enters the pipeline.
type Level uint8

const (
	// LevelCarbon accepts what carbon's line receiver accepts: exactly three
	// whitespace-separated fields, a numeric value that is not NaN and a
	// numeric timestamp; the name must be UTF-8 without control bytes.
	LevelCarbon Level = iota
	// LevelStrict additionally wants a finite value, an unsigned integer
	// timestamp and a name of printable ASCII.
	LevelStrict
	// LevelOff forwards every non-empty line; only the first field (the
	// name) is located, for hash routing.
	LevelOff
	// LevelStatsd checks statsd lines instead of Graphite ones (polymur's
	// statsd mode): see ParseStatsd.
	LevelStatsd
)

// ParseLevel maps a flag value to a Level.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "carbon":
		return LevelCarbon, nil
	case "strict":
		return LevelStrict, nil
	case "off", "none":
		return LevelOff, nil
	}
	return 0, fmt.Errorf("unknown validation level %q (want carbon, strict or off)", s)
}

func (l Level) String() string {
	switch l {
	case LevelStrict:
		return "strict"
	case LevelOff:
		return "off"
	case LevelStatsd:
		return "statsd"
	}
	return "carbon"
}

// Reason says why a line was rejected. ReasonOK means it was accepted.
type Reason uint8

// Rejection reasons, exported in stats as their String form.
const (
	ReasonOK        Reason = iota
	ReasonEmpty            // blank or whitespace-only line
	ReasonTooLong          // longer than the configured maximum
	ReasonFields           // not exactly "name value timestamp"
	ReasonName             // control bytes or invalid UTF-8 in the name
	ReasonValue            // value is not a number (strict: not finite)
	ReasonNaN              // value is NaN
	ReasonTimestamp        // timestamp is not a number (strict: not an unsigned integer)
	ReasonType             // statsd: unknown metric type
	ReasonRate             // statsd: sample rate not a number in (0, 1]
	// ReasonUnterminated: a TCP stream ended in the middle of a line (a
	// crashed sender's "… 43 17000" is not a point); carbon drops it too.
	ReasonUnterminated
	NumReasons
)

var reasonNames = [NumReasons]string{"ok", "empty", "too_long", "fields", "name", "value", "nan", "timestamp", "type", "rate", "unterminated"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Parsed is the result of Parse: the fields of an accepted line, all slices
// of the input. Canonical is true when the line is already "name value ts"
// with single spaces and can be forwarded byte for byte.
type Parsed struct {
	Name, Value, TS []byte
	Canonical       bool
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// Parse checks one line (without its '\n') at the given level. It never
// allocates.
func Parse(line []byte, level Level) (Parsed, Reason) {
	if level == LevelStatsd {
		return ParseStatsd(line)
	}
	if level != LevelOff {
		if p, ok := plainLine(line); ok {
			return p, ReasonOK
		}
	}
	return parseFull(line, level)
}

// The SWAR masks below flag, in its high bit, the first byte of a
// little-endian word that is outside a range, exactly: no borrow or carry
// reaches it from the bytes before, which are all in range. Bytes after it
// may be flagged too.
const ones, highs = 0x0101010101010101, 0x8080808080808080

// unprintable8 flags the first byte of x outside 0x21–0x7e: below 0x21
// the subtraction wraps it, 0x7f plus one sets its high bit, and 0x80 and
// up have it already.
func unprintable8(x uint64) uint64 { return ((x - 0x21*ones) | x | (x + ones)) & highs }

// nondigit8 flags the first byte of x outside '0'–'9'.
func nondigit8(x uint64) uint64 { return ((x - '0'*ones) | x | (x + (0x80-':')*ones)) & highs }

// printable8 reports whether all eight bytes of x are in 0x21–0x7e.
func printable8(x uint64) bool { return unprintable8(x) == 0 }

// printableRun is the index of the first byte of b outside 0x21–0x7e
// (len(b) when there is none): sixteen bytes at a time (printable16), then
// eight, then one.
func printableRun(b []byte) int {
	i := printable16(b)
	if i+16 <= len(b) {
		return i // found in a block
	}
	if i+8 <= len(b) {
		if m := unprintable8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	return i
}

// printable16 is the index of the first byte of b outside 0x21–0x7e in
// b's whole sixteen-byte blocks, or where those blocks end when they hold
// none: two SWAR words a block.
func printable16(b []byte) int {
	i := 0
	for ; i+16 <= len(b); i += 16 {
		m1, m2 := unprintable8(binary.LittleEndian.Uint64(b[i:])), unprintable8(binary.LittleEndian.Uint64(b[i+8:]))
		if m1|m2 != 0 {
			if m1 != 0 {
				return i + bits.TrailingZeros64(m1)>>3
			}
			return i + 8 + bits.TrailingZeros64(m2)>>3
		}
	}
	return i
}

// digitRun is the index of the first byte of b at or after i that is not a
// decimal digit (len(b) when there is none).
func digitRun(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := nondigit8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && b[i]-'0' <= 9 {
		i++
	}
	return i
}

// plainScanGo reads an ordinary line, "name -?D[.D] D" with single spaces
// and a name of printable ASCII, from the start of b: the name's length
// (0: b does not start so), where the value ends and where the
// timestamp's digits end. What follows them is the caller's to check (the
// end of the line, or its newline). plainScan is the same, in assembly
// where there is some.
func plainScanGo(b []byte) (nameLen, valEnd, tsEnd int) {
	n := len(b)
	i := printableRun(b)
	if i == 0 || i == n || b[i] != ' ' {
		return 0, 0, 0
	}
	nameLen = i
	i++
	if i < n && b[i] == '-' {
		i++
	}
	d := i
	if i = digitRun(b, i); i == d {
		return 0, 0, 0
	}
	if i < n && b[i] == '.' {
		i++
		d = i
		if i = digitRun(b, i); i == d {
			return 0, 0, 0
		}
	}
	if i == n || b[i] != ' ' {
		return 0, 0, 0
	}
	valEnd = i
	i++
	d = i
	if i = digitRun(b, i); i == d {
		return 0, 0, 0
	}
	return nameLen, valEnd, i
}

// plainLine is the ordinary line, checked in one pass; anything else (and
// so every rejection) is left to parseFull. What it accepts parseFull
// accepts the same way at the carbon and strict levels (fuzzed:
// FuzzParse).
func plainLine(line []byte) (Parsed, bool) {
	nameLen, valEnd, tsEnd := plainScan(line)
	if nameLen == 0 || tsEnd != len(line) {
		return Parsed{}, false
	}
	return Parsed{Name: line[:nameLen], Value: line[nameLen+1 : valEnd], TS: line[valEnd+1:], Canonical: true}, true
}

// parseFull is Parse for every line: carbon's rules field by field.
func parseFull(line []byte, level Level) (Parsed, Reason) {
	var p Parsed
	fields := 0
	var f [3][]byte
	i, n := 0, len(line)
	canonical := true
	for {
		start := i
		for i < n && isSpace(line[i]) {
			i++
		}
		if i == n {
			if start != i {
				canonical = false
			}
			break
		}
		if (fields == 0 && i != start) || (fields > 0 && (i-start != 1 || line[start] != ' ')) {
			canonical = false
		}
		j := i
		for j < n && !isSpace(line[j]) {
			j++
		}
		if fields < 3 {
			f[fields] = line[i:j]
		}
		fields++
		i = j
		if level == LevelOff && fields == 1 {
			break
		}
	}
	if fields == 0 {
		return p, ReasonEmpty
	}
	p.Name = f[0]
	if level == LevelOff {
		p.Canonical = true
		return p, ReasonOK
	}
	if fields != 3 {
		return p, ReasonFields
	}
	p.Value, p.TS, p.Canonical = f[1], f[2], canonical
	if !validName(p.Name, level) {
		return p, ReasonName
	}
	ok, special := number(p.Value)
	switch {
	case !ok:
		return p, ReasonValue
	case special == specialNaN:
		return p, ReasonNaN
	case special == specialInf && level == LevelStrict:
		return p, ReasonValue
	}
	if level == LevelStrict {
		if !unsignedInt(p.TS) {
			return p, ReasonTimestamp
		}
	} else if ok, special := number(p.TS); !ok || special != specialNone {
		return p, ReasonTimestamp
	}
	return p, ReasonOK
}

func validName(name []byte, level Level) bool {
	ascii := true
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if ascii {
		return true
	}
	return level != LevelStrict && utf8.Valid(name)
}

const (
	specialNone = iota
	specialNaN
	specialInf
)

// number reports whether b is a decimal floating-point number as Python's
// float() reads it (sign, digits, optional fraction and exponent, or
// nan/inf/infinity in any case), and whether it is one of the specials.
func number(b []byte) (ok bool, special int) {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		switch lower(b[i:]) {
		case "nan":
			return true, specialNaN
		case "inf", "infinity":
			return true, specialInf
		}
		return false, specialNone
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		exp := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false, specialNone
		}
	}
	return i == len(b), specialNone
}

// lower returns an ASCII-lowercased copy of short inputs (used only for the
// rare nan/inf spellings); longer inputs cannot match and return "".
func lower(b []byte) string {
	if len(b) > 8 {
		return ""
	}
	var buf [8]byte
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return string(buf[:len(b)])
}

func unsignedInt(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
