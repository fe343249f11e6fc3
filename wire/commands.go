package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rumor-kv/rumor/crdt"
)

// A command is one entry of the command table.
type command struct {
	name  string // lower case, as Redis names commands in errors
	arity int    // Redis convention: n means exactly n words, -n at least n
	flags string // COMMAND's flags, for clients that look
	run   func(s *Server, c *session, args [][]byte, out []byte) []byte
}

// hasSubcommands reports whether CLIENT LIST names the command's last use
// with its subcommand, as Redis does (cmd=client|setname).
func hasSubcommands(name string) bool {
	return name != "" && name[0] == 'c' && (name == "client" || name == "config" || name == "command" || name == "cluster")
}

var commandTable = map[string]*command{}

func init() {
	for _, c := range []*command{
		{"ping", -1, "fast", cmdPing},
		{"echo", 2, "fast", cmdEcho},
		{"get", -2, "readonly fast", cmdGet},
		{"mget", -2, "readonly fast", cmdMGet},
		{"exists", -2, "readonly fast", cmdExists},
		{"vget", -2, "readonly fast", cmdVGet},
		{"set", -3, "write", cmdSet},
		{"put", -3, "write", cmdSet},
		{"del", -2, "write", cmdDel},
		{"vdel", -2, "write", cmdVDel},
		{"incr", -2, "write fast", cmdIncr},
		{"decr", -2, "write fast", cmdIncr},
		{"incrby", -3, "write fast", cmdIncr},
		{"decrby", -3, "write fast", cmdIncr},
		{"info", -1, "loading stale", cmdInfo},
		{"quit", -1, "fast", cmdQuit},
		{"command", -1, "loading stale", cmdCommand},
		{"config", -2, "admin", cmdConfig},
		{"hello", -1, "fast", cmdHello},
		{"select", 2, "fast", cmdSelect},
		{"client", -2, "admin", cmdClient},
		{"cluster", -2, "admin", cmdCluster},
		{"multi", 1, "fast", cmdMulti},
		{"exec", 1, "fast", cmdExec},
		{"discard", 1, "fast", cmdDiscard},
		{"auth", -2, "fast", cmdAuth},
	} {
		commandTable[c.name] = c
	}
}

// lookup finds a command by name, case-insensitively, without allocating.
func lookup(name []byte) *command {
	var buf [16]byte
	if len(name) > len(buf) {
		return nil
	}
	low := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	return commandTable[string(low)]
}

func (s *Server) exec(c *session, args [][]byte, out []byte) []byte {
	cmd := lookup(args[0])
	if c.inMulti && (cmd == nil || (cmd.name != "exec" && cmd.name != "discard" && cmd.name != "multi" && cmd.name != "quit")) {
		return AppendError(out, "ERR command not run: rumor has no transactions, so commands between MULTI and EXEC or DISCARD are refused, and EXEC discards the transaction")
	}
	if cmd == nil {
		return AppendError(out, unknownCommand(args))
	}
	if (cmd.arity > 0 && len(args) != cmd.arity) || (cmd.arity < 0 && len(args) < -cmd.arity) {
		return AppendError(out, fmt.Sprintf("ERR wrong number of arguments for '%s' command", cmd.name))
	}
	c.noteCommand(cmd, args) // for CLIENT LIST
	m := s.ops[cmd.name]     // resolved once in NewServer: no lock per command
	if m == nil {
		return cmd.run(s, c, args, out)
	}
	start := monoNow()
	n := len(out)
	out = cmd.run(s, c, args, out)
	end := monoNow()
	c.lastAt.Store(int64(end))
	c.now = monoBase.Add(end) // also serves the idle deadline, saving a clock read
	m.latency.Observe((end - start).Seconds())
	m.requests.Inc()
	if len(out) > n && out[n] == '-' {
		m.failures.Inc()
	}
	return out
}

func unknownCommand(args [][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ERR unknown command '%s', with args beginning with:", printable(args[0], 64))
	for i, a := range args[1:] {
		if i == 8 {
			break
		}
		fmt.Fprintf(&b, " '%s'", printable(a, 64))
	}
	return b.String()
}

// printable shortens and sanitizes client bytes for an error message.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, string(b))
}

