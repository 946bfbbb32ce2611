package batch

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestNormalizeTags(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"disk.used;host=a;dc=x", "disk.used;dc=x;host=a"},
		{"disk.used;dc=x;host=a", "disk.used;dc=x;host=a"},
		{"m;z=1;y=2;z=3", "m;y=2;z=3"},
		{"m;name=other;a=1", "m;a=1"},
		{"~~m;a=1", "m;a=1"},
		{"m;a=b=c", "m;a=b=c"},
		{`m{b="2",a="1"}`, "m;a=1;b=2"},
		{`m{a="x\"y"}`, `m;a=x"y`},
		{"m;a=", ""},
		{"m;=1", ""},
		{"m;a", ""},
		{";a=1", ""},
		{"m;a!=1", ""},
		{"m;a=~x", ""},
		{"~;a=1", ""},
		{`m{a=1}`, `m{a=1}`}, // not OpenMetrics (no closing quote): an untagged name
	} {
		got, ok := NormalizeTags(nil, []byte(tc.in))
		if tc.want == "" {
			if ok {
				t.Errorf("%q: normalised to %q, carbon cannot parse it", tc.in, got)
			}
			continue
		}
		if !ok || string(got) != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, got, ok, tc.want)
		}
	}
}

// TestNormalizeTagsSameAsCarbon runs carbon's own TaggedSeries (Debian's
// graphite-carbon) on generated names and compares.
func TestNormalizeTagsSameAsCarbon(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import carbon.util").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("graphite-carbon's Python module not installed (make test installs it)")
		}
		t.Skip("graphite-carbon not installed")
	}
	r := rand.New(rand.NewPCG(1, 2))
	parts := []string{"a", "b", "host", "dc", "name", "~x", "v=1", "", "x!", "é", "z", `q"`, `\`, "1", ";", "{", "}", ","}
	var names []string
	for range 3000 {
		var b strings.Builder
		b.WriteString([]string{"m", "disk.used", "~m", "", "svc.a.b"}[r.IntN(5)])
		if r.IntN(4) == 0 {
			b.WriteString("{")
			for k := range r.IntN(4) {
				if k > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, `%s="%s"`, parts[r.IntN(len(parts))], parts[r.IntN(len(parts))])
			}
			b.WriteString("}")
		} else {
			for range r.IntN(5) {
				fmt.Fprintf(&b, ";%s=%s", parts[r.IntN(len(parts))], parts[r.IntN(len(parts))])
			}
		}
		if s := b.String(); !strings.ContainsAny(s, "\n") {
			names = append(names, s)
		}
	}
	script := `
import sys
from carbon.util import TaggedSeries
for line in sys.stdin.read().split("\n")[:-1]:
    try:
        print("ok\t" + TaggedSeries.parse(line).path)
    except Exception:
        print("error")
`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(rows) != len(names) {
		t.Fatalf("%d answers for %d names", len(rows), len(names))
	}
	same := 0
	for i, name := range names {
		got, ok := NormalizeTags(nil, []byte(name))
		want := rows[i]
		mine := "error"
		if ok {
			mine = "ok\t" + string(got)
		}
		if mine != want {
			t.Errorf("%q: polymur %q, carbon %q", name, mine, want)
			continue
		}
		same++
	}
	t.Logf("%d generated names (tagged, OpenMetrics, invalid): %d normalised exactly as carbon's TaggedSeries does", len(names), same)
}

func FuzzNormalizeTags(f *testing.F) {
	for _, s := range []string{"disk.used;host=a;dc=x", `m{b="2",a="1"}`, "m;a=", "~;a=1", `m{a="\\"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, ok := NormalizeTags(nil, []byte(s))
		if !ok {
			return
		}
		again, ok2 := NormalizeTags(nil, out)
		if IsTagged(out) && (!ok2 || string(again) != string(out)) {
			t.Fatalf("%q → %q is not stable (%q %v)", s, out, again, ok2)
		}
	})
}
