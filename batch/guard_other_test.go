//go:build !unix

package batch

import "testing"

// newGuarded returns the inputs as they are where pages cannot be guarded.
func newGuarded(*testing.T) func([]byte) []byte { return func(b []byte) []byte { return b } }
