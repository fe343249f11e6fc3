package store

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
)

func putFn(s *Store, v string) func(crdt.Object, bool) (crdt.Object, error) {
	return func(cur crdt.Object, _ bool) (crdt.Object, error) {
		cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte(v), false, 1)
		return cur, nil
	}
}

// failures records the store's OnFailure calls.
type failures struct {
	calls atomic.Int32
	err   atomic.Pointer[error]
}

func (f *failures) record(err error) {
	f.calls.Add(1)
	f.err.Store(&err)
}

// settled returns the number of OnFailure calls once there has been one
// (or 5 s passed): the goroutine that failed the store calls OnFailure
// just after setting Err, so another goroutine can see ErrFailed first.
func (f *failures) settled() int32 {
	for deadline := time.Now().Add(5 * time.Second); f.calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return f.calls.Load()
}

// TestFailedWALSyncFailsTheStore: with Sync, a write whose WAL fsync fails
// is in the memtable (and the object cache) but maybe not on the disk. It
// must not be acknowledged, and nothing may then be served or built on it:
// the store fails, every later call returns ErrFailed with the cause,
// OnFailure is told once, and Close does not panic (a synced write to a
// failed WAL is fatal in pebble).
func TestFailedWALSyncFailsTheStore(t *testing.T) {
	for _, cache := range []int64{-1, 0} { // without and with the object cache
		var fail atomic.Bool
		var got failures
		s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, ObjectCacheSize: cache,
			FS: errorfs.Wrap(vfs.NewMem(), testutil.WALSyncFails{Fail: &fail}), OnFailure: got.record})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(1, []byte("k"), putFn(s, "v1")); err != nil {
			t.Fatal(err)
		}
		fail.Store(true)
		_, err = s.Update(1, []byte("k"), putFn(s, "v2"))
		if !errors.Is(err, ErrFailed) || !errors.Is(err, testutil.ErrInjectedEIO) {
			t.Fatalf("cache=%d: an Update whose fsync failed returned %v, want ErrFailed wrapping the cause", cache, err)
		}
		if n := got.calls.Load(); n != 1 || !errors.Is(*got.err.Load(), ErrFailed) {
			t.Fatalf("cache=%d: OnFailure called %d times (want 1)", cache, n)
		}
		if o, found, err := s.Get(1, []byte("k")); !errors.Is(err, ErrFailed) {
			n, _ := o.Reg.Newest()
			t.Errorf("cache=%d: after the failed fsync Get returned (%q, %v, %v), want ErrFailed: it would serve a write that may be on no disk", cache, n.Value, found, err)
		}
		if _, _, _, err := s.GetWithEncoding(1, []byte("other")); !errors.Is(err, ErrFailed) {
			t.Errorf("cache=%d: GetWithEncoding of another key returned %v, want ErrFailed", cache, err)
		}
		if _, err := s.Update(1, []byte("j"), putFn(s, "v3")); !errors.Is(err, ErrFailed) {
			t.Errorf("cache=%d: a later Update returned %v, want ErrFailed", cache, err)
		}
		if err := s.Scan(1, func([]byte, crdt.Object) error { return nil }); !errors.Is(err, ErrFailed) {
			t.Errorf("cache=%d: Scan returned %v, want ErrFailed", cache, err)
		}
		if !errors.Is(s.Err(), ErrFailed) {
			t.Errorf("cache=%d: Err() = %v, want ErrFailed", cache, s.Err())
		}
		if n := got.calls.Load(); n != 1 {
			t.Errorf("cache=%d: OnFailure called %d times, want once", cache, n)
		}
		_ = s.Close() // must return, not panic; pebble may report the broken WAL
	}
}

// TestFailedPeriodicSyncFailsTheStore: without Sync, the periodic WAL sync
// (FlushInterval) failing fails the store the same way, instead of a panic
// in the sync goroutine and, at the next write, in a request's.
func TestFailedPeriodicSyncFailsTheStore(t *testing.T) {
	var fail atomic.Bool
	var got failures
	s, err := Open(Options{Dir: "/db", Partitions: 16, FlushInterval: time.Millisecond,
		FS: errorfs.Wrap(vfs.NewMem(), testutil.WALSyncFails{Fail: &fail}), OnFailure: got.record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Update(1, []byte("k"), putFn(s, "v1")); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if _, err := s.Update(1, []byte("k"), putFn(s, "v2")); err != nil {
		t.Fatal(err) // acknowledged without an fsync, as --sync=false does
	}
	for deadline := time.Now().Add(10 * time.Second); s.Err() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the periodic sync failed for 10 s and the store did not fail")
		}
	}
	if calls := got.settled(); !errors.Is(s.Err(), testutil.ErrInjectedEIO) || calls != 1 {
		t.Fatalf("Err() = %v after %d OnFailure calls, want the injected cause, once", s.Err(), calls)
	}
	if _, err := s.Update(1, []byte("k"), putFn(s, "v3")); !errors.Is(err, ErrFailed) {
		t.Errorf("an Update after the failure returned %v, want ErrFailed", err)
	}
}

// TestOperationsLeaveCachedBytesAlone: an object read from the object cache
// shares its sibling values' bytes with the cache entry (see the package
// doc), which is safe only while nothing edits them in place. This runs
// the operations the node applies to a stored object (a write with and
// without the object's context, a concurrent sibling's merge, a delete, a
// failed Update) on objects decoded from the cache, and checks that the
// cached encoding is byte for byte what it was.
func TestOperationsLeaveCachedBytesAlone(t *testing.T) {
	s := open(t, Options{})
	set(t, s, 1, "k", "original value")
	k := objectKey(nil, 1, []byte("k"))
	cached := func() []byte {
		enc, ok := s.objs.get(k)
		if !ok {
			t.Fatal("the key is not in the object cache")
		}
		return bytes.Clone(enc)
	}
	before := cached()

	o, _, err := s.Get(1, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	other := crdt.Object{}
	other.Reg = other.Reg.Update(s.Actor()+1, crdt.Context{}, []byte("concurrent value"), false, 2)
	_ = o.Reg.Update(s.Actor(), o.Reg.Context, []byte("with context"), false, 3)
	_ = o.Reg.Update(s.Actor(), crdt.Context{}, []byte("without context"), false, 4)
	_ = crdt.Merge(o, other)
	_ = crdt.Merge(other, o)
	_ = o.Delete(s.Actor(), o.Reg.Context, 5)
	_ = o.Encode()
	if _, err := s.Update(1, []byte("k"), func(cur crdt.Object, _ bool) (crdt.Object, error) {
		_ = crdt.Merge(cur, other)
		_ = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte("not written"), false, 6)
		return crdt.Object{}, errors.New("fn fails: nothing is written")
	}); err == nil {
		t.Fatal("want fn's error")
	}
	if after := cached(); !bytes.Equal(after, before) {
		t.Fatalf("operations on objects read from the cache changed the cached encoding:\n before %x\n after  %x", before, after)
	}
	if got := value(t, s, 1, "k"); got != "original value" {
		t.Fatalf("Get returns %q, want the stored %q", got, "original value")
	}
}
