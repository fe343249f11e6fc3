package wire

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzPeerServer sends arbitrary bytes to a peer server, as a buggy or
// hostile peer could, on a connection it then half-closes. The server
// runs some methods inline (deferring waits, one of which fails) and
// others on workers. Whatever the input, it must answer only with
// well-formed replies to calls it parsed, close the connection, and go on
// serving other connections.
func FuzzPeerServer(f *testing.F) {
	handler := func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		if g := SyncGroupFrom(ctx); g != nil {
			g.Defer(func() error {
				if method == "lose" {
					return errors.New("fsync failed")
				}
				return nil
			})
		}
		switch method {
		case "echo", "work", "lose":
			return args, nil
		}
		return nil, errors.New("unknown method")
	}
	s := NewPeerServer(handler, Limits{MaxArgs: 64, MaxBulk: 1 << 16}, nil)
	s.Inline("echo", "lose")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go s.Serve(l)
	f.Cleanup(func() { s.Close() })
	addr := l.Addr().String()
	c := NewPeerClient(addr, PeerClientConfig{CallTimeout: 5 * time.Second})
	f.Cleanup(func() { c.Close() })

	req := func(id uint64, method string, args ...string) []byte {
		bs := make([][]byte, len(args))
		for i, a := range args {
			bs[i] = []byte(a)
		}
		return appendPeerRequest(nil, id, method, bs)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, seed := range [][]byte{
		req(1, "echo", "a", "b"),
		cat(req(1, "echo", "x"), req(2, "lose", "y"), req(3, "work", "z"), req(4, "echo")),
		cat(req(1, "echo", "x"), []byte("garbage\r\n")),
		cat(req(7, "nope"), req(7, "echo", "same id")),
		[]byte("*4\r\n$3\r\nRPC\r\n$1\r\n9\r\n$1\r\n1\r\n$4\r\necho\r\n"),                     // another version
		[]byte("*4\r\n$3\r\nRPC\r\n$1\r\n1\r\n$2\r\n-1\r\n$4\r\necho\r\n"),                    // a bad id
		[]byte("*4\r\n$3\r\nRPC\r\n$1\r\n1\r\n$20\r\n18446744073709551615\r\n$4\r\necho\r\n"), // the largest id
		[]byte("*2\r\n$3\r\nRPC\r\n$1\r\n1\r\n"),                                              // too short
		[]byte("*1\r\n$4\r\nPING\r\n"),
		[]byte("RPC 1 5 echo inline\r\n"),
		req(1, "echo", string(make([]byte, 70000))), // past MaxBulk
		[]byte("*99999999\r\n"),
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(in); err != nil {
			t.Fatalf("write: %v", err)
		}
		conn.(*net.TCPConn).CloseWrite()
		// Until the server closes (a reset, if it closed with input
		// unread, as after a bulk past the limit).
		out, err := io.ReadAll(conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server did not close the connection: %v", err)
		}
		for len(out) > 0 {
			v, n, err := ParseReply(out)
			if err != nil || n == 0 {
				t.Fatalf("malformed reply %q: %v", out, err)
			}
			if v.Kind != Array || len(v.Array) < 2 || v.Array[0].Kind != Integer ||
				(v.Array[1].Kind != SimpleString && v.Array[1].Kind != Error) {
				t.Fatalf("not a peer reply: %q", out[:n])
			}
			out = out[n:]
		}
		if res, err := c.Call(context.Background(), "echo", []byte("still")); err != nil || len(res) != 1 || string(res[0]) != "still" {
			t.Fatalf("after the input, a call on another connection: %q, %v", res, err)
		}
	})
}
