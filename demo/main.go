// Command demo runs the polymur suite end to end on loopback with built-in
// Graphite sinks, so nothing but Go is needed. Part one launches polymur in
// hash-route mode over three sinks, sends sample lines, shows where they
// landed and what the API says, takes a destination down and back up, and
// stops polymur with SIGTERM to show the drain. Part two runs the off-site
// path: polymur-proxy → polymur-gateway (dev mode, no Consul) → a sink.
// `make demo` runs it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the polymur binaries")
	flag.Parse()
	if err := demo(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// sink is a Graphite destination that keeps what it receives.
type sink struct {
	name  string
	ln    net.Listener
	addr  string
	mu    sync.Mutex
	got   []string
	conns map[net.Conn]bool
}

func newSink(name string) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{name: name, ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	go s.serve(ln)
	return s, nil
}

func (s *sink) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				s.mu.Lock()
				s.got = append(s.got, sc.Text())
				s.mu.Unlock()
			}
		}()
	}
}

// stop is an outage: no new connections, existing ones closed.
func (s *sink) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

func (s *sink) restart() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.ln = ln
	go s.serve(ln)
	return nil
}

func (s *sink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

func ask(addr, cmd string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	fmt.Fprintln(c, cmd)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(c)
	return strings.TrimRight(string(out), "\n")
}

func send(addr string, lines ...string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.WriteString(c, strings.Join(lines, "\n")+"\n")
	return err
}

func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func demo(bin string) error {
	var sinks []*sink
	var dests []string
	for _, name := range []string{"a", "b", "c"} {
		s, err := newSink(name)
		if err != nil {
			return err
		}
		sinks = append(sinks, s)
		dests = append(dests, s.addr+":"+name)
	}
	listen, api, stat, adm := freeAddr(), freeAddr(), freeAddr(), freeAddr()
	args := []string{"-listen-addr", listen, "-api-addr", api, "-stat-addr", stat, "-admin-addr", adm,
		"-distribution", "hash-route", "-destinations", strings.Join(dests, ","),
		"-drain-timeout", "3s", "-reconnect-max", "1s"}
	step("starting polymur with three built-in carbon sinks on loopback")
	fmt.Printf("    %s %s\n", filepath.Join(bin, "polymur"), strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(bin, "polymur"), args...)
	logs := &prefixWriter{prefix: "    [polymur] ", w: os.Stdout}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	if err := waitFor("polymur's API", func() bool { return ask(api, "ping") == "pong" }); err != nil {
		return err
	}

	var sample []string
	now := time.Now().Unix()
	for _, host := range []string{"web01", "web02", "db01", "cache01"} {
		for _, m := range []string{"cpu.user", "cpu.system", "mem.used", "net.rx_bytes", "disk.io"} {
			sample = append(sample, fmt.Sprintf("servers.%s.%s %d %d", host, m, len(host)*len(m), now))
		}
	}
	step("sending %d lines (plus a blank and a malformed line) to %s", len(sample), listen)
	if err := send(listen, append(sample, "", "not a metric")...); err != nil {
		return err
	}
	total := func() (n int) {
		for _, s := range sinks {
			n += len(s.lines())
		}
		return n
	}
	if err := waitFor("delivery", func() bool { return total() >= len(sample) }); err != nil {
		return err
	}
	for _, s := range sinks {
		got := s.lines()
		sort.Strings(got)
		fmt.Printf("    sink %s (%s) received %d lines:\n", s.name, s.addr, len(got))
		for _, l := range got {
			fmt.Printf("        %s\n", l)
		}
	}
	step("asking the API where a metric goes:  echo route servers.web01.cpu.user | nc %s", api)
	fmt.Println("    " + ask(api, "route servers.web01.cpu.user"))
	step("getdest")
	fmt.Println(indent(ask(api, "getdest")))
	step("the admin HTTP side (-admin-addr): status page http://%s/, /readyz, and Prometheus /metrics", adm)
	fmt.Println("    /readyz: " + strings.TrimSpace(httpGet("http://"+adm+"/readyz")))
	for _, l := range strings.Split(httpGet("http://"+adm+"/metrics"), "\n") {
		if strings.HasPrefix(l, "polymur_points_received_total") || strings.HasPrefix(l, "polymur_destination_up") ||
			strings.HasPrefix(l, "polymur_lines_rejected_total") {
			fmt.Println("    " + l)
		}
	}

	step("taking sink b down, sending more, bringing it back: nothing is lost")
	before := total()
	sinks[1].stop()
	time.Sleep(300 * time.Millisecond)
	var more []string
	for i := range 30 {
		more = append(more, fmt.Sprintf("outage.metric%d %d %d", i, i, now))
	}
	if err := send(listen, more...); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := sinks[1].restart(); err != nil {
		return err
	}
	if err := waitFor("delivery after the outage", func() bool { return total() >= before+len(more) }); err != nil {
		return err
	}
	fmt.Printf("    %d of %d lines sent during the outage delivered\n", total()-before, len(more))

	step("stats (echo stats | nc %s)", api)
	fmt.Println(indent(ask(api, "stats")))

	step("SIGTERM: polymur stops accepting, drains its queues and exits")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("polymur exited with %v", err)
	}
	fmt.Printf("\n    polymur exited cleanly; %d lines delivered in all.\n", total())
	return pipeline(bin, now)
}