// errReply turns a backend error into a reply.
func errReply(out []byte, err error) []byte {
	switch {
	case errors.Is(err, ErrWrongType):
		return AppendError(out, ErrWrongType.Error())
	case errors.Is(err, crdt.ErrOverflow):
		return AppendError(out, "ERR increment or decrement would overflow")
	case errors.Is(err, context.DeadlineExceeded):
		return AppendError(out, "ERR request timed out")
	case errors.Is(err, context.Canceled): // a command's context ends only with the server
		return AppendError(out, "ERR server shutting down")
	}
	return AppendError(out, "ERR "+err.Error())
}

func (s *Server) checkKey(out []byte, key []byte) ([]byte, bool) {
	if len(key) > s.cfg.MaxKeySize {
		return AppendError(out, fmt.Sprintf("ERR key of %d bytes exceeds max-key-size %d", len(key), s.cfg.MaxKeySize)), false
	}
	return out, true
}

func cmdPing(s *Server, c *session, args [][]byte, out []byte) []byte {
	switch len(args) {
	case 1:
		return AppendSimple(out, "PONG")
	case 2:
		return AppendBulk(out, args[1])
	}
	return AppendError(out, "ERR wrong number of arguments for 'ping' command")
}

func cmdEcho(s *Server, c *session, args [][]byte, out []byte) []byte {
	return AppendBulk(out, args[1])
}

// appendValue writes what GET shows of an object: the newest sibling of a
// register, the decimal value of a counter, or nil.
func appendValue(out []byte, o crdt.Object) []byte {
	switch o.Kind() {
	case crdt.KindRegister:
		n, _ := o.Reg.Newest()
		return AppendBulk(out, n.Value)
	case crdt.KindCounter:
		var num [20]byte
		return AppendBulk(out, strconv.AppendInt(num[:0], o.Cnt.Value(), 10))
	}
	return AppendNull(out)
}

func cmdGet(s *Server, c *session, args [][]byte, out []byte) []byte {
	out, ok := s.checkKey(out, args[1])
	if !ok {
		return out
	}
	_, q, msg := parseOptions("get", args[2:], "R SLOPPY")
	if msg != "" {
		return AppendError(out, msg)
	}
	o, err := s.cfg.Backend.Get(c.withQuorum(q), args[1])
	if err != nil {
		return errReply(out, err)
	}
	return appendValue(out, o)
}

func cmdMGet(s *Server, c *session, args [][]byte, out []byte) []byte {
	for _, k := range args[1:] {
		var ok bool
		if out, ok = s.checkKey(out, k); !ok {
			return out
		}
	}
	// The reply is built whole (a key that fails must fail the command,
	// not cut an array short), so what it holds is bounded: a short
	// command naming a large key many times would otherwise take all the
	// node's memory. The bound is the largest request a client may send.
	objs := make([]crdt.Object, len(args)-1)
	held := 0
	for i, k := range args[1:] {
		o, err := s.cfg.Backend.Get(c.ctx, k)
		if err != nil {
			return errReply(out, err)
		}
		if held += o.EncodedLen(); held > s.cfg.Limits.MaxRequest {
			return AppendError(out, fmt.Sprintf("ERR MGET reply of more than %d bytes exceeds max-request %d; ask for fewer keys at once", held, s.cfg.Limits.MaxRequest))
		}
		objs[i] = o
	}
	out = AppendArray(out, len(objs))
	for _, o := range objs {
		out = appendValue(out, o)
	}
	return out
}

func cmdExists(s *Server, c *session, args [][]byte, out []byte) []byte {
	n := 0
	for _, k := range args[1:] {
		var ok bool
		if out, ok = s.checkKey(out, k); !ok {
			return out
		}
		o, err := s.cfg.Backend.Get(c.ctx, k)
		if err != nil {
			return errReply(out, err)
		}
		if o.Kind() != crdt.KindNone {
			n++
		}
	}
	return AppendInt(out, int64(n))
}

