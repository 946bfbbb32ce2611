//go:build !amd64

package batch

// plainScan reads an ordinary line: plainScanGo.
func plainScan(b []byte) (nameLen, valEnd, tsEnd int) { return plainScanGo(b) }
