//go:build unix

package listener

import (
	"net"
	"syscall"
)

// readQueued reads one datagram already queued in the kernel without
// waiting; empty when there is none.
func readQueued(raw syscall.RawConn, _ *net.UDPConn, buf []byte) (n int, empty bool, err error) {
	var rerr error
	raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		return true // never wait here
	})
	switch {
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
		return 0, true, nil
	case rerr != nil:
		return 0, true, rerr
	}
	return n, false, nil
}
