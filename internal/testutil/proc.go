package testutil

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildCommands builds every command of the module (./cmd/...) into a new
// temporary directory and returns it. root is the module root relative to
// the calling test's package. For TestMain of packages that run binaries.
func BuildCommands(root string) (string, error) {
	dir, err := os.MkdirTemp("", "polymur-bin")
	if err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./cmd/...")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building the commands: %w", err)
	}
	return dir, nil
}

// MainWithCommands is a TestMain for packages that run the binaries: it
// builds them, points *dir at them, runs the tests and exits.
func MainWithCommands(m *testing.M, root string, dir *string) {
	d, err := BuildCommands(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*dir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// Proc is a daemon process started from a built binary. Its output is kept
// in Logs; it is killed at cleanup if still running.
type Proc struct {
	Cmd  *exec.Cmd
	Logs *SyncBuffer
	done chan struct{}
}

// StartProc starts bin with args and extra environment.
func StartProc(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), Logs: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Logs, p.Logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Name is the binary's base name.
func (p *Proc) Name() string { return filepath.Base(p.Cmd.Path) }

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits for the process to exit 0.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not stop:\n%s", p.Name(), p.Logs)
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited %d:\n%s", p.Name(), code, p.Logs)
	}
}

// OpenFDs counts the process's open file descriptors (Linux /proc).
func (p *Proc) OpenFDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	return len(ents), err
}

// Ask sends one command line to a line-command API at addr and returns the
// trimmed reply ("" when it cannot connect).
func Ask(addr, cmd string) string {
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

// WaitFor polls cond until it holds; limit only keeps a broken test from
// hanging.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SendTCP writes data to addr on one connection and closes it.
func SendTCP(t testing.TB, addr string, data []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
}

// JSONInt finds `"key": <int>` in indented JSON (the first occurrence).
func JSONInt(s, key string) int {
	i := strings.Index(s, `"`+key+`": `)
	if i < 0 {
		return 0
	}
	var v int
	fmt.Sscanf(s[i+len(key)+4:], "%d", &v)
	return v
}
