//go:build unix

package wire

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns c's file descriptor access for writeNow, or nil if c has
// none (then replies are written with c.Write).
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// writeNow writes what of b the socket takes without waiting (c.Write
// would wait for the client to read the rest) and returns how much that
// was: all of b unless the client is not reading its replies.
func writeNow(raw syscall.RawConn, b []byte) (n int, err error) {
	werr := raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			switch {
			case e == nil && m > 0:
			case errors.Is(e, syscall.EINTR):
			case errors.Is(e, syscall.EAGAIN):
				return true // full: the rest waits
			case e != nil:
				err = e
				return true
			default: // 0 bytes and no error: not a socket's answer
				err = syscall.EIO
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}
