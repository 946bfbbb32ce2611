package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// udpBackend stands in for a statsd daemon: it counts the lines of the
// datagrams it receives and answers "health: up" on its admin port, so both
// proxies see the same, never-slow backends.
type udpBackend struct {
	conn  *net.UDPConn
	admin net.Listener
	lines atomic.Int64
	wg    sync.WaitGroup
}

func newUDPBackend() (*udpBackend, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(16 << 20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.Close()
		return nil, err
	}
	b := &udpBackend{conn: c, admin: ln}
	b.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n > 0 {
				b.lines.Add(int64(strings.Count(string(buf[:n]), "\n") + 1))
			}
		}
	})
	b.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(conn)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					fmt.Fprint(conn, "health: up\n")
				}
			}()
		}
	})
	return b, nil
}

func (b *udpBackend) udpPort() int   { return b.conn.LocalAddr().(*net.UDPAddr).Port }
func (b *udpBackend) adminPort() int { return b.admin.Addr().(*net.TCPAddr).Port }
func (b *udpBackend) close()         { b.conn.Close(); b.admin.Close(); b.wg.Wait() }

// statsdInput is datagrams of statsd counters (up to ~1400 bytes, as
// clients send them) over a set of names.
func statsdInput(lines, names int) [][]byte {
	var out [][]byte
	var cur []byte
	for i := range lines {
		l := fmt.Sprintf("app%d.service.endpoint%d.requests:1|c", i%names%97, i%names)
		if len(cur)+len(l)+1 > 1400 {
			out = append(out, cur)
			cur = nil
		}
		if len(cur) > 0 {
			cur = append(cur, '\n')
		}
		cur = append(cur, l...)
	}
	return append(out, cur)
}

type statsdResult struct {
	relay           string
	rate            int // offered lines/s (0: as fast as the sender goes)
	sent, delivered int64
	cpu             time.Duration
	wall            time.Duration
	rss             int64
}

func (r statsdResult) row() string {
	rate := "unpaced"
	if r.rate > 0 {
		rate = fmt.Sprintf("%dk/s", r.rate/1000)
	}
	perCPU := "—"
	if r.cpu > 0 {
		perCPU = fmt.Sprintf("%.0fk", float64(r.delivered)/r.cpu.Seconds()/1000)
	}
	return fmt.Sprintf("| %s | %s | %.2f%% (%d of %d) | %.0fk | %s | %.2f s | %.1f MiB |", r.relay, rate,
		100*float64(r.delivered)/float64(r.sent), r.delivered, r.sent, float64(r.sent)/r.wall.Seconds()/1000, perCPU,
		r.cpu.Seconds(), float64(r.rss)/(1<<20))
}

