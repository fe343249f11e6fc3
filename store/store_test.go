package store

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
)

func open(t *testing.T, o Options) *Store {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Partitions == 0 {
		o.Partitions = 16
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func set(t *testing.T, s *Store, p uint32, key, val string) {
	t.Helper()
	_, err := s.Update(p, []byte(key), func(cur crdt.Object, _ bool) (crdt.Object, error) {
		cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte(val), false, 1)
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func value(t *testing.T, s *Store, p uint32, key string) string {
	t.Helper()
	o, ok, err := s.Get(p, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "<missing>"
	}
	n, _ := o.Reg.Newest()
	return string(n.Value)
}

func TestUpdateGetScanByPartition(t *testing.T) {
	s := open(t, Options{})
	for p := uint32(0); p < 3; p++ {
		for i := 0; i < 5; i++ {
			set(t, s, p, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d-%d", p, i))
		}
	}
	if got := value(t, s, 1, "k3"); got != "v1-3" {
		t.Fatalf("Get(1, k3) = %q", got)
	}
	if got := value(t, s, 3, "k3"); got != "<missing>" {
		t.Fatalf("key leaked into partition 3: %q", got)
	}
	var keys []string
	err := s.Scan(1, func(k []byte, o crdt.Object) error {
		n, _ := o.Reg.Newest()
		keys = append(keys, string(k)+"="+string(n.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[k0=v1-0 k1=v1-1 k2=v1-2 k3=v1-3 k4=v1-4]"; fmt.Sprint(keys) != want {
		t.Fatalf("Scan(1) = %v, want %v", keys, want)
	}
	// The last partition scans to the end of the object range, not beyond.
	s2 := open(t, Options{Partitions: 1 << 16})
	set(t, s2, 1<<16-1, "last", "x")
	n := 0
	if err := s2.Scan(1<<16-1, func([]byte, crdt.Object) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("Scan(last partition) saw %d objects, err %v", n, err)
	}
	// A failing fn writes nothing.
	boom := errors.New("boom")
	if _, err := s.Update(0, []byte("k0"), func(crdt.Object, bool) (crdt.Object, error) { return crdt.Object{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("Update err = %v", err)
	}
	if got := value(t, s, 0, "k0"); got != "v0-0" {
		t.Fatalf("failed update changed k0 to %q", got)
	}
}

func TestIdentityPersistsAndPartitionsAreChecked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Partitions: 64})
	if err != nil {
		t.Fatal(err)
	}
	actor := s.Actor()
	s.Close()
	s.Close() // idempotent
	s, err = Open(Options{Dir: dir, Partitions: 64})
	if err != nil {
		t.Fatal(err)
	}
	if s.Actor() != actor {
		t.Fatalf("actor changed across reopen: %x then %x", actor, s.Actor())
	}
	s.Close()
	if _, err := Open(Options{Dir: dir, Partitions: 128}); !errors.Is(err, ErrPartitionsMismatch) {
		t.Fatalf("reopen with other Q: err = %v", err)
	}
	other := open(t, Options{})
	if other.Actor() == actor {
		t.Fatalf("a fresh directory reused actor %x", actor)
	}
	if err := (Options{Partitions: 3 << 20, CacheSize: -1}).Validate(); err == nil {
		t.Fatal("Validate accepted bad options")
	}
}

func TestConcurrentUpdatesOfOneKeyAreAtomic(t *testing.T) {
	s := open(t, Options{Sync: true})
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				key := []byte(fmt.Sprint("c", i%3))
				_, err := s.Update(0, key, func(cur crdt.Object, _ bool) (crdt.Object, error) {
					c, err := cur.Cnt.Add(s.Actor(), 1)
					cur.Cnt = c
					return cur, err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var total int64
	for i := 0; i < 3; i++ {
		o, _, err := s.Get(0, []byte(fmt.Sprint("c", i)))
		if err != nil {
			t.Fatal(err)
		}
		total += o.Cnt.Value()
	}
	if total != workers*each {
		t.Fatalf("counters sum to %d after %d increments: an update was lost", total, workers*each)
	}
}

// TestSyncedWritesSurviveCrash crashes pebble's in-memory filesystem (which
// keeps exactly what was fsynced, plus a random share of what was not) while
// writers run, and checks that every write acknowledged before the crash is
// in the recovered store.
func TestSyncedWritesSurviveCrash(t *testing.T) {
	t.Run("window=0", func(t *testing.T) { testSyncedWritesSurviveCrash(t, 0) })
	// With a sync window, writes wait for a later fsync; none may be
	// acknowledged before it.
	t.Run("window=2ms", func(t *testing.T) { testSyncedWritesSurviveCrash(t, 2*time.Millisecond) })
}

func testSyncedWritesSurviveCrash(t *testing.T, window time.Duration) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := 0; round < 5; round++ {
		fs := vfs.NewCrashableMem()
		s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, SyncWindow: window, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		want, crashed := crashMidStream(t, s, fs, rng, func(w, i int) (string, error) {
			k, v := fmt.Sprintf("w%d-k%d", w, i%50), fmt.Sprintf("v%d", i)
			_, err := s.Update(uint32(i%16), []byte(k), func(cur crdt.Object, _ bool) (crdt.Object, error) {
				cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte(v), false, int64(i))
				return cur, nil
			})
			return k, err
		})

		r, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, FS: crashed})
		if err != nil {
			t.Fatalf("round %d: reopen after crash: %v", round, err)
		}
		if r.Actor() == s.Actor() || !r.ReplacedActor() {
			t.Fatalf("round %d: the actor id was kept across a crash", round)
		}
		lost := 0
		for k, i := range want {
			v := fmt.Sprintf("v%d", i)
			o, _, err := r.Get(uint32(i%16), []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			// The store may hold a newer write of the key; never an older one.
			n, ok := o.Reg.Newest()
			var got int
			if ok {
				fmt.Sscanf(string(n.Value), "v%d", &got)
			}
			if !ok || got < i {
				lost++
				t.Errorf("round %d: acknowledged %s=%s, recovered %q", round, k, v, n.Value)
			}
		}
		r.Close()
		if lost > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes lost", round, lost, len(want))
		}
	}
}

// crashMidStream runs four writers against s, on pebble's crashable
// filesystem fs, each calling write(writer, i) for i = 1, 2, ... until it
// fails, and crashes fs once 100 keys have acknowledged writes (or 10s
// passed). It returns, for every key acknowledged before the crash, the
// last i acknowledged, and the crashed filesystem to reopen; s is closed.
func crashMidStream(t *testing.T, s *Store, fs *vfs.MemFS, rng *rand.Rand, write func(w, i int) (string, error)) (map[string]int, *vfs.MemFS) {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k, err := write(w, i)
				if err != nil {
					return
				}
				mu.Lock()
				acked[k] = i
				mu.Unlock()
			}
		}()
	}
	// Crash once enough writes were acknowledged (poll with a deadline).
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	want := maps.Clone(acked)
	mu.Unlock()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rand.New(rand.NewPCG(rng.Uint64(), 0))})
	close(stop)
	wg.Wait()
	s.Close()
	return want, crashed
}

