//go:build !unix

package listener

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// readQueued reads one datagram already queued without waiting (a read
// with a deadline in the past); empty when there is none.
func readQueued(_ syscall.RawConn, conn *net.UDPConn, buf []byte) (n int, empty bool, err error) {
	conn.SetReadDeadline(time.Now())
	defer conn.SetReadDeadline(time.Time{})
	n, err = conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, true, nil
	}
	if err != nil {
		return 0, true, err
	}
	return n, false, nil
}
