package pool

import (
	"crypto/md5"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Destination is one parsed `host:port[:instance]` destination. Name is the
// string as configured; it identifies the destination in the API and stats.
type Destination struct {
	Name        string
	Host        string // without IPv6 brackets
	Port        int
	Instance    string
	HasInstance bool // false means Python's None, not ""
	// Key, when set, replaces carbon's node text on the ring (statsd mode
	// keys nodes on "host:port").
	Key string
}

// Addr is the dial address.
func (d Destination) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// nodeKey is carbon's Python text of the (host, instance) tuple.
func (d Destination) nodeKey() string {
	if d.Key != "" {
		return d.Key
	}
	if !d.HasInstance {
		return "('" + d.Host + "', None)"
	}
	return "('" + d.Host + "', '" + d.Instance + "')"
}

// ParseDestination parses `host:port[:instance]` or `[v6addr]:port[:instance]`
// the way carbon does; the instance may itself contain ':'. Characters that
// Python's repr would escape are refused so the hashed text is exact.
func ParseDestination(s string) (Destination, error) {
	d := Destination{Name: s}
	bad := func(why string) (Destination, error) {
		return Destination{}, fmt.Errorf("destination %q not valid: %s", s, why)
	}
	rest := s
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("missing ']' after IPv6 address")
		}
		d.Host = rest[1:end]
		rest = rest[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return bad("want [addr]:port")
		}
		rest = rest[1:]
	} else {
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return bad("want host:port[:instance]")
		}
		d.Host, rest = rest[:i], rest[i+1:]
	}
	port := rest
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		port, d.Instance, d.HasInstance = rest[:i], rest[i+1:], true
	}
	if d.Host == "" {
		return bad("empty host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return bad("port must be a number from 1 to 65535")
	}
	d.Port = p
	if !plainText(d.Host) || (d.HasInstance && !plainText(d.Instance)) {
		return bad(`host and instance must be printable ASCII without quotes, backslashes or spaces`)
	}
	return d, nil
}

func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '\'' || c == '"' || c == '\\' || c == ',' {
			return false
		}
	}
	return true
}

// ParseDestinations parses a comma-separated list, skipping empty items and
// refusing the same name twice. (Two destinations on one (host, instance)
// ring node are refused by New and PutDest in hash-route only.)
func ParseDestinations(list string) ([]Destination, error) {
	var out []Destination
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		d, err := ParseDestination(item)
		if err != nil {
			return nil, err
		}
		if err := checkDuplicate(out, d, false); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Errors of PutDest and DelDest, for callers that map them (HTTP status).
var (
	ErrDuplicate     = errors.New("duplicate")
	ErrNotRegistered = errors.New("not registered")
)

// destError is a message of its own that errors.Is matches to its kind.
type destError struct {
	kind error
	msg  string
}

func (e *destError) Error() string { return e.msg }
func (e *destError) Unwrap() error { return e.kind }

func destErr(kind error, format string, args ...any) error {
	return &destError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// CheckDestinations reports what New would refuse in dests for mode: a name
// twice, or, in hash-route, two destinations on one (host, instance) node.
func CheckDestinations(mode Mode, dests []Destination) error {
	for i, d := range dests {
		if err := checkDuplicate(dests[:i], d, mode == HashRoute); err != nil {
			return err
		}
	}
	return nil
}

// checkDuplicate refuses d when have holds its name, or, with ring set, its
// (host, instance) ring node: carbon refuses that too, because both would
// hash identically. Broadcast has no ring, so two carbon-caches on one host
// need no instances there.
func checkDuplicate(have []Destination, d Destination, ring bool) error {
	for _, o := range have {
		if o.Name == d.Name {
			return destErr(ErrDuplicate, "destination %s already registered", d.Name)
		}
		if ring && o.nodeKey() == d.nodeKey() {
			return destErr(ErrDuplicate, "destination %s has the same host and instance as %s (give them distinct instances)", d.Name, o.Name)
		}
	}
	return nil
}

const replicas = 100

type ringEntry struct {
	pos  uint32 // may exceed 65535 after collision bumps
	node int    // index into the ring's destinations
}

// ring is carbon's ConsistentHashRing (carbon_ch): 100 points per node, node
// text "('host', 'instance'):i" or "('host', None):i", MD5's first two bytes
// as position, a taken position bumped by +1 in insertion order. It is
// immutable once built.
type ring struct {
	entries []ringEntry // sorted by pos
	n       int
}

func position(key []byte) uint32 {
	sum := md5.Sum(key)
	return uint32(sum[0])<<8 | uint32(sum[1])
}

func newRing(dests []Destination) *ring {
	total := replicas * len(dests)
	r := &ring{n: len(dests), entries: make([]ringEntry, 0, total)}
	// free finds the first position at or after p not yet taken — carbon's
	// "while pos in taken: pos += 1" — with a union-find over positions
	// (path halving), so a dense ring of thousands of nodes builds in near
	// linear time instead of walking ever longer runs of taken positions.
	next := make([]uint32, 65536+total+1) // next[p]-1 is a candidate at or after p; 0: p is free
	free := func(p uint32) uint32 {
		for next[p] != 0 {
			if n := next[next[p]-1]; n != 0 {
				next[p] = n // halve the path
			}
			p = next[p] - 1
		}
		return p
	}
	var key []byte
	for node, d := range dests {
		base := d.nodeKey() + ":"
		for i := range replicas {
			key = strconv.AppendInt(append(key[:0], base...), int64(i), 10)
			pos := free(position(key))
			next[pos] = pos + 2 // taken: continue at pos+1
			r.entries = append(r.entries, ringEntry{pos: pos, node: node})
		}
	}
	slices.SortFunc(r.entries, func(a, b ringEntry) int { return int(a.pos) - int(b.pos) })
	return r
}

// table precomputes, for every key position, the node that owns it among the
// nodes for which alive reports true: the first live entry at or after the
// position, wrapping around. This equals carbon removing the dead nodes'
// entries from the ring. It returns nil when no node is alive.
func (r *ring) table(alive func(node int) bool) *[65536]uint16 {
	first := -1
	for i, e := range r.entries {
		if alive(e.node) {
			first = i
			break
		}
	}
	if first < 0 {
		return nil
	}
	t := new([65536]uint16)
	// Walk positions downwards so each position learns the next live entry.
	next := r.entries[first].node // wrap-around owner
	ei := len(r.entries) - 1
	for pos := 65535; pos >= 0; pos-- {
		for ei >= 0 && int(r.entries[ei].pos) >= pos {
			if alive(r.entries[ei].node) {
				next = r.entries[ei].node
			}
			ei--
		}
		t[pos] = uint16(next)
	}
	return t
}
