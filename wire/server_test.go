package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// srvWait bounds every wait on the network in these tests. It is only ever
// reached when something is broken; passing tests never wait for it.
const srvWait = 10 * time.Second

// srvEnv is a RESP server serving on a loopback port chosen by the OS.
type srvEnv struct {
	srv  *Server
	addr string
	be   *fakeBackend

	done     chan struct{} // closed when Serve returns
	serveErr error         // Serve's result, readable after done
}

// srvStart starts a server for cfg (with a fresh fake backend when
// cfg.Backend is nil) and closes it when the test ends, checking that Serve
// then returns ErrServerClosed.
func srvStart(t *testing.T, cfg ServerConfig) *srvEnv {
	t.Helper()
	e := &srvEnv{done: make(chan struct{})}
	if cfg.Backend == nil {
		e.be = newFakeBackend()
		cfg.Backend = e.be
	} else if f, ok := cfg.Backend.(*fakeBackend); ok {
		e.be = f
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e.srv, e.addr = srv, l.Addr().String()
	go func() {
		e.serveErr = srv.Serve(l)
		close(e.done)
	}()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := e.wait(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return e
}

// wait waits for Serve to return and returns its error.
func (e *srvEnv) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-e.done:
		return e.serveErr
	case <-time.After(srvWait):
		t.Fatalf("Serve did not return within %v", srvWait)
		return nil
	}
}

// srvConn is a raw client connection that reads replies with ParseReply.
type srvConn struct {
	t    *testing.T
	conn net.Conn
	buf  []byte // received and not yet parsed
}

func (e *srvEnv) dial(t *testing.T) *srvConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, srvWait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &srvConn{t: t, conn: conn}
}

// connect dials and checks with a PING that the server is serving the
// connection, so its goroutine is running when connect returns.
func (e *srvEnv) connect(t *testing.T) *srvConn {
	t.Helper()
	c := e.dial(t)
	c.check(`+"PONG"`, "PING")
	return c
}

// srvCommand encodes args as a multibulk command.
func srvCommand(args ...string) []byte {
	b := AppendArray(nil, len(args))
	for _, a := range args {
		b = AppendBulkString(b, a)
	}
	return b
}

func (c *srvConn) write(raw string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(srvWait))
	if _, err := c.conn.Write([]byte(raw)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *srvConn) send(args ...string) {
	c.t.Helper()
	c.write(string(srvCommand(args...)))
}

// readReply reads until one whole reply has arrived. The error is the
// connection's (io.EOF once the server has closed it) or ParseReply's.
func (c *srvConn) readReply() (Value, error) {
	c.conn.SetReadDeadline(time.Now().Add(srvWait))
	var chunk [4096]byte
	for {
		v, n, err := ParseReply(c.buf)
		if err != nil {
			return Value{}, err
		}
		if n > 0 {
			// v aliases c.buf[:n], which later reads never overwrite.
			c.buf = c.buf[n:]
			return v, nil
		}
		m, err := c.conn.Read(chunk[:])
		c.buf = append(c.buf, chunk[:m]...)
		if err != nil && m == 0 {
			return Value{}, err
		}
	}
}

func (c *srvConn) read() Value {
	c.t.Helper()
	v, err := c.readReply()
	if err != nil {
		c.t.Fatalf("reading reply: %v (buffered %q)", err, c.buf)
	}
	return v
}

