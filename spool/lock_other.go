//go:build !unix

package spool

import "os"

// tryLock has no flock here: the lock is not exclusive.
func tryLock(*os.File) error { return nil }
