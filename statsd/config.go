// Package statsd is polymur's statsd proxy mode, apart from the pipeline it
// shares with graphite mode: its settings (flags and statsd's proxy.js
// configuration), the backend health checker (any destination set that can
// hold and release members can use it) and the -d routing log.
package statsd

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Settings are statsd mode's flags (-statsd-*), filled from a proxy.js
// configuration for those not given on the command line.
type Settings struct {
	ConfigFile    string
	Listen        string
	TCP           bool
	Nodes         string
	MgmtAddr      string
	MgmtWrite     bool
	CheckInterval time.Duration
	MaxDatagram   int
	Flush         time.Duration
	Debug         bool
}

// Register defines the -statsd-* flags (and -d) on fs.
func (s *Settings) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.ConfigFile, "statsd-config", "", "statsd mode: a statsd proxy.js configuration file (nodes, host, port, mgmt_port, mgmt_address, checkInterval, server); implies -mode statsd; flags given on the command line win")
	fs.StringVar(&s.Listen, "statsd-listen", "0.0.0.0:8125", "statsd mode: UDP address for statsd lines")
	fs.BoolVar(&s.TCP, "statsd-tcp", false, "statsd mode: also accept newline-separated statsd lines over TCP on the same address")
	fs.StringVar(&s.Nodes, "statsd-nodes", "", "statsd mode: comma-separated statsd backends host:port[:adminport] (health-checked on adminport when given)")
	fs.StringVar(&s.MgmtAddr, "statsd-mgmt-addr", "localhost:8126", "statsd mode: management interface (ping, stats, memstats, health, status, route, getdest, ...); it has no authentication, so it listens on loopback unless told otherwise")
	fs.BoolVar(&s.MgmtWrite, "statsd-mgmt-write", false, "statsd mode: allow putdest, deldest and 'health up|down' on the management interface (anyone who can connect could redirect the stream)")
	fs.DurationVar(&s.CheckInterval, "statsd-check-interval", 10*time.Second, "statsd mode: how often each backend's admin port is asked 'health'")
	fs.IntVar(&s.MaxDatagram, "statsd-max-datagram", 1432, "statsd mode: largest datagram sent to a backend in bytes (1432 fits a 1500-byte MTU); lines are never split")
	fs.DurationVar(&s.Flush, "statsd-flush", 5*time.Millisecond, "statsd mode: how often a busy listener collects what arrived and sends it on (about the longest a line waits)")
	fs.BoolVar(&s.Debug, "d", false, "statsd mode: log routing decisions (rate-limited: one line per second)")
}

// proxyConfig is what statsd's proxy.js reads (exampleProxyConfig.js).
type proxyConfig struct {
	Nodes []struct {
		Host      string  `json:"host"`
		Port      flexInt `json:"port"`
		AdminPort flexInt `json:"adminport"`
	} `json:"nodes"`
	Host          string  `json:"host"`
	Port          flexInt `json:"port"`
	MgmtPort      flexInt `json:"mgmt_port"`
	MgmtAddress   string  `json:"mgmt_address"`
	CheckInterval flexInt `json:"checkInterval"`
	Server        string  `json:"server"`
	AddressIPv6   bool    `json:"address_ipv6"`
}

// flexInt takes a JSON number or a numeric string ("8125"), as JavaScript does.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%s is not a whole number", b)
	}
	*f = flexInt(n)
	return nil
}

// jsObjectToJSON turns the JavaScript object literal that proxy.js evaluates
// (comments, unquoted keys, single quotes, trailing commas) into JSON.
func jsObjectToJSON(src []byte) []byte {
	var out bytes.Buffer
	n := len(src)
	lastSignificant := byte(0)
	for i := 0; i < n; i++ {
		c := src[i]
		switch {
		case c == '/' && i+1 < n && src[i+1] == '/':
			for i < n && src[i] != '\n' {
				i++
			}
			out.WriteByte('\n')
		case c == '/' && i+1 < n && src[i+1] == '*':
			i += 2
			for i+1 < n && !(src[i] == '*' && src[i+1] == '/') {
				i++
			}
			i++
			out.WriteByte(' ')
		case c == '"' || c == '\'':
			out.WriteByte('"')
			for i++; i < n && src[i] != c; i++ {
				switch {
				case src[i] == '\\' && i+1 < n:
					if src[i+1] == '\'' {
						out.WriteByte('\'')
					} else {
						out.Write(src[i : i+2])
					}
					i++
				case src[i] == '"':
					out.WriteString(`\"`)
				default:
					out.WriteByte(src[i])
				}
			}
			out.WriteByte('"')
			lastSignificant = '"'
		case c == ',':
			// Drop a trailing comma: look ahead past space and comments.
			j := i + 1
			for j < n {
				if isJSSpace(src[j]) {
					j++
				} else if src[j] == '/' && j+1 < n && src[j+1] == '/' {
					for j < n && src[j] != '\n' {
						j++
					}
				} else if src[j] == '/' && j+1 < n && src[j+1] == '*' {
					j += 2
					for j+1 < n && !(src[j] == '*' && src[j+1] == '/') {
						j++
					}
					j += 2
				} else {
					break
				}
			}
			if j < n && (src[j] == '}' || src[j] == ']') {
				continue
			}
			out.WriteByte(c)
			lastSignificant = c
		case isIdentStart(c) && (lastSignificant == '{' || lastSignificant == ','):
			j := i
			for j < n && isIdentPart(src[j]) {
				j++
			}
			k := j
			for k < n && isJSSpace(src[k]) {
				k++
			}
			word := string(src[i:j])
			if k < n && src[k] == ':' {
				out.WriteString(strconv.Quote(word))
			} else {
				out.WriteString(word)
			}
			i = j - 1
			lastSignificant = 'a'
		default:
			out.WriteByte(c)
			if !isJSSpace(c) {
				lastSignificant = c
			}
		}
	}
	return out.Bytes()
}

func isJSSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}
func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// LoadProxyJS reads a proxy.js configuration and fills the statsd flags
// that were not given on the command line.
func (s *Settings) LoadProxyJS(path string, given map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var pc proxyConfig
	dec := json.NewDecoder(bytes.NewReader(jsObjectToJSON(data)))
	if err := dec.Decode(&pc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(pc.Nodes) == 0 {
		return fmt.Errorf("%s: no nodes", path)
	}
	set := func(flag string, apply func()) {
		if !given[flag] {
			apply()
		}
	}
	set("statsd-nodes", func() {
		var specs []string
		for _, n := range pc.Nodes {
			host := n.Host
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			spec := host + ":" + strconv.Itoa(int(n.Port))
			if n.AdminPort > 0 {
				spec += ":" + strconv.Itoa(int(n.AdminPort))
			}
			specs = append(specs, spec)
		}
		s.Nodes = strings.Join(specs, ",")
	})
	host := pc.Host
	if host == "" {
		host = "0.0.0.0"
		if pc.AddressIPv6 {
			host = "::"
		}
	}
	port := int(pc.Port)
	if port == 0 {
		port = 8125
	}
	set("statsd-listen", func() { s.Listen = net.JoinHostPort(host, strconv.Itoa(port)) })
	mgmtHost, mgmtPort := pc.MgmtAddress, int(pc.MgmtPort)
	if mgmtHost == "" {
		mgmtHost = "localhost" // proxy.js binds 0.0.0.0; an open management port lets anyone redirect the stream
	}
	if mgmtPort == 0 {
		mgmtPort = 8126
	}
	set("statsd-mgmt-addr", func() { s.MgmtAddr = net.JoinHostPort(mgmtHost, strconv.Itoa(mgmtPort)) })
	if pc.CheckInterval > 0 {
		set("statsd-check-interval", func() { s.CheckInterval = time.Duration(pc.CheckInterval) * time.Millisecond })
	}
	if strings.HasSuffix(strings.TrimSuffix(pc.Server, ".js"), "/tcp") {
		set("statsd-tcp", func() { s.TCP = true })
	}
	return nil
}

// Check validates the settings; the nodes are host:port[:adminport].
func (s *Settings) Check() error {
	if s.Nodes == "" {
		return errors.New("-statsd-nodes (or -statsd-config) is required in statsd mode")
	}
	for _, n := range strings.Split(s.Nodes, ",") {
		if _, _, admin, err := SplitNode(strings.TrimSpace(n)); err != nil {
			return fmt.Errorf("-statsd-nodes: %w", err)
		} else if admin != "" {
			if p, err := strconv.Atoi(admin); err != nil || p < 1 || p > 65535 {
				return fmt.Errorf("-statsd-nodes: %s: the admin port must be a number from 1 to 65535", n)
			}
		}
	}
	for _, r := range []struct {
		msg string
		ok  bool
	}{
		{"-statsd-check-interval must be at least 10ms", s.CheckInterval >= 10*time.Millisecond},
		{"-statsd-max-datagram must be from 64 to 65507", s.MaxDatagram >= 64 && s.MaxDatagram <= 65507},
		{"-statsd-flush must be from 100µs to 1s", s.Flush >= 100*time.Microsecond && s.Flush <= time.Second},
		{"-statsd-listen must not be empty", s.Listen != ""},
	} {
		if !r.ok {
			return errors.New(r.msg)
		}
	}
	return nil
}

// SplitNode splits a node host:port[:adminport] ([v6]:port[:adminport]).
func SplitNode(n string) (host, port, admin string, err error) {
	rest := n
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 || !strings.HasPrefix(rest[end+1:], ":") {
			return "", "", "", fmt.Errorf("node %q: want [addr]:port[:adminport]", n)
		}
		host, rest = rest[1:end], rest[end+2:]
	} else {
		var ok bool
		if host, rest, ok = strings.Cut(rest, ":"); !ok {
			return "", "", "", fmt.Errorf("node %q: want host:port[:adminport]", n)
		}
	}
	port, admin, _ = strings.Cut(rest, ":")
	if p, e := strconv.Atoi(port); host == "" || e != nil || p < 1 || p > 65535 {
		return "", "", "", fmt.Errorf("node %q: want host:port[:adminport] with a port from 1 to 65535", n)
	}
	return host, port, admin, nil
}