// TestObjectCacheNeverServesStaleObjects runs readers against writers with
// a cache far smaller than the data, so entries are evicted and refilled
// all the time, and checks that a read never returns less than what a
// write had already acknowledged.
func TestObjectCacheNeverServesStaleObjects(t *testing.T) {
	for _, tc := range []struct {
		size    int64
		collide bool // the keys' hashes take 8 values: they push each other out
	}{{-1, false}, {32 << 10, false}, {1 << 20, false}, {1 << 20, true}} {
		size := tc.size
		t.Run(fmt.Sprintf("cache=%d/collide=%v", size, tc.collide), func(t *testing.T) {
			s := open(t, Options{ObjectCacheSize: size})
			if tc.collide {
				s.objs.hash = func(seed maphash.Seed, k []byte) uint64 { return maphash.Bytes(seed, k) % 8 }
			}
			const keys = 512
			var acked [keys]atomic.Int64
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 300; i++ {
						k := (i*7 + w) % keys
						o, err := s.Update(uint32(k%16), []byte(fmt.Sprint("k", k)), func(cur crdt.Object, _ bool) (crdt.Object, error) {
							c, err := cur.Cnt.Add(uint64(w+1), 1)
							cur.Cnt = c
							return cur, err
						})
						if err != nil {
							t.Error(err)
							return
						}
						for v := o.Cnt.Value(); ; {
							old := acked[k].Load()
							if v <= old || acked[k].CompareAndSwap(old, v) {
								break
							}
						}
					}
				}()
			}
			for r := 0; r < 4; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						k := i % keys
						floor := acked[k].Load()
						o, _, err := s.Get(uint32(k%16), []byte(fmt.Sprint("k", k)))
						if err != nil {
							t.Error(err)
							return
						}
						if got := o.Cnt.Value(); got < floor {
							t.Errorf("k%d read %d after a write acknowledged %d", k, got, floor)
							return
						}
					}
				}()
			}
			// Readers stop when writers are done.
			go func() {
				for {
					total := int64(0)
					for k := range acked {
						total += acked[k].Load()
					}
					if total >= 1200 || t.Failed() {
						close(stop)
						return
					}
					runtime.Gosched()
				}
			}()
			wg.Wait()
			var total int64
			for k := 0; k < keys; k++ {
				o, _, _ := s.Get(uint32(k%16), []byte(fmt.Sprint("k", k)))
				total += o.Cnt.Value()
			}
			if total != 1200 {
				t.Fatalf("counters sum to %d, want 1200", total)
			}
			if st := s.CacheStats(); size == 32<<10 && st.Evictions == 0 {
				t.Fatalf("a 32 KiB cache evicted nothing: %+v", st)
			}
		})
	}
}

