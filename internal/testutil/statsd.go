package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// StatsdVersion is the npm package `make statsd` installs.
const StatsdVersion = "0.9.0"

// StatsdDir finds statsd's package directory (stats.js, proxy.js):
// $POLYMUR_STATSD_DIR, then the cache `make statsd` fills. Without it, or
// without node, the test is skipped — except under CI=true, where it fails.
func StatsdDir(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("POLYMUR_STATSD_DIR")}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".cache", "polymur", "statsd-"+StatsdVersion, "node_modules", "statsd"))
	}
	_, nodeErr := exec.LookPath("node")
	for _, c := range candidates {
		if c == "" || nodeErr != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(c, "stats.js")); err == nil {
			return c
		}
	}
	msg := "no statsd: run `make statsd` (npm install statsd@" + StatsdVersion + " into ~/.cache/polymur) and have node on PATH"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreeUDPAddr returns a loopback UDP address that was free a moment ago.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// Statsd is a real statsd daemon (Etsy's, on node) on loopback whose
// graphite backend flushes into a Sink, so a test can read what it
// aggregated. It can be stopped and started again on the same ports.
type Statsd struct {
	t         testing.TB
	dir, conf string
	UDPAddr   string // where it takes statsd lines
	MgmtAddr  string // its admin interface (health)
	Sink      *Sink  // its graphite flushes
	mu        sync.Mutex
	cmd       *exec.Cmd
	logs      *SyncBuffer
	done      chan struct{}
}

// StartStatsd starts a statsd that flushes every flush to a new Sink.
func StartStatsd(t testing.TB, flush time.Duration) *Statsd {
	t.Helper()
	s := &Statsd{t: t, dir: StatsdDir(t), UDPAddr: FreeUDPAddr(t), MgmtAddr: FreeAddr(t), Sink: NewSink(t)}
	_, udpPort, _ := net.SplitHostPort(s.UDPAddr)
	_, mgmtPort, _ := net.SplitHostPort(s.MgmtAddr)
	_, sinkPort, _ := net.SplitHostPort(s.Sink.Addr())
	s.conf = filepath.Join(t.TempDir(), "statsd.js")
	conf := fmt.Sprintf(`{ address: "127.0.0.1", port: %s, mgmt_address: "127.0.0.1", mgmt_port: %s,
  backends: ["./backends/graphite"], graphiteHost: "127.0.0.1", graphitePort: %s,
  flushInterval: %d, deleteIdleStats: true }`, udpPort, mgmtPort, sinkPort, flush.Milliseconds())
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the daemon and waits until its admin port says up.
func (s *Statsd) Start() {
	s.t.Helper()
	s.mu.Lock()
	s.cmd = exec.Command("node", "stats.js", s.conf)
	s.cmd.Dir = s.dir
	s.logs = &SyncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatalf("start statsd: %v", err)
	}
	s.done = make(chan struct{})
	cmd, done := s.cmd, s.done
	go func() { cmd.Wait(); close(done) }()
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(askLine(s.MgmtAddr, "health"), "up") {
		select {
		case <-done:
			s.t.Fatalf("statsd exited at start:\n%s", s.logs)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("statsd on %s not up after 30s:\n%s", s.MgmtAddr, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the daemon (an outage; what it had not flushed is gone).
func (s *Statsd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Counts sums what the daemon flushed as stats_counts.<name> for names with
// prefix: name → total count.
func (s *Statsd) Counts(prefix string) map[string]int {
	out := map[string]int{}
	for _, l := range s.Sink.Lines() {
		f := strings.Fields(l)
		if len(f) != 3 || !strings.HasPrefix(f[0], "stats_counts."+prefix) {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		out[strings.TrimPrefix(f[0], "stats_counts.")] += int(v)
	}
	return out
}

// SendUDP writes each datagram to addr, pausing every burst datagrams so
// that loopback UDP is not overrun (a bounded rate).
func SendUDP(t testing.TB, addr string, datagrams []string, burst int, pause time.Duration) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, d := range datagrams {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
		if burst > 0 && (i+1)%burst == 0 {
			time.Sleep(pause)
		}
	}
}

// askLine sends cmd to a telnet-style admin port (statsd's keeps the
// connection open) and returns the first line of the answer.
func askLine(addr, cmd string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	fmt.Fprintf(c, "%s\r\n", cmd)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}
