//go:build unix

package wire

import (
	"net"
	"syscall"
)

// rawWriter writes a connection's replies without waiting (see writeNow).
// One per connection: its callback is bound once, so a write allocates
// nothing.
type rawWriter struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool // w.write
	b   []byte
	n   int
	err error
}

// newRawWriter returns c's writer, or nil if c has no file descriptor
// (then replies are written with c.Write).
func newRawWriter(c net.Conn) *rawWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{raw: raw}
	w.fn = w.write
	return w
}

// writeNow writes what of b the socket takes without waiting (c.Write
// would wait for the client to read the rest) and returns how much that
// was: all of b unless the client is not reading its replies.
func (w *rawWriter) writeNow(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	werr := w.raw.Write(w.fn)
	n, err := w.n, w.err
	w.b, w.err = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}

func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		m, e := syscall.Write(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
		}
		switch {
		case e == nil && m > 0:
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			return true // full: the rest waits
		case e != nil:
			w.err = e
			return true
		default: // 0 bytes and no error: not a socket's answer
			w.err = syscall.EIO
			return true
		}
	}
	return true
}
