package consul

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/consul/api"
)

// Errors a Store returns for the caller to report.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("doesn't exist")
	ErrConflict = errors.New("changed concurrently, try again")
)

// Store manages keys in Consul KV for pgw-key. Writes use check-and-set, so
// two operators cannot overwrite each other's change unnoticed.
type Store struct {
	kv     *api.KV
	prefix string
}

// NewStore connects to Consul through the client's environment variables;
// addr, when set, overrides CONSUL_HTTP_ADDR.
func NewStore(prefix, addr string) (*Store, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if prefix[len(prefix)-1] != '/' {
		prefix += "/"
	}
	kv, err := newKV(addr)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, prefix: prefix}, nil
}

// Entry is one stored key.
type Entry struct {
	Name, Key string
}

// List returns the valid keys, sorted by name (what the gateway would load).
func (s *Store) List() ([]Entry, error) {
	pairs, meta, err := s.kv.List(s.prefix, nil)
	if err != nil {
		return nil, err
	}
	if meta != nil && meta.ResultsFilteredByACLs {
		return nil, fmt.Errorf("the listing of %s was filtered by Consul ACLs: the token may not read these keys (check CONSUL_HTTP_TOKEN and its policy)", s.prefix)
	}
	names, _ := Parse(s.prefix, pairs, nil)
	if len(names) == 0 {
		if err := emptyUnderDeny(s.prefix, meta); err != nil {
			return nil, err
		}
	}
	var out []Entry
	for key, name := range names {
		out = append(out, Entry{Name: name, Key: key})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CheckName refuses names the gateway would not load or that would make an
// odd Graphite prefix with -key-prefix.
func CheckName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("key name must be 1 to 128 characters")
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("key name %q: use letters, digits, '-' and '_' only", name)
		}
	}
	return nil
}

// Create stores a new random key under name; ErrExists if name is taken.
func (s *Store) Create(name string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	key, err := NewKey()
	if err != nil {
		return "", err
	}
	// ModifyIndex 0 with CAS means "only if it does not exist yet".
	ok, _, err := s.kv.CAS(&api.KVPair{Key: s.prefix + name, Value: []byte(key), ModifyIndex: 0}, nil)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", ErrExists
	}
	return key, nil
}

// Regen replaces name's key with a new random one; ErrNotFound if absent.
func (s *Store) Regen(name string) (string, error) {
	p, err := s.get(name)
	if err != nil {
		return "", err
	}
	key, err := NewKey()
	if err != nil {
		return "", err
	}
	ok, _, err := s.kv.CAS(&api.KVPair{Key: p.Key, Value: []byte(key), ModifyIndex: p.ModifyIndex}, nil)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", ErrConflict
	}
	return key, nil
}

// Delete removes name's key; ErrNotFound if absent.
func (s *Store) Delete(name string) error {
	p, err := s.get(name)
	if err != nil {
		return err
	}
	ok, _, err := s.kv.DeleteCAS(&api.KVPair{Key: p.Key, ModifyIndex: p.ModifyIndex}, nil)
	switch {
	case err != nil:
		return err
	case !ok:
		return ErrConflict
	}
	return nil
}

func (s *Store) get(name string) (*api.KVPair, error) {
	if name == "" {
		return nil, ErrNotFound
	}
	p, _, err := s.kv.Get(s.prefix+name, nil)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, ErrNotFound
	}
	return p, nil
}

// NewKey returns a key of 192 bits from crypto/rand, URL-safe base64 (32
// characters).
func NewKey() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
