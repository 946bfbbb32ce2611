//go:build !linux

package dest

import "net"

// unsentBytes cannot be known on this platform.
func unsentBytes(net.Conn) int { return 0 }
