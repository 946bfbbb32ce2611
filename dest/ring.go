package dest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/polymur/polymur/ring"
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
	// File, when set, makes the destination a file that lines are appended
	// to (a file cluster); Host and Port are unused.
	File string
	// Pickle sends carbon's pickle protocol (carbon-cache's port 2004)
	// instead of plaintext lines.
	Pickle bool
	// TLS, when set, makes the connection TLS with this configuration
	// (transport … ssl|mtls; -destination-tls).
	TLS *tls.Config
	// Transport compresses the stream: "" or plain, gzip, lz4, snappy
	// (carbon-c-relay's formats, package decode).
	Transport string
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

// newRing is carbon's carbon_ch ring over dests, keyed on their node texts.
func newRing(dests []Destination) *ring.Carbon {
	keys := make([]string, len(dests))
	for i, d := range dests {
		keys[i] = d.nodeKey()
	}
	return ring.NewCarbon(keys)
}

// position is a metric name's place on the carbon_ch ring.
func position(key []byte) uint32 { return ring.CachedPosition(key) }
