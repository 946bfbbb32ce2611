package faults

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make package builds a .deb (nfpm as a Go tool): extracted into a scratch
// root it holds the four static binaries, the three systemd units, the
// /etc/default files (as conffiles) and a sample configuration; the units
// pass systemd-analyze verify (when it is installed), and the packaged
// binary runs.
func TestDebPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dpkg-deb missing")
		}
		t.Skip("dpkg-deb missing")
	}
	build := exec.Command("make", "--no-print-directory", "package")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob("../dist/pkg/polymur_*.deb")
	if len(debs) != 1 {
		t.Fatalf("packages built: %v", debs)
	}
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, out)
	}
	for _, f := range []string{"usr/bin/polymur", "usr/bin/polymur-proxy", "usr/bin/polymur-gateway", "usr/bin/pgw-key",
		"lib/systemd/system/polymur.service", "lib/systemd/system/polymur-proxy.service", "lib/systemd/system/polymur-gateway.service",
		"etc/default/polymur", "etc/default/polymur-proxy", "etc/default/polymur-gateway",
		"usr/share/doc/polymur/examples/polymur.conf", "usr/share/doc/polymur/copyright"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("package lacks %s", f)
		}
	}
	conf, _ := exec.Command("dpkg-deb", "-f", debs[0], "Package").Output()
	if strings.TrimSpace(string(conf)) != "polymur" {
		t.Fatalf("package name %q", conf)
	}
	out, err := exec.Command(filepath.Join(root, "usr/bin/polymur"), "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "polymur ") {
		t.Fatalf("packaged polymur -version: %v %q", err, out)
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: units not verified")
		return
	}
	for _, u := range []string{"polymur", "polymur-proxy", "polymur-gateway"} {
		b, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system", u+".service"))
		unit := filepath.Join(t.TempDir(), u+".service")
		// Point ExecStart at the extracted binary: verify checks it exists.
		os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "ExecStart=/usr/bin/", "ExecStart="+root+"/usr/bin/")), 0o644)
		out, _ := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// Only what it says of our unit (it also reads the system's
			// units, such as graphite-carbon's, and comments on them).
			if l != "" && !strings.Contains(l, "/bin/kill") && (strings.Contains(l, u+".service") || !strings.HasPrefix(l, "/")) {
				t.Errorf("systemd-analyze verify %s: %s", u, l)
			}
		}
	}
}
