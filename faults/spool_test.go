package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

func spoolInput(prefix string, n int) []byte {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "%s.host%03d.m%d %d 1700000000\n", prefix, i%97, i, i)
	}
	return []byte(sb.String())
}

// uniq counts the distinct lines a sink holds and how many arrived twice.
func uniq(s *testutil.Sink) (distinct, doubled int) {
	seen := map[string]bool{}
	for _, l := range s.Lines() {
		if seen[l] {
			doubled++
			continue
		}
		seen[l] = true
	}
	return len(seen), doubled
}

// kill -9 while a spool is being replayed: restarted, polymur replays from
// the last acknowledged record. Nothing is lost, and the lines delivered
// twice are at most those acknowledged since the cursor was last written:
// 10 ms of delivery, or one write (≤ 1 MiB of lines) when that is more.
func TestKillDuringReplay(t *testing.T) {
	s := testutil.NewSink(t)
	s.Stop()
	dir := t.TempDir()
	args := []string{"-destinations", s.Addr(), "-spool-dir", dir, "-spool-replay-rate", "20000", "-dead-after", "1"}
	r := startPolymur(t, args...)
	const n = 100_000
	testutil.SendTCP(t, r.listen, spoolInput("kill9", n))
	testutil.WaitFor(t, "every line received", limit, func() bool { return r.stat("received") == n })
	r.Stop(t)                    // the destination is down: the queue goes to the spool
	s.SetDelay(time.Millisecond) // a destination that takes a while: the kill lands mid-replay
	s.Start()
	r.start(t)
	replayStart := time.Now()
	testutil.WaitFor(t, "replay under way", limit, func() bool { return s.Count() >= n/3 })
	r.Cmd.Process.Signal(syscall.SIGKILL)
	for !r.Exited() {
		time.Sleep(10 * time.Millisecond)
	}
	atKill := s.Count()
	rate := float64(atKill) / time.Since(replayStart).Seconds()
	s.SetDelay(0)
	r.start(t)
	testutil.WaitFor(t, "every line delivered", limit, func() bool { d, _ := uniq(s); return d == n })
	time.Sleep(300 * time.Millisecond)
	distinct, doubled := uniq(s)
	bound := max(int(rate*0.020), (1<<20)/40) // 10 ms (with slack) at the measured rate, or one write of ~40-byte lines
	t.Logf("kill -9 after %d of %d replayed lines (%.0f lines/s): all %d delivered, %d twice (bound %d)", atKill, n, rate, distinct, doubled, bound)
	if doubled > bound {
		t.Fatalf("%d lines delivered twice after kill -9; the bound is 10 ms of acknowledgements or one write: %d", doubled, bound)
	}
	r.Stop(t)
}

// Two processes on one -spool-dir would replay and delete each other's
// data: the second refuses to start, naming the first.
func TestSharedSpoolDirRefused(t *testing.T) {
	s := testutil.NewSink(t)
	dir := t.TempDir()
	r := startPolymur(t, "-destinations", s.Addr(), "-spool-dir", dir)
	out, err := exec.Command(bin("polymur"), "-listen-addr", testutil.FreeAddr(t), "-api-addr", "", "-stat-addr", "",
		"-destinations", s.Addr(), "-spool-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-spool-dir") || !strings.Contains(string(out), fmt.Sprintf("pid %d", r.Pid())) {
		t.Fatalf("second polymur on the same spool dir: err %v, output %q", err, out)
	}
	gw := testutil.FreeAddr(t)
	out, err = exec.Command(bin("polymur-proxy"), "-listen-addr", testutil.FreeAddr(t), "-stat-addr", "",
		"-gateway", "http://"+gw, "-api-key", "k", "-spool-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another process") {
		t.Fatalf("proxy on polymur's spool dir: err %v, output %q", err, out)
	}
	r.Stop(t)
}

// mountTmpfs mounts a small tmpfs (a disk that fills up) at a new
// directory; root only. Under CI it must work.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (%v %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A full disk under the spool: the drops are counted as spool_write_error
// and logged a few times (not per batch), no temporary files pile up, and
// once the destination is back exactly what was spooled is delivered —
// nothing twice. A read-only spool directory fails at start.
func TestSpoolOnFullDisk(t *testing.T) {
	disk := mountTmpfs(t, "1m")
	s := testutil.NewSink(t)
	s.Stop()
	r := startPolymur(t, "-destinations", s.Addr(), "-spool-dir", disk, "-dead-after", "1", "-outgoing-queue-cap", "1000")
	const n = 60_000 // ~2.6 MB: more than the disk holds
	testutil.SendTCP(t, r.listen, spoolInput("full", n))
	testutil.WaitFor(t, "every line received", limit, func() bool { return r.stat("received") == n })
	testutil.WaitFor(t, "drops counted", limit, func() bool {
		st := testutil.Ask(r.api, "stats")
		return testutil.JSONInt(st, "spool_write_error")+testutil.JSONInt(st, "spooled")+testutil.JSONInt(st, "queue_depth") >= n
	})
	st := testutil.Ask(r.api, "stats")
	dropped := testutil.JSONInt(st, "spool_write_error")
	if dropped == 0 || strings.Contains(st, `"spool_full"`) {
		t.Fatalf("a full disk must count spool_write_error, not spool_full:\n%s", st)
	}
	if logs := strings.Count(r.Logs.String(), "spool write failed"); logs > 3 {
		t.Fatalf("%d 'spool write failed' log lines: not rate-limited", logs)
	}
	tmp, _ := filepath.Glob(filepath.Join(disk, "*", "*.tmp"))
	if len(tmp) > 0 {
		t.Fatalf("%d temporary files left in the spool", len(tmp))
	}
	s.Start()
	kept := n - dropped
	testutil.WaitFor(t, "what was kept delivered", limit, func() bool { return s.Count() >= kept })
	time.Sleep(500 * time.Millisecond)
	distinct, doubled := uniq(s)
	t.Logf("disk full: %d of %d lines dropped as spool_write_error, %d delivered after recovery, %d twice", dropped, n, distinct, doubled)
	if distinct != kept || doubled != 0 {
		t.Fatalf("delivered %d distinct (%d twice), want the %d kept exactly once", distinct, doubled, kept)
	}
	r.Stop(t)

	ro := mountTmpfs(t, "1m")
	if out, err := exec.Command("mount", "-o", "remount,ro", ro).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	out, err := exec.Command(bin("polymur"), "-listen-addr", testutil.FreeAddr(t), "-api-addr", "", "-stat-addr", "",
		"-destinations", s.Addr(), "-spool-dir", ro).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-spool-dir") || !strings.Contains(string(out), "not writable") {
		t.Fatalf("read-only spool dir: err %v, output %q", err, out)
	}
}
