//go:build !unix

package wire

import "net"

// rawWriter is unix only: elsewhere replies are written with c.Write.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (*rawWriter) writeNow([]byte) (int, error) { panic("unreachable: newRawWriter gives nil") }
