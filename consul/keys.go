// Package consul is everything polymur asks of Consul, and the only
// package that imports Consul's API client: polymur-gateway's API keys (a
// Cache that mirrors the keys stored in Consul KV,
// `polymur/gateway/keys/<name>` = key, into an immutable in-memory set that
// request handlers read without a lock, and a Store that pgw-key uses to
// create, list, regenerate and delete keys), cluster members from the
// service catalog (Watch) and self-registration (Register). The Consul
// address and token come from the client's own environment variables
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, …) unless a flag gives the address.
package consul

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"
)

// DefaultPrefix is where the original gateway keeps its keys.
const DefaultPrefix = "polymur/gateway/keys/"

// Config configures a Cache.
type Config struct {
	// Prefix is the KV folder; a trailing '/' is added when missing so
	// sibling folders such as polymur/gateway/keys-old/ are never read.
	Prefix string
	// Refresh is the longest time between two reads of Consul; changes
	// arrive sooner through blocking queries. Default 30s.
	Refresh time.Duration
	// Static, when set, replaces Consul: key → name (dev mode).
	Static map[string]string
	// Address overrides CONSUL_HTTP_ADDR (tests).
	Address string
	Logger  *slog.Logger
}

// snapshot is an immutable key set; keys are indexed by their SHA-256 so that
// a lookup's timing does not depend on how much of a guess matches.
type snapshot struct {
	names  map[[32]byte]string
	loaded time.Time
	index  uint64
}

// Cache answers "which key name is this API key?" from the last good copy of
// the keys. Lookup is safe for concurrent use and takes no lock.
type Cache struct {
	cfg     Config
	log     *slog.Logger
	kv      *api.KV
	snap    atomic.Pointer[snapshot]
	errors  atomic.Uint64
	syncs   atomic.Uint64
	badName atomic.Int64           // entries of the last listing skipped for their name
	problem atomic.Pointer[string] // why the last sync was not trusted (ACLs); nil when fine
}

// NewCache builds a cache; with Static set it is ready at once and never
// contacts Consul.
func NewCache(cfg Config) (*Cache, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 30 * time.Second
	}
	if cfg.Refresh < time.Second {
		return nil, errors.New("consul: key refresh must be at least 1s")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Cache{cfg: cfg, log: cfg.Logger}
	if cfg.Static != nil {
		s := &snapshot{names: map[[32]byte]string{}, loaded: time.Now()}
		for k, n := range cfg.Static {
			if k != "" {
				s.names[sha256.Sum256([]byte(k))] = n
			}
		}
		c.snap.Store(s)
		return c, nil
	}
	kv, err := newKV(cfg.Address)
	if err != nil {
		return nil, err
	}
	c.kv = kv
	return c, nil
}

func newKV(addr string) (*api.KV, error) {
	conf := api.DefaultConfig()
	if addr != "" {
		conf.Address = addr
	}
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, err
	}
	return client.KV(), nil
}

// Lookup returns the name of key, if key is valid. An empty key is never
// valid, and nothing is valid before the first successful load.
func (c *Cache) Lookup(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	s := c.snap.Load()
	if s == nil {
		return "", false
	}
	name, ok := s.names[sha256.Sum256([]byte(key))]
	return name, ok
}

// Ready reports whether keys have been loaded at least once.
func (c *Cache) Ready() bool { return c.snap.Load() != nil }

// Problem is why the key set cannot be trusted now ("" when it can): the
// last sync was refused or filtered by Consul's ACLs, or every key vanished
// at once. The last good keys stay in force meanwhile.
func (c *Cache) Problem() string {
	if p := c.problem.Load(); p != nil {
		return *p
	}
	return ""
}

// Stats is a snapshot of the cache's state.
type Stats struct {
	Keys       int       `json:"keys"`
	Loaded     bool      `json:"loaded"`
	LastSync   time.Time `json:"last_sync,omitzero"`
	Syncs      uint64    `json:"syncs"`
	SyncErrors uint64    `json:"sync_errors"`
	Source     string    `json:"source"`
	BadNames   int64     `json:"ignored_bad_names"`
	Problem    string    `json:"problem,omitempty"`
}

// Stats returns the cache's state.
func (c *Cache) Stats() Stats {
	st := Stats{Syncs: c.syncs.Load(), SyncErrors: c.errors.Load(), Source: "consul", BadNames: c.badName.Load(), Problem: c.Problem()}
	if c.cfg.Static != nil {
		st.Source = "static"
	}
	if s := c.snap.Load(); s != nil {
		st.Keys, st.Loaded, st.LastSync = len(s.names), true, s.loaded
	}
	return st
}

