//go:build !amd64

package batch

// printable16 is the index of the first byte of b outside 0x21–0x7e in
// b's whole sixteen-byte blocks, or where those blocks end when they hold
// none.
func printable16(b []byte) int { return printable16Go(b) }
