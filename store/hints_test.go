package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rumor-kv/rumor/crdt"
)

// setTo returns an update that sets the register to val.
func setTo(s *Store, val string) func(crdt.Object, bool) (crdt.Object, error) {
	return func(cur crdt.Object, _ bool) (crdt.Object, error) {
		cur.Reg = cur.Reg.Update(s.Actor(), cur.Reg.Context, []byte(val), false, 1)
		return cur, nil
	}
}

func hset(t *testing.T, s *Store, p uint32, key, target, val string) {
	t.Helper()
	if _, err := s.UpdateHinted(p, []byte(key), target, setTo(s, val), nil); err != nil {
		t.Fatal(err)
	}
}

// hintsFor returns every hint for target, with keys copied.
func hintsFor(t *testing.T, s *Store, target string) []Hint {
	t.Helper()
	var hs []Hint
	err := s.ScanHints(target, nil, 0, func(h Hint) error {
		h.Key = bytes.Clone(h.Key)
		hs = append(hs, h)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// hintFor returns the hint (target, p, key), if there is one.
func hintFor(t *testing.T, s *Store, target string, p uint32, key string) (Hint, bool) {
	t.Helper()
	for _, h := range hintsFor(t, s, target) {
		if h.Partition == p && string(h.Key) == key {
			return h, true
		}
	}
	return Hint{}, false
}

// diskHints counts the hint records in pebble per target, independently of
// the store's counts.
func diskHints(t *testing.T, s *Store) map[string]int {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{hintPrefix}, UpperBound: []byte{hintPrefix + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	counts := map[string]int{}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		counts[string(k[2:2+int(k[1])])]++
	}
	return counts
}

func checkCounts(t *testing.T, s *Store, want map[string]int) {
	t.Helper()
	total := 0
	for _, n := range want {
		total += n
	}
	if got := s.Hints(); !maps.Equal(got, want) {
		t.Fatalf("Hints() = %v, want %v", got, want)
	}
	if got := s.HintCount(); got != total {
		t.Fatalf("HintCount() = %d, want %d", got, total)
	}
	if got := diskHints(t, s); !maps.Equal(got, want) {
		t.Fatalf("hint records on disk %v, want %v", got, want)
	}
}

func TestUpdateHintedWritesObjectAndHint(t *testing.T) {
	s := open(t, Options{Sync: true})
	var wait func() error
	if _, err := s.UpdateHinted(3, []byte("k"), "b", setTo(s, "v1"), func(w func() error) { wait = w }); err != nil {
		t.Fatal(err)
	}
	if wait == nil {
		t.Fatal("UpdateHinted with Sync did not defer the sync")
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := value(t, s, 3, "k"); got != "v1" {
		t.Fatalf("object = %q, want v1", got)
	}
	hs := hintsFor(t, s, "b")
	if len(hs) != 1 || hs[0].Target != "b" || hs[0].Partition != 3 || string(hs[0].Key) != "k" {
		t.Fatalf("hints for b = %+v", hs)
	}
	first := hs[0]
	checkCounts(t, s, map[string]int{"b": 1})

	// A hint for another target of the same key is a record of its own.
	hset(t, s, 3, "k", "c", "v1")
	checkCounts(t, s, map[string]int{"b": 1, "c": 1})

	// Rewriting a hint keeps the count and changes Seq.
	hset(t, s, 3, "k", "b", "v2")
	checkCounts(t, s, map[string]int{"b": 1, "c": 1})
	if h, _ := hintFor(t, s, "b", 3, "k"); h.Seq == first.Seq {
		t.Fatalf("rewritten hint kept Seq %d", h.Seq)
	}
	if got := value(t, s, 3, "k"); got != "v2" {
		t.Fatalf("object = %q, want v2", got)
	}

	// No target: no hint, as UpdateDeferred.
	hset(t, s, 3, "plain", "", "x")
	other := crdt.Object{Reg: crdt.Register{}.Update(0xbeef, nil, []byte("m"), false, 5)}
	if _, err := s.MergeHinted(4, []byte("m"), other, "b"); err != nil {
		t.Fatal(err)
	}
	if got := value(t, s, 4, "m"); got != "m" {
		t.Fatalf("merged object = %q", got)
	}
	checkCounts(t, s, map[string]int{"b": 2, "c": 1})

	// Scanning objects sees objects only.
	var keys []string
	if err := s.Scan(3, func(k []byte, _ crdt.Object) error { keys = append(keys, string(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[k plain]" {
		t.Fatalf("Scan(3) = %v", keys)
	}
	// The last partition's objects are followed by the hint records.
	s2 := open(t, Options{Partitions: 1 << 16})
	hset(t, s2, 1<<16-1, "last", "b", "x")
	n := 0
	if err := s2.Scan(1<<16-1, func([]byte, crdt.Object) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("Scan(last partition) saw %d objects, err %v", n, err)
	}
}

func TestDeleteHintKeepsRewrittenHint(t *testing.T) {
	s := open(t, Options{})
	hset(t, s, 1, "k", "b", "v1")
	hset(t, s, 1, "k", "c", "v1")
	stale, _ := hintFor(t, s, "b", 1, "k")
	hset(t, s, 1, "k", "b", "v2") // a newer write, still to be delivered
	cur, _ := hintFor(t, s, "b", 1, "k")

	if ok, err := s.DeleteHint(stale); ok || err != nil {
		t.Fatalf("DeleteHint(stale Seq) = %v, %v; want false", ok, err)
	}
	if h, ok := hintFor(t, s, "b", 1, "k"); !ok || h.Seq != cur.Seq {
		t.Fatalf("after a stale delete the hint is %+v, %v; want %+v", h, ok, cur)
	}
	checkCounts(t, s, map[string]int{"b": 1, "c": 1})

	if ok, err := s.DeleteHint(cur); !ok || err != nil {
		t.Fatalf("DeleteHint(current Seq) = %v, %v; want true", ok, err)
	}
	if _, ok := hintFor(t, s, "b", 1, "k"); ok {
		t.Fatal("the hint survived its delete")
	}
	checkCounts(t, s, map[string]int{"c": 1})
	// Deleting again, or a hint never written, deletes nothing.
	for _, h := range []Hint{cur, {Target: "b", Partition: 2, Key: []byte("k"), Seq: cur.Seq}} {
		if ok, err := s.DeleteHint(h); ok || err != nil {
			t.Fatalf("DeleteHint(%+v) = %v, %v; want false", h, ok, err)
		}
	}
	checkCounts(t, s, map[string]int{"c": 1})
	// The object stays: the stand-in holds it as its own.
	if got := value(t, s, 1, "k"); got != "v2" {
		t.Fatalf("object after DeleteHint = %q", got)
	}
}

func TestMaxHintsAndHostileTargets(t *testing.T) {
	s := open(t, Options{MaxHints: 3})
	hset(t, s, 0, "a", "n1", "v")
	hset(t, s, 0, "b", "n1", "v")
	hset(t, s, 1, "a", "n2", "v")
	full := map[string]int{"n1": 2, "n2": 1}

	called := false
	fn := func(cur crdt.Object, _ bool) (crdt.Object, error) { called = true; return cur, nil }
	if _, err := s.UpdateHinted(2, []byte("c"), "n3", fn, nil); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("a 4th hint with MaxHints 3: err = %v", err)
	}
	obj := crdt.Object{Reg: crdt.Register{}.Update(1, nil, []byte("m"), false, 1)}
	if _, err := s.MergeHinted(2, []byte("c"), obj, "n1"); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("MergeHinted at the bound: err = %v", err)
	}
	if called {
		t.Fatal("fn ran although the hint could not be stored")
	}
	if got := value(t, s, 2, "c"); got != "<missing>" {
		t.Fatalf("object written without its hint: %q", got)
	}
	checkCounts(t, s, full)

	// Rewriting a hint at the bound needs no new record.
	hset(t, s, 0, "a", "n1", "v2")
	if got := value(t, s, 0, "a"); got != "v2" {
		t.Fatalf("rewrite at the bound: object %q", got)
	}
	checkCounts(t, s, full)

	// A failed fn gives its reserved slot back.
	h, _ := hintFor(t, s, "n2", 1, "a")
	if ok, err := s.DeleteHint(h); !ok || err != nil {
		t.Fatal(ok, err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateHinted(2, []byte("c"), "n3", func(crdt.Object, bool) (crdt.Object, error) {
		return crdt.Object{}, boom
	}, nil); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	checkCounts(t, s, map[string]int{"n1": 2})
	hset(t, s, 2, "c", "n3", "v")
	checkCounts(t, s, map[string]int{"n1": 2, "n3": 1})

	// Negative MaxHints: no hints; writes without one still work.
	none := open(t, Options{MaxHints: -1})
	if _, err := none.UpdateHinted(0, []byte("k"), "n1", setTo(none, "v"), nil); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("MaxHints -1: err = %v", err)
	}
	hset(t, none, 0, "k", "", "v")
	checkCounts(t, none, map[string]int{})

	// A target name too long for its length byte is refused everywhere.
	long := strings.Repeat("x", 256)
	called = false
	if _, err := s.UpdateHinted(5, []byte("h"), long, fn, nil); err == nil || errors.Is(err, ErrHintsFull) {
		t.Fatalf("256-byte target: err = %v", err)
	}
	if called || value(t, s, 5, "h") != "<missing>" {
		t.Fatal("a write with a bad target wrote its object")
	}
	if err := s.ScanHints(long, nil, 0, func(Hint) error { return nil }); err == nil {
		t.Fatal("ScanHints accepted a 256-byte target")
	}
	if _, err := s.DeleteHint(Hint{Target: long, Key: []byte("h")}); err == nil {
		t.Fatal("DeleteHint accepted a 256-byte target")
	}
	checkCounts(t, s, map[string]int{"n1": 2, "n3": 1})
	big := open(t, Options{})
	hset(t, big, 5, "h", long[1:], "v")
	if hs := hintsFor(t, big, long[1:]); len(hs) != 1 || hs[0].Target != long[1:] {
		t.Fatalf("255-byte target: hints %+v", hs)
	}
}

func TestHintsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Partitions: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		hset(t, s, uint32(i%16), fmt.Sprint("k", i), fmt.Sprint("n", i%3), "v")
	}
	var maxSeq uint64
	for _, target := range []string{"n0", "n1", "n2"} {
		for i, h := range hintsFor(t, s, target) {
			maxSeq = max(maxSeq, h.Seq)
			if i%2 == 0 {
				if ok, err := s.DeleteHint(h); !ok || err != nil {
					t.Fatal(ok, err)
				}
			}
		}
	}
	want := s.Hints()
	before := map[string][]Hint{}
	for target := range want {
		before[target] = hintsFor(t, s, target)
	}
	s.Close()

	r, err := Open(Options{Dir: dir, Partitions: 16, MaxHints: s.HintCount()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkCounts(t, r, want)
	for target, hs := range before {
		after := hintsFor(t, r, target)
		if !slices.EqualFunc(hs, after, func(a, b Hint) bool {
			return a.Target == b.Target && a.Partition == b.Partition && bytes.Equal(a.Key, b.Key) && a.Seq == b.Seq
		}) {
			t.Fatalf("hints for %s before the reopen %+v, after %+v", target, hs, after)
		}
	}
	// The reopened store's bound counts the hints it already holds.
	if _, err := r.UpdateHinted(0, []byte("new"), "n0", setTo(r, "v"), nil); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("a new hint past MaxHints after reopen: err = %v", err)
	}
	// A Seq handed out before the restart, even of a deleted hint, is not
	// handed out again.
	hset(t, r, 1, "k1", "n1", "v2")
	if h, _ := hintFor(t, r, "n1", 1, "k1"); h.Seq <= maxSeq {
		t.Fatalf("Seq %d after the reopen, not above the %d before it", h.Seq, maxSeq)
	}
}

// TestHintedWritesSurviveCrash is TestSyncedWritesSurviveCrash for hinted
// writes: each one acknowledged before the crash is in the recovered store
// with its hint, and no object is recovered without its hint or the other
// way round (they are one batch).
func TestHintedWritesSurviveCrash(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	// Key i of writer w is in partition i%16 and hinted for node target(i).
	target := func(i int) string { return fmt.Sprint("n", i%3) }
	counter := func(n int) crdt.Object {
		return crdt.Object{Cnt: crdt.Counter{Entries: []crdt.CounterEntry{{Actor: 1, Inc: uint64(n)}}}}
	}
	for round := 0; round < 3; round++ {
		fs := vfs.NewCrashableMem()
		s, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		// For each key acknowledged before the crash: its highest counter value.
		want, crashed := crashMidStream(t, s, fs, rng, func(w, n int) (string, error) {
			i := n % 40
			k := fmt.Sprintf("w%d-k%d", w, i)
			if w%2 == 0 {
				// The coordinator's way: the sync is waited for later.
				var wait func() error
				_, err := s.UpdateHinted(uint32(i%16), []byte(k), target(i), func(cur crdt.Object, _ bool) (crdt.Object, error) {
					return crdt.Merge(cur, counter(n)), nil
				}, func(w func() error) { wait = w })
				if err == nil {
					err = wait()
				}
				return k, err
			}
			_, err := s.MergeHinted(uint32(i%16), []byte(k), counter(n), target(i))
			return k, err
		})

		r, err := Open(Options{Dir: "/db", Partitions: 16, Sync: true, FS: crashed})
		if err != nil {
			t.Fatalf("round %d: reopen after crash: %v", round, err)
		}
		hinted := map[string]bool{} // target/p/key
		counts := map[string]int{}
		for _, tg := range []string{"n0", "n1", "n2"} {
			for _, h := range hintsFor(t, r, tg) {
				hinted[fmt.Sprintf("%s/%d/%s", tg, h.Partition, h.Key)] = true
				counts[tg]++
			}
		}
		checkCounts(t, r, counts)
		for k, n := range want {
			var w, i int
			fmt.Sscanf(k, "w%d-k%d", &w, &i)
			o, _, err := r.Get(uint32(i%16), []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Cnt.Value(); got < int64(n) {
				t.Errorf("round %d: acknowledged %s=%d, recovered %d", round, k, n, got)
			}
			if !hinted[fmt.Sprintf("%s/%d/%s", target(i), i%16, k)] {
				t.Errorf("round %d: acknowledged %s=%d, recovered without its hint", round, k, n)
			}
		}
		objects := 0
		for p := uint32(0); p < 16; p++ {
			err := r.Scan(p, func(k []byte, _ crdt.Object) error {
				objects++
				var w, i int
				fmt.Sscanf(string(k), "w%d-k%d", &w, &i)
				if !hinted[fmt.Sprintf("%s/%d/%s", target(i), p, k)] {
					t.Errorf("round %d: object %s recovered without its hint", round, k)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if objects != len(hinted) {
			t.Errorf("round %d: %d objects and %d hints recovered, want one each", round, objects, len(hinted))
		}
		r.Close()
		if t.Failed() {
			t.FailNow()
		}
	}
}

func TestScanHintsPages(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	s := open(t, Options{Partitions: 1024})
	// Targets that are prefixes of one another, and bytes at the edges of
	// the key order.
	targets := []string{"a", "ab", "b", "n1", "n10", "\x00", "\xff", "\xff\xff"}
	type ref struct {
		p   uint32
		key string
	}
	want := map[string]map[ref]bool{}
	for range 600 {
		tg := targets[rng.IntN(len(targets))]
		r := ref{uint32(rng.IntN(1024)), fmt.Sprint("k", rng.IntN(20))}
		if rng.IntN(10) == 0 {
			r.key = "" // the empty key, less than any other
		}
		hset(t, s, r.p, r.key, tg, "v")
		if want[tg] == nil {
			want[tg] = map[ref]bool{}
		}
		want[tg][r] = true
	}
	counts := map[string]int{}
	for tg, refs := range want {
		counts[tg] = len(refs)
	}
	checkCounts(t, s, counts)

	for _, tg := range append(targets, "", "n", "c") {
		var sorted []ref
		for r := range want[tg] {
			sorted = append(sorted, r)
		}
		slices.SortFunc(sorted, func(a, b ref) int {
			if a.p != b.p {
				return int(a.p) - int(b.p)
			}
			return strings.Compare(a.key, b.key)
		})
		for _, limit := range []int{1, 2, 7, 0} {
			var got []ref
			var after *Hint
			for pages := 0; ; pages++ {
				if pages > len(sorted)+1 {
					t.Fatalf("%q limit %d: pages never end", tg, limit)
				}
				n := 0
				var last Hint
				err := s.ScanHints(tg, after, limit, func(h Hint) error {
					if h.Target != tg {
						t.Fatalf("ScanHints(%q) returned a hint for %q", tg, h.Target)
					}
					got = append(got, ref{h.Partition, string(h.Key)})
					last = h
					last.Key = bytes.Clone(h.Key)
					n++
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if limit > 0 && n > limit {
					t.Fatalf("%q: a page of %d hints with limit %d", tg, n, limit)
				}
				if n == 0 || limit == 0 {
					break
				}
				after = &last
			}
			if !slices.Equal(got, sorted) {
				t.Fatalf("%q limit %d: pages gave %v, want %v", tg, limit, got, sorted)
			}
		}
	}

	// fn's error stops the scan.
	stop := errors.New("stop")
	n := 0
	if err := s.ScanHints("a", nil, 0, func(Hint) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("ScanHints after fn failed: err %v, %d calls", err, n)
	}
	if err := s.ScanHints("a", &Hint{Target: "b"}, 0, func(Hint) error { return nil }); err == nil {
		t.Fatal("ScanHints accepted after from another target")
	}
}

// TestHintsUnderConcurrency runs hinted writers against handoff workers
// (scan, read the object, delete the hint) and stale deletes on a few
// keys, under a MaxHints that is often reached. At the end the counts
// must equal the records, before and after a reopen, and every
// acknowledged hinted write must have been delivered or still be hinted.
func TestHintsUnderConcurrency(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	const maxHints = 20
	s, err := Open(Options{Dir: dir, Partitions: 16, MaxHints: maxHints})
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{"a", "b", "c"}
	const keys = 10 // 30 possible hints
	type tk struct {
		target string
		key    int
	}
	var mu sync.Mutex
	acked := map[tk]int64{}     // highest counter value written with a hint
	delivered := map[tk]int64{} // highest value read before a hint's delete
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
			var seen []Hint
			for range 1000 {
				tg, k := targets[rng.IntN(len(targets))], rng.IntN(keys)
				key := []byte(fmt.Sprint("k", k))
				switch op := rng.IntN(4); {
				case op < 2 || w < 2:
					o, err := s.UpdateHinted(uint32(k%4), key, tg, func(cur crdt.Object, _ bool) (crdt.Object, error) {
						c, err := cur.Cnt.Add(1, 1)
						cur.Cnt = c
						return cur, err
					}, nil)
					if errors.Is(err, ErrHintsFull) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[tk{tg, k}] = max(acked[tk{tg, k}], o.Cnt.Value())
					mu.Unlock()
				case op == 2:
					err := s.ScanHints(tg, nil, 3, func(h Hint) error {
						h.Key = bytes.Clone(h.Key)
						seen = append(seen, h)
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				case len(seen) > 0:
					// Deliver a hint seen now or earlier (then its Seq may be stale).
					i := len(seen) - 1
					if rng.IntN(2) == 0 {
						i = rng.IntN(len(seen))
					}
					h := seen[i]
					seen = slices.Delete(seen, i, i+1)
					o, _, err := s.Get(h.Partition, h.Key)
					if err != nil {
						t.Error(err)
						return
					}
					ok, err := s.DeleteHint(h)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						var k int
						fmt.Sscanf(string(h.Key), "k%d", &k)
						mu.Lock()
						delivered[tk{h.Target, k}] = max(delivered[tk{h.Target, k}], o.Cnt.Value())
						mu.Unlock()
					}
				}
				if n := s.HintCount(); n > maxHints {
					t.Errorf("%d hints, more than MaxHints %d", n, maxHints)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	counts := diskHints(t, s)
	checkCounts(t, s, counts)
	for x, n := range acked {
		if _, ok := hintFor(t, s, x.target, uint32(x.key%4), fmt.Sprint("k", x.key)); !ok && delivered[x] < n {
			t.Errorf("%s/k%d: acknowledged %d, delivered %d and no hint left", x.target, x.key, n, delivered[x])
		}
	}
	s.Close()
	r, err := Open(Options{Dir: dir, Partitions: 16, MaxHints: maxHints})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkCounts(t, r, counts)
}

func TestHintsGauge(t *testing.T) {
	s := open(t, Options{})
	hset(t, s, 0, "k1", "a", "v")
	hset(t, s, 1, "k2", "a", "v")
	hset(t, s, 0, "k1", "b", "v")
	hset(t, s, 0, "k1", "\xffbad", "v") // not UTF-8: must not break the scrape
	got := map[string]float64{}
	for _, mf := range gather(t, s) {
		if mf.GetName() != "rumor_store_hints" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetName()+"="+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"target=a": 2, "target=b": 1, "target=\uFFFDbad": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("rumor_store_hints = %v, want %v", got, want)
	}
}

// gather scrapes s's collector through a pedantic registry, which also
// checks what it exports is consistent.
func gather(t *testing.T, s *Store) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// TestWALFsyncHistogram: with Sync, every update's fsync is counted in
// rumor_store_wal_fsync_seconds, in seconds, with cumulative buckets.
func TestWALFsyncHistogram(t *testing.T) {
	s := open(t, Options{Sync: true})
	for i := range 5 {
		hset(t, s, 0, fmt.Sprint("k", i), "", "v")
	}
	for _, mf := range gather(t, s) {
		if mf.GetName() != "rumor_store_wal_fsync_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() < 5 {
			t.Fatalf("%d fsyncs counted after 5 synced updates", h.GetSampleCount())
		}
		if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean <= 0 || mean > 10 {
			t.Fatalf("mean fsync %v s: not in seconds", mean)
		}
		var prev uint64
		bs := h.GetBucket()
		for _, b := range bs {
			if b.GetCumulativeCount() < prev {
				t.Fatalf("bucket le=%v holds %d, fewer than the bucket before it", b.GetUpperBound(), b.GetCumulativeCount())
			}
			prev = b.GetCumulativeCount()
		}
		if len(bs) < 10 || bs[0].GetUpperBound() != 100e-6 || bs[len(bs)-1].GetUpperBound() < 5 {
			t.Fatalf("buckets from %v to %v (%d): want 100µs up to seconds", bs[0].GetUpperBound(), bs[len(bs)-1].GetUpperBound(), len(bs))
		}
		return
	}
	t.Fatal("no rumor_store_wal_fsync_seconds")
}

// TestAddHint: a replica records hints for other replicas on its own copy.
// A new hint is counted and bounded like a hinted write's, a rewrite gets
// a fresh Seq (so a delivery of the older one does not delete it), and bad
// targets are refused.
func TestAddHint(t *testing.T) {
	s := open(t, Options{MaxHints: 2})
	hset(t, s, 1, "k", "", "v") // this node's own copy, no hint
	if err := s.AddHint(1, []byte("k"), "n2"); err != nil {
		t.Fatal(err)
	}
	first, ok := hintFor(t, s, "n2", 1, "k")
	if !ok {
		t.Fatal("AddHint wrote no hint")
	}
	checkCounts(t, s, map[string]int{"n2": 1})
	if err := s.AddHint(1, []byte("k"), "n2"); err != nil {
		t.Fatal(err)
	}
	again, _ := hintFor(t, s, "n2", 1, "k")
	if again.Seq == first.Seq {
		t.Fatal("a rewritten hint kept its Seq")
	}
	if ok, err := s.DeleteHint(first); ok || err != nil {
		t.Fatalf("DeleteHint of the older Seq = %v, %v; want false", ok, err)
	}
	checkCounts(t, s, map[string]int{"n2": 1})
	if err := s.AddHint(1, []byte("k"), "n3"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHint(2, []byte("k"), "n3"); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("a third hint with MaxHints 2: err = %v", err)
	}
	checkCounts(t, s, map[string]int{"n2": 1, "n3": 1})
	for _, target := range []string{"", strings.Repeat("x", 256)} {
		if err := s.AddHint(1, []byte("k"), target); err == nil {
			t.Fatalf("AddHint accepted target %q", target)
		}
	}
	checkCounts(t, s, map[string]int{"n2": 1, "n3": 1})
	if got := value(t, s, 1, "k"); got != "v" {
		t.Fatalf("object after AddHint = %q", got)
	}
}

// UpdateEncoded returns exactly what the store holds, encoded: a
// coordinator sends it to the other replicas as the write, so bytes that
// differed from the stored object (the update's input, or an encoding
// made before fn ran) would replicate another value than the one written.
func TestUpdateEncodedReturnsTheStoredObject(t *testing.T) {
	s := open(t, Options{})
	hset(t, s, 3, "k", "", "old") // a sibling-free history to supersede
	enc, wait, err := s.UpdateEncoded(3, []byte("k"), "b", setTo(s, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if wait != nil {
		t.Fatal("UpdateEncoded without Sync returned a wait")
	}
	got, err := crdt.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	stored, ok, err := s.Get(3, []byte("k"))
	if err != nil || !ok {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	if !bytes.Equal(enc, stored.Encode()) || !got.Equal(stored) {
		t.Fatalf("UpdateEncoded returned %+v, the store holds %+v", got, stored)
	}
	if v := value(t, s, 3, "k"); v != "new" {
		t.Fatalf("object = %q, want new", v)
	}
	checkCounts(t, s, map[string]int{"b": 1})
	// A failed update returns no bytes and writes nothing.
	boom := errors.New("boom")
	if enc, wait, err := s.UpdateEncoded(3, []byte("k"), "", func(crdt.Object, bool) (crdt.Object, error) { return crdt.Object{}, boom }); !errors.Is(err, boom) || enc != nil || wait != nil {
		t.Fatalf("failed update = %q, %v", enc, err)
	}
	if v := value(t, s, 3, "k"); v != "new" {
		t.Fatalf("after a failed update, object = %q", v)
	}
}

// With Sync, UpdateEncoded hands the fsync's wait back; the write is
// applied at once and counted as stored only once the wait returns, and
// the store closes only after it has.
func TestUpdateEncodedReturnsTheWaitWithSync(t *testing.T) {
	s := open(t, Options{Sync: true})
	enc, wait, err := s.UpdateEncoded(3, []byte("k"), "", setTo(s, "v"))
	if err != nil {
		t.Fatal(err)
	}
	if wait == nil || len(enc) == 0 {
		t.Fatalf("UpdateEncoded with Sync = %q, wait %v", enc, wait != nil)
	}
	if got := value(t, s, 3, "k"); got != "v" { // applied before the wait
		t.Fatalf("object = %q, want v", got)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the write's wait was called", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// GetEncoded returns the stored encoding (what a replica sends a
// coordinator's read), from the cache or from pebble, and nothing for a
// key the store does not hold.
func TestGetEncodedReturnsTheStoredEncoding(t *testing.T) {
	for _, cache := range []int64{-1, 1 << 20} { // no object cache: pebble only; and one
		s := open(t, Options{ObjectCacheSize: cache})
		if enc, found, err := s.GetEncoded(3, []byte("k")); err != nil || found || enc != nil {
			t.Fatalf("cache %d: absent key = %q, %v, %v", cache, enc, found, err)
		}
		hset(t, s, 3, "k", "", "v1")
		for range 2 { // a miss that fills the cache, then a hit
			enc, found, err := s.GetEncoded(3, []byte("k"))
			obj, _, gerr := s.Get(3, []byte("k"))
			if err != nil || gerr != nil || !found || !bytes.Equal(enc, obj.Encode()) {
				t.Fatalf("cache %d: GetEncoded = %q, %v, %v; Get's object encodes as %q (%v)", cache, enc, found, err, obj.Encode(), gerr)
			}
		}
		hset(t, s, 3, "k", "", "v2")
		enc, _, _ := s.GetEncoded(3, []byte("k"))
		if o, err := crdt.Decode(enc); err != nil || len(o.Reg.Siblings) != 1 || string(o.Reg.Siblings[0].Value) != "v2" {
			t.Fatalf("cache %d: after an update, GetEncoded decodes to %v, %v", cache, o, err)
		}
	}
}
