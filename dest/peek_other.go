//go:build !unix

package dest

import "net"

// peerClosed cannot peek on this platform; the read watchdog still notices.
func peerClosed(net.Conn, *rawScratch) bool { return false }
