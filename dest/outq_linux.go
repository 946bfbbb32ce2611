package dest

import (
	"net"
	"syscall"
	"unsafe"
)

// unsentBytes is what the kernel still holds of conn's output: written by
// us, not yet acknowledged by the peer (SIOCOUTQ). 0 when unknown.
func unsentBytes(conn net.Conn) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var v int32
	rc.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&v))); e != 0 {
			v = 0
		}
	})
	return int(max(v, 0))
}
