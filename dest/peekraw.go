//go:build unix && !(linux && 386)

package dest

import (
	"syscall"
	"unsafe"
)

// peekByte is recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT as a raw call:
// it cannot block, and announced as a system call it would wake the
// runtime's sleeping monitor thread (see rawWritev).
func peekByte(fd uintptr, b *byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(b)), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return int(n), e
}
