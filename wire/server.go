package wire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig configures a RESP server. Zero fields mean their defaults.
type ServerConfig struct {
	// Backend executes the commands. Required.
	Backend Backend
	// Limits bound what one request may hold (see Limits).
	Limits Limits
	// MaxKeySize is the largest key in bytes. Default 8 KiB.
	MaxKeySize int
	// MaxValueSize is the largest value in bytes. Default 4 MiB; at most
	// Limits.MaxBulk.
	MaxValueSize int
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 5 minutes; negative disables it.
	IdleTimeout time.Duration
	// WriteTimeout bounds how long writing replies to a client that does
	// not read may block. Default 30 seconds; negative disables it.
	WriteTimeout time.Duration
	// MaxClients is the most connections served at once; more are told
	// so and closed. Default 10000.
	MaxClients int
	// MaxDeferredWrites bounds the pipelined writes left in flight by all
	// connections together (each connection also by maxDeferredSyncs):
	// past it, a connection with writes in flight waits for them before
	// it reads more, so that many clients pipelining at once slow down
	// instead of queueing thousands of writes whose request timeouts run
	// out in the node's own queues. Default 1024.
	MaxDeferredWrites int
	// Info returns the node's INFO sections (Server, Persistence, ...);
	// the server adds Clients and Stats. May be nil.
	Info func() []InfoSection
	// Metrics counts requests; nil disables.
	Metrics *Metrics
	// Cluster serves the CLUSTER command's subcommands (LEAVE, FORGET
	// name) and returns a status reply; nil when the node runs alone.
	Cluster func(args []string) (string, error)
	// Logger; default discards.
	Logger *slog.Logger
}

// DefaultMaxClients is ServerConfig.MaxClients's default, as Redis's.
const DefaultMaxClients = 10000

// DefaultMaxValueSize is ServerConfig.MaxValueSize's default (less if
// Limits.MaxBulk is).
const DefaultMaxValueSize = 4 << 20

// Validate reports every problem with the configuration at once.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.Backend == nil {
		errs = append(errs, errors.New("wire: Backend is required"))
	}
	l := c.Limits.WithDefaults()
	if c.MaxKeySize < 0 || c.MaxValueSize < 0 || c.MaxClients < 0 {
		errs = append(errs, errors.New("wire: sizes and client counts must not be negative"))
	}
	if c.MaxValueSize > l.MaxBulk || c.MaxKeySize > l.MaxBulk {
		errs = append(errs, fmt.Errorf("wire: max key and value sizes must not exceed max-bulk %d", l.MaxBulk))
	}
	return errors.Join(errs...)
}