func (c *srvConn) do(args ...string) Value {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

// check sends args and compares the reply, rendered by Value.String, to want.
func (c *srvConn) check(want string, args ...string) {
	c.t.Helper()
	if got := c.do(args...).String(); got != want {
		c.t.Errorf("%q: got %s, want %s", args, got, want)
	}
}

// checkError sends args and checks that the reply is an error that starts
// with prefix.
func (c *srvConn) checkError(prefix string, args ...string) {
	c.t.Helper()
	v := c.do(args...)
	if v.Kind != Error || !strings.HasPrefix(string(v.Str), prefix) {
		c.t.Errorf("%q: got %s, want an error starting %q", args, v, prefix)
	}
}

// expectClosed checks that the server closed the connection with nothing
// more to read.
func (c *srvConn) expectClosed() {
	c.t.Helper()
	v, err := c.readReply()
	switch {
	case err == nil:
		c.t.Errorf("got %s, want the connection closed", v)
	case !errors.Is(err, io.EOF):
		c.t.Errorf("got %v, want EOF", err)
	}
}

const srvWrongType = `-"WRONGTYPE Operation against a key holding the wrong kind of value"`

// srvStep is one command of a script and the reply it must get.
type srvStep struct {
	args []string
	want string
}

func srvRun(t *testing.T, c *srvConn, steps []srvStep) {
	t.Helper()
	for _, s := range steps {
		c.check(s.want, s.args...)
	}
}

func srvArgs(args ...string) []string { return args }

func TestServerCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []srvStep
	}{
		{"ping", []srvStep{
			{srvArgs("PING"), `+"PONG"`},
			{srvArgs("ping", "hello world"), `$"hello world"`},
			{srvArgs("PING", "a", "b"), `-"ERR wrong number of arguments for 'ping' command"`},
		}},
		{"echo", []srvStep{
			{srvArgs("ECHO", "hi\r\nthere"), `$"hi\r\nthere"`},
			{srvArgs("ECHO", ""), `$""`},
			{srvArgs("ECHO"), `-"ERR wrong number of arguments for 'echo' command"`},
		}},
		{"set and get", []srvStep{
			{srvArgs("GET", "greeting"), `$nil`},
			{srvArgs("SET", "greeting", "hello"), `+"OK"`},
			{srvArgs("GET", "greeting"), `$"hello"`},
			{srvArgs("PUT", "greeting", "bonjour"), `+"OK"`},
			{srvArgs("get", "greeting"), `$"bonjour"`},
			{srvArgs("SET", "bin", "\x00\r\n\xff"), `+"OK"`},
			{srvArgs("GET", "bin"), `$"\x00\r\n\xff"`},
			{srvArgs("SET", "empty", ""), `+"OK"`},
			{srvArgs("GET", "empty"), `$""`},
			{srvArgs("EXISTS", "empty"), `:1`},
		}},
		{"get counter", []srvStep{
			{srvArgs("INCRBY", "n", "-42"), `:-42`},
			{srvArgs("GET", "n"), `$"-42"`},
		}},
		{"mget", []srvStep{
			{srvArgs("SET", "a", "1"), `+"OK"`},
			{srvArgs("INCRBY", "n", "7"), `:7`},
			{srvArgs("MGET", "a", "missing", "n", "a"), `*[$"1", $nil, $"7", $"1"]`},
			{srvArgs("MGET"), `-"ERR wrong number of arguments for 'mget' command"`},
		}},
		{"exists", []srvStep{
			{srvArgs("SET", "a", "1"), `+"OK"`},
			{srvArgs("INCR", "n"), `:1`},
			{srvArgs("EXISTS", "missing"), `:0`},
			{srvArgs("EXISTS", "a", "missing", "n", "a"), `:3`},
		}},
		{"del", []srvStep{
			{srvArgs("SET", "a", "1"), `+"OK"`},
			{srvArgs("SET", "b", "2"), `+"OK"`},
			{srvArgs("INCR", "n"), `:1`},
			{srvArgs("DEL", "a", "missing", "n"), `:2`},
			{srvArgs("EXISTS", "a", "n", "b"), `:1`},
			{srvArgs("DEL", "a"), `:0`},
			{srvArgs("GET", "a"), `$nil`},
			{srvArgs("GET", "n"), `$nil`},
			{srvArgs("INCR", "n"), `:1`},
		}},
		{"vdel without context", []srvStep{
			{srvArgs("SET", "a", "1"), `+"OK"`},
			{srvArgs("VDEL", "a"), `:1`},
			{srvArgs("VDEL", "a"), `:0`},
			{srvArgs("GET", "a"), `$nil`},
			{srvArgs("VDEL", "a", "CTX"), `-"ERR syntax error: option 'CTX' of 'vdel' needs a value"`},
			{srvArgs("VDEL", "a", "CTX", "!!"), `-"ERR invalid context token: it must be a token from VGET"`},
		}},
		{"incr and decr", []srvStep{
			{srvArgs("INCR", "n"), `:1`},
			{srvArgs("INCRBY", "n", "10"), `:11`},
			{srvArgs("DECR", "n"), `:10`},
			{srvArgs("DECRBY", "n", "20"), `:-10`},
			{srvArgs("incrby", "n", "-5"), `:-15`},
			{srvArgs("DECRBY", "n", "-15"), `:0`},
			{srvArgs("EXISTS", "n"), `:1`},
			{srvArgs("INCRBY", "n", "abc"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCRBY", "n", "1.5"), `-"ERR value is not an integer or out of range"`},
			// As Redis reads integers: no plus sign, no leading zeros, no spaces.
			{srvArgs("INCRBY", "n", "+5"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCRBY", "n", "05"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCRBY", "n", "-0"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCRBY", "n", " 5"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCRBY", "n", ""), `-"ERR value is not an integer or out of range"`},
			{srvArgs("DECRBY", "n", "0"), `:0`},
			{srvArgs("INCRBY", "n", ""), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCRBY", "n", "9223372036854775808"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("DECRBY", "n", "x"), `-"ERR value is not an integer or out of range"`},
			{srvArgs("INCR", "n", "1"), `-"ERR syntax error: unknown option '1' for 'incr'"`},
			{srvArgs("INCR", "m", "W", "2"), `:1`},
			{srvArgs("INCRBY", "m", "5", "W", "1"), `:6`},
			{srvArgs("INCRBY", "n"), `-"ERR wrong number of arguments for 'incrby' command"`},
			{srvArgs("INCR", "n", "W", "0"), `-"ERR W must be a positive number of replicas"`},
			{srvArgs("INCR", "n", "R", "1"), `-"ERR syntax error: unknown option 'R' for 'incr'"`},
			{srvArgs("INCRBY", "n"), `-"ERR wrong number of arguments for 'incrby' command"`},
			{srvArgs("GET", "n"), `$"0"`},
		}},
		{"counter overflow", []srvStep{
			{srvArgs("INCRBY", "max", "9223372036854775807"), `:9223372036854775807`},
			{srvArgs("INCR", "max"), `-"ERR increment or decrement would overflow"`},
			{srvArgs("INCRBY", "max", "1"), `-"ERR increment or decrement would overflow"`},
			{srvArgs("DECRBY", "max", "-1"), `-"ERR increment or decrement would overflow"`},
			{srvArgs("GET", "max"), `$"9223372036854775807"`},
			{srvArgs("DECRBY", "min", "9223372036854775807"), `:-9223372036854775807`},
			{srvArgs("DECR", "min"), `:-9223372036854775808`},
			{srvArgs("DECR", "min"), `-"ERR increment or decrement would overflow"`},
			{srvArgs("INCRBY", "min", "-1"), `-"ERR increment or decrement would overflow"`},
			{srvArgs("GET", "min"), `$"-9223372036854775808"`},
			{srvArgs("DECRBY", "x", "-9223372036854775808"), `-"ERR decrement would overflow"`},
			{srvArgs("EXISTS", "x"), `:0`},
			{srvArgs("INCRBY", "y", "-9223372036854775808"), `:-9223372036854775808`},
		}},
		{"set options", []srvStep{
			{srvArgs("SET", "k", "v", "EX", "10"), `-"ERR syntax error: 'set' option EX is not supported by rumor"`},
			{srvArgs("SET", "k", "v", "px", "10"), `-"ERR syntax error: 'set' option PX is not supported by rumor"`},
			{srvArgs("SET", "k", "v", "NX"), `-"ERR syntax error: 'set' option NX is not supported by rumor"`},
			{srvArgs("SET", "k", "v", "KEEPTTL"), `-"ERR syntax error: 'set' option KEEPTTL is not supported by rumor"`},
			{srvArgs("SET", "k", "v", "CTX", "AQA", "XX"), `-"ERR syntax error: 'set' option XX is not supported by rumor"`},
			{srvArgs("PUT", "k", "v", "GET"), `-"ERR syntax error: 'put' option GET is not supported by rumor"`},
			{srvArgs("SET", "k", "v", "FOO", "1"), `-"ERR syntax error: unknown option 'FOO' for 'set'"`},
			{srvArgs("SET", "k", "v", "CTX"), `-"ERR syntax error: option 'CTX' of 'set' needs a value"`},
			{srvArgs("SET", "k", "v", "CTX", "not a token"), `-"ERR invalid context token: it must be a token from VGET"`},
			{srvArgs("SET", "k", "v", "CTX", "AQA"), `+"OK"`}, // the empty context's token
			{srvArgs("GET", "k"), `$"v"`},
			{srvArgs("SET", "k"), `-"ERR wrong number of arguments for 'set' command"`},
		}},
		{"arity and unknown commands", []srvStep{
			{srvArgs("GET"), `-"ERR wrong number of arguments for 'get' command"`},
			{srvArgs("GET", "a", "b"), `-"ERR syntax error: unknown option 'b' for 'get'"`},
			{srvArgs("GET", "a", "R"), `-"ERR syntax error: option 'R' of 'get' needs a value"`},
			{srvArgs("GET", "a", "R", "x"), `-"ERR R must be a positive number of replicas"`},
			{srvArgs("GET", "a", "W", "1"), `-"ERR syntax error: unknown option 'W' for 'get'"`},
			{srvArgs("SET", "a", "b", "W", "-1"), `-"ERR W must be a positive number of replicas"`},
			{srvArgs("SET", "a", "b", "R", "1"), `-"ERR syntax error: unknown option 'R' for 'set'"`},
			{srvArgs("SET", "a", "b", "SLOPPY", "maybe"), `-"ERR SLOPPY must be yes or no"`},
			{srvArgs("SET", "a", "b", "SLOPPY"), `-"ERR syntax error: option 'SLOPPY' of 'set' needs a value"`},
			{srvArgs("SET", "a", "b", "SLOPPY", "no", "W", "1"), `+"OK"`},
			{srvArgs("GET", "a", "sloppy", "yes", "R", "1"), `$"b"`},
			{srvArgs("INCR", "c", "SLOPPY", "off"), `:1`},
			{srvArgs("VDEL", "a", "SLOPPY", ""), `-"ERR SLOPPY must be yes or no"`},
			{srvArgs("VGET"), `-"ERR wrong number of arguments for 'vget' command"`},
			{srvArgs("FOO"), `-"ERR unknown command 'FOO', with args beginning with:"`},
			{srvArgs("FOO", "a", "b\r\nc"), `-"ERR unknown command 'FOO', with args beginning with: 'a' 'b??c'"`},
			{srvArgs("averyveryverylongcommandname", "x"), `-"ERR unknown command 'averyveryverylongcommandname', with args beginning with: 'x'"`},
			{srvArgs("PING"), `+"PONG"`},
		}},
		{"wrong type", []srvStep{
			{srvArgs("INCR", "c"), `:1`},
			{srvArgs("SET", "c", "v"), srvWrongType},
			{srvArgs("PUT", "c", "v"), srvWrongType},
			{srvArgs("VGET", "c"), srvWrongType},
			{srvArgs("GET", "c"), `$"1"`},
			{srvArgs("SET", "r", "v"), `+"OK"`},
			{srvArgs("INCR", "r"), srvWrongType},
			{srvArgs("DECRBY", "r", "2"), srvWrongType},
			{srvArgs("GET", "r"), `$"v"`},
			{srvArgs("DEL", "c", "r"), `:2`},
			{srvArgs("SET", "c", "v"), `+"OK"`},
			{srvArgs("INCR", "r"), `:1`},
		}},
		{"select", []srvStep{
			{srvArgs("SELECT", "0"), `+"OK"`},
			{srvArgs("SELECT", "1"), `-"ERR DB index is out of range (rumor has one keyspace: SELECT 0)"`},
			{srvArgs("SELECT"), `-"ERR wrong number of arguments for 'select' command"`},
		}},
		{"hello", []srvStep{
			{srvArgs("HELLO", "3"), `-"NOPROTO unsupported protocol version: rumor speaks RESP2"`},
			{srvArgs("HELLO", "x"), `-"ERR Protocol version is not an integer or out of range"`},
			{srvArgs("HELLO", "2", "BOGUS"), `-"ERR syntax error in HELLO option 'BOGUS'"`},
			{srvArgs("HELLO", "2", "AUTH", "bob", "pw"), `-"WRONGPASS invalid username-password pair or user is disabled."`},
			{srvArgs("HELLO", "2", "AUTH", "default"), `-"ERR syntax error in HELLO option 'AUTH'"`},
			{srvArgs("HELLO", "2", "SETNAME"), `-"ERR syntax error in HELLO option 'SETNAME'"`},
			{srvArgs("HELLO", "2", "SETNAME", "early", "BOGUS"), `-"ERR syntax error in HELLO option 'BOGUS'"`},
			{srvArgs("CLIENT", "GETNAME"), `$nil`}, // a refused HELLO sets no name
			{srvArgs("CLIENT", "NO-EVICT", "on"), `+"OK"`},
			{srvArgs("CLIENT", "NO-EVICT"), `-"ERR wrong number of arguments for 'client|no-evict' command"`},
			{srvArgs("CLIENT", "NO-TOUCH", "maybe"), `-"ERR syntax error"`},
		}},
		{"client", []srvStep{
			{srvArgs("CLIENT", "GETNAME"), `$nil`},
			{srvArgs("CLIENT", "SETNAME", "app"), `+"OK"`},
			{srvArgs("CLIENT", "GETNAME"), `$"app"`},
			{srvArgs("CLIENT", "SETINFO", "lib-name", "go-redis"), `+"OK"`},
			{srvArgs("CLIENT", "SETINFO", "lib-ver", "9.0.0"), `+"OK"`},
			{srvArgs("CLIENT", "NO-EVICT", "on"), `+"OK"`},
			{srvArgs("CLIENT", "SETINFO", "lib-name"), `-"ERR unknown subcommand or wrong number of arguments for 'client|setinfo' command"`},
			{srvArgs("CLIENT", "KILL", "x"), `-"ERR No such client"`},
			{srvArgs("CLIENT", "KILL", "ID"), `-"ERR No such client"`},
			{srvArgs("CLIENT", "KILL", "ID", "x"), `-"ERR client-id should be greater than 0"`},
			{srvArgs("CLIENT", "KILL", "BOGUS", "x"), `-"ERR syntax error"`},
			{srvArgs("CLIENT", "KILL", "ID", "1", "SKIPME"), `-"ERR syntax error"`},
			{srvArgs("CLIENT", "LIST", "TYPE", "bogus"), `-"ERR Unknown client type 'bogus'"`},
			{srvArgs("CLIENT", "LIST", "TYPE", "pubsub"), `$""`},
			{srvArgs("CLIENT", "LIST", "ID", "x"), `-"ERR Invalid client ID"`},
			{srvArgs("CLIENT", "LIST", "BOGUS"), `-"ERR syntax error"`},
			{srvArgs("CLIENT"), `-"ERR wrong number of arguments for 'client' command"`},
		}},
		{"config", []srvStep{
			{srvArgs("CONFIG", "GET", "save"), `*[$"save", $""]`},
			{srvArgs("CONFIG", "GET", "SAVE", "appendonly"), `*[$"appendonly", $"no", $"save", $""]`},
			{srvArgs("CONFIG", "GET", "maxclients"), `*[$"maxclients", $"10000"]`},
			{srvArgs("CONFIG", "GET", "timeout"), `*[$"timeout", $"300"]`},
			{srvArgs("CONFIG", "GET", "nosuch"), `*[]`},
			{srvArgs("CONFIG", "SET", "save", ""), `-"ERR CONFIG SET is not supported: rumor is configured by its command-line flags"`},
			{srvArgs("CONFIG", "RESETSTAT"), `+"OK"`},
			{srvArgs("CONFIG", "GET"), `-"ERR unknown subcommand or wrong number of arguments for 'config|get' command"`},
			{srvArgs("CONFIG"), `-"ERR wrong number of arguments for 'config' command"`},
		}},
		{"command", []srvStep{
			{srvArgs("COMMAND", "COUNT"), ":" + strconv.Itoa(len(commandTable))},
			// An error, not an empty list: redis-cli then uses its own
			// help table for HELP and its argument hints.
			{srvArgs("COMMAND", "DOCS"), `-"ERR COMMAND DOCS is not supported by rumor"`},
			{srvArgs("COMMAND", "DOCS", "get"), `-"ERR COMMAND DOCS is not supported by rumor"`},
			{srvArgs("COMMAND", "INFO", "get", "nosuch", "MGET"), `*[*[$"get", :-2, *[+"readonly", +"fast"], :1, :1, :1], *nil, *[$"mget", :-2, *[+"readonly", +"fast"], :1, :-1, :1]]`},
			{srvArgs("COMMAND", "INFO", "ping"), `*[*[$"ping", :-1, *[+"fast"], :0, :0, :0]]`},
			{srvArgs("COMMAND", "BOGUS"), `-"ERR unknown subcommand 'BOGUS'. Try COMMAND COUNT, DOCS, INFO or LIST"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srvRun(t, srvStart(t, ServerConfig{}).dial(t), tt.steps)
		})
	}
}

func TestServerCommandList(t *testing.T) {
	t.Parallel()
	c := srvStart(t, ServerConfig{}).connect(t)
	list := c.do("COMMAND", "LIST")
	all := c.do("COMMAND")
	if list.Kind != Array || len(list.Array) != len(commandTable) {
		t.Fatalf("COMMAND LIST: got %s, want %d names", list, len(commandTable))
	}
	if all.Kind != Array || len(all.Array) != len(commandTable) {
		t.Fatalf("COMMAND: got %s, want %d entries", all, len(commandTable))
	}
	for i, n := range list.Array {
		if i > 0 && string(list.Array[i-1].Str) >= string(n.Str) {
			t.Errorf("COMMAND LIST not sorted: %s", list)
		}
		if commandTable[string(n.Str)] == nil {
			t.Errorf("COMMAND LIST names %s, which is not a command", n)
		}
		if e := all.Array[i]; len(e.Array) != 6 || string(e.Array[0].Str) != string(n.Str) {
			t.Errorf("COMMAND entry %d: got %s, want the info of %s", i, e, n)
		}
	}
}

func TestServerConfigGetAll(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{
		Limits:      Limits{MaxBulk: 1 << 20, MaxRequest: 2 << 20},
		MaxClients:  7,
		IdleTimeout: -1,
	})
	c := e.connect(t)
	want := `*[$"appendonly", $"no", $"client-query-buffer-limit", $"2097152", $"databases", $"1", ` +
		`$"maxclients", $"7", $"maxmemory", $"0", $"proto-max-bulk-len", $"1048576", $"save", $"", $"timeout", $"0"]`
	c.check(want, "CONFIG", "GET", "*")
	c.check(`*[$"maxclients", $"7", $"maxmemory", $"0"]`, "CONFIG", "GET", "max*")
}

// srvToken returns the context token of key's stored register.
func srvToken(t *testing.T, c *srvConn, key string) string {
	t.Helper()
	v := c.do("VGET", key)
	if v.Kind != Array || len(v.Array) == 0 || v.Array[0].Kind != Bulk {
		t.Fatalf("VGET %s: got %s, want an array starting with a token", key, v)
	}
	tok := string(v.Array[0].Str)
	if _, _, err := crdt.ParseReadToken(tok); err != nil {
		t.Fatalf("VGET %s: token %q does not parse: %v", key, tok, err)
	}
	return tok
}

func TestServerVGetAndContexts(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)

	// A missing key gives just a token: the empty context.
	empty := crdt.Context(nil).Token()
	c.check(fmt.Sprintf(`*[$%q]`, empty), "VGET", "k")

	c.check(`+"OK"`, "SET", "k", "v1")
	tok1 := srvToken(t, c, "k")
	c.check(fmt.Sprintf(`*[$%q, $"v1"]`, tok1), "VGET", "k")
	if tok1 == empty {
		t.Errorf("the token after a write is still the empty context's")
	}

	// A concurrent write by another actor leaves two siblings, oldest dot
	// first; GET shows the newest.
	e.be.PutConcurrent(0x2, "k", "v2")
	tok2 := srvToken(t, c, "k")
	c.check(fmt.Sprintf(`*[$%q, $"v1", $"v2"]`, tok2), "VGET", "k")
	c.check(`$"v2"`, "GET", "k")

	// A write with the token resolves both into one.
	c.check(`+"OK"`, "PUT", "k", "merged", "CTX", tok2)
	tok3 := srvToken(t, c, "k")
	c.check(fmt.Sprintf(`*[$%q, $"merged"]`, tok3), "VGET", "k")
	if n := len(e.be.Object("k").Reg.Siblings); n != 1 {
		t.Errorf("after PUT with the token the backend holds %d siblings, want 1", n)
	}

	// A write with a stale token supersedes only what the token covers:
	// "merged" stays as a sibling of the new value.
	c.check(`+"OK"`, "SET", "k", "stale", "CTX", tok1)
	c.check(fmt.Sprintf(`*[$%q, $"merged", $"stale"]`, srvToken(t, c, "k")), "VGET", "k")

	c.check(`-"ERR invalid context token: it must be a token from VGET"`, "PUT", "k", "v", "CTX", "bad token")
	c.check(`-"ERR invalid context token: it must be a token from VGET"`, "PUT", "k", "v", "CTX", "AgA")
}

// TestServerTypeConflictIsShownAndResolved: a key SET and INCRed
// concurrently holds a register and a counter. GET shows the register, as
// before, but VGET shows the counter too (last), so that no acknowledged
// increment is hidden, and a write or a delete with VGET's token resolves
// the counter with the siblings.
func TestServerTypeConflictIsShownAndResolved(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)

	c.check(`+"OK"`, "SET", "k", "v")
	e.be.IncrConcurrent(0x2, "k", 3)
	c.check(`$"v"`, "GET", "k")
	tok := srvToken(t, c, "k")
	c.check(fmt.Sprintf(`*[$%q, $"v", :3]`, tok), "VGET", "k")
	c.check(srvWrongType, "INCR", "k")
	// A write with a token read before the increments resolves the
	// siblings it saw, not the counter.
	c.check(`+"OK"`, "SET", "k", "v2", "CTX", crdt.ReadToken(e.be.Object("k").Reg.Context, crdt.Counter{}))
	tok = srvToken(t, c, "k")
	c.check(fmt.Sprintf(`*[$%q, $"v2", :3]`, tok), "VGET", "k")
	// VGET's token covers the counter: the write resolves the conflict.
	c.check(`+"OK"`, "SET", "k", "v3", "CTX", tok)
	c.check(fmt.Sprintf(`*[$%q, $"v3"]`, srvToken(t, c, "k")), "VGET", "k")
	if o := e.be.Object("k"); o.Cnt.Live() {
		t.Errorf("after a write with VGET's token the counter is still live: %d", o.Cnt.Value())
	}

	// VDEL with VGET's token deletes both.
	c.check(`+"OK"`, "SET", "d", "v")
	e.be.IncrConcurrent(0x2, "d", 5)
	c.check(`:1`, "VDEL", "d", "CTX", srvToken(t, c, "d"))
	c.check(`:0`, "EXISTS", "d")
	c.check(`:1`, "INCR", "d")
}

// TestServerVDelOfACounterResetsWhatTheTokenSaw: a counter's token (from
// an HTTP GET, or VGET of a key in a type conflict) carries the counter
// it read, and a delete with it resets those increments and no others;
// one covering none of them deletes nothing and answers 0.
func TestServerVDelOfACounterResetsWhatTheTokenSaw(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	c.check(`:2`, "INCRBY", "n", "2")
	o := e.be.Object("n")
	seen := crdt.ReadToken(o.Reg.Context, o.Cnt)
	c.check(`:5`, "INCRBY", "n", "3")
	c.check(`:1`, "VDEL", "n", "CTX", seen)
	c.check(`$"3"`, "GET", "n")
	c.check(`:0`, "VDEL", "n", "CTX", crdt.Context(nil).Token())
	c.check(`$"3"`, "GET", "n")
}

// TestServerIncrByZeroCreatesTheKey: INCRBY key 0 (and DECRBY) on a
// missing key makes it exist with 0, as in Redis, where it is a common
// way to make sure a counter exists before reading it.
func TestServerIncrByZeroCreatesTheKey(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	c.check(`:0`, "INCRBY", "n", "0")
	c.check(`$"0"`, "GET", "n")
	c.check(`:1`, "EXISTS", "n")
	c.check(`:1`, "DEL", "n")
	c.check(`:0`, "DECRBY", "n", "0")
	c.check(`:1`, "EXISTS", "n")
	c.check(`:4`, "INCRBY", "n", "4")
	c.check(`:4`, "INCRBY", "n", "0")
}

func TestServerVDelWithContext(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)

	// VDEL with a token deletes what the token covers, and no more: a
	// sibling written concurrently after the read survives.
	c.check(`+"OK"`, "SET", "k", "v1")
	tok := srvToken(t, c, "k")
	e.be.PutConcurrent(0x2, "k", "v2")
	c.check(`:1`, "VDEL", "k", "CTX", tok)
	c.check(`$"v2"`, "GET", "k")
	c.check(`:1`, "VDEL", "k", "CTX", srvToken(t, c, "k"))
	c.check(`$nil`, "GET", "k")
	c.check(`:0`, "EXISTS", "k")

	// The tombstone keeps its context, so VGET of a deleted key still
	// gives a token that covers the deleted writes.
	tomb := srvToken(t, c, "k")
	ctx, _ := crdt.ParseToken(tomb)
	if ctx.Get(fakeActor) == 0 || ctx.Get(0x2) == 0 {
		t.Errorf("tombstone token covers %v, want both actors' writes", ctx)
	}
	c.check(`:0`, "VDEL", "k", "CTX", tomb)
	c.check(`-"ERR invalid context token: it must be a token from VGET"`, "VDEL", "k", "CTX", "AQ")
	c.check(`-"ERR syntax error: unknown option 'FOO' for 'vdel'"`, "VDEL", "k", "FOO", "1")
	c.check(`-"ERR syntax error: 'vdel' option XX is not supported by rumor"`, "VDEL", "k", "XX")
}

func TestServerHello(t *testing.T) {
	t.Parallel()
	c := srvStart(t, ServerConfig{}).connect(t)
	id := c.do("CLIENT", "ID")
	if id.Kind != Integer || id.Int < 1 {
		t.Fatalf("CLIENT ID: got %s, want a positive integer", id)
	}
	want := fmt.Sprintf(`*[$"server", $"rumor", $"version", $%q, $"proto", :2, $"id", :%d, `+
		`$"mode", $"standalone", $"role", $"master", $"modules", *[]]`, Version, id.Int)
	c.check(want, "HELLO")
	c.check(want, "HELLO", "2")
	c.check(want, "HELLO", "2", "AUTH", "default", "secret", "SETNAME", "via-hello")
	c.check(`$"via-hello"`, "CLIENT", "GETNAME")
	c.check(`-"NOPROTO unsupported protocol version: rumor speaks RESP2"`, "HELLO", "3")
	// The refused HELLO 3 leaves the connection in RESP2, usable.
	c.check(`+"PONG"`, "PING")
}

func TestServerClientIDsAndInfo(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c1, c2 := e.connect(t), e.connect(t)
	id1, id2 := c1.do("CLIENT", "ID"), c2.do("CLIENT", "ID")
	if id1.Kind != Integer || id2.Kind != Integer || id1.Int == id2.Int {
		t.Errorf("CLIENT ID of two connections: %s and %s, want two different integers", id1, id2)
	}
	c1.check(`+"OK"`, "CLIENT", "SETNAME", "one")
	c2.check(`$nil`, "CLIENT", "GETNAME") // names are per connection
	c1.check(`+"OK"`, "CLIENT", "SETINFO", "lib-name", "redis-py")
	c1.check(`+"OK"`, "CLIENT", "SETINFO", "LIB-VER", "4.3.4")
	c1.check(`-"ERR Unrecognized option 'bogus'"`, "CLIENT", "SETINFO", "bogus", "x")
	for _, sub := range [][]string{{"INFO"}, {"LIST", "ID", strconv.FormatInt(id1.Int, 10)}} {
		info := c1.do(append([]string{"CLIENT"}, sub...)...)
		line := string(info.Str)
		if info.Kind != Bulk || !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
			t.Fatalf("CLIENT %s: got %s, want one line", sub, info)
		}
		fields := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			fields[k] = v
		}
		for k, want := range map[string]string{"id": strconv.FormatInt(id1.Int, 10), "addr": c1.conn.LocalAddr().String(),
			"laddr": c1.conn.RemoteAddr().String(), "name": "one", "db": "0", "resp": "2", "multi": "-1", "flags": "N"} {
			if fields[k] != want {
				t.Errorf("CLIENT %s: %s=%q, want %q (%q)", sub, k, fields[k], want, line)
			}
		}
		// Clients parse these as integers (redis-py's client_info raises
		// KeyError on a missing one): Redis 7 always sends them.
		for _, k := range []string{"fd", "age", "idle", "sub", "psub", "ssub", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "obl", "oll", "omem", "tot-mem", "redir"} {
			if _, err := strconv.Atoi(fields[k]); err != nil {
				t.Errorf("CLIENT %s: field %s=%q is not an integer (%q)", sub, k, fields[k], line)
			}
		}
	}
}

// TestServerClientListAndKill: CLIENT LIST shows every connection (it
// showed only the caller's), with each one's name and last command, and
// CLIENT KILL closes the ones it names, in Redis's old form (by address:
// +OK) and new (by filters: how many), never the caller's own unless
// SKIPME no, and then after the reply.
func TestServerClientListAndKill(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c1, c2, c3 := e.connect(t), e.connect(t), e.connect(t)
	id2 := c2.do("CLIENT", "ID").Int
	c2.check(`+"OK"`, "CLIENT", "SETNAME", "worker")
	c2.check(`+"OK"`, "SET", "k", "v")
	list := string(c1.do("CLIENT", "LIST").Str)
	lines := strings.Split(strings.TrimSuffix(list, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("CLIENT LIST with 3 connections:\n%s", list)
	}
	if !strings.Contains(lines[1], fmt.Sprintf("id=%d ", id2)) || !strings.Contains(lines[1], " name=worker ") || !strings.Contains(lines[1], " cmd=set ") {
		t.Errorf("c2's line %q, want its id, name=worker and cmd=set", lines[1])
	}
	if got := string(c1.do("CLIENT", "LIST", "TYPE", "normal").Str); strings.Count(got, "\n") != 3 {
		t.Errorf("CLIENT LIST TYPE normal: %q", got)
	}
	// The new form: by id, counted; the killed connection is closed.
	c1.check(":1", "CLIENT", "KILL", "ID", strconv.FormatInt(id2, 10))
	if v, err := c2.readReply(); err == nil {
		t.Fatalf("c2 after CLIENT KILL ID: read %s, want the connection closed", v)
	}
	c1.check(":0", "CLIENT", "KILL", "ID", strconv.FormatInt(id2, 10))
	// The old form: by address.
	c1.check(`+"OK"`, "CLIENT", "KILL", c3.conn.LocalAddr().String())
	if v, err := c3.readReply(); err == nil {
		t.Fatalf("c3 after CLIENT KILL addr: read %s, want the connection closed", v)
	}
	testutil.Eventually(t, 5*time.Second, "the killed connections gone from CLIENT LIST", func() bool {
		return strings.Count(string(c1.do("CLIENT", "LIST").Str), "\n") == 1
	})
	// Filters that match only the caller: skipped, unless SKIPME no,
	// which closes it after the reply.
	c1.check(":0", "CLIENT", "KILL", "USER", "default")
	c1.check(":1", "CLIENT", "KILL", "USER", "default", "SKIPME", "no")
	if v, err := c1.readReply(); err == nil {
		t.Fatalf("c1 after killing itself: read %s, want the connection closed", v)
	}
}

// TestServerClientKillAsRedis: what a review of the first version found
// against Redis 7: a killed connection went on running the pipeline it had
// sent (100 of 100 SETs after the kill applied); HELLO SETNAME took any
// name, so one client forged lines in everyone's CLIENT LIST; the caller's
// line said cmd=client|info, another's last CLIENT subcommand showed as
// cmd=client, a connection that ran nothing showed idle=0; repeated KILL
// filters were all required (Redis keeps the last); an unknown USER was
// no error.
func TestServerClientKillAsRedis(t *testing.T) {
	t.Parallel()
	be := newFakeBackend()
	entered, release := make(chan struct{}), make(chan struct{})
	be.getHook = func(ctx context.Context, key string) error {
		if key == "block" {
			close(entered)
			<-release
		}
		return nil
	}
	e := srvStart(t, ServerConfig{Backend: be})
	admin, victim := e.connect(t), e.connect(t)
	vid := victim.do("CLIENT", "ID").Int
	var b []byte
	b = append(b, srvCommand("GET", "block")...)
	for i := range 100 {
		b = append(b, srvCommand("SET", "k"+strconv.Itoa(i), "v")...)
	}
	victim.write(string(b))
	<-entered // the GET runs; the 100 SETs wait in the victim's buffer
	admin.check(":1", "CLIENT", "KILL", "ID", strconv.FormatInt(vid, 10))
	close(release)
	testutil.Eventually(t, 5*time.Second, "the victim gone", func() bool {
		return strings.Count(string(admin.do("CLIENT", "LIST").Str), "\n") == 1
	})
	for i := range 100 {
		if !admin.do("GET", "k"+strconv.Itoa(i)).Null {
			t.Fatalf("the killed connection ran SET k%d, sent before the kill but not started", i)
		}
	}

	// Names: HELLO SETNAME checks them as CLIENT SETNAME does.
	evil := e.connect(t)
	evil.checkError("ERR Client names cannot contain spaces", "HELLO", "2", "SETNAME", "x\nid=4242 addr=6.6.6.6:1 name=fake")
	if list := string(admin.do("CLIENT", "LIST").Str); strings.Count(list, "\n") != 2 {
		t.Fatalf("2 connections, CLIENT LIST:\n%s", list)
	}

	// The fields: the caller's command, another's subcommand, idle of a
	// connection that ran nothing (once it is a second old).
	quiet := e.dial(t)
	evil.check(`+"OK"`, "CLIENT", "SETNAME", "named")
	var lines []string
	testutil.Eventually(t, 5*time.Second, "a second passed", func() bool {
		lines = strings.Split(strings.TrimSuffix(string(admin.do("CLIENT", "LIST").Str), "\n"), "\n")
		return len(lines) == 3 && strings.Contains(lines[2], " age=1 ")
	})
	if !strings.Contains(lines[0], " cmd=client|list ") || !strings.Contains(lines[1], " cmd=client|setname ") || !strings.Contains(lines[2], " idle=1 ") {
		t.Errorf("CLIENT LIST lines, want cmd=client|list (own), cmd=client|setname, idle=1 (ran nothing for 1 s):\n%s", strings.Join(lines, "\n"))
	}
	_ = quiet

	// Repeated filters: the last counts; an unknown user is an error.
	x, y := e.connect(t), e.connect(t)
	xid, yid := x.do("CLIENT", "ID").Int, y.do("CLIENT", "ID").Int
	admin.check(":1", "CLIENT", "KILL", "ID", strconv.FormatInt(xid, 10), "ID", strconv.FormatInt(yid, 10))
	if v, err := y.readReply(); err == nil {
		t.Fatalf("y after CLIENT KILL ID x ID y: read %s, want it closed", v)
	}
	x.check(`+"PONG"`, "PING")
	admin.check(`-"ERR No such user 'bogus'"`, "CLIENT", "KILL", "USER", "bogus")
	admin.check(`-"ERR syntax error"`, "CLIENT", "KILL", "MAXAGE", "-1")
	admin.check(`-"ERR syntax error"`, "CLIENT", "LIST", "TYPE", "normal", "ID", "1")
	admin.check(`-"ERR wrong number of arguments for 'client|kill' command"`, "CLIENT", "KILL")
	// LIST ID answers in the order given.
	got := string(admin.do("CLIENT", "LIST", "ID", strconv.FormatInt(xid, 10), "0", strconv.FormatInt(admin.do("CLIENT", "ID").Int, 10)).Str)
	if l := strings.Split(strings.TrimSuffix(got, "\n"), "\n"); len(l) != 2 || !strings.HasPrefix(l[0], fmt.Sprintf("id=%d ", xid)) {
		t.Errorf("CLIENT LIST ID x 0 admin: %q, want x's line then admin's", got)
	}
}

// TestServerMultiRunsNothing: clients send MULTI, the commands and EXEC
// in one write (redis-py's default pipeline, ioredis multi(), go-redis
// TxPipelined). rumor has no transactions: the commands up to EXEC are
// refused, and EXEC answers EXECABORT, so a client that sees its
// transaction fail finds nothing of it applied (refusing MULTI alone ran
// them). MULTI itself answers +OK, as in Redis, so that a client that
// reads its reply before going on agrees a transaction is open (an
// error there left such a client with a connection refusing everything).
func TestServerMultiRunsNothing(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	c.write(string(srvCommand("MULTI")) + string(srvCommand("SET", "tx", "1")) + string(srvCommand("INCR", "txc")) +
		string(srvCommand("NOSUCH")) + string(srvCommand("EXEC")))
	if v := c.read(); v.Kind != SimpleString || string(v.Str) != "OK" {
		t.Fatalf("MULTI: got %s, want +OK", v)
	}
	for _, cmd := range []string{"SET", "INCR", "NOSUCH"} {
		if v := c.read(); v.Kind != Error || !strings.Contains(string(v.Str), "rumor has no transactions") {
			t.Errorf("%s after MULTI: got %s, want it refused", cmd, v)
		}
	}
	if v := c.read(); v.Kind != Error || !strings.HasPrefix(string(v.Str), "EXECABORT ") {
		t.Errorf("EXEC: got %s, want EXECABORT", v)
	}
	c.check(`$nil`, "GET", "tx")
	c.check(`$nil`, "GET", "txc")
	// The connection works as before once EXEC or DISCARD ends it.
	c.check(`-"ERR EXEC without MULTI"`, "EXEC")
	c.check(`-"ERR DISCARD without MULTI"`, "DISCARD")
	c.check(`+"OK"`, "MULTI")
	c.check(`-"ERR MULTI calls can not be nested"`, "MULTI")
	c.check(`-"ERR command not run: rumor has no transactions, so commands between MULTI and EXEC or DISCARD are refused, and EXEC discards the transaction"`, "SET", "tx", "2")
	c.check(`+"OK"`, "DISCARD")
	c.check(`:1`, "INCR", "txc")
	c.check(`+"OK"`, "SET", "tx", "3")
	c.check(`$"3"`, "GET", "tx")
}

func TestServerAuthWithoutPassword(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	c.check(`-"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"`, "AUTH", "secret")
	c.check(`+"OK"`, "AUTH", "default", "anything")
	c.check(`-"WRONGPASS invalid username-password pair or user is disabled."`, "AUTH", "alice", "secret")
	c.check(`+"PONG"`, "PING")
}

func TestServerInfo(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{
		MaxClients: 50,
		Info: func() []InfoSection {
			return []InfoSection{
				{Name: "Server", Fields: [][2]string{{"rumor_version", "test"}, {"redis_version", "7.0.0"}}},
				{Name: "Persistence", Fields: [][2]string{{"engine", "fake"}}},
			}
		},
	})
	c := e.connect(t)
	c.check(`+"OK"`, "SET", "k", "v")

	infoOf := func(args ...string) string {
		t.Helper()
		v := c.do(append([]string{"INFO"}, args...)...)
		if v.Kind != Bulk {
			t.Fatalf("INFO %q: got %s, want a bulk string", args, v)
		}
		return string(v.Str)
	}
	all := infoOf()
	// Commands so far: PING, SET, and this INFO.
	want := "# Server\r\nrumor_version:test\r\nredis_version:7.0.0\r\n" +
		"\r\n# Clients\r\nconnected_clients:1\r\nmaxclients:50\r\nblocked_clients:0\r\nunread_reply_bytes:0\r\n" +
		"\r\n# Stats\r\ntotal_connections_received:1\r\ntotal_commands_processed:3\r\n" +
		"rejected_connections:0\r\nprotocol_errors:0\r\nidle_timeouts:0\r\n" +
		"\r\n# Persistence\r\nengine:fake\r\n"
	if all != want {
		t.Errorf("INFO:\n got %q\nwant %q", all, want)
	}
	if got := infoOf("everything"); got != strings.Replace(want, "processed:3", "processed:4", 1) {
		t.Errorf("INFO everything:\n got %q\nwant all sections", got)
	}

	stats := infoOf("stats")
	if !strings.HasPrefix(stats, "# Stats\r\n") || strings.Contains(stats, "# Server") || strings.Contains(stats, "# Clients") ||
		!strings.Contains(stats, "\r\ntotal_commands_processed:5\r\n") {
		t.Errorf("INFO stats: got %q, want the Stats section only", stats)
	}
	two := infoOf("SERVER", "persistence")
	if want := "# Server\r\nrumor_version:test\r\nredis_version:7.0.0\r\n\r\n# Persistence\r\nengine:fake\r\n"; two != want {
		t.Errorf("INFO SERVER persistence:\n got %q\nwant %q", two, want)
	}
	if got := infoOf("nosuch"); got != "" {
		t.Errorf("INFO nosuch: got %q, want empty", got)
	}
}

func TestServerInfoWithoutNodeSections(t *testing.T) {
	t.Parallel()
	c := srvStart(t, ServerConfig{}).connect(t)
	v := c.do("INFO")
	if s := string(v.Str); v.Kind != Bulk || !strings.HasPrefix(s, "# Clients\r\n") || !strings.Contains(s, "\r\n# Stats\r\n") ||
		strings.Contains(s, "# Server") {
		t.Errorf("INFO: got %s, want the Clients and Stats sections", v)
	}
}

func TestServerQuit(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	// Commands pipelined behind QUIT are not run.
	c.write(string(srvCommand("QUIT")) + string(srvCommand("SET", "after", "quit")))
	if v := c.read(); v.String() != `+"OK"` {
		t.Errorf("QUIT: got %s, want +OK", v)
	}
	c.expectClosed()
	if o := e.be.Object("after"); o.Kind() != crdt.KindNone {
		t.Errorf("a command after QUIT ran: %v", o)
	}
	e.connect(t) // the server still serves others
}

func TestServerInline(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.dial(t)
	steps := []struct{ line, want string }{
		{"SET greeting hello\r\n", `+"OK"`},
		{"GET greeting\r\n", `$"hello"`},
		{"get greeting\n", `$"hello"`}, // nc -C is optional: a bare LF ends a line
		{"  PING   \t\n", `+"PONG"`},
		{`SET "two words" "a\x41\tb\n"` + "\r\n", `+"OK"`},
		{`GET "two words"` + "\n", `$"aA\tb\n"`},
		{`SET single 'it\'s here'` + "\n", `+"OK"`},
		{"GET single\n", `$"it's here"`},
		{`ECHO ""` + "\n", `$""`},
		{"INCR n\nINCR n\n", `:1`},
		{"", `:2`},                        // the second reply of the line before
		{"\r\n\n\r\nPING\r\n", `+"PONG"`}, // blank lines get no reply
		{"\r\n", ""},
		{"ECHO 'unbalanced\n", `-"ERR Protocol error: unbalanced quotes in request"`},
	}
	for _, s := range steps {
		if s.line != "" {
			c.write(s.line)
		}
		if s.want == "" {
			continue
		}
		if got := c.read().String(); got != s.want {
			t.Errorf("%q: got %s, want %s", s.line, got, s.want)
		}
	}
	c.expectClosed()
}

func TestServerPipelining(t *testing.T) {
	t.Parallel()
	c := srvStart(t, ServerConfig{}).connect(t)
	const n = 100
	var batch []byte
	for i := range n {
		switch i % 3 {
		case 0:
			batch = append(batch, srvCommand("INCR", "seq")...)
		case 1:
			batch = append(batch, srvCommand("ECHO", fmt.Sprintf("msg-%d", i))...)
		case 2:
			batch = fmt.Appendf(batch, "SET k%d v%d\r\n", i, i) // inline, mixed in
		}
	}
	c.write(string(batch))
	for i := range n {
		var want string
		switch i % 3 {
		case 0:
			want = fmt.Sprintf(":%d", i/3+1)
		case 1:
			want = fmt.Sprintf(`$"msg-%d"`, i)
		case 2:
			want = `+"OK"`
		}
		if got := c.read().String(); got != want {
			t.Fatalf("reply %d: got %s, want %s", i, got, want)
		}
	}
	if len(c.buf) != 0 {
		t.Errorf("%d bytes after the %d replies: %q", len(c.buf), n, c.buf)
	}
	c.check(`$"v98"`, "GET", "k98")
}

func TestServerKeyAndValueLimits(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{MaxKeySize: 16, MaxValueSize: 32})
	c := e.connect(t)
	key16, key17 := strings.Repeat("k", 16), strings.Repeat("k", 17)
	val32, val33 := strings.Repeat("v", 32), strings.Repeat("v", 33)
	keyErr := `-"ERR key of 17 bytes exceeds max-key-size 16"`
	srvRun(t, c, []srvStep{
		{srvArgs("SET", key16, val32), `+"OK"`},
		{srvArgs("GET", key16), fmt.Sprintf("$%q", val32)},
		{srvArgs("SET", key17, "v"), keyErr},
		{srvArgs("SET", "k", val33), `-"ERR value of 33 bytes exceeds max-value-size 32"`},
		{srvArgs("PUT", key17, val33), keyErr},
		{srvArgs("GET", key17), keyErr},
		{srvArgs("MGET", "k", key17), keyErr},
		{srvArgs("EXISTS", key17), keyErr},
		{srvArgs("DEL", "k", key17), keyErr},
		{srvArgs("VGET", key17), keyErr},
		{srvArgs("VDEL", key17), keyErr},
		{srvArgs("INCR", key17), keyErr},
		{srvArgs("GET", "k"), `$nil`},
		{srvArgs("PING"), `+"PONG"`},
	})
	if o := e.be.Object(key17); o.Kind() != crdt.KindNone {
		t.Errorf("an over-long key was written: %v", o)
	}
}

// TestServerMGetReplyIsBounded: MGET builds its reply whole, so a short
// command naming a large key many times could take all the node's memory
// (300 x a 4 MiB key took one to 4.7 GB). What one MGET holds is bounded
// by max-request, with an error that says so; the connection stays.
func TestServerMGetReplyIsBounded(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{Limits: Limits{MaxRequest: 1000}})
	c := e.connect(t)
	val := strings.Repeat("v", 200)
	c.check(`+"OK"`, "SET", "big", val)
	c.check(fmt.Sprintf("*[$%q, $%q]", val, val), "MGET", "big", "big")
	keys := append([]string{"MGET"}, slices.Repeat([]string{"big"}, 10)...)
	if v := c.do(keys...); v.Kind != Error || !strings.Contains(string(v.Str), "exceeds max-request 1000; ask for fewer keys at once") {
		t.Errorf("MGET of ten 200-byte values with max-request 1000: %s", v)
	}
	c.check(`+"PONG"`, "PING")
}

func TestServerProtocolLimits(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{Limits: Limits{MaxBulk: 64, MaxArgs: 4, MaxInline: 32}})
	tests := []struct {
		name, ok, okWant, over, overErr string
	}{
		{
			name:    "bulk",
			ok:      string(srvCommand("SET", "k", strings.Repeat("v", 64))),
			okWant:  `+"OK"`,
			over:    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$65\r\n",
			overErr: "ERR Protocol error: bulk length 65 exceeds max-bulk 64",
		},
		{
			name:    "args",
			ok:      string(srvCommand("MGET", "a", "b", "c")),
			okWant:  `*[$nil, $nil, $nil]`,
			over:    "*5\r\n",
			overErr: "ERR Protocol error: argument count 5 exceeds max-args 4",
		},
		{
			name:    "inline args",
			ok:      "MGET a b c\r\n",
			okWant:  `*[$nil, $nil, $nil]`,
			over:    "MGET a b c d\r\n",
			overErr: "ERR Protocol error: argument count 5 exceeds max-args 4",
		},
		{
			name:    "inline",
			ok:      "ECHO " + strings.Repeat("x", 27) + "\r\n",
			okWant:  fmt.Sprintf("$%q", strings.Repeat("x", 27)),
			over:    "ECHO " + strings.Repeat("x", 28) + "\r\n",
			overErr: "ERR Protocol error: inline request of more than 32 bytes exceeds max-inline",
		},
		{
			name:    "malformed",
			ok:      string(srvCommand("ECHO", "")),
			okWant:  `$""`,
			over:    "*2\r\n$4\r\nECHO\r\n$-1\r\n",
			overErr: "ERR Protocol error: invalid bulk length",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := e.connect(t) // opened before, must be unaffected
			bad := e.connect(t)
			// Just under the limit is served, and the connection stays.
			bad.write(tt.ok)
			if got := bad.read().String(); got != tt.okWant {
				t.Fatalf("at the limit: got %s, want %s", got, tt.okWant)
			}
			bad.write(tt.over)
			v := bad.read()
			if v.Kind != Error || string(v.Str) != tt.overErr {
				t.Errorf("over the limit: got %s, want -%q", v, tt.overErr)
			}
			bad.expectClosed()
			other.check(`+"PONG"`, "PING")
			e.connect(t)
		})
	}
	c := e.connect(t)
	v := c.do("INFO", "stats")
	if !strings.Contains(string(v.Str), fmt.Sprintf("\r\nprotocol_errors:%d\r\n", len(tests))) {
		t.Errorf("INFO stats: got %s, want protocol_errors:%d", v, len(tests))
	}
}

func TestServerIdleTimeout(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{IdleTimeout: 200 * time.Millisecond})
	c := e.connect(t)
	// The server must close the idle connection by itself; readReply's
	// deadline only bounds the wait if it never does.
	start := time.Now()
	v, err := c.readReply()
	if err != nil {
		t.Fatalf("waiting for the idle timeout: %v", err)
	}
	const want = "ERR connection idle for more than 200ms (idle-timeout); closing"
	if v.Kind != Error || string(v.Str) != want {
		t.Errorf("idle connection: got %s, want -%q", v, want)
	}
	// The deadline is set just before the PONG is written, so allow for
	// the time that took; what matters is that it was not at once.
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", waited)
	}
	c.expectClosed()
	info := e.dial(t).do("INFO", "stats")
	if !strings.Contains(string(info.Str), "\r\nidle_timeouts:1\r\n") {
		t.Errorf("INFO stats: got %s, want idle_timeouts:1", info)
	}
}

// TestServerPipelineWrittenBeforeItsRepliesAreRead: a client that writes
// its whole pipeline before it reads any reply (go-redis and redis-py
// pipelines do) gets every reply, in order, when the pipeline and its
// replies are each far larger than the sockets buffer. The connection
// used to block writing replies the client was not reading while the
// client blocked writing commands it was not reading, until a timeout
// closed it and every reply was lost.
func TestServerPipelineWrittenBeforeItsRepliesAreRead(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	const n, size = 4000, 8 << 10 // 32 MB of commands, 32 MB of replies: more than loopback's socket buffers hold
	value := func(i int) string { return fmt.Sprintf("%06d", i) + strings.Repeat("v", size-6) }
	var batch strings.Builder
	for i := range n {
		v := value(i)
		fmt.Fprintf(&batch, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\n%s\r\n", len(fmt.Sprint("k", i)), i, len(v), v)
		fmt.Fprintf(&batch, "*2\r\n$3\r\nGET\r\n$%d\r\nk%d\r\n", len(fmt.Sprint("k", i)), i)
	}
	c.write(batch.String()) // fails at its deadline if the server stops reading
	for i := range n {
		if v := c.read(); v.Kind != SimpleString || string(v.Str) != "OK" {
			t.Fatalf("reply to SET %d: %s", i, v)
		}
		if v := c.read(); v.Kind != Bulk || string(v.Str) != value(i) {
			t.Fatalf("reply to GET %d: %.40s..., want %.40s...", i, v.Str, value(i))
		}
	}
	c.check(`+"PONG"`, "PING")
	if info := string(c.do("INFO", "clients").Str); !strings.Contains(info, "\r\nunread_reply_bytes:0\r\n") {
		t.Errorf("every reply read, INFO clients says %q", info)
	}
}

// TestServerWriteTimeout: a client that sends commands but never reads
// their replies is disconnected once a reply write has blocked for the
// write timeout (not at once, and not never); others are still served.
func TestServerWriteTimeout(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{WriteTimeout: 300 * time.Millisecond, IdleTimeout: -1})
	setter := e.connect(t)
	setter.check(`+"OK"`, "SET", "big", strings.Repeat("x", 1<<20))
	c := e.connect(t)
	if tc, ok := c.conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10)
	}
	var batch []byte
	for range 64 { // 64 MB of replies: far more than the socket buffers hold
		batch = append(batch, "GET big\r\n"...)
	}
	start := time.Now()
	c.write(string(batch))
	// The server has dropped the reader when INFO's client count falls
	// back to the setter alone.
	testutil.Eventually(t, 10*time.Second, "a client that does not read is disconnected", func() bool {
		return strings.Contains(string(setter.do("INFO", "clients").Str), "\r\nconnected_clients:1\r\n")
	})
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("disconnected after %v, before the write timeout", waited)
	}
	setter.check(`+"PONG"`, "PING")
}

func TestServerIdleTimeoutDisabled(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{IdleTimeout: -1})
	c := e.connect(t)
	c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	if n, err := c.conn.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle connection with no idle timeout: read %d bytes, %v; want our own deadline to pass", n, err)
	}
	c.check(`+"PONG"`, "PING")
}

func TestServerMaxClients(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{MaxClients: 2})
	c1, c2 := e.connect(t), e.connect(t)
	c3 := e.dial(t)
	v, err := c3.readReply()
	if err != nil || v.String() != `-"ERR max number of clients reached"` {
		t.Errorf("third client: got %s, %v; want -ERR max number of clients reached", v, err)
	}
	c3.expectClosed()
	c2.check(`+"PONG"`, "PING")
	info := c2.do("INFO", "stats")
	if !strings.Contains(string(info.Str), "\r\nrejected_connections:1\r\n") {
		t.Errorf("INFO stats: got %s, want rejected_connections:1", info)
	}

	// Once a client leaves, a new one is served. The server notices the
	// close asynchronously, so poll.
	c1.conn.Close()
	deadline := time.Now().Add(srvWait)
	for {
		c := e.dial(t)
		_, err := c.conn.Write(srvCommand("PING"))
		var v Value
		if err == nil {
			v, err = c.readReply()
		}
		if err == nil && v.String() == `+"PONG"` {
			break
		}
		c.conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no client admitted after one left: last reply %s, %v", v, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServerClose(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c1, c2 := e.connect(t), e.connect(t)
	c2.write("*2\r\n$3\r\nGET\r\n") // half a command
	if err := e.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.wait(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	c1.expectClosed()
	// The server may close c2 before reading its half command, which
	// resets the connection rather than ending it: any error will do.
	if v, err := c2.readReply(); err == nil {
		t.Errorf("after Close: got %s, want the connection closed", v)
	}
	if err := e.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Serve after Close refuses at once and closes the listener.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v, want ErrServerClosed", err)
	}
	if c, err := l.Accept(); err == nil {
		c.Close()
		t.Errorf("the listener passed to Serve after Close is still open")
	}
}

// closeDuringGetSlow sends GET slow on c, waits until the backend has it
// (entered), and closes the server in the background: Close's result comes
// on the channel.
func closeDuringGetSlow(t *testing.T, e *srvEnv, c *srvConn, entered <-chan struct{}) <-chan error {
	t.Helper()
	c.send("GET", "slow")
	select {
	case <-entered:
	case <-time.After(srvWait):
		t.Fatal("GET slow never reached the backend")
	}
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	return closed
}

func TestServerCloseCancelsInFlightCommands(t *testing.T) {
	t.Parallel()
	be := newFakeBackend()
	entered := make(chan struct{})
	var returned atomic.Bool
	be.getHook = func(ctx context.Context, key string) error {
		if key != "slow" {
			return nil
		}
		close(entered)
		<-ctx.Done()
		returned.Store(true)
		return ctx.Err()
	}
	e := srvStart(t, ServerConfig{Backend: be})
	c := e.connect(t)
	closed := closeDuringGetSlow(t, e, c, entered)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(srvWait):
		t.Fatal("Close did not return while a command was in flight")
	}
	if !returned.Load() {
		t.Errorf("Close returned before the in-flight command finished")
	}
	// The cancelled command is answered, then the connection closes.
	if v, err := c.readReply(); err != nil || v.String() != `-"ERR server shutting down"` {
		t.Errorf("after Close: %s, %v; want the shutdown error", v, err)
	}
	if v, err := c.readReply(); err == nil {
		t.Errorf("after Close: got %s, want the connection closed", v)
	}
}

// TestServerCloseAnswersTheCommandInFlight: a command running when the
// server closes finishes and its reply is written before the connection
// closes (CLUSTER LEAVE, or a write that took effect, must not be answered
// with EOF), and Close waits for it; an idle connection is closed at once,
// with no error reply.
func TestServerCloseAnswersTheCommandInFlight(t *testing.T) {
	t.Parallel()
	be := newFakeBackend()
	entered, release := make(chan struct{}), make(chan struct{})
	be.getHook = func(ctx context.Context, key string) error {
		if key == "slow" {
			close(entered)
			<-release // not ctx: this command finishes as it would have
		}
		return nil
	}
	e := srvStart(t, ServerConfig{Backend: be})
	c := e.connect(t)
	c.check(`+"OK"`, "SET", "slow", "v1")
	idle := e.connect(t)
	idle.check(`+"PONG"`, "PING")
	closed := closeDuringGetSlow(t, e, c, entered)
	// The idle connection ends without a reply while the command runs.
	if v, err := idle.readReply(); err == nil {
		t.Errorf("idle connection after Close: got %s, want it closed", v)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a command was running")
	default:
	}
	close(release)
	if v, err := c.readReply(); err != nil || v.String() != `$"v1"` {
		t.Errorf("the reply of the command in flight: %s, %v; want v1", v, err)
	}
	if v, err := c.readReply(); err == nil {
		t.Errorf("after that reply: got %s, want the connection closed", v)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(srvWait):
		t.Fatal("Close did not return once the command was answered")
	}
}

// TestServerCloseEndsAClientThatReadsNothing: a connection whose client
// does not read the replies it asked for (the server's write blocks) is
// closed closeGrace after Close, well before its write timeout.
func TestServerCloseEndsAClientThatReadsNothing(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{WriteTimeout: time.Hour})
	c := e.connect(t)
	big := strings.Repeat("x", 1<<20)
	c.send("SET", "big", big)
	if v, err := c.readReply(); err != nil || v.String() != `+"OK"` {
		t.Fatalf("SET big: %.40s, %v", v.String(), err)
	}
	var pipeline []byte
	for range 64 { // 64 MB of replies: more than the sockets buffer
		pipeline = append(pipeline, srvCommand("GET", "big")...)
	}
	c.write(string(pipeline))
	testutil.Eventually(t, srvWait, "the server stuck writing", func() bool {
		return e.srv.totalCommands.Load() >= 3 // SET and at least two GETs ran
	})
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	select {
	case <-closed:
	case <-time.After(closeGrace + srvWait):
		t.Fatal("Close did not return for a client that reads nothing")
	}
}

func TestServerBackendErrors(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.connect(t)
	e.be.SetErr(errors.New("store: disk on fire"))
	c.check(`-"ERR store: disk on fire"`, "GET", "k")
	c.check(`-"ERR store: disk on fire"`, "SET", "k", "v")
	c.check(`-"ERR store: disk on fire"`, "DEL", "k")
	c.check(`-"ERR store: disk on fire"`, "MGET", "a", "b")
	e.be.SetErr(fmt.Errorf("coordinating: %w", context.DeadlineExceeded))
	c.check(`-"ERR request timed out"`, "INCR", "k")
	e.be.SetErr(nil)
	c.check(`:1`, "INCR", "k")
}

func TestServerConcurrentClients(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	const clients, incrs = 8, 50
	conns := make([]*srvConn, clients)
	for i := range conns {
		conns[i] = e.connect(t)
	}
	errs := make(chan error, clients)
	for i, c := range conns {
		go func() {
			var batch []byte
			for range incrs {
				batch = append(batch, srvCommand("INCR", "shared")...)
			}
			batch = append(batch, srvCommand("SET", fmt.Sprintf("own%d", i), "x")...)
			c.conn.SetWriteDeadline(time.Now().Add(srvWait))
			if _, err := c.conn.Write(batch); err != nil {
				errs <- err
				return
			}
			for j := range incrs + 1 {
				v, err := c.readReply()
				if err != nil {
					errs <- err
					return
				}
				if (j < incrs && v.Kind != Integer) || (j == incrs && v.String() != `+"OK"`) {
					errs <- fmt.Errorf("client %d reply %d: %s", i, j, v)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	conns[0].check(fmt.Sprintf(`$"%d"`, clients*incrs), "GET", "shared")
}

func TestServerMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := srvStart(t, ServerConfig{Metrics: NewMetrics(reg), MaxKeySize: 8, Limits: Limits{MaxArgs: 8}})
	c := e.connect(t)
	c.check(`+"OK"`, "SET", "k", "v")
	for range 3 {
		c.check(`$"v"`, "GET", "k")
	}
	c.checkError("ERR key of 9 bytes", "GET", "123456789")
	c.checkError("ERR unknown command", "NOSUCH")
	c.checkError("ERR wrong number of arguments", "GET")

	labels := func(cmd string) map[string]string { return map[string]string{"protocol": "resp", "command": cmd} }
	metricsCheck(t, reg, "rumor_requests_total", labels("get"), 4)
	metricsCheck(t, reg, "rumor_request_errors_total", labels("get"), 1)
	metricsCheck(t, reg, "rumor_requests_total", labels("set"), 1)
	metricsCheck(t, reg, "rumor_request_errors_total", labels("set"), 0)
	metricsCheck(t, reg, "rumor_request_duration_seconds", labels("get"), 4)
	metricsCheck(t, reg, "rumor_client_connections", nil, 1)

	bad := e.connect(t)
	bad.write("*9\r\n")
	bad.checkErrorReply("ERR Protocol error: argument count 9 exceeds max-args 8")
	bad.expectClosed()
	metricsCheck(t, reg, "rumor_client_disconnects_total", map[string]string{"reason": "protocol_error"}, 1)
	if _, ok := metricsValue(t, reg, "rumor_requests_total", labels("nosuch")); ok {
		t.Errorf("unknown commands are counted by name")
	}
}

// TestServerMetricsTimeCommands: the latency histogram holds each
// command's time (read from the monotonic clock alone, see monoNow).
func TestServerMetricsTimeCommands(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	be := newFakeBackend()
	const slow = 30 * time.Millisecond
	be.getHook = func(ctx context.Context, key string) error {
		if key == "slow" {
			time.Sleep(slow) // a slow command, not a wait for the world
		}
		return nil
	}
	e := srvStart(t, ServerConfig{Backend: be, Metrics: NewMetrics(reg)})
	c := e.connect(t)
	c.check(`$nil`, "GET", "fast")
	c.check(`$nil`, "GET", "slow")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rumor_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "command" && l.GetValue() == "get" }) {
				continue
			}
			h := m.GetHistogram()
			if h.GetSampleCount() != 2 {
				t.Fatalf("%d GETs timed, want 2", h.GetSampleCount())
			}
			if sum := time.Duration(h.GetSampleSum() * float64(time.Second)); sum < slow || sum > slow+5*time.Second {
				t.Fatalf("the GETs took %v in all by the histogram, want at least the slow one's %v (and not absurdly more)", sum, slow)
			}
			return
		}
	}
	t.Fatal("no rumor_request_duration_seconds of GET")
}

// checkErrorReply reads a reply and checks that it is the error msg.
func (c *srvConn) checkErrorReply(msg string) {
	c.t.Helper()
	if v := c.read(); v.Kind != Error || string(v.Str) != msg {
		c.t.Errorf("got %s, want -%q", v, msg)
	}
}

// metricsValue returns the value of the metric name whose labels include
// labels: a counter's or gauge's value, or a histogram's sample count.
func metricsValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func metricsCheck(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := metricsValue(t, g, name, labels)
	if !ok {
		t.Errorf("%s%v: not found", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestNewServerValidates(t *testing.T) {
	t.Parallel()
	_, err := NewServer(ServerConfig{MaxKeySize: -1, Limits: Limits{MaxBulk: 10}, MaxValueSize: 11})
	if err == nil {
		t.Fatal("NewServer accepted a bad config")
	}
	for _, want := range []string{"Backend is required", "must not be negative", "max-bulk 10"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NewServer error %q does not report %q", err, want)
		}
	}
	if _, err := NewServer(ServerConfig{Backend: newFakeBackend(), MaxValueSize: math.MaxInt32}); err == nil {
		t.Errorf("NewServer accepted a max value size above the default max-bulk")
	}
}

// TestServerOversizedValueErrorReachesSender sends a whole value far over
// max-bulk in one go, as a client that does not wait would: the server must
// still deliver the error naming the limit, not reset the connection.
func TestServerOversizedValueErrorReachesSender(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{Limits: Limits{MaxBulk: 1 << 10}, MaxValueSize: 1 << 10})
	c := e.dial(t)
	big := strings.Repeat("v", 1<<20)
	// A client that writes its whole request before reading (as most do)
	// must be able to finish the write and then read the error.
	c.conn.SetDeadline(time.Now().Add(srvWait))
	if _, err := c.conn.Write(srvCommand("SET", "k", big)); err != nil {
		t.Fatalf("writing the request failed before the error could be read: %v", err)
	}
	got, _ := io.ReadAll(c.conn)
	if want := "-ERR Protocol error: bulk length 1048576 exceeds max-bulk 1024\r\n"; string(got) != want {
		t.Fatalf("reply %q, want %q", got, want)
	}
}

// TestServerBoundsPendingReplies pipelines far more replies than the
// pending-reply bound without reading, then reads them all: the server
// must have flushed along the way rather than buffering everything.
func TestServerBoundsPendingReplies(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	c := e.dial(t)
	val := strings.Repeat("x", 1000)
	c.send("SET", "k", val)
	if v := c.read(); v.String() != `+"OK"` {
		t.Fatalf("SET: %v", v)
	}
	const n = 500 // 500 KB of replies, well over maxPendingReplies
	var req []byte
	for i := 0; i < n; i++ {
		req = append(req, srvCommand("GET", "k")...)
	}
	go c.conn.Write(req)
	for i := 0; i < n; i++ {
		if v := c.read(); string(v.Str) != val {
			t.Fatalf("reply %d: %v", i, v)
		}
	}
}

func TestServerClusterCommand(t *testing.T) {
	t.Parallel()
	alone := srvStart(t, ServerConfig{}).connect(t)
	alone.check(`-"ERR this node runs alone, not in a cluster"`, "CLUSTER", "LEAVE")
	var got []string
	e := srvStart(t, ServerConfig{Cluster: func(args []string) (string, error) {
		got = args
		if args[0] == "bad" {
			return "", errors.New("no such subcommand")
		}
		return "OK", nil
	}})
	c := e.connect(t)
	c.check(`+"OK"`, "CLUSTER", "FORGET", "n3")
	if fmt.Sprint(got) != "[FORGET n3]" {
		t.Fatalf("the cluster hook got %v", got)
	}
	c.check(`-"ERR no such subcommand"`, "CLUSTER", "bad")
}

func TestPerRequestQuorumReachesTheBackend(t *testing.T) {
	t.Parallel()
	be := newFakeBackend()
	got := make(chan Quorum, 1)
	be.getHook = func(ctx context.Context, key string) error {
		got <- QuorumFrom(ctx)
		return nil
	}
	e := srvStart(t, ServerConfig{Backend: be})
	c := e.connect(t)
	for _, tc := range []struct {
		args []string
		want Quorum
	}{
		{[]string{"GET", "k"}, Quorum{}},
		{[]string{"GET", "k", "R", "3"}, Quorum{R: 3}},
		{[]string{"GET", "k", "SLOPPY", "no"}, Quorum{Sloppy: SloppyNo}},
		{[]string{"VGET", "k", "sloppy", "YES", "R", "1"}, Quorum{R: 1, Sloppy: SloppyYes}},
	} {
		c.send(tc.args...)
		if _, err := c.readReply(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if q := <-got; q != tc.want {
			t.Errorf("%v reached the backend as %+v, want %+v", tc.args, q, tc.want)
		}
	}
	if SloppyDefault.Resolve(true) != true || SloppyDefault.Resolve(false) != false ||
		SloppyNo.Resolve(true) != false || SloppyYes.Resolve(false) != true {
		t.Errorf("Sloppy.Resolve does not let the request override the node")
	}
}