// TestMissingKeysAreCached checks that a GET of a key pebble does not hold,
// and that the key filter cannot rule out (a false positive), is answered
// from the cache the second time, that a key the filter rules out takes no
// cache entry, and that a write replaces the memory of absence at once.
func TestMissingKeysAreCached(t *testing.T) {
	s := open(t, Options{})
	testutil.Eventually(t, 10*time.Second, "the key filter to be ready", s.keys.complete.Load)
	if got := value(t, s, 3, "ruled-out"); got != "<missing>" {
		t.Fatalf("new store: got %q", got)
	}
	if st := s.CacheStats(); st.Entries != 0 {
		t.Fatalf("a key the filter rules out took a cache entry: %+v", st)
	}
	s.keys.add(objectKey(nil, 3, []byte("nope"))) // a false positive
	if got := value(t, s, 3, "nope"); got != "<missing>" {
		t.Fatalf("new store: got %q", got)
	}
	before := s.CacheStats()
	if got := value(t, s, 3, "nope"); got != "<missing>" {
		t.Fatalf("second read: got %q", got)
	}
	after := s.CacheStats()
	if after.Hits != before.Hits+1 || after.Misses != before.Misses {
		t.Fatalf("second read of a missing key was not a cache hit: before %+v, after %+v", before, after)
	}
	set(t, s, 3, "nope", "now")
	if got := value(t, s, 3, "nope"); got != "now" {
		t.Fatalf("after a write: got %q, want now", got)
	}
	// The same key in another partition is another key.
	if got := value(t, s, 4, "nope"); got != "<missing>" {
		t.Fatalf("partition 4: got %q", got)
	}
	// A write's read of the current object sees the cached absence as
	// absence, not as an empty object.
	o, err := s.Update(4, []byte("nope"), func(cur crdt.Object, found bool) (crdt.Object, error) {
		if found {
			t.Errorf("Update saw a missing key as found: %+v", cur)
		}
		cur.Cnt, _ = cur.Cnt.Add(1, 5)
		return cur, nil
	})
	if err != nil || o.Cnt.Value() != 5 {
		t.Fatalf("counter on a missing key: %v %v", o.Cnt.Value(), err)
	}
}

