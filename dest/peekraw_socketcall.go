//go:build linux && 386

package dest

import (
	"syscall"
	"unsafe"
)

// peekByte is recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT (linux/386
// reaches sockets through socketcall: the ordinary call).
func peekByte(fd uintptr, b *byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), unsafe.Slice(b, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if e, ok := err.(syscall.Errno); ok {
		return n, e
	}
	return n, 0
}
