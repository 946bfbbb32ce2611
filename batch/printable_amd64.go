package batch

// plainScan is plainScanGo in assembly (printable_amd64.s): the name
// sixteen bytes at a time with SSE2 (which every amd64 has), the digits
// eight at a time, in one call per line.
//
//go:noescape
func plainScan(b []byte) (nameLen, valEnd, tsEnd int)
