//go:build !linux

package pool

import "net"

// unsentBytes cannot be known on this platform.
func unsentBytes(net.Conn) int { return 0 }
