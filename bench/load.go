package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// input is pre-generated load: one buffer per client connection, and the
// count and order-independent checksum of all its lines.
type input struct {
	bufs  [][]byte
	lines int
	sum   uint64
	bytes int
}

var (
	dcs     = []string{"us-east-1", "us-west-2", "eu-west-1", "ap-south-1"}
	groups  = []string{"cpu", "memory", "disk", "net", "nginx", "jvm", "postgres", "redis"}
	metrics = []string{"user", "system", "iowait", "used", "free", "rx_bytes", "tx_bytes", "requests.count", "latency.p99", "errors.rate"}
)

// generate builds n realistic Graphite lines ("bench.<dc>.<host>.<group>.
// <metric>") split over conns connections. Generation happens before the
// clock starts.
func generate(n, conns int) input {
	in := input{lines: n, bufs: make([][]byte, conns)}
	per := (n + conns - 1) / conns
	var line []byte
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for c := range conns {
		var b bytes.Buffer
		for i := c * per; i < min(n, (c+1)*per); i++ {
			line = line[:0]
			line = append(line, "bench."...)
			line = append(line, dcs[i%len(dcs)]...)
			line = append(line, ".host"...)
			line = strconv.AppendInt(line, int64(i%5000), 10)
			line = append(line, '.')
			line = append(line, groups[(i/7)%len(groups)]...)
			line = append(line, '.')
			line = append(line, metrics[(i/3)%len(metrics)]...)
			line = append(line, '.')
			line = strconv.AppendInt(line, int64(i/20000), 10)
			line = in.add(&b, line, float64(i%9973)/7, ts)
		}
		in.bufs[c] = b.Bytes()
		in.bytes += b.Len()
	}
	return in
}

// add completes line (a metric name) with value and ts, writes it to b and
// counts it in the input's checksum; it returns line for reuse.
func (in *input) add(b *bytes.Buffer, line []byte, value float64, ts string) []byte {
	line = append(line, ' ')
	line = strconv.AppendFloat(line, value, 'f', 2, 64)
	line = append(line, ' ')
	line = append(line, ts...)
	line = append(line, '\n')
	b.Write(line)
	in.sum += lineHash(line)
	return line
}

func lineHash(line []byte) uint64 {
	h := fnv.New64a()
	h.Write(line)
	return h.Sum64()
}

// send writes every connection's buffer to addr concurrently.
func (in input) send(addr string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(in.bufs))
	for _, buf := range in.bufs {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := c.Write(buf); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// sink is a Graphite destination that counts and checksums bench lines and
// counts anything else (a relay's own statistics) separately.
type sink struct {
	ln    net.Listener
	lines atomic.Int64
	other atomic.Int64
	mu    sync.Mutex
	sum   uint64
	wg    sync.WaitGroup
	conns sync.Map
}

func newSink() (*sink, error) { return newSinkOn("127.0.0.1") }

// newSinkOn listens on ip (a loopback address: 127.0.0.0/8).
func newSinkOn(ip string) (*sink, error) {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Store(c, true)
			s.wg.Go(func() { s.read(c) })
		}
	})
	return s, nil
}

func (s *sink) addr() string { return s.ln.Addr().String() }

func (s *sink) read(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 256<<10)
	var sum uint64
	var n, other int64
	flush := func() {
		s.mu.Lock()
		s.sum += sum
		s.mu.Unlock()
		s.lines.Add(n)
		s.other.Add(other)
		sum, n, other = 0, 0, 0
	}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			other++ // absurdly long line: not ours
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			flush()
			return
		}
		if bytes.HasPrefix(line, []byte("bench.")) {
			sum += lineHash(line)
			n++
		} else {
			other++
		}
		if r.Buffered() == 0 || n%4096 == 0 {
			flush()
		}
	}
}

func (s *sink) checksum() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum
}

func (s *sink) close() {
	s.ln.Close()
	s.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	s.wg.Wait()
}

// procStats reads a process's CPU time (utime+stime) and peak RSS.
func procStats(pid int) (cpu time.Duration, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the ")" of the command name; utime and stime are 14 and 15.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / 100 // CLK_TCK is 100 on Linux
	if ns, ok := schedCPU(pid); ok {
		cpu = ns // nanoseconds, not 10 ms ticks
	}
	st2, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return cpu, 0, err
	}
	for _, l := range strings.Split(string(st2), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			hwm = kb << 10
		}
	}
	return cpu, hwm, nil
}

// schedCPU is the CPU time of every thread of pid from
// /proc/PID/task/*/schedstat (nanoseconds on the CPU).
func schedCPU(pid int) (time.Duration, bool) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		total += n
	}
	return time.Duration(total), true
}

// vmRSS returns the current resident set size.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// waitListening waits until a socket listens on addr's port, read from
// /proc/net/tcp{,6}: no probe connection (connecting and closing right
// after a start makes carbon-c-relay 3.7.3 crash in some starts).
func waitListening(addr string, limit time.Duration) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	want := fmt.Sprintf(":%04X ", p)
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(b), "\n") {
				// "sl local_address rem_address st ...": st 0A is LISTEN.
				fs := strings.Fields(l)
				if len(fs) > 3 && strings.HasSuffix(fs[1]+" ", want) && fs[3] == "0A" {
					return nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after %v", addr, limit)
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
		return ""
	}
	defer c.Close()
	fmt.Fprintln(c, cmd)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(c)
	return strings.TrimSpace(string(out))
}
