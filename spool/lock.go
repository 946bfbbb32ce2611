package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Lock is a hold on a spool directory: two processes sharing one would
// replay, delete and overwrite each other's data. It is exclusive where the
// platform has flock (unix); elsewhere it only proves the directory takes
// writes.
type Lock struct{ f *os.File }

// errHeld is what tryLock returns when another process holds the lock.
var errHeld = errors.New("held by another process")

// LockDir creates dir if needed, checks that it is writable and takes its
// lock; it fails naming the process that holds it.
func LockDir(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("%s is not writable: %w", dir, err)
	}
	if err := tryLock(f); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, errHeld) {
			return nil, fmt.Errorf("%s is in use by another process (pid %s): two processes must not share a spool directory", dir, strings.TrimSpace(string(b[:n])))
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	// The pid is for the message above; the write also proves the directory
	// takes data (a read-only file system fails here, at start).
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is not writable: %w", dir, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
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
