package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// CarbonCRelay returns Debian's carbon-c-relay (the peer the routing tests
// compare with; `make test` installs it when missing). Without it the test
// is skipped, except under CI, where it fails: a green CI means the
// differential tests ran.
func CarbonCRelay(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("carbon-c-relay")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("carbon-c-relay not installed (make test installs Debian's package)")
		}
		t.Skip("carbon-c-relay not installed; make test installs it")
	}
	return p
}