// Run keeps the cache in step with Consul until ctx ends: a blocking query
// returns as soon as a key changes, or after Refresh at the latest. When
// Consul cannot be reached the last good keys stay in force and the read is
// retried with backoff. A successful answer replaces the whole set, so a
// deleted key stops working at the next answer.
func (c *Cache) Run(ctx context.Context) error {
	if c.kv == nil {
		<-ctx.Done()
		return nil
	}
	var index uint64
	fails := 0
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.cfg.Refresh}).WithContext(ctx)
		pairs, meta, err := c.kv.List(c.cfg.Prefix, q)
		if err == nil {
			err = c.distrust(pairs, meta)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fails++
			c.errors.Add(1)
			if isACL(err) {
				msg := err.Error()
				c.problem.Store(&msg)
			}
			if fails == 1 || fails%10 == 0 {
				c.log.Error("API key sync failed; keeping the last good keys", "err", err, "keys", c.Stats().Keys, "attempt", fails)
			}
			index = 0
			sleep(ctx, min(time.Duration(fails)*time.Second, c.cfg.Refresh))
			continue
		}
		if fails > 0 {
			c.log.Info("API key sync recovered", "after_failures", fails)
		}
		fails = 0
		c.problem.Store(nil)
		c.syncs.Add(1)
		if meta.LastIndex < index {
			index = 0 // Consul's index went backwards (restore): start over
		} else {
			index = meta.LastIndex
		}
		c.apply(pairs, meta.LastIndex)
	}
	return nil
}

// errACL marks a sync that Consul's ACLs refused or filtered.
var errACL = errors.New("consul ACL")

func isACL(err error) bool {
	return errors.Is(err, errACL) || strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "Permission denied")
}

// distrust checks a listing before it replaces the keys: one marked
// filtered by ACLs, or an empty one under default deny (what a token
// without its policy gets), is an error, not a new key set.
func (c *Cache) distrust(pairs api.KVPairs, meta *api.QueryMeta) error {
	if meta != nil && meta.ResultsFilteredByACLs {
		return fmt.Errorf("%w: the token may not read the keys under %s (Consul filtered the answer; check CONSUL_HTTP_TOKEN and its policy)", errACL, c.cfg.Prefix)
	}
	names, _ := Parse(c.cfg.Prefix, pairs, nil)
	if len(names) > 0 {
		return nil
	}
	// Without ACLs (or with default allow) an empty listing is the truth:
	// the last key was revoked. Under default deny it is what a token that
	// lost its policy sees, and the same answer as "no keys".
	return emptyUnderDeny(c.cfg.Prefix, meta)
}

// emptyUnderDeny: Consul answers a listing the token may not read with an
// empty 404 (no filter header) when its default policy is deny — the same
// answer as "no keys". Under deny, an empty listing is taken as refused.
func emptyUnderDeny(prefix string, meta *api.QueryMeta) error {
	if meta != nil && meta.DefaultACLPolicy == "deny" {
		return fmt.Errorf("%w: no keys visible under %s and Consul's default ACL policy is deny: the token (CONSUL_HTTP_TOKEN) may not read them (the last good keys stay in force; if every key was deleted on purpose, restart the gateway)", errACL, prefix)
	}
	return nil
}

// apply turns a KV listing into a new snapshot and logs what changed.
func (c *Cache) apply(pairs api.KVPairs, index uint64) {
	names, bad := Parse(c.cfg.Prefix, pairs, nil)
	if prev := c.badName.Swap(int64(bad)); bad > 0 && int64(bad) != prev {
		c.log.Warn("ignoring API key entries whose names pgw-key would refuse (letters, digits, '-' and '_' only)", "n", bad)
	}
	s := &snapshot{names: make(map[[32]byte]string, len(names)), loaded: time.Now(), index: index}
	for key, name := range names {
		s.names[sha256.Sum256([]byte(key))] = name
	}
	old := c.snap.Swap(s)
	added, removed := len(s.names), 0
	if old != nil {
		added = 0
		for h := range s.names {
			if _, ok := old.names[h]; !ok {
				added++
			}
		}
		for h := range old.names {
			if _, ok := s.names[h]; !ok {
				removed++
			}
		}
	}
	if old == nil || added > 0 || removed > 0 {
		c.log.Info("API keys refreshed", "new", added, "removed", removed, "keys", len(s.names))
	}
}

// Parse extracts key → name from a listing of prefix. It ignores, without
// failing, entries that are not direct children of prefix (the folder entry
// itself, nested paths, siblings), names that pgw-key would refuse (they
// would make lines carbon rejects or mis-parses with -key-prefix; counted
// in bad), empty or whitespace values, values that are not printable
// UTF-8, and second names for a value already seen.
func Parse(prefix string, pairs api.KVPairs, log *slog.Logger) (_ map[string]string, bad int) {
	out := map[string]string{}
	sorted := make(api.KVPairs, 0, len(pairs))
	for _, p := range pairs {
		if p != nil && strings.HasPrefix(p.Key, prefix) {
			sorted = append(sorted, p)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })
	for _, p := range sorted {
		name := p.Key[len(prefix):]
		if !validName(name) {
			continue
		}
		if CheckName(name) != nil {
			bad++
			continue
		}
		key := string(p.Value)
		if !validKey(key) {
			if log != nil && len(p.Value) > 0 {
				log.Warn("ignoring API key entry with an unusable value", "name", name)
			}
			continue
		}
		if other, dup := out[key]; dup {
			if log != nil {
				log.Warn("two key names share one key; keeping the first", "kept", other, "ignored", name)
			}
			continue
		}
		out[key] = name
	}
	return out, bad
}

func validName(name string) bool {
	if name == "" || len(name) > 256 || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// validKey accepts keys that can travel in an HTTP header: printable ASCII
// without spaces.
func validKey(key string) bool {
	if key == "" || len(key) > 1024 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] >= 0x7f {
			return false
		}
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
