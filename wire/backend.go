package wire

import (
	"context"
	"errors"

	"github.com/rumor-kv/rumor/crdt"
)

// Errors a Backend returns that the protocols turn into specific replies.
var (
	// ErrWrongType: a register write on a counter, or the reverse.
	ErrWrongType = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
	// ErrFaultsDisabled: a fault control request to a node that was not
	// started to take them. HTTP answers it with 403.
	ErrFaultsDisabled = errors.New("faults are disabled on this node; start it with --allow-faults")
	// ErrObjectTooLarge is wrapped by the error for a write that would grow
	// a key's object (its siblings) past the node's bounds. HTTP answers
	// it with 413.
	ErrObjectTooLarge = errors.New("object too large")
)

// Unavailable is implemented by errors that mean the cluster could not
// serve the request now (too few replicas answered) rather than that the
// request or the node is at fault; HTTP answers them with 503.
type Unavailable interface{ Unavailable() bool }

// BadRequest is implemented by errors that mean the request itself
// cannot be served by any state of the cluster (an R or W above the key's
// replicas); HTTP answers them with 400.
type BadRequest interface{ BadRequest() bool }

// WriteOptions qualify a write.
type WriteOptions struct {
	// Context, when HasContext is set, is the causal context the client
	// read (a VGET token): the write supersedes exactly what it covers.
	// Without it a write supersedes what the coordinating replica holds.
	Context crdt.Context
	// Counter, with HasContext, is the counter the token's read found
	// (crdt.ReadToken): the write resets its increments, and no others.
	Counter    crdt.Counter
	HasContext bool
}

// ReadToken is the context token of what a read found: the register's
// context and, if the key holds a live counter, the counter (a key SET
// and INCRed concurrently holds both).
func ReadToken(o crdt.Object) string {
	if o.Cnt.Live() {
		return crdt.ReadToken(o.Reg.Context, o.Cnt)
	}
	return o.Reg.Context.Token()
}

// Backend is what the protocols drive: the node. Methods may be called
// concurrently from many connections. Keys and values may alias the
// connection's read buffer, which holds the next command once the method
// returns: a Backend that uses them after it returns (a copy sent to a
// replica after the quorum answered) must copy them first.
type Backend interface {
	// Get returns the object stored for key; the zero Object if none.
	Get(ctx context.Context, key []byte) (crdt.Object, error)
	// Put writes value as a register. ErrWrongType if key holds a counter.
	Put(ctx context.Context, key, value []byte, opts WriteOptions) error
	// Delete deletes key (register and counter alike) and reports whether
	// it held a value before.
	Delete(ctx context.Context, key []byte, opts WriteOptions) (existed bool, err error)
	// Incr adds delta to the counter at key (created at 0) and returns the
	// new value. ErrWrongType if key holds a register; crdt.ErrOverflow if
	// the result would not fit in an int64.
	Incr(ctx context.Context, key []byte, delta int64) (int64, error)
}

// A SyncGroup lets a Backend apply a write and hand back the wait for it
// to be stored (its fsync on a single node, its write quorum in a cluster)
// instead of blocking on it, so that the writes of a pipeline share one
// fsync, as in Redis with appendfsync always, and a cluster replicates
// them concurrently. The client protocol puts one in a command's context
// (SyncGroupFrom) only when more commands of the same connection are
// already buffered, and calls every deferred wait, in order, before it
// sends any reply: a reply never leaves before the writes it follows are
// stored, and the reply of a write whose wait fails becomes that error.
// A SyncGroup belongs to one connection's goroutine; Defer may only be
// called during a Backend call made with its context, and a Backend that
// defers must not count the write as stored before its wait returns nil.
type SyncGroup struct {
	waits []deferredWait
}

// deferredWait is a wait and the span of out holding its command's reply.
type deferredWait struct {
	wait       func() error
	start, end int
}