// pipeline runs polymur-proxy → polymur-gateway (dev mode) → a sink.
func pipeline(bin string, now int64) error {
	s, err := newSink("gw")
	if err != nil {
		return err
	}
	gwHTTP, gwAPI, pxListen, pxAPI := freeAddr(), freeAddr(), freeAddr(), freeAddr()
	host, port, _ := net.SplitHostPort(gwHTTP)
	gwArgs := []string{"-dev-mode", "-key-prefix", "-listen-addr", host, "-listen-http-port", port,
		"-api-addr", gwAPI, "-stat-addr", "", "-destinations", s.addr}
	pxArgs := []string{"-gateway", "http://" + gwHTTP, "-api-key", "123", "-listen-addr", pxListen,
		"-api-addr", pxAPI, "-stat-addr", "", "-flush-interval", "200ms"}
	step("the off-site path: polymur-proxy → polymur-gateway (dev mode: key 123, name dev) → sink")
	fmt.Printf("    %s %s\n", filepath.Join(bin, "polymur-gateway"), strings.Join(gwArgs, " "))
	fmt.Printf("    %s %s\n", filepath.Join(bin, "polymur-proxy"), strings.Join(pxArgs, " "))
	var procs []*exec.Cmd
	for _, p := range []struct {
		name string
		args []string
	}{{"polymur-gateway", gwArgs}, {"polymur-proxy", pxArgs}} {
		cmd := exec.Command(filepath.Join(bin, p.name), p.args...)
		logs := &prefixWriter{prefix: "    [" + p.name + "] ", w: os.Stdout}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			return err
		}
		defer cmd.Process.Kill()
		procs = append(procs, cmd)
	}
	if err := waitFor("the proxy and the gateway", func() bool { return ask(gwAPI, "ping") == "pong" && ask(pxAPI, "ping") == "pong" }); err != nil {
		return err
	}
	const n = 20000
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("web%02d.requests.count %d %d", i%50, i, now)
	}
	step("sending %d lines to the proxy on %s", n, pxListen)
	if err := send(pxListen, lines...); err != nil {
		return err
	}
	if err := waitFor("delivery through the gateway", func() bool { return len(s.lines()) >= n }); err != nil {
		return err
	}
	got := s.lines()
	fmt.Printf("    the sink received %d lines, prefixed with the key's name, e.g.:\n        %s\n        %s\n", len(got), got[0], got[len(got)-1])
	stats := ask(pxAPI, "stats")
	fmt.Printf("    proxy: %s raw bytes went over the wire as %s gzip bytes\n", jsonField(stats, "raw_bytes"), jsonField(stats, "gzip_bytes"))
	step("SIGTERM to both")
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Process.Signal(syscall.SIGTERM)
		if err := procs[i].Wait(); err != nil {
			return fmt.Errorf("%s exited with %v", procs[i].Path, err)
		}
	}
	fmt.Println("\n    done: everything sent was delivered, on both paths.")
	return nil
}

// jsonField returns the text after `"key": ` up to the end of the value.
func jsonField(s, key string) string {
	i := strings.Index(s, `"`+key+`": `)
	if i < 0 {
		return "?"
	}
	v := s[i+len(key)+4:]
	if j := strings.IndexAny(v, ",\n}"); j >= 0 {
		v = v[:j]
	}
	return v
}

func httpGet(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// prefixWriter prefixes each line written through it.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
}