func (c *ServerConfig) ensureDefaults() {
	c.Limits = c.Limits.WithDefaults()
	if c.MaxKeySize == 0 {
		c.MaxKeySize = 8 << 10
	}
	if c.MaxValueSize == 0 {
		c.MaxValueSize = min(DefaultMaxValueSize, c.Limits.MaxBulk)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.MaxDeferredWrites <= 0 {
		c.MaxDeferredWrites = 1024
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server serves the RESP protocol. See the package doc.
type Server struct {
	cfg    ServerConfig
	ops    map[string]*opMetrics // per command, read-only after NewServer
	ctx    context.Context
	cancel context.CancelFunc
	acc    acceptor

	clients        atomic.Int64
	totalConns     atomic.Int64
	totalCommands  atomic.Int64
	rejectedConns  atomic.Int64
	protocolErrors atomic.Int64
	idleTimeouts   atomic.Int64
	nextID         atomic.Int64
	deferred       atomic.Int64 // pipelined writes in flight, all connections (MaxDeferredWrites)
	spilled        spillPool    // the replies spill writers hold, all connections (spillBudget)

	sessMu   sync.Mutex
	sessions map[int64]*session // the connections served, by id (CLIENT LIST, KILL)
}

// NewServer checks cfg and returns a server ready to Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ensureDefaults()
	s := &Server{cfg: cfg, sessions: map[int64]*session{}}
	if cfg.Metrics != nil {
		s.ops = make(map[string]*opMetrics, len(commandTable))
		for name := range commandTable {
			s.ops[name] = cfg.Metrics.op("resp", name)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Serve accepts connections on l until Close. It always returns an error;
// ErrServerClosed after Close.
func (s *Server) Serve(l net.Listener) error {
	return s.acc.serve(l, s.cfg.Logger, s.serveConn)
}

// Close stops accepting, closes every connection and waits for their
// goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.cancel() // first: a connection that sees it starts no new command
	s.acc.close()
	s.acc.wait()
	return nil
}

// errReplyNotSent ends a connection whose replies could not be written.
var errReplyNotSent = errors.New("wire: reply not sent")

// idleSlack is how much later than its idle timeout a connection may be
// closed: 1/64 of the timeout, at most a second.
func idleSlack(idle time.Duration) time.Duration { return min(idle/64, time.Second) }

// maxPendingReplies bounds the replies held back for a pipelining client.
const maxPendingReplies = 64 << 10

// maxDeferredSyncs bounds the writes of a pipeline whose fsync is left to
// the connection (each holds a pebble batch until then): 13,000 five-byte
// OKs would fit under maxPendingReplies.
const maxDeferredSyncs = 256

// lingerClose half-closes c and discards what the client is still sending,
// for a bounded time and size, so that the client reads the error reply
// before the connection goes away instead of a reset (closing a socket with
// unread input sends RST, which can destroy the reply in flight).
func lingerClose(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.CloseWrite()
	tc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(tc, 16<<20))
}

// session is one client connection's state, owned by its goroutine.
type session struct {
	id   int64
	name atomic.Pointer[string] // CLIENT SETNAME; read by other connections' CLIENT LIST
	conn net.Conn
	quit bool
	// For other connections' CLIENT LIST: the last command, and when it
	// ended (monoNow; 0 if not measured).
	last   atomic.Pointer[string] // the command's name, "client|list" for a subcommand
	lastAt atomic.Int64
	killed atomic.Bool // by CLIENT KILL: runs no more commands
	now    time.Time   // when the last command finished, if measured

	// inMulti: the client sent MULTI, which rumor refuses (it has no
	// transactions); the commands up to EXEC or DISCARD are refused too.
	inMulti bool
	born    time.Time // when the connection was accepted, for CLIENT INFO

	// ctx is the context of the command being run: the server's, or
	// pipelined (the server's with syncs) when more commands are buffered.
	ctx       context.Context
	pipelined context.Context
	syncs     SyncGroup
}

func (c *session) getName() string {
	if p := c.name.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *session) setName(name string) { c.name.Store(&name) }

// sessionList returns the connections served, in the order they came.
func (s *Server) sessionList() []*session {
	s.sessMu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, c := range s.sessions {
		list = append(list, c)
	}
	s.sessMu.Unlock()
	slices.SortFunc(list, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	return list
}

// kill closes other's connection for CLIENT KILL run by c; c's own closes
// once its reply is sent. The killed connection runs none of the commands
// it had sent already (its loop checks killed before each).
func (c *session) kill(other *session) {
	if other == c {
		c.quit = true
		return
	}
	other.killed.Store(true)
	other.conn.Close()
}

// session returns the connection with id, or nil.
func (s *Server) session(id int64) *session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.sessions[id]
}

// noteCommand records the command c runs, for CLIENT LIST: the command
// table's name (no allocation), or command|subcommand.
func (c *session) noteCommand(cmd *command, args [][]byte) {
	if hasSubcommands(cmd.name) && len(args) > 1 {
		name := cmd.name + "|" + strings.ToLower(printable(args[1], 32))
		c.last.Store(&name)
		return
	}
	if c.last.Load() != &cmd.name {
		c.last.Store(&cmd.name)
	}
}

func (s *Server) serveConn(c net.Conn) {
	s.totalConns.Add(1)
	if n := s.clients.Add(1); n > int64(s.cfg.MaxClients) {
		s.clients.Add(-1)
		s.rejectedConns.Add(1)
		s.cfg.Metrics.disconnect("max_clients")
		c.Write(AppendError(nil, "ERR max number of clients reached"))
		return
	}
	defer s.clients.Add(-1)
	s.cfg.Metrics.conns(1)
	defer s.cfg.Metrics.conns(-1)

	sess := &session{id: s.nextID.Add(1), conn: c, ctx: s.ctx, born: time.Now()}
	s.sessMu.Lock()
	s.sessions[sess.id] = sess
	s.sessMu.Unlock()
	defer func() {
		s.sessMu.Lock()
		delete(s.sessions, sess.id)
		s.sessMu.Unlock()
	}()
	sess.pipelined = WithSyncGroup(s.ctx, &sess.syncs)
	r := NewReader(c, s.cfg.Limits)
	out := make([]byte, 0, 4096)
	var writeArmedAt time.Time
	// Replies are written without waiting for the client to read them
	// (writeNow); what the socket cannot take at once leaves from a spill
	// writer's goroutine, so that this one goes on reading commands (see
	// spillWriter).
	raw := newRawWriter(c)
	var spill *spillWriter
	spillRest := func(rest []byte) bool {
		if spill == nil {
			spill = newSpillWriter(c, s.cfg.WriteTimeout, &s.spilled)
		}
		out = make([]byte, 0, 4096) // rest belongs to the spill writer now
		writeArmedAt = time.Time{}  // the spill writer set the deadline
		return spill.write(rest)
	}
	flush := func() bool {
		if p := sess.syncs.Pending(); p > 0 {
			// Pipelined writes left their waits to us: no reply leaves
			// before every write it follows is stored, and a write that
			// could not be gets its error as its reply.
			out = sess.syncs.settle(out)
			s.deferred.Add(-int64(p))
			sess.now = time.Time{} // the waits took time: the deadlines below count from now
		}
		if len(out) == 0 {
			return true
		}
		if spill != nil && !spill.idle() {
			return spillRest(out) // after the replies it holds
		}
		if raw != nil {
			n, err := raw.writeNow(out)
			switch {
			case err != nil:
				return false
			case n < len(out):
				return spillRest(out[n:])
			}
			if cap(out) > 1<<20 {
				out = make([]byte, 0, 4096) // do not keep a huge reply's buffer
			}
			out = out[:0]
			return true
		}
		if s.cfg.WriteTimeout > 0 {
			// As with the idle deadline, re-arm at most once per slack: a
			// write gets between WriteTimeout and WriteTimeout+slack.
			// (Re-arming on every flush was 2% of a node's CPU under
			// redis-benchmark SET: a runtime timer update per reply.)
			now := sess.now
			if now.IsZero() {
				now = time.Now()
			}
			if now.Sub(writeArmedAt) >= idleSlack(s.cfg.WriteTimeout) {
				c.SetWriteDeadline(now.Add(s.cfg.WriteTimeout + idleSlack(s.cfg.WriteTimeout)))
				writeArmedAt = now
			}
		}
		_, err := c.Write(out)
		if cap(out) > 1<<20 {
			out = make([]byte, 0, 4096) // do not keep a huge reply's buffer
		}
		out = out[:0]
		return err == nil
	}
	// drain sends every reply owed: those buffered, then those the spill
	// writer holds.
	drain := func() {
		flush()
		if spill != nil {
			spill.close()
		}
	}
	defer drain()
	var armedAt time.Time
	// Replies wait while complete commands are buffered (one write answers
	// a pipeline), and leave before the connection waits for more bytes:
	// when nothing is buffered, and also when what is buffered is a blank
	// line or the start of the next command (a client that sent a command
	// and "\r\n", or half of its next one, waits for the reply; Redis
	// answers after each read too). The idle deadline is re-armed there,
	// so it counts from the last bytes received, as Redis's timeout does:
	// a client streaming commands split across its writes is not idle.
	r.BeforeRead(func() error {
		if s.ctx.Err() != nil {
			return s.ctx.Err() // the server is closing: the deferred flush sends what is owed
		}
		if len(out) > 0 && sess.syncs.Pending() == 0 {
			// Let the other connections that have a command run
			// theirs before this reply leaves, so that replies leave
			// together, as Redis writes its replies after each pass
			// over the ready connections. A reply that wakes a client
			// sleeping on another CPU costs an interrupt there (most
			// of a write's cost on a VM); one write in a burst wakes
			// it and the others find it awake. The yielded goroutine
			// runs again before the runtime next polls the network,
			// so no new command overtakes this reply.
			runtime.Gosched()
		}
		if !flush() {
			return errReplyNotSent
		}
		if s.cfg.IdleTimeout > 0 {
			// Re-arming the deadline costs a runtime timer update per
			// read, so do it at most once per slack: an idle connection
			// closes between IdleTimeout and IdleTimeout+slack after the
			// last bytes it sent, never earlier.
			now := sess.now
			if now.IsZero() {
				now = time.Now()
			}
			sess.now = time.Time{}
			if now.Sub(armedAt) >= idleSlack(s.cfg.IdleTimeout) {
				c.SetReadDeadline(now.Add(s.cfg.IdleTimeout + idleSlack(s.cfg.IdleTimeout)))
				armedAt = now
			}
		}
		return nil
	})
	for {
		// Replies never pile up past maxPendingReplies, nor past
		// maxDeferredSyncs writes waiting for their fsync, nor past the
		// server's MaxDeferredWrites in flight.
		if p := sess.syncs.Pending(); (len(out) > maxPendingReplies || p >= maxDeferredSyncs ||
			p > 0 && s.deferred.Load() >= int64(s.cfg.MaxDeferredWrites)) && !flush() {
			return
		}
		args, err := r.ReadCommand()
		if err != nil {
			var pe *ProtocolError
			var ne net.Error
			switch {
			case s.ctx.Err() != nil:
				// Closing (acceptor.close made the read fail): no error
				// reply, only the replies owed (the deferred flush).
			case errors.Is(err, errReplyNotSent):
				// The client is gone or stopped reading: nothing to say.
			case errors.As(err, &pe):
				s.protocolErrors.Add(1)
				s.cfg.Metrics.disconnect("protocol_error")
				out = AppendError(out, "ERR "+pe.Error())
				drain()
				lingerClose(c)
			case errors.As(err, &ne) && ne.Timeout():
				s.idleTimeouts.Add(1)
				s.cfg.Metrics.disconnect("idle_timeout")
				out = AppendError(out, fmt.Sprintf("ERR connection idle for more than %v (idle-timeout); closing", s.cfg.IdleTimeout))
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
			default:
				s.cfg.Logger.Debug("client read failed", "remote", c.RemoteAddr(), "err", err)
			}
			return
		}
		if len(args) == 0 {
			continue
		}
		if sess.killed.Load() {
			return // CLIENT KILL: not one more command, even if sent already
		}
		s.totalCommands.Add(1)
		sess.ctx = s.ctx
		if r.Buffered() > 0 {
			sess.ctx = sess.pipelined // the writes of a pipeline share an fsync
		}
		n, first := len(out), sess.syncs.Pending()
		out = s.exec(sess, args, out)
		sess.syncs.replied(first, n, len(out))
		if d := sess.syncs.Pending() - first; d != 0 {
			s.deferred.Add(int64(d))
		}
		if sess.quit {
			return
		}
	}
}
