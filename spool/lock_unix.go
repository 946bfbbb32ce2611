//go:build unix

package spool

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes f's exclusive flock without waiting.
func tryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errHeld
	}
	return err
}
