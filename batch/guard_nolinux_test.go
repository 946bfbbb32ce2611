//go:build !linux

package batch

import "testing"

// newGuarded returns the inputs as they are where this test does not guard pages.
func newGuarded(*testing.T) func([]byte) []byte { return func(b []byte) []byte { return b } }
