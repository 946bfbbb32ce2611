//go:build !unix

package dest

import "net"

// rawScratch is the Unix raw calls' state; nothing elsewhere.
type rawScratch struct{}

// rawWritev is the Unix raw writev; elsewhere the caller writes the
// ordinary way.
func rawWritev(net.Conn, [][]byte, *rawScratch) (int64, bool, error) { return 0, false, nil }
