package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

func pgw(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	wantHelp := "Commands ('pgw-key <command>' for help):\n\tcreate NAME"
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, wantHelp},
		{[]string{"help"}, 0, "pgw-key: manage polymur-gateway API keys"},
		{[]string{"create", "-h"}, 0, "usage: pgw-key create NAME"},
		{[]string{"delete", "-x"}, 2, "pgw-key delete -x: a key name may not start with '-'"},
		{[]string{"foo"}, 2, "Not a valid command: foo\n\n" + wantHelp},
		{[]string{"create"}, 2, "usage: pgw-key create NAME"},
		{[]string{"list"}, 2, "usage: pgw-key list names|all"},
		{[]string{"list", "bogus"}, 2, "pgw-key list bogus is invalid"},
		{[]string{"delete", "a", "b"}, 2, "usage: pgw-key delete NAME"},
	} {
		code, out, errOut := pgw(tc.args...)
		if code != tc.code || !strings.HasPrefix(out+errOut, tc.out) {
			t.Errorf("pgw-key %v: exit %d, output %q", tc.args, code, out+errOut)
		}
	}
	// Help lists the commands in a stable order.
	_, out, _ := pgw("help")
	if strings.Index(out, "create") > strings.Index(out, "list") || strings.Index(out, "regen") > strings.Index(out, "delete") {
		t.Fatalf("help order: %q", out)
	}
}

func TestAgainstRealConsul(t *testing.T) {
	consul := testutil.StartConsul(t)
	t.Setenv("CONSUL_HTTP_ADDR", consul.Addr)
	code, out, _ := pgw("create", "test-user")
	if code != 0 || !strings.HasPrefix(out, "Successfully registered test-user with key ") {
		t.Fatalf("create: %d %q", code, out)
	}
	key := strings.TrimSpace(strings.TrimPrefix(out, "Successfully registered test-user with key "))
	if code, _, errOut := pgw("create", "test-user"); code != 1 || errOut != "Key test-user already exists\n" {
		t.Fatalf("duplicate create: %d %q", code, errOut)
	}
	if code, _, _ := pgw("create", "bad/name"); code != 1 {
		t.Fatalf("bad name accepted")
	}
	pgw("create", "another")
	if code, out, _ := pgw("list", "names"); code != 0 || out != "another\ntest-user\n" {
		t.Fatalf("list names: %q", out)
	}
	if code, out, _ := pgw("list", "all"); code != 0 || !strings.Contains(out, "test-user: "+key+"\n") {
		t.Fatalf("list all: %q", out)
	}
	code, out, _ = pgw("regen", "test-user")
	if code != 0 || !strings.HasPrefix(out, "Successfully regenerated test-user with key ") || strings.Contains(out, key) {
		t.Fatalf("regen: %d %q", code, out)
	}
	if code, _, errOut := pgw("regen", "nobody"); code != 1 || errOut != "Key nobody doesn't exist\n" {
		t.Fatalf("regen missing: %d %q", code, errOut)
	}
	if code, out, _ := pgw("delete", "test-user"); code != 0 || out != "Successfully deleted test-user\n" {
		t.Fatalf("delete: %d %q", code, out)
	}
	if code, _, errOut := pgw("delete", "test-user"); code != 1 || errOut != "Key test-user doesn't exist\n" {
		t.Fatalf("delete missing: %d %q", code, errOut)
	}
	consul.Stop()
	if code, _, errOut := pgw("list", "names"); code != 1 || errOut == "" {
		t.Fatalf("Consul down: exit %d, %q", code, errOut)
	}
}
