package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// FuzzServerCommands sends arbitrary commands, well framed, to a server
// over a real connection: the arguments are the input split on NUL. It
// covers what the parser fuzz targets do not reach, the parsing of each
// command's arguments and options (numbers, CTX tokens, R, W, SLOPPY,
// subcommands). Whatever the command, the server must answer it with one
// well-formed reply and go on serving the connection (a PING sent after it
// gets PONG), unless it is QUIT.
func FuzzServerCommands(f *testing.F) {
	be := newFakeBackend()
	srv, err := NewServer(ServerConfig{Backend: be})
	if err != nil {
		f.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	f.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			f.Errorf("Serve returned %v", err)
		}
	})
	for _, args := range [][]string{
		{"SET", "k", "v"},
		{"SET", "k", "v", "W", "2", "SLOPPY", "yes"},
		{"SET", "k", "v", "CTX", "AQE"},
		{"SET", "k", "v", "EX", "10"},
		{"PUT", "k", "v", "CTX", ""},
		{"GET", "k", "R", "1"},
		{"GET", "k", "R", "99999999999999999999"},
		{"VGET", "k"},
		{"VDEL", "k", "CTX", "!!"},
		{"DEL", "k", "k2", "k3"},
		{"EXISTS", "k"},
		{"MGET", "k", "c"},
		{"INCR", "c"},
		{"INCRBY", "c", "9223372036854775807"},
		{"DECRBY", "c", "-9223372036854775808"},
		{"INCR", "k"},
		{"ECHO", "hi"},
		{"PING", "x"},
		{"INFO", "all"},
		{"INFO", "nope"},
		{"COMMAND", "DOCS", "get"},
		{"COMMAND", "COUNT"},
		{"CONFIG", "GET", "*"},
		{"CLIENT", "SETNAME", "a b"},
		{"CLIENT", "ID"},
		{"HELLO", "3"},
		{"HELLO", "2", "AUTH", "u", "p", "SETNAME", "n"},
		{"SELECT", "1"},
		{"QUIT"},
		{""},
	} {
		f.Add([]byte(strings.Join(args, "\x00")))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		parts := bytes.Split(in, []byte{0})
		args := make([]string, len(parts))
		for i, p := range parts {
			args[i] = string(p)
		}
		conn, err := net.DialTimeout("tcp", l.Addr().String(), srvWait)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &srvConn{t: t, conn: conn}
		c.write(string(srvCommand(args...)) + string(srvCommand("PING")))
		quit := strings.EqualFold(args[0], "QUIT")
		v, err := c.readReply()
		if err != nil {
			t.Fatalf("%q: no reply: %v (received %q)", args, err, c.buf)
		}
		if quit {
			if _, err := c.readReply(); !errors.Is(err, io.EOF) {
				t.Fatalf("QUIT answered %s, then %v; want the connection closed", v, err)
			}
			return
		}
		if v, err := c.readReply(); err != nil || v.String() != `+"PONG"` {
			t.Fatalf("%q: the PING after it got %s, %v (received %q)", args, v, err, c.buf)
		}
	})
}
