//go:build !unix

package main

// raiseFileLimit: the bench runs its relays on Linux; elsewhere the limit
// is left as it is.
func raiseFileLimit() {}
