package ring

import (
	"syscall"
	"unsafe"
)

// newPosTable maps the position cache outside the Go heap, on 2 MiB pages
// where the kernel allows them (transparent huge pages on request): its
// lookups land anywhere in 4 MiB, and with 4 KiB pages most would also
// miss the TLB. It holds no pointers and lives as long as the process.
func newPosTable() *posTable {
	const huge = 2 << 20
	size := int(unsafe.Sizeof(posTable{}))
	mem, err := syscall.Mmap(-1, 0, size+huge, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return new(posTable)
	}
	off := 0
	if a := uintptr(unsafe.Pointer(&mem[0])) % huge; a != 0 {
		off = int(huge - a)
	}
	mem = mem[off : off+size]
	syscall.Madvise(mem, 14) // MADV_HUGEPAGE
	return (*posTable)(unsafe.Pointer(&mem[0]))
}
