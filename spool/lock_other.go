//go:build !unix

package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Lock is a hold on a spool directory. On this platform it is not
// exclusive (no flock): it only proves the directory takes writes.
type Lock struct{ f *os.File }

// LockDir creates dir if needed and checks that it is writable.
func LockDir(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("%s is not writable: %w", dir, err)
	}
	if _, err := f.WriteString(strconv.Itoa(os.Getpid()) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is not writable: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the directory.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
