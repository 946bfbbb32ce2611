package testutil

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Chromium finds a headless-capable Chromium (`make test` installs Debian's
// chromium when it is missing). Without one the test is skipped, except
// under CI=true, where it fails.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{os.Getenv("POLYMUR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium: `make test` installs Debian's chromium package, or set POLYMUR_CHROMIUM"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// RenderPage loads url in headless Chromium, lets its scripts run for
// budget of virtual time, and returns the DOM as rendered. It also saves a
// screenshot to shot (a .png path) when shot is not empty.
func RenderPage(t testing.TB, url string, budget time.Duration, shot string) string {
	t.Helper()
	bin := Chromium(t)
	profile := t.TempDir()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--user-data-dir=" + profile,
		"--window-size=1280,900", "--virtual-time-budget=" + strconv.Itoa(int(budget/time.Millisecond))}
	run := func(extra ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(append(base, extra...), url)...)
		var stderr SyncBuffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
		}
		return out
	}
	dom := string(run("--dump-dom"))
	if shot != "" {
		if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
			t.Fatal(err)
		}
		run("--screenshot=" + shot)
		if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
			t.Fatalf("no screenshot at %s: %v", shot, err)
		}
	}
	return dom
}
