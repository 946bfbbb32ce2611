//go:build !linux

package ring

func newPosTable() *posTable { return new(posTable) }
