package consul

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/polymur/polymur/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestParseIgnoresOddEntries(t *testing.T) {
	pairs := api.KVPairs{
		{Key: "polymur/gateway/keys/", Value: nil},                      // folder entry: was an auth bypass
		{Key: "polymur/gateway/keys", Value: []byte("bare")},            // 20 characters: crashed the original
		{Key: "polymur/gateway/keys-old/bob", Value: []byte("sibling")}, // sibling prefix
		{Key: "polymur/gateway/keys/nested/x", Value: []byte("nested")},
		{Key: "polymur/gateway/keys/empty", Value: []byte{}},
		{Key: "polymur/gateway/keys/space", Value: []byte("  ")},
		{Key: "polymur/gateway/keys/binary", Value: []byte{0xff, 0xfe, 0x00}},
		{Key: "polymur/gateway/keys/alice", Value: []byte("k-alice")},
		{Key: "polymur/gateway/keys/bob", Value: []byte("k-bob")},
		{Key: "polymur/gateway/keys/carol", Value: []byte("k-bob")}, // shares bob's key
		{Key: "polymur/gateway/keys/with space", Value: []byte("k-space")},
		{Key: "polymur/gateway/keys/semi;colon", Value: []byte("k-semi")},
		{Key: "polymur/gateway/keys/star*", Value: []byte("k-star")},
		{Key: "polymur/gateway/keys/dot.ted", Value: []byte("k-dot")},
		nil,
	}
	got, bad := Parse(DefaultPrefix, pairs, quiet)
	if len(got) != 2 || got["k-alice"] != "alice" || got["k-bob"] != "bob" {
		t.Fatalf("Parse = %v", got)
	}
	if bad != 4 {
		t.Fatalf("%d names refused as pgw-key would, want 4", bad)
	}
}

// Consul ACLs: a token that may not read the keys (default deny) gets a
// filtered, empty answer — a sync error, not "no keys"; a policy detached
// while running keeps the last good keys, logs, counts and reports the
// problem (the gateway fails /readyz on it); pgw-key list fails instead of
// printing nothing.
func TestCacheWithConsulACLs(t *testing.T) {
	consul := testutil.StartConsulACL(t)
	consul.Put("polymur/gateway/keys/alice", []byte("key-alice"))
	consul.ACL("PUT", "policy", `{"Name": "gw-keys", "Rules": "key_prefix \"polymur/gateway/keys/\" { policy = \"read\" }"}`)
	tok := consul.ACL("PUT", "token", `{"Description": "gateway", "Policies": [{"Name": "gw-keys"}]}`)
	secret, accessor := jsonField(tok, "SecretID"), jsonField(tok, "AccessorID")

	// No token at all: default deny.
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	c := runCache(t, consul.Addr, time.Second)
	waitUntil(t, "an ACL problem reported", func() bool { return c.Problem() != "" })
	if c.Ready() || valid(c, "key-alice") {
		t.Fatal("a filtered listing was taken as a key set")
	}
	if s, err := NewStore(DefaultPrefix, consul.Addr); err != nil {
		t.Fatal(err)
	} else if _, err := s.List(); err == nil {
		t.Fatal("pgw-key list succeeded on a listing filtered by ACLs")
	}

	// With the policy's token: loaded; then the policy is detached.
	t.Setenv("CONSUL_HTTP_TOKEN", secret)
	c2 := runCache(t, consul.Addr, time.Second)
	waitUntil(t, "keys loaded with the token", func() bool { return valid(c2, "key-alice") && c2.Problem() == "" })
	consul.ACL("PUT", "token/"+accessor, `{"AccessorID": "`+accessor+`", "Description": "gateway", "Policies": []}`)
	consul.Put("polymur/gateway/keys/bob", []byte("key-bob")) // wakes the blocking query
	waitUntil(t, "the detached policy noticed", func() bool { return c2.Problem() != "" })
	if !valid(c2, "key-alice") {
		t.Fatal("the last good keys were dropped when the policy went away")
	}
	if c2.Stats().SyncErrors == 0 {
		t.Fatal("no sync error counted")
	}
}

func jsonField(js, key string) string {
	var m map[string]any
	json.Unmarshal([]byte(js), &m)
	s, _ := m[key].(string)
	return s
}

