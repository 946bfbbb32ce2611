// Package api is the operators' side door into a running daemon: a plain TCP
// text protocol, one command per connection, reply then close, so that
// `echo putdest 127.0.0.1:2104 | nc localhost 2030` works. It serves the
// control API (putdest, getdest, deldest, route, ping, stats, memstats) and
// the runstats port; it reaches the destinations only through the funcs it is given.
package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Handler answers one command; arg is the rest of the line after the command
// word, trimmed. The reply is sent as is, with a newline added if missing.
type Handler func(arg string) string

// Config configures a Server. Zero values take the defaults.
type Config struct {
	Addr     string
	Name     string // for logs, e.g. "api" or "runstats"
	Commands map[string]Handler
	// MaxLine bounds a command line in bytes; longer lines are refused.
	MaxLine int // default 4096
	// Timeout bounds reading the command and writing the reply.
	Timeout time.Duration // default 5s
	// MaxConcurrent bounds connections served at once. A connection over
	// the bound is answered "Error: busy ..." and closed at once, so that a
	// flood never leaves clients waiting in the kernel's accept backlog.
	MaxConcurrent int // default 512
	Logger        *slog.Logger
}

// Server is a line-command TCP server. Safe for concurrent use.
type Server struct {
	cfg  Config
	ln   net.Listener
	log  *slog.Logger
	busy atomic.Uint64 // connections turned away over MaxConcurrent
}

// New validates cfg and binds the socket.
func New(cfg Config) (*Server, error) {
	if cfg.MaxLine == 0 {
		cfg.MaxLine = 4096
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 512
	}
	if cfg.Name == "" {
		cfg.Name = "api"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Commands) == 0 {
		return nil, errors.New("api: no commands")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, ln: ln, log: cfg.Logger}, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close releases the socket of a server that will not Run.
func (s *Server) Close() error { return s.ln.Close() }

// Run serves until ctx ends, then waits for connections in progress.
func (s *Server) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	s.log.Info(s.cfg.Name+" started", "addr", s.ln.Addr().String())
	sem := make(chan struct{}, s.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.log.Error(s.cfg.Name+" accept failed", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		select {
		case sem <- struct{}{}:
			wg.Go(func() {
				defer func() { <-sem }()
				s.serve(conn)
			})
		default:
			if n := s.busy.Add(1); n == 1 || n%1000 == 0 {
				s.log.Warn(s.cfg.Name+" busy: connections turned away", "max_concurrent", s.cfg.MaxConcurrent, "turned_away", n)
			}
			wg.Go(func() { s.turnAway(conn) })
		}
	}
}

// turnAway tells a connection over the bound to come back later.
func (s *Server) turnAway(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
	io.WriteString(conn, "Error: busy: "+strconv.Itoa(s.cfg.MaxConcurrent)+" connections in progress, try again\n")
	// Read what the client sent (briefly) so that closing sends FIN, not a
	// reset that could destroy the reply before the client reads it.
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
}

// TurnedAway is the number of connections answered busy.
func (s *Server) TurnedAway() uint64 { return s.busy.Load() }

func (s *Server) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(s.cfg.Timeout))
	line, err := readLine(conn, s.cfg.MaxLine)
	var reply string
	switch {
	case errors.Is(err, errTooLong):
		reply = "Error: command longer than " + strconv.Itoa(s.cfg.MaxLine) + " bytes"
	case err != nil && len(line) == 0:
		return // connected and closed (a health check or port scan), or timed out
	default:
		reply = s.Dispatch(line)
	}
	if !strings.HasSuffix(reply, "\n") {
		reply += "\n"
	}
	io.WriteString(conn, reply)
	if errors.Is(err, errTooLong) {
		// Let the client finish sending (bounded) so that closing does not
		// reset the connection before it reads the reply.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(conn, 16<<20))
	}
}

// Dispatch runs one command line and returns its reply.
func (s *Server) Dispatch(line string) string {
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	if cmd == "" {
		return "Error: empty command (try help)"
	}
	cmd = asciiLower(cmd)
	if cmd == "help" {
		return s.help()
	}
	h, ok := s.cfg.Commands[cmd]
	if !ok {
		return "Not a command: " + cmd
	}
	return h(strings.TrimSpace(arg))
}

func (s *Server) help() string {
	names := make([]string, 0, len(s.cfg.Commands))
	for n := range s.cfg.Commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return "Commands: " + strings.Join(names, ", ") + ", help"
}

var errTooLong = errors.New("line too long")

// readLine reads up to the first '\n' (or EOF) and at most max bytes.
func readLine(r io.Reader, max int) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, int64(max)+1), 512)
	var buf bytes.Buffer
	for {
		chunk, err := br.ReadSlice('\n')
		buf.Write(chunk)
		if buf.Len() > max {
			return "", errTooLong
		}
		if err == nil {
			return strings.TrimRight(buf.String(), "\r\n"), nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && buf.Len() > 0 {
			return strings.TrimRight(buf.String(), "\r\n"), nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && buf.Len() > 0 {
			return strings.TrimRight(buf.String(), "\r\n"), nil
		}
		return buf.String(), err
	}
}

// asciiLower lowercases ASCII letters only, leaving other bytes (even
// invalid UTF-8) as they are so that error replies echo what was sent.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
