package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fakePool struct {
	mu    sync.Mutex
	dests map[string]time.Time
}

func (f *fakePool) control() Control {
	return Control{
		PutDest: func(s string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !strings.Contains(s, ":") {
				return errors.New("destination " + s + " not valid")
			}
			if _, ok := f.dests[s]; ok {
				return errors.New("destination " + s + " already registered")
			}
			f.dests[s] = time.Unix(0, 0).UTC()
			return nil
		},
		DelDest: func(s string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if _, ok := f.dests[s]; !ok {
				return errors.New("destination " + s + " is not registered")
			}
			delete(f.dests, s)
			return nil
		},
		Route: func(m string) []string {
			if m == "none" {
				return nil
			}
			return []string{"a:1", "b:2"}
		},
		GetDest: func() any {
			f.mu.Lock()
			defer f.mu.Unlock()
			active := []string{}
			for d := range f.dests {
				active = append(active, d)
			}
			return map[string]any{"active": active, "registered": f.dests}
		},
		Stats: func() any { return map[string]int{"received": 1} },
	}
}

func startAPI(t *testing.T) (*Server, *fakePool) {
	t.Helper()
	f := &fakePool{dests: map[string]time.Time{}}
	s, err := New(Config{Addr: "127.0.0.1:0", Commands: ControlCommands(f.control()), Logger: quiet, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, f
}

func ask(t *testing.T, s *Server, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	return string(out)
}

func TestCommands(t *testing.T) {
	s, _ := startAPI(t)
	for _, tc := range []struct{ name, req, want string }{
		{"ping", "ping\n", "pong\n"},
		{"ping crlf", "ping\r\n", "pong\n"},
		{"ping no newline", "ping", "pong\n"},
		{"upper case", "PING\n", "pong\n"},
		{"putdest", "putdest 127.0.0.1:2104\n", "Registered destination: 127.0.0.1:2104\n"},
		{"putdest duplicate", "putdest 127.0.0.1:2104\n", "Error: destination 127.0.0.1:2104 already registered\n"},
		{"putdest garbage", "putdest foo\n", "Error: destination foo not valid\n"},
		{"putdest empty", "putdest\n", "Must provide destination\n"},
		{"getdest", "getdest\n", "{\n \"active\": [\n  \"127.0.0.1:2104\"\n ],\n \"registered\": {\n  \"127.0.0.1:2104\": \"1970-01-01T00:00:00Z\"\n }\n}\n"},
		{"deldest", "deldest 127.0.0.1:2104\n", "Unregistered destination: 127.0.0.1:2104\n"},
		{"deldest unknown", "deldest 10.9.9.9:1234\n", "Error: destination 10.9.9.9:1234 is not registered\n"},
		{"route", "route some.metric 1 2\n", "a:1\nb:2\n"},
		{"route none", "route none\n", "Error: no destinations registered\n"},
		{"route empty", "route\n", "Must provide metric\n"},
		{"unknown", "bogus arg\n", "Not a command: bogus\n"},
		{"empty line", "\n", "Error: empty command (try help)\n"},
		{"whitespace line", "   \n", "Error: empty command (try help)\n"},
		{"stats", "stats\n", "{\n  \"received\": 1\n}\n"},
		{"1 MiB line", strings.Repeat("x", 1<<20) + "\n", "Error: command longer than 4096 bytes\n"},
		{"binary", "\x00\xff\xfe\n", "Not a command: \x00\xff\xfe\n"},
		{"connect and close", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ask(t, s, tc.req); got != tc.want {
				t.Fatalf("%.40q → %q, want %q", tc.req, got, tc.want)
			}
		})
	}
	if got := ask(t, s, "memstats\n"); !strings.Contains(got, "bytes allocated and in use: ") {
		t.Fatalf("memstats: %q", got)
	}
	if got := ask(t, s, "help\n"); !strings.HasPrefix(got, "Commands: deldest, getdest, memstats, ping, putdest, route, stats") {
		t.Fatalf("help: %q", got)
	}
}

func TestThousandConcurrentClients(t *testing.T) {
	s, _ := startAPI(t)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Go(func() {
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			switch i % 3 {
			case 0:
				return // connect and close
			case 1:
				io.WriteString(c, "\n")
			default:
				io.WriteString(c, "ping\n")
			}
			io.ReadAll(c)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := ask(t, s, "ping\n"); got != "pong\n" {
		t.Fatalf("API unusable after the storm: %q", got)
	}
}

func TestSilentClientTimesOut(t *testing.T) {
	s, _ := startAPI(t)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A client that says nothing does not hold up others.
	if got := ask(t, s, "ping\n"); got != "pong\n" {
		t.Fatalf("got %q", got)
	}
}

func FuzzDispatch(f *testing.F) {
	for _, s := range []string{"ping", "putdest a:1", "", " ", "deldest", "route x", "\x00", "getdest extra"} {
		f.Add(s)
	}
	fp := &fakePool{dests: map[string]time.Time{}}
	s := &Server{cfg: Config{Commands: ControlCommands(fp.control())}}
	f.Fuzz(func(t *testing.T, line string) {
		if out := s.Dispatch(line); out == "" {
			t.Fatalf("empty reply for %q", line)
		}
	})
}

func TestOverTheBoundIsBusyNotAHang(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", Commands: map[string]Handler{"ping": func(string) string { return "pong" }},
		Logger: quiet, MaxConcurrent: 2, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Two silent clients take both slots.
	for range 2 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.TurnedAway() == 0 && time.Now().Before(deadline) {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "ping\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, _ := io.ReadAll(c)
		c.Close()
		if got := string(out); got != "pong\n" && !strings.HasPrefix(got, "Error: busy: 2 connections") {
			t.Fatalf("third client got %q", got)
		}
	}
	if s.TurnedAway() == 0 {
		t.Fatal("nobody was turned away")
	}
}

// TestReadOnlyControl: with ReadOnly, putdest and deldest change nothing
// and say which flag allows them; reads still answer.
func TestReadOnlyControl(t *testing.T) {
	changed := false
	cmds := ControlCommands(Control{
		PutDest:  func(string) error { changed = true; return nil },
		DelDest:  func(string) error { changed = true; return nil },
		Route:    func(string) []string { return []string{"a"} },
		GetDest:  func() any { return []string{"a"} },
		Stats:    func() any { return nil },
		ReadOnly: true, ReadOnlyHint: "-api-readonly is set",
	})
	for _, c := range []string{"putdest", "deldest"} {
		if got := cmds[c]("127.0.0.1:2003"); !strings.Contains(got, "-api-readonly") {
			t.Fatalf("%s read-only: %q", c, got)
		}
	}
	if changed {
		t.Fatal("a read-only API changed destinations")
	}
	if got := cmds["route"]("x"); got != "a" {
		t.Fatalf("route: %q", got)
	}
}
