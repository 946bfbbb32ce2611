package listener

import "errors"

// errWouldBlock is a trickler's read that found nothing yet.
var errWouldBlock = errors.New("nothing to read yet")
