package dest

import (
	"net"
	"os"
	"sync"
	"time"
)

// fileConn is a file cluster's file as a destination connection: writes
// append to it; it is reopened when it was moved or deleted (logrotate), so
// no signal is needed. Reads block until Close (a file never "closes the
// connection").
type fileConn struct {
	path    string
	f       *os.File
	checked time.Time
	closed  chan struct{}
	once    sync.Once
}

func openFile(path string) (*fileConn, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileConn{path: path, f: f, checked: time.Now(), closed: make(chan struct{})}, nil
}

func (c *fileConn) Write(p []byte) (int, error) {
	if time.Since(c.checked) >= time.Second {
		c.checked = time.Now()
		if err := c.reopenIfMoved(); err != nil {
			return 0, err
		}
	}
	return c.f.Write(p)
}

// reopenIfMoved opens the path afresh when it no longer names the open file.
func (c *fileConn) reopenIfMoved() error {
	now, err := os.Stat(c.path)
	if err == nil {
		if open, err := c.f.Stat(); err == nil && os.SameFile(now, open) {
			return nil
		}
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	c.f.Close()
	c.f = f
	return nil
}

func (c *fileConn) Read([]byte) (int, error) {
	<-c.closed
	return 0, net.ErrClosed
}

func (c *fileConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		close(c.closed)
		err = c.f.Close()
	})
	return err
}

type fileAddr string

func (a fileAddr) Network() string { return "file" }
func (a fileAddr) String() string  { return string(a) }

func (c *fileConn) LocalAddr() net.Addr              { return fileAddr(c.path) }
func (c *fileConn) RemoteAddr() net.Addr             { return fileAddr(c.path) }
func (c *fileConn) SetDeadline(time.Time) error      { return nil }
func (c *fileConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fileConn) SetWriteDeadline(time.Time) error { return nil }
