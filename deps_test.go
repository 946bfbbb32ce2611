package polymur_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces DESIGN.md's import DAG: library packages never
// import each other sideways (they meet through funcs that cmd/ wires), all
// may use the leaves batch, ring, spool and decode, aggregate carries out
// route's aggregate rules (its one edge, declared), and only consul
// reaches Consul.
func TestImportRules(t *testing.T) {
	const mod = "github.com/polymur/polymur/"
	library := []string{"listener", "dest", "output", "api", "admin", "consul", "runstats", "route", "statsd", "aggregate"}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}} | {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		all, direct, _ := strings.Cut(line, " | ")
		fields := strings.Fields(all)
		pkg, deps := strings.TrimPrefix(fields[0], mod), fields[1:]
		for _, imp := range strings.Fields(direct) {
			if strings.HasPrefix(imp, "github.com/hashicorp/consul/") && pkg != "consul" && !strings.HasPrefix(pkg, "internal/testutil") {
				t.Errorf("%s imports Consul; only the consul package may (the others use it)", pkg)
			}
		}
		for _, dep := range deps {
			d := strings.TrimPrefix(dep, mod)
			if strings.HasPrefix(dep, "github.com/hashicorp/consul/api") && contains(library, pkg) && pkg != "consul" {
				t.Errorf("library package %s reaches Consul; only the consul package may", pkg)
			}
			if !strings.HasPrefix(dep, mod) {
				continue
			}
			switch {
			case pkg == "batch":
				t.Errorf("batch is the leaf package but imports %s", d)
			case pkg == "ring":
				t.Errorf("ring is a leaf (placement only) but imports %s", d)
			case pkg == "spool" && d != "batch":
				t.Errorf("spool is a leaf beside batch but imports %s", d)
			case pkg == "aggregate" && d == "route":
				// declared: the engine of route's aggregate rules
			case pkg == "decode" && d != "batch":
				t.Errorf("decode (the protocol codecs) is a leaf beside batch but imports %s", d)
			case contains(library, pkg) && contains(library, d):
				t.Errorf("%s imports its sibling %s; declare a func or interface and wire it in cmd/", pkg, d)
			case contains(library, pkg) && strings.HasPrefix(d, "internal/") && d != "internal/testutil":
				t.Errorf("library package %s imports %s", pkg, d)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
