//go:build linux

package batch

import (
	"syscall"
	"testing"
)

// newGuarded returns a function that copies an input to the end of a page
// followed by one that may not be read: a read past the input's end
// faults.
func newGuarded(t *testing.T) func([]byte) []byte {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	return func(b []byte) []byte {
		dst := mem[page-len(b) : page : page]
		copy(dst, b)
		return dst
	}
}
