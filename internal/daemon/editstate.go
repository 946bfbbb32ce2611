package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/route"
)

// compact adds e to edits, or cancels it against an earlier opposite edit
// of the same member in the same cluster.
func compact(edits []route.Edit, e route.Edit) []route.Edit {
	addr := func(m string) string {
		if s, err := route.ParseMember(m); err == nil {
			return s.Addr()
		}
		return m
	}
	for i := len(edits) - 1; i >= 0; i-- {
		o := edits[i]
		if o.Cluster == e.Cluster && addr(o.Member) == addr(e.Member) && o.Op != e.Op {
			return slices.Delete(edits, i, i+1)
		}
	}
	return append(edits, e)
}

// save writes the runtime edits to the state file. Callers hold r.mu.
func (r *routing) save() {
	if r.state == "" {
		return
	}
	st := configState{Config: r.path, Edits: r.edits, Saved: time.Now().UTC()}
	if r.consul != nil {
		st.Consul = r.consul.members
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = replaceFile(r.state, append(b, '\n'))
	}
	if err != nil {
		r.log.Error("saving runtime cluster changes to the state file failed", "state_file", r.state, "err", err)
	}
}

// configState is -state-file's content under -config.
type configState struct {
	Config string       `json:"config"`
	Edits  []route.Edit `json:"config_edits"`
	// Consul is the last membership of the Consul clusters (by cluster),
	// what -consul-start-from-state starts with when Consul cannot be
	// reached.
	Consul map[string][]consul.Instance `json:"consul_members,omitempty"`
	Saved  time.Time                    `json:"saved"`
}

// readConsulState reads the Consul memberships the state file keeps.
func readConsulState(path string) (map[string][]consul.Instance, time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	var st configState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return st.Consul, st.Saved, nil
}

// readEdits reads the runtime edits from the state file (none when it does
// not exist yet).
func readEdits(path string) ([]route.Edit, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		configState
		Destinations []string `json:"destinations"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(st.Destinations) > 0 && st.Edits == nil {
		return nil, fmt.Errorf("%s was written without -config (it lists destinations, not cluster changes): use another file, or delete it", path)
	}
	for i, e := range st.Edits {
		if e.Op != route.EditPut && e.Op != route.EditDel || e.Cluster == "" || e.Member == "" {
			return nil, fmt.Errorf("%s: change %d is not valid: %+v", path, i+1, e)
		}
	}
	return st.Edits, nil
}

// state is what -state-file holds.
type state struct {
	Destinations []string  `json:"destinations"`
	Saved        time.Time `json:"saved"`
}

// readState returns the saved destination list; ok is false when there is
// no state file yet.
func readState(path string) ([]string, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return st.Destinations, true, nil
}

// writeState replaces the state file atomically (write, sync, rename).
func writeState(path string, dests []string) error {
	b, err := json.MarshalIndent(state{Destinations: dests, Saved: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	return replaceFile(path, append(b, '\n'))
}

// replaceFile replaces path's content atomically (write, sync, rename).
func replaceFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
