//go:build unix

package dest

import (
	"net"
	"syscall"
)

// peerClosed reports whether the peer of an idle connection has already
// closed it (a FIN or RST is waiting), without consuming data. Writing into
// such a socket would succeed locally and be lost, so the writer checks
// before its first write after being idle.
func peerClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	// Control, not Read: the read watchdog holds the fd's read lock.
	rerr := rc.Control(func(fd uintptr) {
		n, err := peekByte(fd, &b[0])
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		case err != 0:
			closed = true // ECONNRESET and friends
		case n == 0:
			closed = true // orderly shutdown
		}
	})
	return closed || rerr != nil
}
