package route

import (
	"net"
	"strconv"
	"strings"
)

// Listener is a listen statement: what polymur -config listens on (instead
// of -listen-addr, unless that is given).
type Listener struct {
	Type      string // linemode, or pickle (a polymur extension)
	Transport string // plain, gzip, lz4, snappy
	PEMCert   string // ssl: certificate and key in one PEM file
	Addrs     []ListenAddr
	Pos       string
}

// ListenAddr is one address of a listen statement.
type ListenAddr struct {
	Addr  string // host:port (":port" for every interface), or a socket path
	Proto string // tcp, udp or unix
}

// listen parses
//
//	listen type linemode|pickle [transport plain|gzip|lz4|snappy [ssl PEMCERT]]
//	    [interface:]port proto tcp|udp ... | /path proto unix ... ;
func (p *parser) listen(at token) error {
	if err := p.expect("type"); err != nil {
		return err
	}
	kind, err := p.word("linemode or pickle after type")
	if err != nil {
		return err
	}
	if kind.text != "linemode" && kind.text != "pickle" {
		return errAt(kind, "listen type must be linemode or pickle (a polymur extension), got %q", kind.text)
	}
	l := Listener{Type: kind.text, Transport: "plain", Pos: at.pos()}
	if p.peek().text == "transport" {
		p.next()
		tr, err := p.word("plain, gzip, lz4 or snappy after transport")
		if err != nil {
			return err
		}
		switch tr.text {
		case "plain", "gzip", "lz4", "snappy":
			l.Transport = tr.text
		default:
			return errAt(tr, "transport must be plain, gzip, lz4 or snappy, got %q", tr.text)
		}
		if p.peek().text == "ssl" {
			p.next()
			cert, err := p.word("a PEM file (certificate and key) after ssl")
			if err != nil {
				return err
			}
			l.PEMCert = cert.text
		}
	}
	for !p.atEnd() && !p.peek().semi {
		a, err := p.word("an address, port or socket path")
		if err != nil {
			return err
		}
		la := ListenAddr{Proto: "tcp"}
		if p.peek().text == "proto" {
			p.next()
			pr, err := p.word("tcp, udp or unix after proto")
			if err != nil {
				return err
			}
			if pr.text != "tcp" && pr.text != "udp" && pr.text != "unix" {
				return errAt(pr, "proto must be tcp, udp or unix, got %q", pr.text)
			}
			la.Proto = pr.text
		}
		if la.Proto == "unix" {
			la.Addr = a.text
		} else if la.Addr, err = listenAddr(a.text); err != nil {
			return errAt(a, "%v", err)
		}
		if l.Type == "pickle" && la.Proto != "tcp" {
			return errAt(a, "pickle is read over TCP only, not %s", la.Proto)
		}
		if la.Proto == "udp" && (l.Transport != "plain" || l.PEMCert != "") {
			return errAt(a, "UDP listeners take plain lines only (no transport %s or ssl)", l.Transport)
		}
		l.Addrs = append(l.Addrs, la)
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	if len(l.Addrs) == 0 {
		return errAt(at, "listen without an address")
	}
	p.t.Listeners = append(p.t.Listeners, l)
	return nil
}

// listenAddr turns "port", "interface:port" or "[v6]:port" into host:port.
func listenAddr(s string) (string, error) {
	host, port := "", s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if v, err := strconv.Atoi(port); err != nil || v < 1 || v > 65535 {
		return "", &net.AddrError{Err: "port must be a number from 1 to 65535", Addr: s}
	}
	return net.JoinHostPort(host, port), nil
}