// VGET key: an array of the context token followed by every sibling value,
// oldest dot first. A missing key gives just the token.
func cmdVGet(s *Server, c *session, args [][]byte, out []byte) []byte {
	out, ok := s.checkKey(out, args[1])
	if !ok {
		return out
	}
	_, q, msg := parseOptions("vget", args[2:], "R SLOPPY")
	if msg != "" {
		return AppendError(out, msg)
	}
	o, err := s.cfg.Backend.Get(c.withQuorum(q), args[1])
	if err != nil {
		return errReply(out, err)
	}
	if o.Kind() == crdt.KindCounter {
		return AppendError(out, ErrWrongType.Error())
	}
	conflict := o.Conflicted()
	n := 1 + len(o.Reg.Siblings)
	if conflict {
		n++
	}
	out = AppendArray(out, n)
	out = AppendBulkString(out, ReadToken(o))
	for _, sib := range o.Reg.Siblings {
		out = AppendBulk(out, sib.Value)
	}
	if conflict {
		// The key was INCRed concurrently with its SETs: the counter's
		// total comes last, an integer where the siblings are bulk
		// strings, and a write with the token resets it.
		out = AppendInt(out, o.Cnt.Value())
	}
	return out
}

// parseOptions parses a command's trailing "NAME value" options: CTX
// token (writes), W n (writes), R n (reads) and SLOPPY yes|no (both), as
// allowed.
func parseOptions(cmd string, opts [][]byte, allowed string) (WriteOptions, Quorum, string) {
	var w WriteOptions
	var q Quorum
	for i := 0; i < len(opts); i += 2 {
		name := strings.ToUpper(string(opts[i]))
		switch name {
		case "EX", "PX", "EXAT", "PXAT", "KEEPTTL", "NX", "XX", "GET":
			// Checked before the value: KEEPTTL, NX, XX and GET take none.
			return w, q, fmt.Sprintf("ERR syntax error: '%s' option %s is not supported by rumor", cmd, name)
		}
		if !strings.Contains(" "+allowed+" ", " "+name+" ") {
			return w, q, fmt.Sprintf("ERR syntax error: unknown option '%s' for '%s'", printable(opts[i], 32), cmd)
		}
		if i+1 == len(opts) {
			return w, q, fmt.Sprintf("ERR syntax error: option '%s' of '%s' needs a value", printable(opts[i], 32), cmd)
		}
		switch name {
		case "CTX":
			ctx, cnt, err := crdt.ParseReadToken(string(opts[i+1]))
			if err != nil {
				return w, q, "ERR invalid context token: it must be a token from VGET"
			}
			w.Context, w.Counter, w.HasContext = ctx, cnt, true
		case "SLOPPY":
			switch strings.ToLower(string(opts[i+1])) {
			case "yes", "true", "1", "on":
				q.Sloppy = SloppyYes
			case "no", "false", "0", "off":
				q.Sloppy = SloppyNo
			default:
				return w, q, "ERR SLOPPY must be yes or no"
			}
		case "R", "W":
			n, err := strconv.Atoi(string(opts[i+1]))
			if err != nil || n < 1 {
				return w, q, fmt.Sprintf("ERR %s must be a positive number of replicas", name)
			}
			if name == "R" {
				q.R = n
			} else {
				q.W = n
			}
		}
	}
	return w, q, ""
}

// withQuorum returns the context for a request with per-request R or W.
func (c *session) withQuorum(q Quorum) context.Context {
	if q == (Quorum{}) {
		return c.ctx
	}
	return WithQuorum(c.ctx, q)
}

// SET key value [CTX token] (PUT is the same command).
func cmdSet(s *Server, c *session, args [][]byte, out []byte) []byte {
	out, ok := s.checkKey(out, args[1])
	if !ok {
		return out
	}
	if len(args[2]) > s.cfg.MaxValueSize {
		return AppendError(out, fmt.Sprintf("ERR value of %d bytes exceeds max-value-size %d", len(args[2]), s.cfg.MaxValueSize))
	}
	var opts WriteOptions
	var q Quorum
	if len(args) > 3 { // (the name is lowered only then: an allocation)
		var msg string
		opts, q, msg = parseOptions(strings.ToLower(string(args[0])), args[3:], "CTX W SLOPPY")
		if msg != "" {
			return AppendError(out, msg)
		}
	}
	if err := s.cfg.Backend.Put(c.withQuorum(q), args[1], args[2], opts); err != nil {
		return errReply(out, err)
	}
	return AppendSimple(out, "OK")
}

