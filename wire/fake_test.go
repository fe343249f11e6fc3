package wire

import (
	"bytes"
	"context"
	"sync"

	"github.com/rumor-kv/rumor/crdt"
)

// fakeActor is the actor the fake coordinates every write as, like a node's
// own actor.
const fakeActor = 0x1

// fakeBackend is an in-memory Backend with a node's semantics (see
// node.Node's Put, Delete and Incr): register writes take a fresh dot of
// fakeActor, a write's context is the client's when it sends one and the
// stored register's otherwise, deletes leave a tombstone and reset the
// counter, and the wrong family's writes fail with ErrWrongType.
//
// Write times come from a logical clock that ticks once per write, so which
// sibling is newest is deterministic. PutConcurrent writes as another actor
// that has seen none of the stored siblings, which is how tests make
// siblings without a cluster.
//
// It is safe for concurrent use. Set the hooks before the fake is shared.
type fakeBackend struct {
	// getHook, when set, runs at the start of every Get, outside the lock;
	// an error it returns is Get's.
	getHook func(ctx context.Context, key string) error

	mu struct {
		sync.Mutex
		objs map[string]crdt.Object
		now  int64 // logical write clock
		err  error // when set, every call fails with it
	}
}

var _ Backend = (*fakeBackend)(nil)

func newFakeBackend() *fakeBackend {
	f := &fakeBackend{}
	f.mu.objs = map[string]crdt.Object{}
	return f
}

func (f *fakeBackend) tickLocked() int64 {
	f.mu.now++
	return f.mu.now
}

// Get implements Backend.
func (f *fakeBackend) Get(ctx context.Context, key []byte) (crdt.Object, error) {
	if f.getHook != nil {
		if err := f.getHook(ctx, string(key)); err != nil {
			return crdt.Object{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.err != nil {
		return crdt.Object{}, f.mu.err
	}
	return f.mu.objs[string(key)], nil
}

// Put implements Backend. The value is copied: the server's arguments alias
// its read buffer.
func (f *fakeBackend) Put(_ context.Context, key, value []byte, opts WriteOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.err != nil {
		return f.mu.err
	}
	cur := f.mu.objs[string(key)]
	cnt := cur.Cnt.ResetSeen(opts.Counter) // what the token saw of a counter
	if !cur.Reg.Live() && cnt.Live() {
		return ErrWrongType
	}
	ctx := cur.Reg.Context
	if opts.HasContext {
		ctx = opts.Context
	}
	cur.Reg = cur.Reg.Update(fakeActor, ctx, bytes.Clone(value), false, f.tickLocked())
	cur.Cnt = cnt
	f.mu.objs[string(key)] = cur
	return nil
}

// Delete implements Backend.
func (f *fakeBackend) Delete(_ context.Context, key []byte, opts WriteOptions) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.err != nil {
		return false, f.mu.err
	}
	cur := f.mu.objs[string(key)]
	if opts.HasContext {
		next, deleted := cur.DeleteSeen(fakeActor, opts.Context, opts.Counter, f.tickLocked())
		f.mu.objs[string(key)] = next
		return deleted, nil
	}
	existed := cur.Kind() != crdt.KindNone
	if !existed {
		return false, nil
	}
	f.mu.objs[string(key)] = cur.Delete(fakeActor, cur.Reg.Context, f.tickLocked())
	return existed, nil
}

// Incr implements Backend.
func (f *fakeBackend) Incr(_ context.Context, key []byte, delta int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.err != nil {
		return 0, f.mu.err
	}
	cur := f.mu.objs[string(key)]
	if cur.Kind() == crdt.KindRegister {
		return 0, ErrWrongType
	}
	c, err := cur.Cnt.Add(fakeActor, delta)
	if err != nil {
		return 0, err
	}
	cur.Cnt = c
	f.mu.objs[string(key)] = cur
	return c.Value(), nil
}

// PutConcurrent writes value to key's register as actor, covering none of
// the siblings stored: a write concurrent with everything the fake holds,
// which leaves one more sibling.
func (f *fakeBackend) PutConcurrent(actor uint64, key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.mu.objs[key]
	cur.Reg = cur.Reg.Update(actor, nil, []byte(value), false, f.tickLocked())
	f.mu.objs[key] = cur
}

// IncrConcurrent adds delta to key's counter as actor, whatever the key
// holds: an INCR concurrent with its SETs leaves a type conflict.
func (f *fakeBackend) IncrConcurrent(actor uint64, key string, delta int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.mu.objs[key]
	cur.Cnt, _ = cur.Cnt.Add(actor, delta)
	f.mu.objs[key] = cur
}

// Object returns what the fake holds for key.
func (f *fakeBackend) Object(key string) crdt.Object {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.objs[key]
}

// SetErr makes every later call fail with err; nil restores normal service.
func (f *fakeBackend) SetErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.err = err
}
