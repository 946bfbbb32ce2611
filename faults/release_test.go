package faults

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A release build (CGO_ENABLED=0) is static: it runs in an empty root —
// what a distroless or scratch container gives it — and answers -version
// and -test there.
func TestStaticBinaryRunsInEmptyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("chroot needs root")
		}
		t.Skip("chroot needs root")
	}
	root := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(root, "polymur"), "./cmd/polymur")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	out, err := exec.Command("chroot", root, "/polymur", "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "polymur ") {
		t.Fatalf("in an empty root: %v %q", err, out)
	}
	cmd := exec.Command("chroot", root, "/polymur", "-test", "-distribution", "hash-route", "-destinations", "10.0.0.1:2004:a,10.0.0.2:2004:b")
	cmd.Stdin = strings.NewReader("servers.web01.cpu.user\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "servers.web01.cpu.user\t10.0.0.") {
		t.Fatalf("-test in an empty root: %v %q", err, out)
	}
}

// Every command says what it is: -version (pgw-key version) prints the
// version, commit and Go version and exits 0.
func TestVersion(t *testing.T) {
	for _, c := range [][]string{{"polymur", "-version"}, {"polymur-proxy", "-version"}, {"polymur-gateway", "-version"}, {"pgw-key", "version"}} {
		out, err := exec.Command(bin(c[0]), c[1]).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), c[0]+" ") || !strings.Contains(string(out), "go1.") {
			t.Errorf("%s %s: %v %q", c[0], c[1], err, out)
		}
	}
}