// TestNewActorAfterUncleanShutdown is Riak's KV679 in small: a write that
// was visible (a client read its context) but not durable is lost in a
// crash. If the restarted node reused the lost write's dot for a new write,
// the client's later write with that old context would silently drop the
// new one. A new actor id after an unclean shutdown makes the new dot
// unseen by every old context.
func TestNewActorAfterUncleanShutdown(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs}) // not synced
	if err != nil {
		t.Fatal(err)
	}
	write := func(s *Store, val string, ctx crdt.Context, hasCtx bool) crdt.Object {
		t.Helper()
		o, err := s.Update(0, []byte("k"), func(cur crdt.Object, _ bool) (crdt.Object, error) {
			c := cur.Reg.Context
			if hasCtx {
				c = ctx
			}
			cur.Reg = cur.Reg.Update(s.Actor(), c, []byte(val), false, 1)
			return cur, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	write(s, "v1", nil, false)
	if err := s.Flush(); err != nil { // v1 is durable
		t.Fatal(err)
	}
	token := write(s, "v2", nil, false).Reg.Context // a client reads v2's context; v2 is not durable
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()

	r, err := Open(Options{Dir: "/db", Partitions: 16, FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := value(t, r, 0, "k"); got != "v1" {
		t.Fatalf("after the crash: %q, want v1 (v2 was not durable)", got)
	}
	write(r, "v3", nil, false)       // acknowledged after the restart
	o := write(r, "v4", token, true) // the client writes with its old context
	vals := map[string]bool{}
	for _, sib := range o.Reg.Siblings {
		vals[string(sib.Value)] = true
	}
	if !vals["v3"] || !vals["v4"] {
		t.Fatalf("siblings %v: v3, written after the crash and unseen by the old context, was dropped", vals)
	}
	// A clean close keeps the actor.
	actor := r.Actor()
	r.Close()
	r2, err := Open(Options{Dir: "/db", Partitions: 16, FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Actor() != actor || r2.ReplacedActor() {
		t.Fatalf("a clean close changed the actor id")
	}
}

// TestUnsyncedWritesAreFlushedPeriodically: without Sync, a write is
// durable after the next periodic WAL sync, so a crash loses at most one
// FlushInterval of acknowledged writes.
func TestUnsyncedWritesAreFlushedPeriodically(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	set(t, s, 0, "k", "v")
	before := s.synced.Load()
	for deadline := time.Now().Add(5 * time.Second); s.synced.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("no periodic WAL sync within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	r, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := value(t, r, 0, "k"); got != "v" {
		t.Fatalf("after a crash following the periodic sync: %q", got)
	}
}

// syncCountingFS counts the syncs of the WAL's files (pebble's *.log).
type syncCountingFS struct {
	vfs.FS
	syncs *atomic.Int64
}

func (fs syncCountingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return syncCountingFile{f, fs.syncs}, nil
}

func (fs syncCountingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs syncCountingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type syncCountingFile struct {
	vfs.File
	syncs *atomic.Int64
}

func (f syncCountingFile) Sync() error     { f.syncs.Add(1); return f.File.Sync() }
func (f syncCountingFile) SyncData() error { f.syncs.Add(1); return f.File.SyncData() }
func (f syncCountingFile) SyncTo(length int64) (bool, error) {
	f.syncs.Add(1)
	return f.File.SyncTo(length)
}

// TestSyncWindowSharesFsyncs: with a sync window, writers that each wait
// for their write's fsync share fsyncs: 8 writers of 5 writes each get at
// most half as many fsyncs as writes. (It counts fsyncs; the window only
// has to be longer than the writers take to commit again once woken.) A
// single writer's synced writes are spaced by the window at least.
func TestSyncWindowSharesFsyncs(t *testing.T) {
	const window = 100 * time.Millisecond
	open := func() (*Store, *atomic.Int64) {
		n := new(atomic.Int64)
		s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, SyncWindow: window, FS: syncCountingFS{vfs.NewMem(), n}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, n
	}
	put := func(s *Store, k string) {
		obj := crdt.Object{Reg: crdt.Register{}.Update(s.Actor(), crdt.Context{}, []byte("v"), false, 1)}
		if _, err := s.Merge(0, []byte(k), obj); err != nil {
			t.Error(err)
		}
	}

	s, n := open()
	const writers, each = 8, 5
	base := n.Load()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				put(s, fmt.Sprint("k", w, "-", i))
			}
		}()
	}
	wg.Wait()
	syncs := n.Load() - base
	t.Logf("%d writes of %d writers, %d fsyncs with a %v window", writers*each, writers, syncs, window)
	if syncs > writers*each/2 {
		t.Fatalf("%d fsyncs for %d writes of %d concurrent writers: they do not share them", syncs, writers*each, writers)
	}

	s, _ = open()
	put(s, "first")
	start := time.Now()
	put(s, "second")
	put(s, "third")
	if took := time.Since(start); took < 2*window {
		t.Fatalf("two synced writes after a first took %v, less than two %v windows: the window is not applied", took, window)
	}
}

// countingHandler counts the records logged at each level.
type countingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r)
	h.mu.Unlock()
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// TestPebbleErrorsAreRateLimited: a background error that repeats (no
// file descriptor left) came tens of thousands of times a second and
// filled the node's log: one a second is logged, with the count left out.
func TestPebbleErrorsAreRateLimited(t *testing.T) {
	h := &countingHandler{}
	p := &pebbleLogger{l: slog.New(h)}
	for range 10000 {
		p.Errorf("background error: %s", "too many open files")
	}
	if len(h.records) != 1 {
		t.Fatalf("%d records for 10,000 errors within a second, want 1", len(h.records))
	}
	// The error keeps coming: the next record is a second later, and
	// counts every error left out since the first.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.records) < 2 && time.Now().Before(deadline) {
		p.Errorf("background error: %s", "too many open files")
		time.Sleep(10 * time.Millisecond) // an error every 10 ms until the second record
	}
	if len(h.records) != 2 {
		t.Fatalf("%d records after a second, want 2", len(h.records))
	}
	var left int64
	h.records[1].Attrs(func(a slog.Attr) bool {
		if a.Key == "errors_not_logged_since_last" {
			left = a.Value.Int64()
		}
		return true
	})
	if left < 9999 {
		t.Errorf("the second record counts %d errors left out, want at least 9999", left)
	}
}

// TestADirectoryOfAnotherNodeGetsANewActor: a data directory copied from
// another node (a backup restored, a copy to seed a new node), or opened
// by a node renamed, gets a new actor id even after a clean close: two
// nodes writing under one actor lost each other's increments (both take
// the actor's entry from k to k+1; the merge keeps one). The same name
// keeps its actor; a directory of no recorded owner takes the first.
func TestADirectoryOfAnotherNodeGetsANewActor(t *testing.T) {
	fs := vfs.NewMem()
	openAs := func(owner string) (uint64, string, bool) {
		t.Helper()
		s, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs, Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.Actor(), s.PreviousOwner(), s.ReplacedActor()
	}
	legacy, _, _ := openAs("") // a directory made before owners were recorded
	a1, prev, _ := openAs("n1")
	if a1 != legacy || prev != "" {
		t.Fatalf("the first owner of a directory: actor %x (was %x), previous owner %q", a1, legacy, prev)
	}
	if a, prev, _ := openAs("n1"); a != a1 || prev != "" {
		t.Fatalf("reopened by n1: actor %x, want %x; previous owner %q", a, a1, prev)
	}
	a2, prev, crashed := openAs("n2")
	if a2 == a1 || prev != "n1" || crashed {
		t.Fatalf("opened by n2 after n1: actor %x (n1's %x), previous owner %q, replaced as after a crash %v", a2, a1, prev, crashed)
	}
	if a, prev, _ := openAs("n2"); a != a2 || prev != "" {
		t.Fatalf("reopened by n2: actor %x, want %x; previous owner %q", a, a2, prev)
	}
	if a, _, _ := openAs(""); a != a2 {
		t.Fatalf("opened with no owner given: actor %x, want %x (unchecked)", a, a2)
	}
}

func TestIdleFlusherWaitsForAPauseAndEnoughWrites(t *testing.T) {
	const idle, minBytes = 100 * time.Millisecond, 1000
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var f idleFlusher
	steps := []struct {
		ms      int
		written uint64
		want    bool
	}{
		{0, 0, false},       // the first look only notes the count
		{50, 5000, false},   // writes going on
		{100, 9000, false},  // still going on
		{150, 9000, false},  // quiet for 50ms only
		{200, 9000, true},   // quiet for 100ms, 9000 bytes since: flush
		{250, 9000, false},  // flushed already, nothing new
		{300, 9500, false},  // new writes
		{500, 9500, false},  // quiet, but 500 bytes since the flush
		{550, 10200, false}, // more writes
		{700, 10200, true},  // quiet long enough, 1200 bytes since the flush
	}
	for _, s := range steps {
		if got := f.due(s.written, at(s.ms), idle, minBytes); got != s.want {
			t.Fatalf("at %dms with %d bytes written: due %v, want %v", s.ms, s.written, got, s.want)
		}
	}
}

// TestIdleFlushEmptiesTheMemtableAndKeepsEveryWrite writes, stops, and
// waits for the idle flush: every write must then be readable, from the
// tables alone (after a crash that keeps no unsynced log data), and the
// memtable must be empty.
func TestIdleFlushEmptiesTheMemtableAndKeepsEveryWrite(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const memtable = 1 << 20
	s, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs, MemTableSize: memtable, IdleFlush: 20 * time.Millisecond, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	val := strings.Repeat("v", 200)
	n := 0
	for s.written.Load() < memtable/8 { // more than the sixteenth needed, less than the memtable
		set(t, s, uint32(n%16), fmt.Sprintf("k%05d", n), val)
		n++
	}
	testutil.Eventually(t, 10*time.Second, "a flush once the writes stop", func() bool { return s.db.Metrics().Flush.Count > 0 })
	// The flush is durable once its table is in the manifest: a crash
	// that loses everything the log did not sync keeps the writes.
	r, err := Open(Options{Dir: "/db", Partitions: 16, FS: fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), IdleFlush: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range n {
		if got := value(t, r, uint32(i%16), fmt.Sprintf("k%05d", i)); got != val {
			t.Fatalf("after the idle flush and a crash, key %d of %d: %q", i, n, got)
		}
	}
	if r.idleStop != nil {
		t.Fatal("IdleFlush negative started the idle flush loop")
	}
}

// TestATinyIdleFlushDoesNotCrash: any positive --idle-flush is valid; one
// under 2ns made the loop's ticker interval 0, and the panic in its
// goroutine ended the process (a review's finding).
func TestATinyIdleFlushDoesNotCrash(t *testing.T) {
	s := open(t, Options{IdleFlush: 1})
	set(t, s, 0, "k", "v")
	if got := value(t, s, 0, "k"); got != "v" {
		t.Fatalf("read %q", got)
	}
}
