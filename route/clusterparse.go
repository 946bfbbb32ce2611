package route

import (
	"slices"
	"strconv"
	"strings"
)

func (p *parser) cluster(at token) error {
	nameTok, err := p.word("a cluster name")
	if err != nil {
		return err
	}
	name := nameTok.text
	if name == "blackhole" {
		return errAt(nameTok, "blackhole is a reserved cluster name")
	}
	if _, dup := p.t.byName[name]; dup {
		return errAt(nameTok, "cluster %s is defined twice", name)
	}
	kindTok, err := p.word("a cluster type")
	if err != nil {
		return err
	}
	c := &Cluster{Name: name, Replication: 1, pos: at.pos()}
	k := slices.Index(kindNames[:], kindTok.text)
	if k < 0 || kindTok.quoted {
		return errAt(kindTok, "unknown cluster type %q (want forward, any_of, failover, carbon_ch, fnv1a_ch, jump_fnv1a_ch or file)", kindTok.text)
	}
	c.Kind = Kind(k)
	for !p.atEnd() && !p.peek().semi {
		t := p.peek()
		switch {
		case t.text == "useall" && (c.Kind == Forward || c.Kind == AnyOf || c.Kind == Failover):
			p.next()
			c.UseAll = true
			continue
		case t.text == "replication" && c.Kind.hashed():
			p.next()
			n, err := p.word("a replication count")
			if err != nil {
				return err
			}
			v, err := strconv.Atoi(n.text)
			if err != nil || v < 1 || v > 255 {
				return errAt(n, "replication must be a number from 1 to 255, got %q", n.text)
			}
			c.Replication, c.replPos = v, n
			continue
		case t.text == "dynamic" && c.Kind.hashed():
			p.next()
			c.Dynamic = true
			continue
		case t.text == "ip" && c.Kind == File:
			p.next()
			c.FileIP = true
			continue
		}
		break
	}
	if t := p.peek(); t.text == "consul" && !t.quoted && c.Kind != File {
		p.next()
		svc, err := p.word("a Consul service name after consul")
		if err != nil {
			return err
		}
		c.Consul = &Consul{Service: svc.text}
		for !p.atEnd() && !p.peek().semi {
			opt := p.next()
			v, err := p.word("a value after " + opt.text)
			if err != nil {
				return err
			}
			switch opt.text {
			case "tag":
				c.Consul.Tag = v.text
			case "datacenter":
				c.Consul.Datacenter = v.text
			default:
				return errAt(opt, "unknown consul option %q (want tag or datacenter)", opt.text)
			}
		}
	}
	for !p.atEnd() && !p.peek().semi {
		if c.Kind == File {
			f := p.next()
			c.Files = append(c.Files, f.text)
			continue
		}
		m, err := p.member()
		if err != nil {
			return err
		}
		c.Members = append(c.Members, m)
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	if len(c.Members) == 0 && len(c.Files) == 0 && c.Consul == nil {
		return errAt(at, "cluster %s has no members", name)
	}
	return p.t.addCluster(c, at)
}

// member parses host[:port][=instance] and its options.
func (p *parser) member() (*Server, error) {
	t := p.next()
	addr := t.text
	s := &Server{Port: 2003, Proto: "tcp", Transport: "plain", pos: t}
	if i := strings.LastIndexByte(addr, '='); i >= 0 && !strings.Contains(addr[i:], "]") {
		s.Instance, s.HasInstance, addr = addr[i+1:], true, addr[:i]
		if s.Instance == "" {
			return nil, errAt(t, "empty instance after '=' in %q", t.text)
		}
	}
	host, port := addr, ""
	switch {
	case strings.HasPrefix(addr, "["):
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return nil, errAt(t, "missing ']' in %q", t.text)
		}
		host = addr[1:end]
		if rest := addr[end+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return nil, errAt(t, "want [ipv6]:port in %q", t.text)
			}
			port = rest[1:]
		}
	case strings.Count(addr, ":") == 1:
		host, port, _ = strings.Cut(addr, ":")
	case strings.Count(addr, ":") > 1:
		// A bare IPv6 address: carbon-c-relay takes the last part as the
		// port, as the man page warns; require brackets instead.
		return nil, errAt(t, "IPv6 address %q: write it as [addr]:port", t.text)
	}
	if host == "" {
		return nil, errAt(t, "empty host in %q", t.text)
	}
	if port != "" {
		v, err := strconv.Atoi(port)
		if err != nil || v < 1 || v > 65535 {
			return nil, errAt(t, "port must be a number from 1 to 65535 in %q", t.text)
		}
		s.Port = v
	}
	s.Host = host
	for !p.atEnd() && !p.peek().semi {
		switch p.peek().text {
		case "proto":
			p.next()
			v, err := p.word("udp or tcp after proto")
			if err != nil {
				return nil, err
			}
			if v.text != "udp" && v.text != "tcp" {
				return nil, errAt(v, "proto must be udp or tcp, got %q", v.text)
			}
			s.Proto = v.text
		case "type":
			p.next()
			v, err := p.word("linemode or pickle after type")
			if err != nil {
				return nil, err
			}
			if v.text != "linemode" && v.text != "pickle" {
				return nil, errAt(v, "type must be linemode or pickle (a polymur extension: carbon's pickle protocol, for carbon-cache's port 2004), got %q", v.text)
			}
			s.Pickle = v.text == "pickle"
		case "transport":
			p.next()
			v, err := p.word("plain, gzip, lz4 or snappy after transport")
			if err != nil {
				return nil, err
			}
			switch v.text {
			case "plain", "gzip", "lz4", "snappy":
				s.Transport = v.text
			default:
				return nil, errAt(v, "transport must be plain, gzip, lz4 or snappy, got %q", v.text)
			}
			switch p.peek().text {
			case "ssl":
				p.next()
				s.TLS = "ssl"
			case "mtls":
				p.next()
				cert, err := p.word("a certificate file after mtls")
				if err != nil {
					return nil, err
				}
				key, err := p.word("a key file after the mtls certificate")
				if err != nil {
					return nil, err
				}
				s.TLS, s.Cert, s.Key = "mtls", cert.text, key.text
			}

		default:
			return s, nil
		}
	}
	if s.Proto == "udp" {
		return nil, errAt(t, "proto udp to a destination is not supported yet (it comes with polymur's protocols work)")
	}
	return s, nil
}