// DEL key [key ...]: the number of keys that existed.
func cmdDel(s *Server, c *session, args [][]byte, out []byte) []byte {
	n := 0
	for _, k := range args[1:] {
		var ok bool
		if out, ok = s.checkKey(out, k); !ok {
			return out
		}
	}
	for _, k := range args[1:] {
		existed, err := s.cfg.Backend.Delete(c.ctx, k, WriteOptions{})
		if err != nil {
			return errReply(out, err)
		}
		if existed {
			n++
		}
	}
	return AppendInt(out, int64(n))
}

// VDEL key [CTX token]: delete what the token covers (everything this
// replica holds without one); 1 if the key existed.
func cmdVDel(s *Server, c *session, args [][]byte, out []byte) []byte {
	out, ok := s.checkKey(out, args[1])
	if !ok {
		return out
	}
	opts, q, msg := parseOptions("vdel", args[2:], "CTX W SLOPPY")
	if msg != "" {
		return AppendError(out, msg)
	}
	existed, err := s.cfg.Backend.Delete(c.withQuorum(q), args[1], opts)
	if err != nil {
		return errReply(out, err)
	}
	if existed {
		return AppendInt(out, 1)
	}
	return AppendInt(out, 0)
}

// parseInteger reads an int64 written as Redis writes and accepts one:
// decimal, an optional minus, no plus sign, no leading zeros, no spaces.
func parseInteger(b []byte) (int64, bool) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil && strconv.FormatInt(v, 10) == string(b)
}

// INCR, DECR, INCRBY, DECRBY.
func cmdIncr(s *Server, c *session, args [][]byte, out []byte) []byte {
	out, ok := s.checkKey(out, args[1])
	if !ok {
		return out
	}
	delta, rest := int64(1), args[2:]
	if by := args[0][len(args[0])-1] | 0x20; by == 'y' { // INCRBY, DECRBY
		if len(args) < 3 {
			return AppendError(out, fmt.Sprintf("ERR wrong number of arguments for '%s' command", strings.ToLower(string(args[0]))))
		}
		d, ok := parseInteger(args[2])
		if !ok {
			return AppendError(out, "ERR value is not an integer or out of range")
		}
		delta, rest = d, args[3:]
	}
	var q Quorum
	if len(rest) > 0 {
		var msg string
		_, q, msg = parseOptions(strings.ToLower(string(args[0])), rest, "W SLOPPY")
		if msg != "" {
			return AppendError(out, msg)
		}
	}
	if c := args[0][0] | 0x20; c == 'd' {
		if delta == -delta && delta != 0 { // MinInt64 cannot be negated
			return AppendError(out, "ERR decrement would overflow")
		}
		delta = -delta
	}
	v, err := s.cfg.Backend.Incr(c.withQuorum(q), args[1], delta)
	if err != nil {
		return errReply(out, err)
	}
	return AppendInt(out, v)
}

func cmdQuit(s *Server, c *session, args [][]byte, out []byte) []byte {
	c.quit = true
	return AppendSimple(out, "OK")
}

// MULTI opens a transaction as Redis's does, but rumor has no
// transactions (a Dynamo-style store cannot apply several keys' writes
// at once): every command up to EXEC or DISCARD is refused instead of
// queued, and EXEC answers EXECABORT, as Redis answers a transaction a
// command of which could not be queued. Clients send MULTI, the commands
// and EXEC in one write, so refusing MULTI alone would have run the
// commands, and a client that saw its transaction fail would find it
// applied; answering MULTI with an error and refusing what follows would
// leave a client that reads MULTI's reply first (and so opens nothing)
// with a connection that refuses everything.
func cmdMulti(s *Server, c *session, args [][]byte, out []byte) []byte {
	if c.inMulti {
		return AppendError(out, "ERR MULTI calls can not be nested")
	}
	c.inMulti = true
	return AppendSimple(out, "OK")
}

func cmdExec(s *Server, c *session, args [][]byte, out []byte) []byte {
	if !c.inMulti {
		return AppendError(out, "ERR EXEC without MULTI")
	}
	c.inMulti = false
	return AppendError(out, "EXECABORT Transaction discarded: rumor has no transactions, and ran none of its commands")
}

func cmdDiscard(s *Server, c *session, args [][]byte, out []byte) []byte {
	if !c.inMulti {
		return AppendError(out, "ERR DISCARD without MULTI")
	}
	c.inMulti = false
	return AppendSimple(out, "OK")
}