// statsdRun offers the input to a proxy on addr at rate lines/s and waits
// for the backends to stop receiving.
func statsdRun(name string, pid int, addr string, input [][]byte, linesPer []int, rate int, backends []*udpBackend) (statsdResult, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return statsdResult{}, err
	}
	defer c.Close()
	base := int64(0)
	for _, b := range backends {
		base += b.lines.Load()
	}
	cpu0, _, err := procStats(pid)
	if err != nil {
		return statsdResult{}, err
	}
	start := time.Now()
	var sent int64
	for i, d := range input {
		c.Write(d)
		sent += int64(linesPer[i])
		if rate > 0 {
			if due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
				time.Sleep(time.Until(due))
			}
		}
	}
	wall := time.Since(start)
	// Wait until nothing more arrives for a second.
	last, still := int64(-1), time.Now()
	for time.Since(still) < time.Second {
		n := int64(0)
		for _, b := range backends {
			n += b.lines.Load()
		}
		if n != last {
			last, still = n, time.Now()
		}
		if n-base >= sent {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpu1, hwm, err := procStats(pid)
	if err != nil {
		return statsdResult{}, err
	}
	return statsdResult{relay: name, rate: rate, sent: sent, delivered: last - base, cpu: cpu1 - cpu0, wall: wall, rss: hwm}, nil
}

// statsdBench compares polymur -mode statsd with statsd's proxy.js on the
// same input and the same backends: delivered %, lines per relay
// CPU-second, at a rate proxy.js sustains and unpaced.
func statsdBench(bin, statsdDir string, lines int, rates []int) ([]string, error) {
	proxyJS := filepath.Join(statsdDir, "proxy.js")
	if _, err := os.Stat(proxyJS); err != nil {
		return []string{"statsd mode: statsd's proxy.js not found (make statsd): skipped"}, nil
	}
	var backends []*udpBackend
	var nodesJS, nodesFlag []string
	for range 3 {
		b, err := newUDPBackend()
		if err != nil {
			return nil, err
		}
		defer b.close()
		backends = append(backends, b)
		nodesJS = append(nodesJS, fmt.Sprintf("{host: '127.0.0.1', port: %d, adminport: %d}", b.udpPort(), b.adminPort()))
		nodesFlag = append(nodesFlag, fmt.Sprintf("127.0.0.1:%d:%d", b.udpPort(), b.adminPort()))
	}
	input := statsdInput(lines, 5000)
	linesPer := make([]int, len(input))
	for i, d := range input {
		linesPer[i] = strings.Count(string(d), "\n") + 1
	}
	type proc struct {
		name string
		cmd  *exec.Cmd
		addr string
	}
	startProxyJS := func() (proc, error) {
		port := freeUDPPort()
		dir, err := os.MkdirTemp("", "polymur-bench-proxyjs")
		if err != nil {
			return proc{}, err
		}
		conf := filepath.Join(dir, "proxyConfig.js")
		os.WriteFile(conf, []byte(fmt.Sprintf("{\nnodes: [%s],\nserver: './servers/udp',\nhost: '127.0.0.1',\nport: %d,\nmgmt_port: %s,\nmgmt_address: '127.0.0.1',\nforkCount: 0,\ncheckInterval: 1000,\ncacheSize: 10000\n}\n",
			strings.Join(nodesJS, ", "), port, portOf(freeAddr()))), 0o600)
		cmd := exec.Command("node", "proxy.js", conf)
		cmd.Dir = statsdDir
		if err := cmd.Start(); err != nil {
			return proc{}, err
		}
		return proc{"statsd proxy.js (node)", cmd, fmt.Sprintf("127.0.0.1:%d", port)}, nil
	}
	startPolymur := func() (proc, error) {
		udp, mgmt := fmt.Sprintf("127.0.0.1:%d", freeUDPPort()), freeAddr()
		cmd, err := startBin(bin, "polymur", "-mode", "statsd", "-statsd-listen", udp, "-statsd-mgmt-addr", mgmt, "-stat-addr", "",
			"-statsd-nodes", strings.Join(nodesFlag, ","), "-statsd-check-interval", "1s", "-log-level", "warn")
		if err != nil {
			return proc{}, err
		}
		return proc{"polymur -mode statsd", cmd, udp}, waitListening(mgmt, 10*time.Second)
	}
	var rows []string
	var jsAt *statsdResult
	// Both at the same offered rates (proxy.js, single-threaded, keeps up
	// to some rate and then loses datagrams), then unpaced.
	for _, rate := range rates {
		for _, start := range []func() (proc, error){startProxyJS, startPolymur} {
			p, err := start()
			if err != nil {
				return nil, err
			}
			time.Sleep(1500 * time.Millisecond) // first health checks
			res, err := statsdRun(p.name, p.cmd.Process.Pid, p.addr, input, linesPer, rate, backends)
			stopBin(p.cmd)
			if err != nil {
				return nil, err
			}
			rows = append(rows, res.row())
			fmt.Println(res.row())
			if strings.HasPrefix(p.name, "statsd") {
				r := res
				jsAt = &r
			} else if jsAt != nil && jsAt.cpu > 0 && res.cpu > 0 {
				ratio := (float64(res.delivered) / res.cpu.Seconds()) / (float64(jsAt.delivered) / jsAt.cpu.Seconds())
				row := fmt.Sprintf("| **polymur ÷ proxy.js** at %dk/s | | | | **%.1f×** | | |", rate/1000, ratio)
				rows = append(rows, row)
				fmt.Println(row)
			}
		}
	}
	for _, start := range []func() (proc, error){startProxyJS, startPolymur} {
		p, err := start()
		if err != nil {
			return nil, err
		}
		time.Sleep(1500 * time.Millisecond)
		res, err := statsdRun(p.name, p.cmd.Process.Pid, p.addr, input, linesPer, 0, backends)
		stopBin(p.cmd)
		if err != nil {
			return nil, err
		}
		rows = append(rows, res.row())
		fmt.Println(res.row())
	}
	head := []string{"", fmt.Sprintf("statsd mode vs statsd's proxy.js (0.9.0, node %s): %d counter lines over 5,000 names in ~1400-byte datagrams, 3 UDP backends on loopback that count lines (and answer health checks); \"lines/CPU-s\" is delivered lines per second of proxy CPU.", nodeVersion(), lines),
		"", "| proxy | offered | delivered | sent lines/s (wall) | delivered lines/CPU-s | proxy CPU | peak RSS |", "|---|---|---|---|---|---|---|"}
	return append(head, rows...), nil
}

func freeUDPPort() int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
