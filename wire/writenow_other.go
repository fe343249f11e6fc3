//go:build !unix

package wire

import (
	"net"
	"syscall"
)

func rawConn(net.Conn) syscall.RawConn { return nil }

func writeNow(syscall.RawConn, []byte) (int, error) { panic("unreachable: rawConn is nil") }