// AUTH answers as Redis does with no password set (its default user,
// "nopass"): a password alone is an error that says so, the default user
// with any password is accepted, any other user is not.
func cmdAuth(s *Server, c *session, args [][]byte, out []byte) []byte {
	switch len(args) {
	case 2:
		return AppendError(out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	case 3:
		if string(args[1]) == "default" {
			return AppendSimple(out, "OK")
		}
		return AppendError(out, "WRONGPASS invalid username-password pair or user is disabled.")
	}
	return AppendError(out, "ERR syntax error")
}

func cmdSelect(s *Server, c *session, args [][]byte, out []byte) []byte {
	if string(args[1]) != "0" {
		return AppendError(out, "ERR DB index is out of range (rumor has one keyspace: SELECT 0)")
	}
	return AppendSimple(out, "OK")
}

// HELLO [2 [AUTH user pass] [SETNAME name]]: rumor speaks RESP2 only, so
// HELLO 3 is refused the way Redis refuses an unknown version, and clients
// fall back to RESP2.
func cmdHello(s *Server, c *session, args [][]byte, out []byte) []byte {
	if len(args) > 1 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			return AppendError(out, "ERR Protocol version is not an integer or out of range")
		}
		if v != 2 {
			return AppendError(out, "NOPROTO unsupported protocol version: rumor speaks RESP2")
		}
		var name []byte
		for i := 2; i < len(args); i++ {
			opt := strings.ToUpper(string(args[i]))
			switch {
			case opt == "AUTH" && i+2 < len(args):
				// As AUTH user pass: rumor has one user, default, with
				// no password.
				if string(args[i+1]) != "default" {
					return AppendError(out, "WRONGPASS invalid username-password pair or user is disabled.")
				}
				i += 2
			case opt == "SETNAME" && i+1 < len(args):
				if !validClientName(args[i+1]) {
					return AppendError(out, "ERR Client names cannot contain spaces, newlines or special characters.")
				}
				name = args[i+1]
				i++
			default:
				return AppendError(out, fmt.Sprintf("ERR syntax error in HELLO option '%s'", printable(args[i], 32)))
			}
		}
		if name != nil { // only once every option is good, as Redis
			c.setName(string(name))
		}
	}
	out = AppendArray(out, 14)
	out = AppendBulkString(out, "server")
	out = AppendBulkString(out, "rumor")
	out = AppendBulkString(out, "version")
	out = AppendBulkString(out, Version)
	out = AppendBulkString(out, "proto")
	out = AppendInt(out, 2)
	out = AppendBulkString(out, "id")
	out = AppendInt(out, c.id)
	out = AppendBulkString(out, "mode")
	out = AppendBulkString(out, "standalone")
	out = AppendBulkString(out, "role")
	out = AppendBulkString(out, "master")
	out = AppendBulkString(out, "modules")
	return AppendArray(out, 0)
}

// Version is what HELLO and INFO report. Set by the binary at startup.
var Version = "0.1.0"

// CLIENT SETNAME/GETNAME/SETINFO/ID/INFO/LIST/NO-EVICT/NO-TOUCH: enough for
// client libraries' connection setup.
// validClientName: printable ASCII without spaces, as Redis requires
// (a name is a word of CLIENT LIST's lines).
func validClientName(name []byte) bool {
	for _, ch := range name {
		if ch <= ' ' || ch > '~' {
			return false
		}
	}
	return true
}

