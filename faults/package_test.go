package faults

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make package builds a .deb and an .rpm (nfpm as a Go tool): extracted
// into a scratch root the .deb holds the four static binaries, the three
// systemd units, the /etc/default files (as conffiles), man pages that man
// renders without a warning, and a sample configuration; lintian finds
// nothing, the units pass systemd-analyze verify, the .rpm lists the same
// files (each tool when installed; make test installs them), and the
// packaged binary runs.
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
		"usr/share/doc/polymur/examples/polymur.conf", "usr/share/doc/polymur/copyright", "usr/share/doc/polymur/changelog.gz",
		"usr/share/man/man1/polymur.1.gz", "usr/share/man/man1/polymur-proxy.1.gz", "usr/share/man/man1/polymur-gateway.1.gz", "usr/share/man/man1/pgw-key.1.gz"} {
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
	t.Run("units start", func(t *testing.T) { testUnitsStart(t, root) })
	checkManPages(t, root)
	checkRPM(t)
	if have(t, "lintian") {
		out, err := exec.Command("lintian", "--tag-display-limit", "0", debs[0]).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if len(l) > 2 && l[1] == ':' && strings.ContainsAny(l[:1], "EWI") {
				t.Errorf("lintian: %s", l)
			}
		}
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, out)
		}
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

// checkManPages renders each page as lintian does and wants no warnings,
// and the flags of polymur(1) to be those of polymur -h.
func checkManPages(t *testing.T, root string) {
	if !have(t, "man") {
		return
	}
	for _, c := range []string{"polymur", "polymur-proxy", "polymur-gateway", "pgw-key"} {
		cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", filepath.Join(root, "usr/share/man/man1", c+".1.gz"))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man %s: %v %s", c, err, stderr.String())
		}
	}
	page, err := exec.Command("man", "-l", filepath.Join(root, "usr/share/man/man1/polymur.1.gz")).Output()
	if err != nil {
		t.Fatalf("man polymur: %v", err)
	}
	help, _ := exec.Command(filepath.Join(root, "usr/bin/polymur"), "-h").CombinedOutput()
	text := string(page)
	n := 0
	for _, l := range strings.Split(string(help), "\n") {
		if name, ok := strings.CutPrefix(l, "  -"); ok {
			name, _, _ = strings.Cut(name, " ")
			name, _, _ = strings.Cut(name, "\t")
			n++
			if !strings.Contains(text, "-"+name) {
				t.Errorf("polymur(1) lacks -%s", name)
			}
		}
	}
	if n < 50 {
		t.Errorf("polymur -h listed %d flags", n)
	}
}

// checkRPM lists the .rpm's files when rpm is installed.
func checkRPM(t *testing.T) {
	rpms, _ := filepath.Glob("../dist/pkg/polymur-*.rpm")
	if len(rpms) != 1 {
		t.Fatalf("rpm packages built: %v", rpms)
	}
	if !have(t, "rpm") {
		return
	}
	out, err := exec.Command("rpm", "-qlp", rpms[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qlp: %v %s", err, out)
	}
	for _, f := range []string{"/usr/bin/polymur", "/lib/systemd/system/polymur.service", "/etc/default/polymur", "/usr/share/man/man1/polymur.1.gz", "/usr/share/licenses/polymur/LICENSE"} {
		if !strings.Contains(string(out), f+"\n") {
			t.Errorf("rpm lacks %s:\n%s", f, out)
		}
	}
}

// have says whether a tool is installed; under CI (where make test installs
// it) a missing one fails the test.
func have(t *testing.T, tool string) bool {
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing (make test installs it)", tool)
		}
		t.Logf("%s not installed: not checked", tool)
		return false
	}
	return true
}
