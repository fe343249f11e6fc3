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
)

// Unavailable is implemented by errors that mean the cluster could not
// serve the request now (too few replicas answered) rather than that the
// request or the node is at fault; HTTP answers them with 503.
type Unavailable interface{ Unavailable() bool }

// WriteOptions qualify a write.
type WriteOptions struct {
	// Context, when HasContext is set, is the causal context the client
	// read (a VGET token): the write supersedes exactly what it covers.
	// Without it a write supersedes what the coordinating replica holds.
	Context    crdt.Context
	HasContext bool
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

// A SyncGroup lets a Backend apply a write and hand back the wait for its
// durability instead of blocking on it, so that the writes of a pipeline
// share one fsync as they do in Redis with appendfsync always. The client
// protocol puts one in a command's context (SyncGroupFrom) only when more
// commands of the same connection are already buffered, and waits for
// every deferred write before it sends any reply: a reply never leaves
// before the writes it follows are durable. A SyncGroup belongs to one
// connection's goroutine; Defer may only be called during a Backend call
// made with its context.
type SyncGroup struct {
	waits []func() error
}

// Defer records wait, which returns once a write applied by the current
// call is durable (nil) or failed to become durable.
func (g *SyncGroup) Defer(wait func() error) { g.waits = append(g.waits, wait) }

// Wait calls every deferred wait, in order, and returns the first error;
// the group is then empty.
func (g *SyncGroup) Wait() error {
	var first error
	for i, w := range g.waits {
		if err := w(); err != nil && first == nil {
			first = err
		}
		g.waits[i] = nil
	}
	g.waits = g.waits[:0]
	return first
}

// Pending returns how many waits are deferred.
func (g *SyncGroup) Pending() int { return len(g.waits) }

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
