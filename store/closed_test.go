package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestCallsAfterCloseFail: a call that comes after Close (a replica copy
// arriving during a shutdown) gets ErrClosed, not pebble's panic.
func TestCallsAfterCloseFail(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprint("sync=", durable), func(t *testing.T) {
			s := open(t, Options{Dir: t.TempDir(), Partitions: 16, Sync: durable, MaxHints: 10})
			put := func(cur crdt.Object, _ bool) (crdt.Object, error) {
				cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte("v"), false, 1)
				return cur, nil
			}
			if _, err := s.Update(1, []byte("k"), put); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			calls := map[string]error{}
			_, _, calls["Get"] = s.Get(1, []byte("k"))
			_, calls["Update"] = s.Update(1, []byte("k"), put)
			_, calls["UpdateDeferred"] = s.UpdateDeferred(1, []byte("k"), put, func(wait func() error) { wait() })
			_, calls["Merge"] = s.Merge(1, []byte("k"), crdt.Object{})
			_, calls["MergeHinted"] = s.MergeHinted(1, []byte("k"), crdt.Object{}, "n2")
			calls["Scan"] = s.Scan(1, func([]byte, crdt.Object) error { return nil })
			calls["ScanHints"] = s.ScanHints("n2", nil, 0, func(Hint) error { return nil })
			_, calls["DeleteHint"] = s.DeleteHint(Hint{Target: "n2", Partition: 1, Key: []byte("k")})
			calls["Flush"] = s.Flush()
			for name, err := range calls {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("%s after Close: %v, want ErrClosed", name, err)
				}
			}
			if m := s.Metrics(); m == nil {
				t.Error("Metrics after Close is nil")
			}
		})
	}
}

// TestCloseWaitsForCallsInFlight: writers racing with Close each either
// succeed, and are then in the store when it is opened again, or get
// ErrClosed; none panics. Run with -race.
func TestCloseWaitsForCallsInFlight(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Partitions: 16, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	var done atomic.Int64
	acked := make([][]string, writers)
	start := make(chan struct{})
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				key := fmt.Sprintf("w%d-%d", g, i)
				var werr error
				_, err := s.UpdateDeferred(uint32(i%16), []byte(key), func(cur crdt.Object, _ bool) (crdt.Object, error) {
					cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte(key), false, 1)
					return cur, nil
				}, func(wait func() error) { werr = wait() })
				if err == nil {
					err = werr
				}
				switch {
				case err == nil:
					acked[g] = append(acked[g], key)
					done.Add(1)
				case errors.Is(err, ErrClosed):
					return
				default:
					t.Errorf("write %s: %v", key, err)
					return
				}
			}
		}()
	}
	close(start)
	testutil.Eventually(t, 10*time.Second, "the first 50 writes", func() bool { return done.Load() >= 50 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = open(t, Options{Dir: dir, Partitions: 16})
	n := 0
	for g := range writers {
		for i, key := range acked[g] {
			o, found, err := s.Get(uint32(i%16), []byte(key))
			if err != nil || !found || string(o.Reg.Siblings[0].Value) != key {
				t.Fatalf("acknowledged %s: found %v, %v, %v", key, found, o, err)
			}
			n++
		}
	}
	t.Logf("%d writes acknowledged before Close, all found after reopening", n)
}
