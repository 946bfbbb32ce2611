package listener

import (
	"errors"
	"io"
)

var (
	errWouldBlock = errors.New("nothing to read yet")
	errEOF        = io.EOF
)
