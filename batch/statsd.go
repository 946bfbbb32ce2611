package batch

import (
	"bytes"
	"strconv"
)

// ParseStatsd checks one statsd line, `name:value|type[|@rate][|#tags]`,
// with further `:value|type...` groups allowed as statsd itself does
// (`name:1|c:5|ms`). Types are c, ms, g, s, h and d; values are numbers
// (gauges may carry a sign for a delta; set members may be any text); a
// sample rate is a number in (0, 1]. The name — the routing key — is the
// text before the first ':' and must be non-empty UTF-8 without control
// bytes. An accepted line is forwarded byte for byte (Canonical).
func ParseStatsd(line []byte) (Parsed, Reason) {
	var p Parsed
	if len(line) == 0 {
		return p, ReasonEmpty
	}
	colon := -1
	for i, c := range line {
		if c == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		if isBlank(line) {
			return p, ReasonEmpty
		}
		return p, ReasonFields
	}
	p.Name = line[:colon]
	if len(p.Name) == 0 || !validName(p.Name, LevelCarbon) {
		return p, ReasonName
	}
	rest := line[colon+1:]
	for {
		group := rest
		next := -1
		// A group ends at the next ':' that follows a '|'-field (a new
		// value); ':' inside tags (#k:v) belongs to the group.
		if i := indexGroupEnd(rest); i >= 0 {
			group, next = rest[:i], i
		}
		if r := statsdGroup(group); r != ReasonOK {
			return p, r
		}
		if next < 0 {
			break
		}
		rest = rest[next+1:]
	}
	p.Canonical = true
	return p, ReasonOK
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// indexGroupEnd finds the ':' that starts another value group, or -1.
func indexGroupEnd(b []byte) int {
	inTags := false
	for i, c := range b {
		switch c {
		case '|':
			inTags = i+1 < len(b) && b[i+1] == '#'
		case ':':
			if !inTags {
				return i
			}
		}
	}
	return -1
}

// statsdGroup checks `value|type[|@rate][|#tags]` without allocating.
func statsdGroup(g []byte) Reason {
	bar := bytes.IndexByte(g, '|')
	if bar < 0 {
		return ReasonFields
	}
	value, typ, extra := g[:bar], g[bar+1:], []byte(nil)
	if i := bytes.IndexByte(typ, '|'); i >= 0 {
		typ, extra = typ[:i], typ[i+1:]
		if len(extra) == 0 {
			return ReasonFields
		}
	}
	switch string(typ) {
	case "c", "ms", "h", "d", "g":
		if ok, special := number(value); !ok || special != specialNone {
			return ReasonValue
		}
	case "s":
		if len(value) == 0 {
			return ReasonValue
		}
	default:
		return ReasonType
	}
	for len(extra) > 0 {
		f := extra
		if i := bytes.IndexByte(extra, '|'); i >= 0 {
			f, extra = extra[:i], extra[i+1:]
			if len(extra) == 0 {
				return ReasonFields
			}
		} else {
			extra = nil
		}
		switch {
		case len(f) > 1 && f[0] == '@':
			if ok, special := number(f[1:]); !ok || special != specialNone || !rateInRange(f[1:]) {
				return ReasonRate
			}
		case len(f) > 0 && f[0] == '#':
		default:
			return ReasonFields
		}
	}
	return ReasonOK
}

// rateInRange reports whether a valid number is in (0, 1].
func rateInRange(b []byte) bool {
	v, err := strconv.ParseFloat(string(b), 64)
	return err == nil && v > 0 && v <= 1
}