func cmdClient(s *Server, c *session, args [][]byte, out []byte) []byte {
	sub := strings.ToUpper(string(args[1]))
	switch {
	case sub == "SETNAME" && len(args) == 3:
		if !validClientName(args[2]) {
			return AppendError(out, "ERR Client names cannot contain spaces, newlines or special characters.")
		}
		c.setName(string(args[2]))
		return AppendSimple(out, "OK")
	case sub == "GETNAME" && len(args) == 2:
		if c.getName() == "" {
			return AppendNull(out)
		}
		return AppendBulkString(out, c.getName())
	case sub == "ID" && len(args) == 2:
		return AppendInt(out, c.id)
	case sub == "SETINFO" && len(args) == 4:
		if opt := strings.ToUpper(string(args[2])); opt != "LIB-NAME" && opt != "LIB-VER" {
			return AppendError(out, fmt.Sprintf("ERR Unrecognized option '%s'", printable(args[2], 32)))
		}
		return AppendSimple(out, "OK")
	case sub == "NO-EVICT" || sub == "NO-TOUCH":
		if len(args) != 3 {
			return AppendError(out, fmt.Sprintf("ERR wrong number of arguments for 'client|%s' command", strings.ToLower(sub)))
		}
		if on := strings.ToUpper(string(args[2])); on != "ON" && on != "OFF" {
			return AppendError(out, "ERR syntax error")
		}
		return AppendSimple(out, "OK")
	case sub == "INFO" && len(args) == 2:
		return AppendBulkString(out, c.info(c, "client|info"))
	case sub == "LIST":
		return clientList(s, c, args[2:], out)
	case sub == "KILL":
		if len(args) < 3 {
			return AppendError(out, "ERR wrong number of arguments for 'client|kill' command")
		}
		return clientKill(s, c, args[2:], out)
	}
	return AppendError(out, fmt.Sprintf("ERR unknown subcommand or wrong number of arguments for 'client|%s' command", strings.ToLower(printable(args[1], 32))))
}

// clientList answers CLIENT LIST [TYPE normal|master|replica|pubsub]
// or CLIENT LIST ID id [id ...] (one or the other, as Redis): every
// connection is a normal one; ids are answered in the order given.
func clientList(s *Server, c *session, args [][]byte, out []byte) []byte {
	var b strings.Builder
	all := len(args) == 0
	switch {
	case all:
	case len(args) == 2 && strings.EqualFold(string(args[0]), "TYPE"):
		switch strings.ToLower(string(args[1])) {
		case "normal":
			all = true
		case "master", "replica", "slave", "pubsub":
		default:
			return AppendError(out, fmt.Sprintf("ERR Unknown client type '%s'", printable(args[1], 32)))
		}
	case len(args) >= 2 && strings.EqualFold(string(args[0]), "ID"):
		ids := make([]int64, 0, len(args)-1)
		for _, a := range args[1:] {
			id, err := strconv.ParseInt(string(a), 10, 64)
			if err != nil {
				return AppendError(out, "ERR Invalid client ID")
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			if other := s.session(id); other != nil {
				b.WriteString(other.info(c, "client|list"))
			}
		}
	default:
		return AppendError(out, "ERR syntax error")
	}
	if all {
		for _, other := range s.sessionList() {
			b.WriteString(other.info(c, "client|list"))
		}
	}
	return AppendBulkString(out, b.String())
}

// clientKill answers CLIENT KILL addr (+OK, or an error if no connection
// has that address) and CLIENT KILL [ID id] [ADDR addr] [LADDR addr]
// [TYPE type] [USER user] [MAXAGE seconds] [SKIPME yes|no] (how many it
// closed), as Redis does: a filter given twice keeps its last value. A
// connection killed runs no more commands (not even those it had sent
// already); one in flight finishes, its reply not sent. The caller's own
// connection (SKIPME no) closes once this reply is sent.
func clientKill(s *Server, c *session, args [][]byte, out []byte) []byte {
	if len(args) == 1 { // the old form
		addr := string(args[0])
		for _, other := range s.sessionList() {
			if other.conn.RemoteAddr().String() == addr {
				c.kill(other)
				return AppendSimple(out, "OK")
			}
		}
		return AppendError(out, "ERR No such client")
	}
	if len(args)%2 != 0 {
		return AppendError(out, "ERR syntax error")
	}
	var (
		id, maxAge        int64 // 0: no such filter
		addr, laddr       string
		hasAddr, hasLaddr bool
		anyType, skipMe   = true, true
	)
	for i := 0; i < len(args); i += 2 {
		val := string(args[i+1])
		switch strings.ToUpper(string(args[i])) {
		case "ID":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n <= 0 {
				return AppendError(out, "ERR client-id should be greater than 0")
			}
			id = n
		case "ADDR":
			addr, hasAddr = val, true
		case "LADDR":
			laddr, hasLaddr = val, true
		case "TYPE":
			switch strings.ToLower(val) {
			case "normal":
				anyType = true
			case "master", "replica", "slave", "pubsub":
				anyType = false
			default:
				return AppendError(out, fmt.Sprintf("ERR Unknown client type '%s'", printable(args[i+1], 32)))
			}
		case "USER":
			if val != "default" {
				return AppendError(out, fmt.Sprintf("ERR No such user '%s'", printable(args[i+1], 64)))
			}
		case "MAXAGE":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return AppendError(out, "ERR syntax error")
			}
			maxAge = n
		case "SKIPME":
			switch strings.ToLower(val) {
			case "yes":
				skipMe = true
			case "no":
				skipMe = false
			default:
				return AppendError(out, "ERR syntax error")
			}
		default:
			return AppendError(out, "ERR syntax error")
		}
	}
	killed := int64(0)
	for _, o := range s.sessionList() {
		switch {
		case o == c && skipMe, !anyType,
			id != 0 && o.id != id,
			hasAddr && o.conn.RemoteAddr().String() != addr,
			hasLaddr && o.conn.LocalAddr().String() != laddr,
			maxAge != 0 && int64(time.Since(o.born)/time.Second) < maxAge:
			continue
		}
		c.kill(o)
		killed++
	}
	return AppendInt(out, killed)
}

