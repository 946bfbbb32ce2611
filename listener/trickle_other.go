//go:build !unix

package listener

import "net"

// trickler is unix-only (the receive low-water mark); elsewhere trickling
// connections still wait for the window between reads.
type trickler struct{ on bool }

func newTrickler(net.Conn) *trickler         { return nil }
func (t *trickler) set(bool)                 {}
func (t *trickler) Read([]byte) (int, error) { return 0, errWouldBlock }
