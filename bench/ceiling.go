package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Ceilings: what the machine allows a relay at all. The bench binary
// re-runs itself as a trivial forwarder (every connection's bytes up to its
// last newline copied to one destination connection), optionally finding
// every line, so each figure of a relay has its
// limit beside it, on the same input, sinks and CPU accounting.

// forwardMain is the forwarder process: -forward LISTEN -to DEST [-split].
func forwardMain(listen, to string, split bool) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fatal("forward: %v", err)
	}
	out, err := net.Dial("tcp", to)
	if err != nil {
		fatal("forward: %v", err)
	}
	var mu sync.Mutex
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 64<<10)
			pending := 0
			for {
				n, err := c.Read(buf[pending:])
				end := pending + n
				// Only whole lines go out (20 connections share one
				// destination connection): the last newline, found from
				// the end; with split, every line, one by one.
				upto := bytes.LastIndexByte(buf[:end], '\n') + 1
				if split {
					upto = 0
					for i := 0; i < end; {
						j := bytes.IndexByte(buf[i:end], '\n')
						if j < 0 {
							break
						}
						i += j + 1
						upto = i
					}
				}
				if upto > 0 {
					mu.Lock()
					out.Write(buf[:upto])
					mu.Unlock()
				}
				pending = copy(buf, buf[upto:end])
				if err != nil {
					return
				}
			}
		}()
	}
}

// ceilingRun measures the forwarders and polymur broadcasting to one
// destination on the same input (20 connections), three rounds interleaved.
func ceilingRun(bin string, lines int, timeout time.Duration) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	in := generate(lines, 20)
	fwd := func(name string, split bool) run {
		return run{name, "", func(dest, listen string) (*exec.Cmd, error) {
			args := []string{"-forward", listen, "-to", dest}
			if split {
				args = append(args, "-split")
			}
			cmd := exec.Command(self, args...)
			cmd.Stderr = os.Stderr
			return cmd, cmd.Start()
		}}
	}
	runs := []run{
		fwd("ceiling: read + write", false),
		fwd("ceiling: + split into lines", true),
		{"polymur", "broadcast, 1 destination", func(dest, listen string) (*exec.Cmd, error) {
			cmd := exec.Command(filepath.Join(bin, "polymur"), "-listen-addr", listen, "-api-addr", "", "-stat-addr", "", "-log-level", "warn", "-destinations", dest)
			cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
			return cmd, cmd.Start()
		}},
	}
	return interleaved("one destination", 3, runs, len(in.bufs), func(r run) (measured, error) {
		s, err := newSink()
		if err != nil {
			return measured{}, err
		}
		defer s.close()
		rl := relay{name: r.name, settings: r.settings, start: func(_, listen string, _ []string) (*exec.Cmd, error) { return r.start(s.addr(), listen) }}
		res, err := measure(rl, "broadcast", []*sink{s}, []string{s.addr()}, in, int64(in.lines), timeout)
		return measured{res, int64(in.lines)}, err
	})
}