// info is the connection's line of CLIENT INFO and CLIENT LIST, with
// every field Redis 7 gives (clients parse some of them as integers);
// the ones rumor does not track are 0, as on an idle Redis connection.
// asker is the connection asking, running askerCmd.
func (c *session) info(asker *session, askerCmd string) string {
	age := int64(time.Since(c.born) / time.Second)
	idle := age // no command yet: idle since it came, as Redis counts
	if at := c.lastAt.Load(); at > 0 {
		idle = max(int64((monoNow()-time.Duration(at))/time.Second), 0)
	}
	cmd := "NULL"
	if c == asker {
		cmd, idle = askerCmd, 0
	} else if last := c.last.Load(); last != nil {
		cmd = *last
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=0 name=%s age=%d idle=%d flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s user=default redir=-1 resp=2 lib-name= lib-ver=\n",
		c.id, c.conn.RemoteAddr(), c.conn.LocalAddr(), c.getName(), age, idle, cmd)
}

// CLUSTER LEAVE | FORGET name: membership changes, served by the node.
func cmdCluster(s *Server, c *session, args [][]byte, out []byte) []byte {
	if s.cfg.Cluster == nil {
		return AppendError(out, "ERR this node runs alone, not in a cluster")
	}
	words := make([]string, len(args)-1)
	for i, a := range args[1:] {
		words[i] = string(a)
	}
	reply, err := s.cfg.Cluster(words)
	if err != nil {
		return AppendError(out, "ERR "+err.Error())
	}
	return AppendSimple(out, reply)
}

// CONFIG GET pattern [pattern ...] answers from a fixed set of read-only
// settings that tools such as redis-benchmark ask for; CONFIG SET is refused.
func cmdConfig(s *Server, c *session, args [][]byte, out []byte) []byte {
	sub := strings.ToUpper(string(args[1]))
	switch {
	case sub == "GET" && len(args) >= 3:
		settings := s.configSettings()
		names := make([]string, 0, len(settings))
		for name := range settings {
			for _, pat := range args[2:] {
				if ok, _ := path.Match(strings.ToLower(string(pat)), name); ok {
					names = append(names, name)
					break
				}
			}
		}
		sort.Strings(names)
		out = AppendArray(out, 2*len(names))
		for _, n := range names {
			out = AppendBulkString(out, n)
			out = AppendBulkString(out, settings[n])
		}
		return out
	case sub == "RESETSTAT" && len(args) == 2:
		return AppendSimple(out, "OK")
	case sub == "SET":
		return AppendError(out, "ERR CONFIG SET is not supported: rumor is configured by its command-line flags")
	}
	return AppendError(out, fmt.Sprintf("ERR unknown subcommand or wrong number of arguments for 'config|%s' command", strings.ToLower(printable(args[1], 32))))
}

func (s *Server) configSettings() map[string]string {
	idle := 0
	if s.cfg.IdleTimeout > 0 {
		idle = int(s.cfg.IdleTimeout / time.Second)
	}
	return map[string]string{
		"save":                      "",
		"appendonly":                "no",
		"databases":                 "1",
		"maxclients":                strconv.Itoa(s.cfg.MaxClients),
		"maxmemory":                 "0",
		"timeout":                   strconv.Itoa(idle),
		"proto-max-bulk-len":        strconv.Itoa(s.cfg.Limits.MaxBulk),
		"client-query-buffer-limit": strconv.Itoa(s.cfg.Limits.MaxRequest),
	}
}

