package store

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/internal/testutil"
)

// TestKeyFilterHasNoFalseNegatives adds keys from two goroutines while the
// filter grows from its smallest size, then checks that every key added is
// reported, and that few absent keys are.
func TestKeyFilterHasNoFalseNegatives(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	f := newKeyFilter(0)
	const perWriter = 110_000
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
			for range perWriter {
				f.add(fmt.Appendf(nil, "\x01k:%d", r.Uint64()))
			}
		}()
	}
	// Until the opening scan completes, everything may be there.
	if !f.mayContain([]byte("never added")) {
		t.Fatal("an incomplete filter said a key is absent")
	}
	wg.Wait()
	f.complete.Store(true)
	if n := len(*f.layers.Load()); n < 3 {
		t.Fatalf("%d layers after %d keys from a %d-key start: the filter did not grow", n, 2*perWriter, minFilterKeys)
	}
	for w := range 2 {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		for i := range perWriter {
			if k := fmt.Appendf(nil, "\x01k:%d", r.Uint64()); !f.mayContain(k) {
				t.Fatalf("writer %d's key %d (%q) was added and is reported absent", w, i, k)
			}
		}
	}
	r := rand.New(rand.NewPCG(uint64(seed), 99))
	fp := 0
	const absent = 100_000
	for range absent {
		if f.mayContain(fmt.Appendf(nil, "\x01absent:%d", r.Uint64())) {
			fp++
		}
	}
	// 10 bits a key and 6 probes in a 512-bit block: about 1% per layer,
	// and a lookup asks every layer.
	if rate := float64(fp) / absent; rate > 0.05 {
		t.Fatalf("false positive rate %.3f over %d layers", rate, len(*f.layers.Load()))
	}
	t.Logf("%d layers, %d bytes for %d keys, false positives %.2f%%", len(*f.layers.Load()), f.bytes(), 2*perWriter, 100*float64(fp)/absent)
}

// TestReopenedStoreKeepsItsKeysWhileTheFilterScans: a store reopened on
// data it holds must see every key, before, during and after the key
// filter's scan. Counters are incremented once, the store reopened with no
// object cache (every lookup goes to the filter and pebble), and every
// counter incremented again while the scan runs: a key the filter wrongly
// called absent would come back at 1, its first increment lost.
func TestReopenedStoreKeepsItsKeysWhileTheFilterScans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const keys = 8_000
	incr := func(s *Store, i int) {
		t.Helper()
		_, err := s.Update(uint32(i%16), fmt.Appendf(nil, "c%d", i), func(cur crdt.Object, _ bool) (crdt.Object, error) {
			c, err := cur.Cnt.Add(1, 1)
			cur.Cnt = c
			return cur, err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(Options{Dir: dir, Partitions: 16, ObjectCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		incr(s, i)
	}
	s.Close()

	s = open(t, Options{Dir: dir, ObjectCacheSize: -1})
	var wg sync.WaitGroup
	for w := range 2 { // concurrently with the scan, from both ends
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys / 2 {
				if w == 1 {
					i = keys - 1 - i
				}
				incr(s, i)
			}
		}()
	}
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, "the key filter to be ready", s.keys.complete.Load)
	for i := range keys {
		o, ok, err := s.Get(uint32(i%16), fmt.Appendf(nil, "c%d", i))
		if err != nil || !ok || o.Cnt.Value() != 2 {
			t.Fatalf("c%d: %d, found %v, %v; want 2 (an increment before the reopen was lost)", i, o.Cnt.Value(), ok, err)
		}
	}
	// With the filter ready: new keys are written, old ones still found.
	incr(s, 0)
	incr(s, keys)
	for i, want := range map[int]int64{0: 3, keys: 1} {
		if o, _, _ := s.Get(uint32(i%16), fmt.Appendf(nil, "c%d", i)); o.Cnt.Value() != want {
			t.Fatalf("c%d = %d, want %d", i, o.Cnt.Value(), want)
		}
	}
}

// TestReopenedStoreSizesItsKeyFilter: a store reopened on more keys than the
// filter's smallest layer holds builds one layer of about the right size
// from pebble's entry counts, instead of growing layer by layer while the
// scan runs (up to three times the memory, and a lookup in every layer).
// Every key must still be reported.
func TestReopenedStoreSizesItsKeyFilter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const keys = 3 * minFilterKeys
	s := open(t, Options{Dir: dir, Partitions: 16})
	val := crdt.Object{Reg: crdt.Register{}.Update(1, crdt.Context{}, []byte("v"), false, 1)}.AppendEncoding(nil)
	b := s.db.NewBatch()
	for i := range keys {
		if err := b.Set(objectKey(nil, uint32(i%16), fmt.Appendf(nil, "k%d", i)), val, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	s.Close()

	s = open(t, Options{Dir: dir})
	testutil.Eventually(t, 10*time.Second, "the key filter to be ready", s.keys.complete.Load)
	for i := range keys {
		if k := objectKey(nil, uint32(i%16), fmt.Appendf(nil, "k%d", i)); !s.keys.mayContain(k) {
			t.Fatalf("key %d is held but the filter says it is not", i)
		}
	}
	layers := len(*s.keys.layers.Load())
	ideal := int64(keys * filterBitsPerKey / 8)
	if layers != 1 || s.keys.bytes() > 2*ideal {
		t.Fatalf("filter of %d keys: %d layers, %d bytes; want 1 layer and at most %d bytes", keys, layers, s.keys.bytes(), 2*ideal)
	}
}