// Defer records wait, which returns nil once a write applied by the
// current call is stored, or why it could not be.
func (g *SyncGroup) Defer(wait func() error) {
	g.waits = append(g.waits, deferredWait{wait: wait, start: -1})
}

// Wait calls every deferred wait, in order, and returns the first error;
// the group is then empty. (The client protocol settles the group itself,
// one error per reply; Wait is for other callers, and tests.)
func (g *SyncGroup) Wait() (first error) {
	g.drain(func(_ deferredWait, err error) {
		if first == nil {
			first = err
		}
	})
	return first
}

// Pending returns how many waits are deferred.
func (g *SyncGroup) Pending() int { return len(g.waits) }

// replied records that the waits deferred since the first pending ones
// belong to the command whose reply is out[start:end].
func (g *SyncGroup) replied(first, start, end int) {
	for i := first; i < len(g.waits); i++ {
		g.waits[i].start, g.waits[i].end = start, end
	}
}

// drain calls every deferred wait in order, and failed for each that
// fails; the group is then empty.
func (g *SyncGroup) drain(failed func(w deferredWait, err error)) {
	for i := range g.waits {
		w := g.waits[i]
		g.waits[i] = deferredWait{} // let the wait's closure go
		if err := w.wait(); err != nil {
			failed(w, err)
		}
	}
	g.waits = g.waits[:0]
}

// settle calls every deferred wait in order and returns out with the reply
// of each command whose wait failed replaced by the (first) error; the
// group is then empty.
func (g *SyncGroup) settle(out []byte) []byte {
	var fixed []byte // nil until a wait fails
	copied := 0      // out[:copied] is in fixed
	g.drain(func(w deferredWait, err error) {
		if w.start < copied || w.start < 0 {
			return // this command's reply is replaced already (or unknown)
		}
		if fixed == nil {
			fixed = make([]byte, 0, len(out)+64)
		}
		fixed = errReply(append(fixed, out[copied:w.start]...), err)
		copied = w.end
	})
	if fixed == nil {
		return out
	}
	return append(fixed, out[copied:]...)
}

type syncGroupKey struct{}

// WithSyncGroup returns ctx carrying g.
func WithSyncGroup(ctx context.Context, g *SyncGroup) context.Context {
	return context.WithValue(ctx, syncGroupKey{}, g)
}

// SyncGroupFrom returns the SyncGroup in ctx, or nil: then a write waits
// for its own durability before it returns.
func SyncGroupFrom(ctx context.Context) *SyncGroup {
	g, _ := ctx.Value(syncGroupKey{}).(*SyncGroup)
	return g
}

// InfoSection is one "# Name" block of the INFO reply.
type InfoSection struct {
	Name   string
	Fields [][2]string
}

// Quorum carries per-request R, W and sloppiness (GET key R 1, SET key
// value W 3 SLOPPY no); zero fields mean the node's defaults. A Backend
// that replicates reads it with QuorumFrom; a single node ignores it.
type Quorum struct {
	R, W   int
	Sloppy Sloppy
}

// Sloppy says whether a request may count stand-ins (nodes holding a
// hinted copy for an unreachable replica) towards its quorum.
type Sloppy int8

// The choices; SloppyDefault is the node's setting.
const (
	SloppyDefault Sloppy = iota
	SloppyYes
	SloppyNo
)

// Resolve returns whether the request is sloppy, given the node's default.
func (s Sloppy) Resolve(def bool) bool {
	switch s {
	case SloppyYes:
		return true
	case SloppyNo:
		return false
	}
	return def
}

type quorumKey struct{}

// WithQuorum returns ctx carrying q.
func WithQuorum(ctx context.Context, q Quorum) context.Context {
	return context.WithValue(ctx, quorumKey{}, q)
}

// QuorumFrom returns the Quorum in ctx, or the zero Quorum.
func QuorumFrom(ctx context.Context) Quorum {
	q, _ := ctx.Value(quorumKey{}).(Quorum)
	return q
}
