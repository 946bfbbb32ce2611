package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseHelp(t *testing.T) {
	help := "polymur: a relay.\n\nReads lines\non a port.\n\nSecond paragraph.\n\nFlags:\n" +
		"  -admin-addr string\n    \tAdmin address [POLYMUR_ADMIN_ADDR]\n" +
		"  -d\tdebug [POLYMUR_D]\n" +
		"  -dead-after int\n    \tFirst part\n    \tsecond part (default 3)\n"
	p, err := parseHelp("polymur", help)
	if err != nil {
		t.Fatal(err)
	}
	if p.summary != "a relay" || len(p.description) != 2 || p.description[0] != "Reads lines on a port." {
		t.Fatalf("head: %+v", p)
	}
	want := []flagDoc{{"admin-addr", "string", "Admin address [POLYMUR_ADMIN_ADDR]"}, {"d", "", "debug [POLYMUR_D]"}, {"dead-after", "int", "First part second part (default 3)"}}
	if len(p.flags) != len(want) {
		t.Fatalf("flags %+v", p.flags)
	}
	for i := range want {
		if p.flags[i] != want[i] {
			t.Errorf("flag %d = %+v, want %+v", i, p.flags[i], want[i])
		}
	}
	if _, err := parseHelp("polymur", "polymur: x\n\nFlags:\nstray text\n"); err == nil {
		t.Error("a stray line in the flag list was accepted")
	}
	if _, err := parseHelp("polymur", ""); err == nil {
		t.Error("empty help was accepted")
	}
	c, err := parseHelp("pgw-key", "Commands ('pgw-key <command>' for help):\n\tcreate NAME\tregister NAME\n\tversion \tprint it\n")
	if err != nil || len(c.commands) != 2 || c.commands[0] != (flagDoc{"create", "NAME", "register NAME"}) || c.commands[1].name != "version" {
		t.Fatalf("commands: %+v %v", c, err)
	}
	if _, err := parseHelp("pgw-key", "Commands:\n\tno tab here\n"); err == nil {
		t.Error("a malformed command line was accepted")
	}
}

func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		`a\b`:        `a\eb`,
		".starts":    `\&.starts`,
		"'quote":     `\&'quote`,
		"-flag-name": `\-flag\-name`,
		"plain text": "plain text",
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}

// The rendered page is valid man(7): groff reads it without warnings.
func TestRenderIsValidMan(t *testing.T) {
	p := &page{name: "polymur", summary: "a relay", description: []string{".dot first", `back\slash`},
		flags: []flagDoc{{"listen-addr", "string", "Listen address (default \"0.0.0.0:2003\")"}, {"d", "", "debug"}}}
	src := render(p, "1.0", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), extras{daemon: true, envFile: "/etc/default/polymur", seeAlso: []string{"carbon-c-relay"}})
	for _, s := range []string{".TH POLYMUR 1 \"2026-12-01\"", ".SH OPTIONS", `.BI \-listen\-addr " string"`, ".SH SIGNALS", `.BR carbon\-c\-relay (1)`} {
		if !strings.Contains(src, s) {
			t.Errorf("page lacks %q:\n%s", s, src)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff not installed")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(src)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("groff: %v\n%s", err, out)
	}
}