// COMMAND [COUNT | DOCS | INFO name... | LIST].
func cmdCommand(s *Server, c *session, args [][]byte, out []byte) []byte {
	names := make([]string, 0, len(commandTable))
	for n := range commandTable {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 1 {
		out = AppendArray(out, len(names))
		for _, n := range names {
			out = appendCommandInfo(out, commandTable[n])
		}
		return out
	}
	switch sub := strings.ToUpper(string(args[1])); sub {
	case "COUNT":
		return AppendInt(out, int64(len(names)))
	case "LIST":
		out = AppendArray(out, len(names))
		for _, n := range names {
			out = AppendBulkString(out, n)
		}
		return out
	case "DOCS":
		// redis-cli builds its HELP and argument hints from COMMAND DOCS,
		// and falls back to its own table only on an error: an empty
		// reply would leave it with no help at all.
		return AppendError(out, "ERR COMMAND DOCS is not supported by rumor")
	case "INFO":
		out = AppendArray(out, len(args)-2)
		for _, a := range args[2:] {
			if cmd := lookup(a); cmd != nil {
				out = appendCommandInfo(out, cmd)
			} else {
				out = AppendNullArray(out)
			}
		}
		return out
	}
	return AppendError(out, fmt.Sprintf("ERR unknown subcommand '%s'. Try COMMAND COUNT, DOCS, INFO or LIST", printable(args[1], 32)))
}

func appendCommandInfo(out []byte, c *command) []byte {
	out = AppendArray(out, 6)
	out = AppendBulkString(out, c.name)
	out = AppendInt(out, int64(c.arity))
	flags := strings.Fields(c.flags)
	out = AppendArray(out, len(flags))
	for _, f := range flags {
		out = AppendSimple(out, f)
	}
	first, last, step := 0, 0, 0
	switch c.name {
	case "get", "set", "put", "vget", "vdel", "incr", "decr", "incrby", "decrby":
		first, last, step = 1, 1, 1
	case "mget", "exists", "del":
		first, last, step = 1, -1, 1
	}
	out = AppendInt(out, int64(first))
	out = AppendInt(out, int64(last))
	return AppendInt(out, int64(step))
}

// INFO [section ...]: Redis-style "# Section" blocks of "field:value" lines.
func cmdInfo(s *Server, c *session, args [][]byte, out []byte) []byte {
	sections := s.infoSections()
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b bytes.Buffer
	for _, sec := range sections {
		if !all && !want[strings.ToLower(sec.Name)] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(&b, "# %s\r\n", sec.Name)
		for _, f := range sec.Fields {
			fmt.Fprintf(&b, "%s:%s\r\n", f[0], f[1])
		}
	}
	return AppendBulk(out, b.Bytes())
}

func (s *Server) infoSections() []InfoSection {
	var secs []InfoSection
	if s.cfg.Info != nil {
		secs = s.cfg.Info()
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	clients := InfoSection{Name: "Clients", Fields: [][2]string{
		{"connected_clients", itoa(s.clients.Load())},
		{"maxclients", strconv.Itoa(s.cfg.MaxClients)},
		{"blocked_clients", "0"},
		{"unread_reply_bytes", itoa(s.spilled.total.Load())}, // held for clients that have not read them yet
	}}
	stats := InfoSection{Name: "Stats", Fields: [][2]string{
		{"total_connections_received", itoa(s.totalConns.Load())},
		{"total_commands_processed", itoa(s.totalCommands.Load())},
		{"rejected_connections", itoa(s.rejectedConns.Load())},
		{"protocol_errors", itoa(s.protocolErrors.Load())},
		{"idle_timeouts", itoa(s.idleTimeouts.Load())},
	}}
	// Server first (if the node gives one), then Clients, Stats, the rest.
	var out []InfoSection
	rest := secs
	if len(secs) > 0 && secs[0].Name == "Server" {
		out, rest = append(out, secs[0]), secs[1:]
	}
	out = append(out, clients, stats)
	return append(out, rest...)
}
