package spool

import (
	"os"
	"path/filepath"
)

// BreakForTest makes every later Put fail as on a broken disk: the write
// segment becomes a read-only handle and new segments cannot be created.
// For other packages' tests.
func (s *Spool) BreakForTest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Close()
	s.w, _ = os.Open(s.segPath(s.wseg))
	s.dir = filepath.Join(s.dir, "gone", "away")
}