func TestStaticCache(t *testing.T) {
	c, err := NewCache(Config{Static: map[string]string{"123": "dev", "": "nobody"}})
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := c.Lookup("123"); !ok || name != "dev" {
		t.Fatal("dev key refused")
	}
	for _, k := range []string{"", "12", "1234", " 123"} {
		if _, ok := c.Lookup(k); ok {
			t.Fatalf("key %q accepted", k)
		}
	}
}

// waitUntil polls cond; limit only keeps a broken test from hanging.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runCache(t *testing.T, addr string, refresh time.Duration) *Cache {
	t.Helper()
	c, err := NewCache(Config{Address: addr, Refresh: refresh, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func valid(c *Cache, key string) bool { _, ok := c.Lookup(key); return ok }

func TestCacheAgainstRealConsul(t *testing.T) {
	consul := testutil.StartConsul(t)
	consul.Put("polymur/gateway/keys/alice", []byte("key-alice"))
	consul.Put("polymur/gateway/keys/", nil)
	consul.Put("polymur/gateway/keys", []byte("bare"))
	consul.Put("polymur/gateway/keys-old/bob", []byte("key-old-bob"))
	consul.Put("polymur/gateway/keys/weird", []byte{0xff, 0x00, 0xfe})

	c := runCache(t, consul.Addr, 2*time.Second)
	waitUntil(t, "first load", c.Ready)
	if name, ok := c.Lookup("key-alice"); !ok || name != "alice" {
		t.Fatal("alice's key refused")
	}
	for _, k := range []string{"", "bare", "key-old-bob", "\xff\x00\xfe"} {
		if valid(c, k) {
			t.Fatalf("key %q accepted", k)
		}
	}
	if n := c.Stats().Keys; n != 1 {
		t.Fatalf("%d keys loaded, want 1", n)
	}

	// Added and revoked keys take effect within one refresh (sooner through
	// the blocking query).
	consul.Put("polymur/gateway/keys/bob", []byte("key-bob"))
	waitUntil(t, "new key", func() bool { return valid(c, "key-bob") })
	consul.Delete("polymur/gateway/keys/alice")
	waitUntil(t, "revocation", func() bool { return !valid(c, "key-alice") })

	// Consul away: the last good keys keep working.
	consul.Stop()
	time.Sleep(3 * time.Second) // more than one refresh while Consul is down
	if !valid(c, "key-bob") {
		t.Fatal("cached key refused while Consul is down")
	}
	if c.Stats().SyncErrors == 0 {
		t.Fatal("no sync error counted while Consul was down")
	}
	// Back: a key revoked meanwhile is refused after the next sync.
	consul.Start()
	consul.Delete("polymur/gateway/keys/bob")
	consul.Put("polymur/gateway/keys/carol", []byte("key-carol"))
	waitUntil(t, "sync after restart", func() bool { return valid(c, "key-carol") && !valid(c, "key-bob") })
}

func TestCacheConsulDownAtStart(t *testing.T) {
	consul := testutil.StartConsul(t)
	consul.Put("polymur/gateway/keys/alice", []byte("key-alice"))
	consul.Stop()
	c := runCache(t, consul.Addr, time.Second)
	time.Sleep(500 * time.Millisecond)
	if c.Ready() || valid(c, "key-alice") {
		t.Fatal("ready without ever reaching Consul")
	}
	consul.Start()
	waitUntil(t, "load once Consul is up", func() bool { return valid(c, "key-alice") })
}

func TestStoreAgainstRealConsul(t *testing.T) {
	consul := testutil.StartConsul(t)
	s, err := NewStore("", consul.Addr)
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.Create("team-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("key %q: want 32 characters (192 bits)", key)
	}
	if _, err := s.Create("team-a"); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	for _, bad := range []string{"", "a/b", "a.b", "with space", "ünï"} {
		if _, err := s.Create(bad); err == nil {
			t.Fatalf("create %q accepted", bad)
		}
	}
	key2, err := s.Regen("team-a")
	if err != nil || key2 == key {
		t.Fatalf("regen: %q, %v", key2, err)
	}
	if _, err := s.Regen("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("regen missing: %v", err)
	}
	s.Create("team-b")
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Name != "team-a" || list[0].Key != key2 || list[1].Name != "team-b" {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if err := s.Delete("team-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("team-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	seen := map[string]bool{}
	for range 1000 {
		k, _ := NewKey()
		if seen[k] {
			t.Fatal("repeated key")
		}
		seen[k] = true
	}
}
